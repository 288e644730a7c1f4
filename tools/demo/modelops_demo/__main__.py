"""`make demo`: a better model is promoted and a worse one rolled back, on evidence alone.

Starts a local control plane whose pods really run (a local kubelet), Prometheus, and the
operator; deploys a mediocre champion behind a canary policy; sends it steady traffic with
delayed true labels; then changes spec.model twice, as a GitOps commit would, and records what
the policy does. Everything it starts is stopped by reference on the way out, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelops_devcluster.cluster import DevCluster, cache_root, wait_for_service_account
from modelops_devcluster.localkubelet import LocalKubelet
from modelops_devcluster.podnet import UNRESOLVED_ADDRESS
from modelops_devcluster.processes import stop_process_group
from modelops_devcluster.prometheus import PrometheusProcess

from . import scenario as sc
from .loadgen import LoadGenerator
from .models import DemoModel, DemoStream, build_demo_models
from .progress import progress_line
from .timeline import Timeline

RATE_PER_SECOND = 30.0
FEEDBACK_DELAY_SECONDS = (1.0, 3.0)
CHALLENGE_TIMEOUT = 240.0
# Kept back from --timeout for the report and for stopping everything.
RESERVE_SECONDS = 25.0
# The champion answers alone for a moment first, so a broken route shows before any change.
WARMUP_SECONDS = 5.0
# Between challenges: the ending's Events arrive, and they stay apart from the next one's.
SETTLE_SECONDS = 3.0


class DemoError(Exception):
    """The demo cannot go on; the message says what was seen."""


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.started = time.monotonic()
        self.end = self.started + seconds

    def remaining(self) -> float:
        return self.end - time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def bound(self, seconds: float, what: str) -> float:
        """``seconds``, or less if the overall deadline is nearer; an error when it passed."""
        left = self.remaining() - RESERVE_SECONDS
        if left <= 0:
            raise DemoError(f"out of time (--timeout) before {what}")
        return min(seconds, left)


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def wait_until(probe: Callable[[], Any], timeout: float, what: str,
               describe: Callable[[], str] | None = None, every: float = 10.0) -> Any:
    """Poll ``probe`` each second until truthy; say what is awaited every ``every`` s."""
    started = time.monotonic()
    told = started
    while time.monotonic() - started < timeout:
        value = probe()
        if value:
            return value
        if time.monotonic() - told >= every:
            told = time.monotonic()
            detail = f": {describe()}" if describe else ""
            say(f"  still waiting for {what} ({told - started:.0f} s){detail}")
        time.sleep(1.0)
    detail = f"; last seen: {describe()}" if describe else ""
    raise DemoError(f"{what} not reached within {timeout:.0f} s{detail}")


class Lab:
    """The running pieces, each stopped by its own handle in reverse order of start."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.cluster: DevCluster | None = None
        self.kubelet: LocalKubelet | None = None
        self.prometheus: PrometheusProcess | None = None
        self.operator: Any = None
        self.operator_kubeconfig: Path | None = None
        self.api: Any = None

    def start(self, deadline: Deadline) -> None:
        from modelops_operator.testing import (
            OperatorProcess,
            install_crds,
            service_account_kubeconfig,
        )

        w = self.workdir
        say("starting the control plane (etcd, kube-apiserver, controller-manager, scheduler)")
        self.cluster = DevCluster.start(w / "cluster", fake_node=False,
                                        progress=lambda m: say(f"  {m}"))
        self.api = self.cluster.api()
        say("starting the local kubelet (pods run as processes on 127.1.x.y)")
        self.kubelet = LocalKubelet.start(self.cluster, w / "kubelet",
                                          timeout=deadline.bound(90, "the kubelet"))
        say("starting Prometheus (scrapes every pod's metrics port each second)")
        self.prometheus = PrometheusProcess.start(
            w / "prom", [], scrape_interval="1s", file_sd_files=[self.kubelet.targets_file])
        say("installing the CRDs")
        install_crds(self.cluster.kubectl)
        # The operator runs as the chart's ServiceAccount, so the demo also proves the chart's
        # least-privilege RBAC is enough.
        kubeconfig = w / "operator.kubeconfig"
        user = service_account_kubeconfig(self.cluster.kubectl, self.cluster.bin_dir / "helm",
                                          self.cluster.api_url, self.cluster.ca_file, kubeconfig)
        say(f"starting the operator as {user}")
        self.operator_kubeconfig = kubeconfig
        self.operator = OperatorProcess.start(
            kubeconfig, w / "operator.log",
            # Labels arrive 1-3 s after the answer: 10 s of grace keeps every one of them.
            extra_env={"MODELOPS_PROMETHEUS_URL": self.prometheus.url,
                       "MODELOPS_FEEDBACK_GRACE_SECONDS": "10"},
            timeout=deadline.bound(90, "the operator"))

    def stop(self) -> None:
        if self.operator is None and self.operator_kubeconfig is not None:
            # Interrupted inside OperatorProcess.start: its handle never reached us, but the
            # process carries our own kubeconfig's path, which no other process has.
            for pid in sc.pids_with_env("KUBECONFIG", str(self.operator_kubeconfig)):
                with contextlib.suppress(ProcessLookupError):
                    stop_process_group(pid, grace_seconds=10)  # it leads its own session
                    say(f"stopped the operator (pid {pid}) whose start was interrupted")
        for what, stop in (("operator", self.operator and self.operator.stop),
                           ("Prometheus", self.prometheus and self.prometheus.stop),
                           ("kubelet and its pods", self.kubelet and self.kubelet.stop),
                           ("control plane",
                            self.cluster and (lambda: self.cluster.stop(progress=lambda _: None))),
                           ("API client", self.api and self.api.close)):
            if not stop:
                continue
            try:
                stop()
                say(f"stopped the {what}")
            except Exception as error:  # one failed stop must not leave the rest running
                say(f"stopping the {what} failed: {error!r}")

    # ------------------------------------------------------------------ reading the cluster
    def get(self, path: str, **params: str) -> dict[str, Any]:
        response = self.api.get(path, params=params or None)
        return response.json() if response.status_code == 200 else {}

    def policy(self) -> dict[str, Any]:
        return self.get(f"{sc.API}/namespaces/{sc.NAMESPACE}/championchallengers/{sc.POLICY}")

    def target(self) -> dict[str, Any]:
        return self.get(f"{sc.API}/namespaces/{sc.NAMESPACE}/modeldeployments/{sc.TARGET}")

    def policy_events(self) -> list[dict[str, Any]]:
        found = self.get(f"/api/v1/namespaces/{sc.NAMESPACE}/events",
                         fieldSelector=f"involvedObject.name={sc.POLICY}")
        return list(found.get("items") or [])

    def pods_summary(self) -> str:
        pods = self.get(f"/api/v1/namespaces/{sc.NAMESPACE}/pods").get("items") or []
        parts = []
        for pod in pods:
            statuses = pod.get("status", {}).get("containerStatuses") or []
            ready = sum(1 for s in statuses if s.get("ready"))
            parts.append(f"{pod['metadata']['name']} {pod.get('status', {}).get('phase')} "
                         f"{ready}/{len(statuses)} ready")
        return ", ".join(parts) or "no pods yet"

    def apply(self, manifest: dict[str, Any]) -> None:
        self.cluster.kubectl("apply", "-f", "-", input=json.dumps(manifest))

    def service_url(self) -> str | None:
        try:
            url = self.kubelet.service_url(sc.NAMESPACE, sc.TARGET)
        except Exception:  # an endpoint not resolvable yet is asked again next time
            return None
        return None if url.endswith(UNRESOLVED_ADDRESS) else url


