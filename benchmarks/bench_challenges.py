"""Benchmark: N ChampionChallengers evaluating at once; does each keep its decision interval?

On one dev cluster (kwok fake nodes) with a real Prometheus on loopback, it runs, in order:

1. a synthetic exporter (its own process): for each of N deployments, the sidecar's own metrics
   code (`modelops_serving.metrics.SidecarMetrics`) for a champion and a challenger, serving
   made-up traffic (requests, errors, latencies, labelled feedback) every second; Prometheus
   scrapes each arm as one target, one path per arm on one port, with the target labels the
   chart's scrape configuration gives a pod (`namespace`, `pod`, `container`);
2. the operator (`kopf run` with the chart's ServiceAccount, tests/harness/) reading that
   Prometheus; N ModelDeployments created and Ready, then N ChampionChallengers (canary at 50%,
   errorRate, latency and accuracy gates, approval required, maxDuration 6 h: none finishes),
   then every ModelDeployment given a new version, so every challenge starts;
3. once every challenge has been evaluated once, a window during which one LIST a second
   records each challenge's looks (`status.evidence.at`): gaps between consecutive looks, their
   lag behind the interval, whether the lag grows over the window (a backlog would), the
   operator's CPU, peak RSS and writes;
4. the baseline: as many looks again, taken by the pure core alone in this process (no kopf, no
   API server) from the same Prometheus: `evaluate_challenge`, the call the operator's tick
   makes, and the status form of its result; timed as this thread's CPU per look.

Results go to bench-results/bench_challenges.json, the operator's log to
bench-results/bench_challenges.log. Environment: MODELOPS_BENCH_CHALLENGES (100),
MODELOPS_BENCH_INTERVAL ("10s"), MODELOPS_BENCH_WINDOW (seconds, 180). Run from the repository
root as `python -m benchmarks.bench_challenges` (as `make bench` does).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import multiprocessing
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from benchmarks.bench_operator import (
    CONCURRENCY,
    MDEP_PATH,
    NAMESPACE,
    PHASE_TIMEOUT,
    BenchError,
    Burst,
    WriteCounters,
    Writer,
    add_fake_nodes,
    condition_true,
    create_namespace,
    items,
    nodes_for,
    percentile,
    ready_modeldeployments,
    run_burst,
)
from modelops_devcluster.cluster import DevCluster, cache_root, free_port
from modelops_devcluster.prometheus import PrometheusProcess, ScrapeTarget
from modelops_operator.api.modeldeployment import ModelDeploymentSpec
from modelops_operator.challenge.controller import ChallengePolicy, Evaluation, parse_policy
from modelops_operator.challenge.evaluation import evaluate_challenge
from modelops_operator.challenge.model import Status
from modelops_operator.gating.config import parse_duration
from modelops_operator.handlers.championchallenger import SLOW_TICK
from modelops_operator.promsource import PrometheusSettings, PrometheusSource
from modelops_serving.metrics import SidecarMetrics
from tests.harness.operator_process import (
    OperatorProcess,
    install_crds,
    service_account_kubeconfig,
)

REPO = Path(__file__).resolve().parents[1]
CHALLENGES = int(os.environ.get("MODELOPS_BENCH_CHALLENGES", "100"))
INTERVAL = os.environ.get("MODELOPS_BENCH_INTERVAL", "10s")
WINDOW_SECONDS = float(os.environ.get("MODELOPS_BENCH_WINDOW", "180"))
# Well under the decision interval (the chart's advice), so every look has fresh samples.
SCRAPE_INTERVAL = "2s"
# Per deployment: champion, challenger and router Deployments, one pod each (plus surges).
PODS_PER_CHALLENGE = 4
PROGRESS_EVERY = 5.0
SAMPLE_EVERY = 1.0
# A look is due once an interval has passed, and the daemon checks every SLOW_TICK seconds: a
# lag up to a tick is the design, not a backlog. Beyond this much, it is falling behind.
LAG_ALLOWANCE = SLOW_TICK + 1.0
# The lag's median may move this much between the window's first and last thirds without
# counting as growth (ticks land anywhere in their 3 s).
BACKLOG_TOLERANCE = 1.0
CC_PATH = "/apis/modelops.io/v1alpha1/namespaces/{}/championchallengers"
MDEP_ITEM_PATH = "/apis/modelops.io/v1alpha1/namespaces/{}/modeldeployments/{}"
CHAMPION_VERSION, CHALLENGER_VERSION = "1.0.0", "1.1.0"
ROLES = ("champion", "challenger")
CHALLENGER_SHARE = 0.5  # the canary's one step: half the requests each
REQUESTS_PER_SECOND = 20  # per deployment, both arms together
LABELLED_SHARE = 0.5  # requests whose ground truth comes back as feedback


# ----------------------------------------------------------------------------- the objects
def deployment_name(i: int) -> str:
    return f"model-{i:03d}"


def challenge_name(deployment: str) -> str:
    return f"{deployment}-gate"


def model_spec(name: str, version: str) -> dict[str, Any]:
    digest_seed = f"{name}/{version}".encode().hex()
    return {
        "name": name,
        "version": version,
        "uri": f"https://models.example.com/{name}/{version}/model.onnx",
        "format": "onnx",
        "digest": "sha256:" + digest_seed[:64].rjust(64, "0"),
    }


def modeldeployment(name: str) -> dict[str, Any]:
    """Feedback enabled: an accuracy gate needs the target to take labels."""
    return {
        "apiVersion": "modelops.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "model": model_spec(name, CHAMPION_VERSION),
            "runtime": {"replicas": 1},
            "monitoring": {"feedback": {"enabled": True}},
        },
    }


def championchallenger(deployment: str, interval: str = INTERVAL) -> dict[str, Any]:
    """One step at 50% (the exporter splits alike, so the sample-ratio alarm stays quiet),
    approval required and 6 h to run: once the gates pass it waits at AwaitingApproval, still
    evaluating every interval, and nothing ends during the window."""
    return {
        "apiVersion": "modelops.io/v1alpha1",
        "kind": "ChampionChallenger",
        "metadata": {"name": challenge_name(deployment), "namespace": NAMESPACE},
        "spec": {
            "targetRef": {"name": deployment},
            "strategy": {"type": "canary", "steps": [int(CHALLENGER_SHARE * 100)]},
            "gates": [
                {
                    "name": "errors",
                    "type": "errorRate",
                    "test": "nonInferiority",
                    "margin": 0.2,
                    "absoluteMargin": 0.001,
                },
                {
                    "name": "slow-requests",
                    "type": "latency",
                    "latencyThreshold": "250ms",
                    "margin": 0.2,
                    "absoluteMargin": 0.001,
                },
                {"name": "accuracy", "type": "accuracy", "margin": 0.02},
            ],
            "decision": {
                "alpha": 0.05,
                "interval": interval,
                "minSamples": 200,
                "warmUp": "5s",
                "maxDuration": "6h",
                "onTimeout": "hold",
            },
            "approval": {"required": True},
        },
    }


# ----------------------------------------------------------------------------- the exporter
@dataclass(frozen=True)
class ArmProfile:
    """How one arm's made-up requests go; the challenger is a little better on every gate, so
    no gate fails and rolls it back during the window."""

    error_rate: float
    slow_rate: float  # share slower than the latency gate's 250 ms
    accuracy: float


PROFILES = {
    "champion": ArmProfile(error_rate=0.01, slow_rate=0.05, accuracy=0.85),
    "challenger": ArmProfile(error_rate=0.005, slow_rate=0.03, accuracy=0.88),
}


def metrics_path(deployment: str, role: str) -> str:
    return f"/metrics/{deployment}/{role}"


def pod_name(deployment: str, role: str) -> str:
    return f"{deployment}-{role}-0"


def scrape_targets(address: str, deployments: Iterable[str], namespace: str) -> list[ScrapeTarget]:
    """One target per arm: the labels the chart's scrape configuration gives a model pod's
    metrics port (`namespace`, `pod`, `container`). The sidecar's own labels (deployment, model,
    version, role) are on its series. `__metrics_path__` picks the arm on the shared port."""
    return [
        ScrapeTarget(
            address,
            {
                "__metrics_path__": metrics_path(name, role),
                "namespace": namespace,
                "pod": pod_name(name, role),
                "container": "metrics-sidecar",
            },
        )
        for name in deployments
        for role in ROLES
    ]


def split_requests(rng: random.Random, total: int, challenger_share: float) -> dict[str, int]:
    """A router's split of `total` requests: each goes to the challenger with its share."""
    challenger = sum(rng.random() < challenger_share for _ in range(total))
    return {"champion": total - challenger, "challenger": challenger}


