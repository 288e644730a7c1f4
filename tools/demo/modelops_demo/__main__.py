"""`make demo`: a better model is promoted and a worse one rolled back, on evidence alone.

Starts a local control plane with a real node (containerd, kubelet, kube-proxy; the project's
images), Prometheus in the cluster, and the operator installed by its Helm chart; deploys a
mediocre champion (two replicas) behind a canary policy; sends it steady traffic from the host
through its Service, with delayed true labels; then changes spec.model twice, as a GitOps
commit would, and records what the policy does. Then the inputs drift: the monitors raise
DataDrift and AccuracyDegraded, the retraining Job they start trains on the fresh rows in a
container on the node, and its model goes through the same gates. Every request and every
label is counted: the demo fails if a request failed or a label did not reach a model that
scored it. Everything it starts is stopped on the way out, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from modelops_devcluster.cluster import cache_root, wait_for_service_account

from . import retrain_job
from . import scenario as sc
from .lab import Deadline, Lab, replace_whole, say, wait_until
from .loadgen import LoadGenerator
from .models import (
    HOLDOUT_ROWS,
    HOLDOUT_SEED,
    DemoModel,
    DriftingStream,
    build_demo_models,
    draw_rows,
    feature_columns,
    file_digest,
    write_profile,
)
from .progress import progress_line
from .timeline import Timeline

RATE_PER_SECOND = 30.0
FEEDBACK_DELAY_SECONDS = (1.0, 3.0)
CHALLENGE_TIMEOUT = 240.0
# From the drift to the retrained model's upload: the monitors' findings, the Job's run.
LIVE_ACT_TIMEOUT = 300.0
# The cold start of the node (image import, kubelet, CoreDNS), Prometheus and the Helm install
# come first; three challenges of at most CHALLENGE_TIMEOUT each and the live-model act fit
# after them in 25 minutes (a run takes about half of that).
DEFAULT_TIMEOUT = 1500.0
# The champion answers alone for a moment first, so a broken route shows before any change.
WARMUP_SECONDS = 5.0
# Between challenges: the ending's Events arrive, and they stay apart from the next one's.
SETTLE_SECONDS = 3.0


def deploy(lab: Lab, models: dict[str, DemoModel], deadline: Deadline) -> None:
    assert lab.cluster is not None
    began = time.monotonic()
    lab.cluster.kubectl("create", "namespace", sc.NAMESPACE)
    wait_for_service_account(lab.cluster, sc.NAMESPACE)
    # The retraining pipeline's program, which the Job the monitors start mounts.
    lab.apply(sc.retrain_script_manifest(Path(retrain_job.__file__).read_text()))
    champion = models["champion"]
    say(f"deploying ModelDeployment {sc.TARGET} with the champion {champion.version} "
        f"({sc.REPLICAS} replicas)")
    lab.apply(sc.modeldeployment_manifest(champion, lab.model_base_url))
    wait_until(lambda: sc.condition(lab.target(), "Ready").get("status") == "True",
               deadline.bound(180, "the champion"), f"ModelDeployment {sc.TARGET} Ready",
               describe=lab.pods_summary)
    lab.setup.append(("champion Ready", round(time.monotonic() - began, 1)))
    say(f"  {lab.pods_summary()}")
    say(f"applying ChampionChallenger {sc.POLICY} (canary 10% -> 50%, gates errors, accuracy)")
    began = time.monotonic()
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
    lab.setup.append(("router Ready", round(time.monotonic() - began, 1)))
    say("the router is in front of the champion")


class Recorder:
    """Turns what the cluster and the load generator show into timeline samples and events."""

    def __init__(self, lab: Lab, load: LoadGenerator, timeline: Timeline) -> None:
        self.lab = lab
        self.load = load
        self.timeline = timeline
        self.wall_start = time.time()
        self.starts: list[tuple[str, float]] = []
        self.last: dict[str, Any] = {}

    def now(self) -> float:
        return time.time() - self.wall_start

    async def sample(self, challenge: str) -> dict[str, Any]:
        policy = await asyncio.to_thread(self.lab.policy)
        target = await asyncio.to_thread(self.lab.target)
        events = await asyncio.to_thread(self.lab.policy_events)
        events += [item for item in await asyncio.to_thread(self.lab.events_of, sc.TARGET)
                   if item.get("reason") in sc.LIVE_REASONS]
        status = policy.get("status") or {}
        sample = sc.build_sample(self.now(), challenge, status, sc.gate_margins(policy),
                                 self.load.snapshot(), target)
        self.timeline.add_sample(sample)
        self.last = sample
        print(progress_line(sample), flush=True)
        for item in events:
            entry = sc.event_entry(item, self.wall_start, self.starts)
            if entry and self.timeline.add_event(entry):
                say(f"  event {entry['type']} {entry['reason']}: {entry['message']}")
        return status


async def run_challenge(recorder: Recorder, name: str, model: DemoModel,
                        deadline: Deadline) -> str:
    lab = recorder.lab
    assert lab.cluster is not None
    before = sc.last_history((await asyncio.to_thread(lab.policy)).get("status") or {})
    recorder.starts.append((name, recorder.now()))
    say(f"challenge '{name}': spec.model -> {model.version} (holdout accuracy "
        f"{model.accuracy:.3f}), as a GitOps commit would change it")
    patch = json.dumps(sc.model_patch(model, lab.model_base_url))
    await asyncio.to_thread(lab.cluster.kubectl, "patch", "mdep", sc.TARGET, "-n",
                            sc.NAMESPACE, "--type", "merge", "-p", patch)
    limit = time.monotonic() + deadline.bound(CHALLENGE_TIMEOUT, f"challenge '{name}'")
    while True:
        started = time.monotonic()
        status = await recorder.sample(name)
        outcome = sc.concluded(status, model.version, before)
        if outcome:
            break
        if started > limit:
            outcome = f"undecided ({status.get('phase') or 'no phase'}, timed out)"
            break
        await asyncio.sleep(max(0.1, 1.0 - (time.monotonic() - started)))
    say(f"challenge '{name}' ended: {outcome}")
    await asyncio.sleep(SETTLE_SECONDS)
    await recorder.sample(name)  # the ending's Events, and the state after it
    return outcome


async def run_live_act(recorder: Recorder, stream: DriftingStream,
                       deadline: Deadline) -> dict[str, float | None]:
    """The inputs drift; until the retraining Job has uploaded its model, the fresh rows are
    kept where it reads them and the monitors' findings are noted (seconds after the drift)."""
    lab = recorder.lab
    assert lab.model_files is not None
    files = lab.model_files.directory
    say("the live model: the inputs drift. x4, silent so far, moves one standard deviation "
        "and starts to decide the label, a pattern no model has seen")
    began = recorder.now()
    recorder.starts.append(("drift", began))
    recorder.timeline.metadata["driftAt"] = round(began, 2)
    stream.drifted = True
    findings: dict[str, float | None] = dict.fromkeys(sc.LIVE_FINDINGS)
    limit = time.monotonic() + deadline.bound(LIVE_ACT_TIMEOUT, "the drift act")
    uploaded = files / sc.UPLOADS / "model.skops"
    while not uploaded.exists() and time.monotonic() < limit:
        started = time.monotonic()
        await recorder.sample("drift")
        live = recorder.last.get("live") or {}
        seen = {kind for kind, state in (live.get("conditions") or {}).items() if state == "True"}
        if live.get("retrainings"):
            seen.add("RetrainingTriggered")
        for what in seen:
            if findings.get(what) is None:
                findings[what] = round(recorder.now() - began, 1)
                say(f"  {what} after {findings[what]:.0f} s of drifted inputs")
        # The drifted traffic's latest rows and labels, which the Job may read at any moment.
        await asyncio.to_thread(replace_whole, files / sc.FRESH_DATA, stream.recent_csv().encode())
        await asyncio.sleep(max(0.1, 1.0 - (time.monotonic() - started)))
    if not uploaded.exists():
        say(f"the retraining produced no model within {LIVE_ACT_TIMEOUT:.0f} s")
    return findings