def deploy(lab: Lab, models: dict[str, DemoModel], deadline: Deadline) -> None:
    lab.cluster.kubectl("create", "namespace", sc.NAMESPACE)
    wait_for_service_account(lab.cluster, sc.NAMESPACE)
    champion = models["champion"]
    say(f"deploying ModelDeployment {sc.TARGET} with the champion {champion.version}")
    lab.apply(sc.modeldeployment_manifest(champion))
    wait_until(lambda: sc.condition(lab.target(), "Ready").get("status") == "True",
               deadline.bound(150, "the champion"), f"ModelDeployment {sc.TARGET} Ready",
               describe=lab.pods_summary)
    say(f"applying ChampionChallenger {sc.POLICY} (canary 10% -> 50%, gates errors, accuracy)")
    lab.apply(sc.championchallenger_manifest())

    def policy_ready() -> bool:
        policy = lab.policy()
        return bool((policy.get("status") or {}).get("routerReady")
                    and sc.condition(policy, "Ready").get("status") == "True")

    def policy_state() -> str:
        policy = lab.policy()
        return f"{sc.condition(policy, 'Ready') or 'no Ready condition'}; {lab.pods_summary()}"

    wait_until(policy_ready, deadline.bound(150, "the router"),
               f"ChampionChallenger {sc.POLICY} Ready with its router", describe=policy_state)
    say("the router is in front of the champion")