def serve_requests(
    metrics: SidecarMetrics, count: int, profile: ArmProfile, rng: random.Random
) -> None:
    """What the sidecar counts for `count` answered requests and their labels."""
    for _ in range(count):
        failed = rng.random() < profile.error_rate
        metrics.count_request(500 if failed else 200)
        metrics.duration.observe(0.4 if rng.random() < profile.slow_rate else 0.02)
        if failed:
            continue
        metrics.observe_predictions([rng.random()])
        if rng.random() < LABELLED_SHARE:
            outcome = "correct" if rng.random() < profile.accuracy else "incorrect"
            metrics.feedback[outcome].inc()


class SyntheticPods:
    """Both arms' sidecar metrics of every deployment, and one second of traffic at a time."""

    def __init__(self, deployments: Sequence[str], seed: int = 17) -> None:
        self.rng = random.Random(seed)
        self.arms = {
            (name, role): SidecarMetrics(
                {
                    "deployment": name,
                    "model": name,
                    "role": role,
                    "version": CHAMPION_VERSION if role == "champion" else CHALLENGER_VERSION,
                }
            )
            for name in deployments
            for role in ROLES
        }
        self.deployments = list(deployments)

    def exposition(self, path: str) -> bytes | None:
        parts = path.strip("/").split("/")
        if len(parts) != 3 or parts[0] != "metrics":
            return None
        metrics = self.arms.get((parts[1], parts[2]))
        return metrics.exposition() if metrics is not None else None

    def one_second(self) -> None:
        for name in self.deployments:
            split = split_requests(self.rng, REQUESTS_PER_SECOND, CHALLENGER_SHARE)
            for role, count in split.items():
                serve_requests(self.arms[(name, role)], count, PROFILES[role], self.rng)