def release_retrained(lab: Lab) -> DemoModel:
    """The pipeline's release step: the uploaded model, profiled on the Job's held-out rows
    with `modelops profile`'s code, becomes a version ready for spec.model."""
    assert lab.model_files is not None
    files = lab.model_files.directory
    uploads = files / sc.UPLOADS
    result = json.loads((uploads / "result.json").read_text())
    target = files / "retrained" / "model.skops"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(uploads / "model.skops", target)
    model = DemoModel("retrained", sc.RETRAINED[1], target, file_digest(target),
                      float(result["accuracy"]))
    # The table the Job held out, read as the Job reads its own.
    names, features, labels = retrain_job.read_table((uploads / "holdout.csv").read_bytes())
    model = write_profile(model, {name: features[:, i].tolist() for i, name in enumerate(names)}
                          | {"label": labels.tolist()})
    say(f"the retraining Job trained on {result['trainRows']} fresh rows: version "
        f"{model.version}, accuracy {model.accuracy:.3f} on {result['holdoutRows']} held out; "
        f"profiled, digest {model.digest[:19]}…")
    return model


async def run_challenges(lab: Lab, models: dict[str, DemoModel], timeline: Timeline,
                         deadline: Deadline) -> tuple[dict[str, str], dict[str, Any]]:
    url = await asyncio.to_thread(lab.service_url)
    say(f"sending {RATE_PER_SECOND:.0f} requests/s from the host to Service {sc.TARGET} "
        f"(relayed to its ClusterIP: {url}), each true label "
        f"{FEEDBACK_DELAY_SECONDS[0]:.0f}-{FEEDBACK_DELAY_SECONDS[1]:.0f} s later")
    stream = DriftingStream()
    load = LoadGenerator(url, stream, sc.TARGET, RATE_PER_SECOND,
                         feedback_delay_seconds=FEEDBACK_DELAY_SECONDS)
    recorder = Recorder(lab, load, timeline)
    load.start()
    outcomes: dict[str, str] = {}
    last = sc.CHALLENGES[-1][0]
    try:
        await asyncio.sleep(WARMUP_SECONDS)
        for name, model_key, _ in sc.CHALLENGES:
            outcomes[name] = await run_challenge(recorder, name, models[model_key], deadline)
        findings = await run_live_act(recorder, stream, deadline)
        timeline.metadata["liveFindings"] = findings
        last = "drift"
        assert lab.model_files is not None
        if (lab.model_files.directory / sc.UPLOADS / "model.skops").exists():
            retrained = await asyncio.to_thread(release_retrained, lab)
            models["retrained"] = retrained
            timeline.metadata["models"].append(model_facts(retrained))
            last = sc.RETRAINED[0]
            outcomes[last] = await run_challenge(recorder, last, retrained, deadline)
    finally:
        await load.stop()
    # The last answers and labels, so the report counts what the summary counts.
    await recorder.sample(last)
    return outcomes, load.snapshot()