class Recorder:
    """Turns what the cluster and the load generator show into timeline samples and events."""

    def __init__(self, lab: Lab, load: LoadGenerator, timeline: Timeline) -> None:
        self.lab = lab
        self.load = load
        self.timeline = timeline
        self.wall_start = time.time()
        self.starts: list[tuple[str, float]] = []

    def now(self) -> float:
        return time.time() - self.wall_start

    async def sample(self, challenge: str) -> dict[str, Any]:
        policy = await asyncio.to_thread(self.lab.policy)
        events = await asyncio.to_thread(self.lab.policy_events)
        status = policy.get("status") or {}
        sample = sc.build_sample(self.now(), challenge, status, sc.gate_margins(policy),
                                 self.load.snapshot())
        self.timeline.add_sample(sample)
        print(progress_line(sample), flush=True)
        for item in events:
            entry = sc.event_entry(item, self.wall_start, self.starts)
            if entry and self.timeline.add_event(entry):
                say(f"  event {entry['type']} {entry['reason']}: {entry['message']}")
        return status

    async def retarget(self) -> None:
        """Follow the Service to its ready endpoint (a replaced router pod has a new address)."""
        url = await asyncio.to_thread(self.lab.service_url)
        if url and url != self.load.base_url:
            say(f"  the Service now answers at {url}; the load follows")
            self.load.retarget(url)


async def run_challenge(recorder: Recorder, name: str, model: DemoModel,
                        deadline: Deadline) -> str:
    lab = recorder.lab
    before = sc.last_history((await asyncio.to_thread(lab.policy)).get("status") or {})
    recorder.starts.append((name, recorder.now()))
    say(f"challenge '{name}': spec.model -> {model.version} (holdout accuracy "
        f"{model.accuracy:.3f}), as a GitOps commit would change it")
    patch = json.dumps(sc.model_patch(model))
    await asyncio.to_thread(lab.cluster.kubectl, "patch", "mdep", sc.TARGET, "-n",
                            sc.NAMESPACE, "--type", "merge", "-p", patch)
    limit = time.monotonic() + deadline.bound(CHALLENGE_TIMEOUT, f"challenge '{name}'")
    tick = 0
    while True:
        started = time.monotonic()
        status = await recorder.sample(name)
        outcome = sc.concluded(status, model.version, before)
        if outcome:
            break
        if started > limit:
            outcome = f"undecided ({status.get('phase') or 'no phase'}, timed out)"
            break
        tick += 1
        if tick % 3 == 0:
            await recorder.retarget()
        await asyncio.sleep(max(0.1, 1.0 - (time.monotonic() - started)))
    say(f"challenge '{name}' ended: {outcome}")
    await asyncio.sleep(SETTLE_SECONDS)
    await recorder.sample(name)  # the ending's Events, and the state after it
    return outcome


async def run_challenges(lab: Lab, models: dict[str, DemoModel], timeline: Timeline,
                         deadline: Deadline) -> tuple[dict[str, str], dict[str, Any]]:
    url = await asyncio.to_thread(
        wait_until, lab.service_url, deadline.bound(60, "the Service"),
        f"an endpoint of Service {sc.TARGET}")
    say(f"sending {RATE_PER_SECOND:.0f} requests/s to {url}, each true label "
        f"{FEEDBACK_DELAY_SECONDS[0]:.0f}-{FEEDBACK_DELAY_SECONDS[1]:.0f} s later")
    load = LoadGenerator(url, DemoStream(), sc.TARGET, RATE_PER_SECOND,
                         feedback_delay_seconds=FEEDBACK_DELAY_SECONDS)
    recorder = Recorder(lab, load, timeline)
    load.start()
    outcomes: dict[str, str] = {}
    try:
        await asyncio.sleep(WARMUP_SECONDS)
        for name, model_key, _ in sc.CHALLENGES:
            outcomes[name] = await run_challenge(recorder, name, models[model_key], deadline)
    finally:
        await load.stop()
    return outcomes, load.snapshot()