def run_exporter(port: int, deployments: list[str], stop_at: float, parent: int) -> None:
    """The exporter process's body: serve until `stop_at` (unix seconds) or the parent is gone,
    so it ends with the run even if the bench is killed."""
    pods = SyntheticPods(deployments)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # Prometheus keeps one connection per target

        def do_GET(self) -> None:
            body = pods.exposition(self.path)
            self.send_response(200 if body is not None else 404)
            body = body or b"not found\n"
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Hundreds of scrapes a second would flood the bench's output."""

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        next_second = time.monotonic()
        while time.time() < stop_at and os.getppid() == parent:
            pods.one_second()
            next_second += 1.0
            time.sleep(max(0.0, next_second - time.monotonic()))
    finally:
        server.shutdown()
        server.server_close()


class ExporterProcess:
    """`run_exporter` in its own process, so its CPU is neither the operator's nor the core's."""

    def __init__(self, deployments: list[str], lifetime: float) -> None:
        self.port = free_port()
        context = multiprocessing.get_context("spawn")
        self.process = context.Process(
            target=run_exporter,
            args=(self.port, deployments, time.time() + lifetime, os.getpid()),
            daemon=True,
        )
        self.process.start()
        try:
            self._wait_serving(
                f"http://127.0.0.1:{self.port}{metrics_path(deployments[0], 'champion')}"
            )
        except BaseException:
            self.stop()
            raise

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _wait_serving(self, url: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.process.is_alive():
                raise BenchError("the exporter exited at start")
            try:
                if httpx.get(url, timeout=2).is_success:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise BenchError(f"the exporter did not serve {url} within {timeout:.0f} s")

    def stop(self) -> None:
        self.process.terminate()
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)


# ----------------------------------------------------------------------------- looks
def look_time(challenge: Mapping[str, Any]) -> float | None:
    """When the challenge's last look was taken (unix seconds): the evaluation kept in status
    (`evidence.at`, exact), else `lastEvaluationTime` (to the second); None before any."""
    status = challenge.get("status") or {}
    at = (status.get("evidence") or {}).get("at")
    if isinstance(at, int | float):
        return float(at)
    stamp = status.get("lastEvaluationTime")
    if not stamp:
        return None
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def metrics_missing(challenge: Mapping[str, Any]) -> bool:
    conditions = (challenge.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "MetricsAvailable" and c.get("status") == "False"
               for c in conditions)  # fmt: skip