def model_facts(model: DemoModel) -> dict[str, Any]:
    return {"name": model.name, "version": model.version, "accuracy": model.accuracy,
            "digest": model.digest}


def print_summary(timeline: Timeline, outcomes: dict[str, str], load: dict[str, Any],
                  report: Path | None, found: list[str], lab: Lab, deadline: Deadline) -> None:
    from .report import summarize

    say("summary")
    for name in timeline.challenges():
        if name not in sc.EXPECTED:
            continue  # the drift act: its findings are summed up below
        s = summarize(timeline, name)
        decided = "undecided" if s.decided_after is None else f"{s.decided_after:.0f} s"
        say(f"  {name}: {outcomes.get(name, s.outcome)} (expected {s.expected}) after "
            f"{decided}; {s.requests_ok + s.requests_failed} requests, "
            f"{s.requests_failed} failed; labels {s.feedback_sent} ok, "
            f"{s.feedback_failed} failed, {s.feedback_unmatched} unmatched")
    requests, feedback = load.get("requests") or {}, load.get("feedback") or {}
    accuracy = {version: round(value, 3)
                for version, value in (feedback.get("accuracyByVersion") or {}).items()}
    say(f"  whole demo: requests {requests.get('ok', 0)} ok, {requests.get('failed', 0)} "
        f"failed; labels {feedback.get('sent', 0)} ok, {feedback.get('failed', 0)} failed, "
        f"{feedback.get('unmatched', 0)} unmatched, {feedback.get('dropped', 0)} not yet due "
        f"at the end; answered by version {requests.get('byVersion')}; accuracy the clients "
        f"measured by version {accuracy}")
    findings = timeline.metadata.get("liveFindings") or {}
    if findings:
        say("  after the inputs drifted: " + ", ".join(
            f"{what} {'not seen' if at is None else f'after {at:.0f} s'}"
            for what, at in findings.items()))
    for error in (load.get("recentErrors") or [])[-5:]:
        say(f"  recent client error: {error}")
    for unmatched in (load.get("recentUnmatched") or [])[-2:]:
        say(f"  recent unmatched label: {unmatched}")
    if report:
        say(f"  report: {report}")
    setup = ", ".join(f"{what} {seconds:.0f} s" for what, seconds in lab.setup)
    say(f"  took {deadline.elapsed():.0f} s ({setup})")
    for problem in found:
        say(f"  PROBLEM: {problem}")