def print_summary(timeline: Timeline, outcomes: dict[str, str], load: dict[str, Any],
                  report: Path | None, found: list[str], deadline: Deadline) -> None:
    from .report import summarize

    say("summary")
    for name in timeline.challenges():
        s = summarize(timeline, name)
        decided = "undecided" if s.decided_after is None else f"{s.decided_after:.0f} s"
        say(f"  {name}: {outcomes.get(name, s.outcome)} (expected {s.expected}) after "
            f"{decided}; {s.requests_ok + s.requests_failed} requests, "
            f"{s.requests_failed} failed; labels {s.feedback_sent} sent, "
            f"{s.feedback_failed} failed")
    requests, feedback = load.get("requests") or {}, load.get("feedback") or {}
    accuracy = {version: round(value, 3)
                for version, value in (feedback.get("accuracyByVersion") or {}).items()}
    say(f"  whole demo: {requests.get('ok', 0)} requests ok, {requests.get('failed', 0)} "
        f"failed; answered by version {requests.get('byVersion')}; accuracy the clients "
        f"measured by version {accuracy}")
    for error in (load.get("recentErrors") or [])[-5:]:
        say(f"  recent client error: {error}")
    if report:
        say(f"  report: {report}")
    say(f"  took {deadline.elapsed():.0f} s")
    for problem in found:
        say(f"  PROBLEM: {problem}")


def demo(lab: Lab, args: argparse.Namespace, deadline: Deadline) -> int:
    say("training the three demo models")
    models = build_demo_models(lab.workdir / "models")
    for model in models.values():
        say(f"  {model.name:<8} {model.version}  holdout accuracy {model.accuracy:.3f}")
    lab.start(deadline)
    deploy(lab, models, deadline)
    timeline = Timeline(metadata={
        "models": [{"name": m.name, "version": m.version, "accuracy": m.accuracy,
                    "digest": m.digest} for m in models.values()],
        "expected": dict(sc.EXPECTED),
    })
    report = None
    try:
        outcomes, load = asyncio.run(run_challenges(lab, models, timeline, deadline))
    finally:
        # Whatever happened, what was recorded becomes a report.
        if timeline.samples:
            from .report import write_report

            report = write_report(timeline, args.report_dir)
            shutil.copyfile(lab.workdir / "operator.log", Path(args.report_dir) / "operator.log")
    champion = ((lab.target().get("status") or {}).get("champion") or {}).get("version")
    found = sc.problems(outcomes, sc.EXPECTED, int((load.get("requests") or {}).get("failed", 0)),
                        champion, models["better"].version)
    print_summary(timeline, outcomes, load, report, found, deadline)
    return 1 if found else 0


def operator_log_tail(workdir: Path, lines: int = 40) -> str:
    log = workdir / "operator.log"
    if not log.exists():
        return "(no operator log)"
    return sc.operator_lines(log.read_text(errors="replace"), lines)


def _interrupt(signum: int, frame: Any) -> None:
    # SIGTERM (a CI runner, `timeout`) cleans up exactly like Ctrl-C.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelops_demo", description=__doc__)
    parser.add_argument("--report-dir", type=Path, default=Path("demo-report"))
    parser.add_argument("--keep", action="store_true",
                        help="keep the work directory (logs of every component) afterwards")
    parser.add_argument("--timeout", type=float, default=540.0,
                        help="overall bound in seconds (default 540)")
    args = parser.parse_args(argv)
    deadline = Deadline(args.timeout)
    root = cache_root().parent / "demo"
    root.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="run-", dir=root))
    say(f"work directory {workdir} (--keep keeps it)")
    signal.signal(signal.SIGTERM, _interrupt)
    lab = Lab(workdir)
    code = 1
    try:
        code = demo(lab, args, deadline)
    except KeyboardInterrupt:
        say("interrupted; stopping everything")
        code = 130
    except Exception as error:  # reported with the operator's own account, then cleaned up
        say(f"FAILED: {type(error).__name__}: {error}")
    finally:
        # A second Ctrl-C must not cut the cleanup short and leave processes behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if code != 0:
            say(f"operator log (last lines):\n{operator_log_tail(workdir)}")
        lab.stop()
        if args.keep:
            say(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    say("demo succeeded" if code == 0 else f"demo failed (exit {code})")
    return code


if __name__ == "__main__":
    sys.exit(main())