@dataclass
class LookLog:
    """Every look seen per challenge (distinct times, in order), from one LIST a second."""

    looks: dict[str, list[float]] = field(default_factory=dict)
    phases: dict[str, str] = field(default_factory=dict)
    metrics_missing: set[str] = field(default_factory=set)

    def record(self, challenges: Iterable[Mapping[str, Any]]) -> None:
        for challenge in challenges:
            name = challenge["metadata"]["name"]
            self.phases[name] = (challenge.get("status") or {}).get("phase", "")
            if metrics_missing(challenge):
                self.metrics_missing.add(name)
            at = look_time(challenge)
            seen = self.looks.setdefault(name, [])
            if at is not None and (not seen or at > seen[-1]):
                seen.append(at)

    def evaluating(self) -> int:
        return sum(1 for times in self.looks.values() if times)

    def looks_between(self, start: float, end: float) -> int:
        return sum(start <= t <= end for times in self.looks.values() for t in times)


@dataclass(frozen=True)
class Gap:
    """Two consecutive looks of one challenge; `ended` is when the second was taken."""

    challenge: str
    ended: float
    seconds: float


def gaps_in_window(looks: Mapping[str, Sequence[float]], start: float, end: float) -> list[Gap]:
    """The gaps whose second look fell in the window (the first may be just before it)."""
    found = []
    for name, times in looks.items():
        for before, after in itertools.pairwise(times):
            if start <= after <= end:
                found.append(Gap(name, after, after - before))
    return found


def _spread(values: Sequence[float]) -> dict[str, float | None]:
    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 2)

    return {
        "p50": rounded(percentile(values, 50)),
        "p95": rounded(percentile(values, 95)),
        "max": rounded(max(values)) if values else None,
    }


def lag_trend(gaps: Sequence[Gap], interval: float, start: float, end: float) -> dict[str, Any]:
    """The lag in the window's first and last thirds: a backlog shows as a growing lag."""
    third = (end - start) / 3
    first = [g.seconds - interval for g in gaps if g.ended < start + third]
    last = [g.seconds - interval for g in gaps if g.ended >= end - third]
    first_p50, last_p50 = percentile(first, 50), percentile(last, 50)
    growing = (first_p50 is not None and last_p50 is not None
               and last_p50 - first_p50 > BACKLOG_TOLERANCE)  # fmt: skip
    return {"first_third": _spread(first), "last_third": _spread(last), "growing": growing}


def look_figures(
    log: LookLog, interval: float, start: float, end: float, challenges: int
) -> dict[str, Any]:
    """Looks per challenge, gaps, lag and its trend over the window [start, end]."""
    gaps = gaps_in_window(log.looks, start, end)
    per_challenge = [sum(start <= t <= end for t in log.looks.get(n, [])) for n in log.looks]
    per_challenge += [0] * (challenges - len(per_challenge))
    lags = [g.seconds - interval for g in gaps]
    lag = _spread(lags)
    return {
        "looks": sum(per_challenge),
        "looks_per_challenge": {
            "min": min(per_challenge, default=0),
            "p50": percentile(per_challenge, 50),
            "max": max(per_challenge, default=0),
        },
        "challenges_looked_at": sum(1 for n in per_challenge if n),
        "gap_seconds": _spread([g.seconds for g in gaps]),
        "lag_seconds": lag,
        "lag_trend": lag_trend(gaps, interval, start, end),
        "keeps_interval": bool(lags) and (lag["p95"] or 0.0) <= LAG_ALLOWANCE,
    }


# ----------------------------------------------------------------------------- the core alone
@dataclass
class CoreChallenge:
    """What one tick's evaluation reads, taken from a challenge's status; `previous` moves on
    with every look, as the operator's status does."""

    namespace: str
    deployment: str
    policy: ChallengePolicy
    status: Status
    previous: Evaluation
    loss_bound: float | None