def demo(lab: Lab, args: argparse.Namespace, deadline: Deadline) -> int:
    say("training the three demo models, each profiled on the holdout set for monitoring")
    models = build_demo_models(lab.workdir / "models")
    holdout = feature_columns(*draw_rows(HOLDOUT_ROWS, HOLDOUT_SEED))
    models = {name: write_profile(model, holdout) for name, model in models.items()}
    for model in models.values():
        say(f"  {model.name:<8} {model.version}  holdout accuracy {model.accuracy:.3f}")
    lab.start(deadline, lab.workdir / "models")
    deploy(lab, models, deadline)
    timeline = Timeline(metadata={
        "models": [model_facts(m) for m in models.values()],
        "expected": dict(sc.EXPECTED),
        "setup": [list(step) for step in lab.setup],
    })
    report = None
    try:
        outcomes, load = asyncio.run(run_challenges(lab, models, timeline, deadline))
    finally:
        # Whatever happened, what was recorded becomes a report.
        if timeline.samples:
            from .report import write_report

            report = write_report(timeline, args.report_dir)
    card = write_model_card(lab, args.report_dir / "card")
    champion = ((lab.target().get("status") or {}).get("champion") or {}).get("version")
    found = sc.problems(outcomes, sc.EXPECTED, load, champion, sc.RETRAINED[1])
    found += sc.live_model_problems(timeline.metadata.get("liveFindings") or {},
                                    len(lab.retraining_jobs()))
    print_summary(timeline, outcomes, load, report, found, lab, deadline)
    if card:
        say(f"  model card: {card} (kubectl modelops card {sc.TARGET} -n {sc.NAMESPACE})")
    return 1 if found else 0


def write_model_card(lab: Lab, directory: Path) -> Path | None:
    """The model card of the demo's deployment, from its lineage records, as users write it
    with `kubectl modelops card`; the lineage is printed too, as `kubectl get lrec` shows it."""
    from lightkube import Client, KubeConfig

    from modelops_operator.lineage.card import write_card

    assert lab.cluster is not None
    try:
        client = Client(config=KubeConfig.from_file(lab.cluster.kubeconfig))
        _, page = write_card(client, sc.NAMESPACE, sc.TARGET, directory)
        lineage = lab.get(f"{sc.API}/namespaces/{sc.NAMESPACE}/lineagerecords")
    except Exception as error:  # the card must not hide the demo's own outcome
        say(f"writing the model card failed: {error!r}")
        return None
    say(f"lineage records (kubectl get lrec -n {sc.NAMESPACE}):")
    specs = sorted((r["spec"] for r in lineage.get("items") or ()), key=lambda s: s["decidedAt"])
    for spec in specs:
        say(f"  {spec['decidedAt']}  {spec['event']:<14} {spec['model']['version']:<7} "
            f"by {spec.get('decidedBy') or '-'}: {spec.get('reason', '')[:90]}")
    return page


def keep_logs(lab: Lab, report_dir: Path, failed: bool) -> None:
    """The operator's log always; on failure also the ends of every other log."""
    if lab.cluster is None:
        return
    report_dir.mkdir(parents=True, exist_ok=True)
    try:
        (report_dir / "operator.log").write_text(lab.operator_log() + "\n")
        if failed:
            say(f"operator log (last lines):\n{lab.operator_log(tail=40)}")
            say(f"logs of the control plane, the node and the pods: "
                f"{lab.save_logs(report_dir)}")
    except Exception as error:  # the logs must not stop the cleanup
        say(f"keeping the logs failed: {error!r}")


def _interrupt(signum: int, frame: Any) -> None:
    # SIGTERM (a CI runner, `timeout`) cleans up exactly like Ctrl-C.
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelops_demo", description=__doc__)
    parser.add_argument("--report-dir", type=Path, default=Path("demo-report"))
    parser.add_argument("--keep", action="store_true",
                        help="keep the work directory (logs of every component) afterwards")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help=f"overall bound in seconds (default {DEFAULT_TIMEOUT:.0f})")
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
        keep_logs(lab, args.report_dir, failed=code != 0)
        lab.stop()
        if args.keep:
            say(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    say("demo succeeded" if code == 0 else f"demo failed (exit {code})")
    return code


if __name__ == "__main__":
    sys.exit(main())