def core_challenge(challenge: Mapping[str, Any], target: Mapping[str, Any]) -> CoreChallenge | None:
    """None unless it is being evaluated (gated, started, a valid policy)."""
    policy = parse_policy(challenge.get("spec"))
    status_body = challenge.get("status") or {}
    status = Status.from_dict(status_body.get("machine"))
    if not isinstance(policy, ChallengePolicy) or status.started_at is None:
        return None
    if status.champion is None or status.challenger is None:
        return None
    md_spec = ModelDeploymentSpec.model_validate(target["spec"])
    return CoreChallenge(
        namespace=challenge["metadata"]["namespace"],
        deployment=policy.spec.target_ref.name,
        policy=policy,
        status=status,
        previous=Evaluation.from_status(status_body),
        loss_bound=md_spec.monitoring.feedback.loss_bound,
    )


async def core_look(source: PrometheusSource, challenge: CoreChallenge) -> bool:
    """One look as the tick takes it: read, judge, and the status form of what it keeps.
    Returns whether it decided on data (False: Prometheus or an arm had nothing)."""
    _signal, kept, problem = await evaluate_challenge(
        source,
        namespace=challenge.namespace,
        deployment=challenge.deployment,
        policy=challenge.policy,
        status=challenge.status,
        previous=challenge.previous,
        now=time.time(),
        loss_bound=challenge.loss_bound,
    )
    kept.to_dict()  # the counters and state serialised for status, part of every look
    challenge.previous = kept
    return problem is None


async def core_looks(
    prometheus_url: str, challenges: Sequence[CoreChallenge], looks: int, spacing: float
) -> dict[str, Any]:
    """`looks` looks round-robin over the challenges, a round at most every `spacing` seconds
    so each look has new scrapes (as the operator's do), timed as this thread's CPU."""
    source = PrometheusSource(PrometheusSettings(url=prometheus_url))
    cpu, done, decided = 0.0, 0, 0
    try:
        while done < looks and challenges:
            round_started = time.monotonic()
            cpu_before = time.thread_time()
            for challenge in challenges[: looks - done]:
                decided += await core_look(source, challenge)
                done += 1
            cpu += time.thread_time() - cpu_before
            await asyncio.sleep(max(0.0, spacing - (time.monotonic() - round_started)))
    finally:
        await source.aclose()
    return {
        "looks": done,
        "decided_on_data": decided,
        "cpu_seconds": round(cpu, 3),
        "cpu_ms_per_look": round(1000 * cpu / done, 2) if done else None,
    }


# ----------------------------------------------------------------------------- the cluster
def challenge_items(api: httpx.Client) -> list[dict[str, Any]]:
    return items(api, CC_PATH.format(NAMESPACE))


def ready_challenges(api: httpx.Client) -> set[str]:
    return {c["metadata"]["name"] for c in challenge_items(api) if condition_true(c, "Ready")}


def new_versions(api: httpx.Client, deployments: Sequence[str]) -> list[str]:
    """Give every target its challenger's version (a merge patch each); the names that failed."""

    def send(name: str) -> str | None:
        body = {"spec": {"model": model_spec(name, CHALLENGER_VERSION)}}
        response = api.patch(MDEP_ITEM_PATH.format(NAMESPACE, name), content=json.dumps(body),
                             headers={"Content-Type": "application/merge-patch+json"})  # fmt: skip
        return None if response.is_success else name

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        return [name for name in pool.map(send, deployments) if name is not None]


def sample(api: httpx.Client, log: LookLog) -> None:
    # A busy API server may fail a LIST: the next sample catches up.
    with contextlib.suppress(httpx.HTTPError, ValueError):
        log.record(challenge_items(api))


def wait_until_evaluating(api: httpx.Client, log: LookLog, challenges: int) -> float:
    """Until every challenge has been evaluated once; returns the seconds it took."""
    started = time.monotonic()
    next_progress = started + PROGRESS_EVERY
    while log.evaluating() < challenges:
        if time.monotonic() - started > PHASE_TIMEOUT:
            raise BenchError(
                f"only {log.evaluating()}/{challenges} challenges evaluating after "
                f"{PHASE_TIMEOUT:.0f} s; phases: {Counter(log.phases.values())}"
            )
        sample(api, log)
        if time.monotonic() >= next_progress:
            print(f"[start] {time.monotonic() - started:4.0f} s  evaluating "
                  f"{log.evaluating()}/{challenges}  phases {_phases_text(log.phases)}",
                  flush=True)  # fmt: skip
            next_progress += PROGRESS_EVERY
        time.sleep(SAMPLE_EVERY)
    return time.monotonic() - started


def measure_window(
    api: httpx.Client, operator: OperatorProcess, log: LookLog, challenges: int
) -> dict[str, Any]:
    """Sample once a second for WINDOW_SECONDS; the operator's CPU, RSS and writes over it."""
    before, cpu_before = WriteCounters.read(operator, api), operator.cpu_seconds()
    log_offset = operator.log_path.stat().st_size
    start = time.time()
    end = start + WINDOW_SECONDS
    next_progress = time.monotonic() + PROGRESS_EVERY
    while time.time() < end:
        sampled_at = time.monotonic()
        sample(api, log)
        if time.monotonic() >= next_progress:
            print(f"[window] {time.time() - start:4.0f}/{WINDOW_SECONDS:.0f} s  evaluating "
                  f"{log.evaluating()}/{challenges}  looks {log.looks_between(start, end)}  "
                  f"phases {_phases_text(log.phases)}", flush=True)  # fmt: skip
            next_progress += PROGRESS_EVERY
        time.sleep(max(0.0, SAMPLE_EVERY - (time.monotonic() - sampled_at)))
    cpu = operator.cpu_seconds() - cpu_before
    sample(api, log)  # a look landed in the window's last second is in status by now
    writes = WriteCounters.read(operator, api).since(before)
    with operator.log_path.open("rb") as text:
        text.seek(log_offset)
        problems = log_problems(text.read().decode(errors="replace"))
    return {
        "start": start,
        "end": end,
        "cpu_seconds": round(cpu, 2),
        "peak_rss_mib": round(operator.peak_rss_kib() / 1024, 1),
        "writes": writes,
        "log_problems": problems,
    }


def log_problems(log_text: str) -> dict[str, int]:
    """Failed ticks and other warnings or errors in the operator's log, by kind."""
    counts: Counter[str] = Counter()
    for line in log_text.splitlines():
        if "challenge tick failed" in line:
            counts["challenge tick failed"] += 1
        elif "Traceback" in line:
            counts["tracebacks"] += 1
        elif "[ERROR" in line or " ERROR " in line:
            counts["errors"] += 1
        elif "[WARNING" in line or " WARNING " in line:
            counts["warnings"] += 1
    return dict(counts)


def _phases_text(phases: Mapping[str, str]) -> str:
    counts = Counter(p or "-" for p in phases.values())
    return ", ".join(f"{p} {n}" for p, n in sorted(counts.items())) or "none yet"


def start_challenges(api: httpx.Client, deployments: list[str]) -> dict[str, Any]:
    """N ModelDeployments Ready, N ChampionChallengers Ready, then every target's new version."""
    writer = Writer(api)
    bodies = {name: modeldeployment(name) for name in deployments}
    targets = run_burst(Burst("deploy", "Ready", len(bodies)), bodies,
                        lambda name: writer.create(bodies[name]),
                        lambda: ready_modeldeployments(api))  # fmt: skip
    if len(targets.done) < len(bodies):
        raise BenchError(f"only {len(targets.done)}/{len(bodies)} ModelDeployments Ready")
    policies = {challenge_name(n): championchallenger(n) for n in deployments}
    gates = run_burst(Burst("challenges", "Ready", len(policies)), policies,
                      lambda name: writer.create(policies[name]),
                      lambda: ready_challenges(api))  # fmt: skip
    if len(gates.done) < len(policies):
        raise BenchError(f"only {len(gates.done)}/{len(policies)} ChampionChallengers Ready")
    failed = new_versions(api, deployments)
    if failed:
        raise BenchError(f"new versions refused for {len(failed)}: {failed[:3]}")
    print(f"[bench] {len(deployments)} targets given version {CHALLENGER_VERSION}", flush=True)
    return {"deploy": targets.summary(), "challenges": gates.summary()}


def run(cluster: DevCluster, workdir: Path) -> dict[str, Any]:
    interval = parse_duration(INTERVAL)
    if interval is None:
        raise BenchError(f"MODELOPS_BENCH_INTERVAL {INTERVAL!r} is not a duration")
    deployments = [deployment_name(i) for i in range(CHALLENGES)]
    nodes = nodes_for(PODS_PER_CHALLENGE * CHALLENGES)
    with cluster.api() as api:
        add_fake_nodes(api, nodes)
    install_crds(cluster.kubectl)
    kubeconfig = workdir / "operator.kubeconfig"
    service_account_kubeconfig(
        cluster.kubectl, cluster.bin_dir / "helm", cluster.api_url, cluster.ca_file, kubeconfig
    )
    lifetime = 4 * PHASE_TIMEOUT + WINDOW_SECONDS + 600  # the longest this run can go on
    exporter = ExporterProcess(deployments, lifetime)
    prometheus: PrometheusProcess | None = None
    operator: OperatorProcess | None = None
    try:
        prometheus = PrometheusProcess.start(
            workdir / "prometheus",
            scrape_targets(exporter.address, deployments, NAMESPACE),
            scrape_interval=SCRAPE_INTERVAL,
        )
        prometheus.wait_for_scrapes(timeout=120)
        print(f"[bench] Prometheus scraping {2 * CHALLENGES} arms", flush=True)
        with cluster.api() as api:
            create_namespace(cluster, api, NAMESPACE)
            operator = OperatorProcess.start(
                kubeconfig,
                REPO / "bench-results" / "bench_challenges.log",
                extra_env={"MODELOPS_PROMETHEUS_URL": prometheus.url},
            )
            setup = start_challenges(api, deployments)
            log = LookLog()
            setup["all_evaluating_seconds"] = round(wait_until_evaluating(api, log, CHALLENGES), 1)
            window = measure_window(api, operator, log, CHALLENGES)
            operator.stop()  # the core alone runs without it
            finished = challenge_items(api)
            targets = {m["metadata"]["name"]: m for m in items(api, MDEP_PATH.format(NAMESPACE))}
        figures = look_figures(log, interval, window["start"], window["end"], CHALLENGES)
        core = [c for c in (core_challenge(cc, targets[cc["spec"]["targetRef"]["name"]])
                            for cc in finished) if c is not None]  # fmt: skip
        spacing = parse_duration(SCRAPE_INTERVAL) or 2.0
        core_result = asyncio.run(core_looks(prometheus.url, core, figures["looks"], spacing + 0.5))
    finally:
        if operator is not None:
            operator.stop()
        if prometheus is not None:
            prometheus.stop()
        exporter.stop()
    return results_of(setup, window, figures, core_result, log, interval, nodes)


def results_of(
    setup: Mapping[str, Any], window: Mapping[str, Any], figures: Mapping[str, Any],
    core: Mapping[str, Any], log: LookLog, interval: float, nodes: int,
) -> dict[str, Any]:  # fmt: skip
    looks = figures["looks"]
    operator_ms = round(1000 * window["cpu_seconds"] / looks, 2) if looks else None
    writes = dict(window["writes"])
    return {
        "challenges": CHALLENGES,
        "kwok_nodes": nodes,
        "interval_seconds": interval,
        "window_seconds": WINDOW_SECONDS,
        "scrape_interval": SCRAPE_INTERVAL,
        "setup": dict(setup),
        **figures,
        "operator": {
            "cpu_seconds": window["cpu_seconds"],
            "cpu_ms_per_look": operator_ms,
            "peak_rss_mib": window["peak_rss_mib"],
            "writes": writes,
            "writes_total": sum(writes.values()),
            "log_problems": window["log_problems"],
        },
        "core_alone": dict(core),
        "ratio_operator_to_core": cpu_ratio(operator_ms, core.get("cpu_ms_per_look")),
        "phases_at_end": dict(Counter(log.phases.values())),
        "metrics_missing_seen": len(log.metrics_missing),
    }


# ----------------------------------------------------------------------------- report
def cpu_ratio(operator_ms: float | None, core_ms: float | None) -> float | None:
    if not operator_ms or not core_ms:
        return None
    return round(operator_ms / core_ms, 1)


def ratio_line(operator_ms: float | None, core_ms: float | None) -> str:
    value = cpu_ratio(operator_ms, core_ms)
    if value is None:
        return "operator CPU per look / core-alone CPU per look = n/a (no looks measured)"
    return (f"operator CPU per look / core-alone CPU per look = {value:g}\N{MULTIPLICATION SIGN} "
            f"({operator_ms:g} ms / {core_ms:g} ms)")  # fmt: skip


def _spread_text(spread: Mapping[str, Any]) -> str:
    return f"p50 {spread['p50']} s, p95 {spread['p95']} s, max {spread['max']} s"


def summary_lines(results: Mapping[str, Any]) -> list[str]:
    operator, core, trend = results["operator"], results["core_alone"], results["lag_trend"]
    per = results["looks_per_challenge"]
    cpu_share = (
        operator["cpu_seconds"] / results["window_seconds"] if results["window_seconds"] else 0
    )
    verdict = "keeps its interval" if results["keeps_interval"] else "falls behind its interval"
    backlog = "lag growing: a backlog" if trend["growing"] else "no backlog"
    writes = operator["writes"]
    writes_text = ", ".join(f"{k} {v:g}" for k, v in writes.items()) or "none"
    looks = results["looks"]
    per_look = f" ({operator['writes_total'] / looks:.2f} per look)" if looks else ""
    setup = results["setup"]
    return [
        ratio_line(operator["cpu_ms_per_look"], core["cpu_ms_per_look"]),
        f"setup: ModelDeployments all Ready after {setup['deploy']['all_done_seconds']} s, "
        f"ChampionChallengers all Ready after {setup['challenges']['all_done_seconds']} s, "
        f"all evaluating {setup['all_evaluating_seconds']} s after the new versions",
        f"{results['challenges']} ChampionChallengers, interval {results['interval_seconds']:g} s, "
        f"window {results['window_seconds']:g} s, {results['kwok_nodes']} kwok nodes, "
        f"scrapes every {results['scrape_interval']}",
        f"looks {looks} ({results['challenges_looked_at']}/{results['challenges']} challenges); "
        f"per challenge min {per['min']}, p50 {per['p50']}, max {per['max']}",
        f"gap {_spread_text(results['gap_seconds'])}",
        f"lag {_spread_text(results['lag_seconds'])}: {verdict} "
        f"(a tick every {SLOW_TICK:g} s allows up to {LAG_ALLOWANCE:g} s)",
        f"lag first third {_spread_text(trend['first_third'])}; "
        f"last third {_spread_text(trend['last_third'])}: {backlog}",
        f"operator CPU {operator['cpu_seconds']} s over the window ({cpu_share:.0%} of a core), "
        f"{operator['cpu_ms_per_look']} ms per look; peak RSS {operator['peak_rss_mib']} MiB",
        f"writes in the window {operator['writes_total']:g}{per_look}: {writes_text}",
        f"core alone: {core['looks']} looks ({core['decided_on_data']} on data), "
        f"CPU {core['cpu_seconds']} s, {core['cpu_ms_per_look']} ms per look",
        f"phases at the end: {_phases_text_counts(results['phases_at_end'])}; challenges seen "
        f"without metrics: {results['metrics_missing_seen']}; operator log: "
        f"{_problems_text(operator['log_problems'])}",
    ]


def _phases_text_counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{p or '-'} {n}" for p, n in sorted(counts.items())) or "none"


def _problems_text(problems: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(problems.items())) or "no warnings or errors"


def main() -> int:
    if not (cache_root() / "bin" / "kube-apiserver").exists():
        print("skipped: no dev-cluster binaries (run `make cluster-build` first)")
        return 0
    out_dir = REPO / "bench-results"
    out_dir.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-challenges-") as tmp:
        workdir = Path(tmp)
        cluster = DevCluster.start(workdir / "cluster", progress=lambda m: print(f"[cluster] {m}"))
        try:
            results = run(cluster, workdir)
        except BenchError as error:
            print(f"bench failed: {error}")
            print(f"operator log: {out_dir / 'bench_challenges.log'}")
            return 2
        finally:
            cluster.stop(progress=lambda m: None)
    (out_dir / "bench_challenges.json").write_text(json.dumps(results, indent=2) + "\n")
    print("\n".join(summary_lines(results)))
    print(f"results: {out_dir / 'bench_challenges.json'}; "
          f"operator log: {out_dir / 'bench_challenges.log'}")  # fmt: skip
    every_one_looked = results["challenges_looked_at"] == CHALLENGES
    return 0 if every_one_looked and results["keeps_interval"] else 1


if __name__ == "__main__":
    sys.exit(main())
