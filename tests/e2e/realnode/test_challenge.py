"""ChampionChallenger end to end: pods on the real node, Prometheus in the cluster, the operator
as a process of the host (so a test can kill it), with the chart's ServiceAccount.

A load generator on the host sends requests through the ModelDeployment's Service (the router)
with delayed ground-truth feedback and counts every failed request; the operator reads the
sidecars' counters from the in-cluster Prometheus and promotes or rolls back.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from modelops_demo.loadgen import LoadGenerator
from modelops_demo.models import DemoStream, build_demo_models, build_miscalibrated_model
from tests.harness.operator_process import OperatorProcess

from ..operator_fixtures import crds, get_json, kubectl_modelops, operator_identity, wait_until  # noqa: F401 - fixtures
from .conftest import serve_directory

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TARGET = "fraud"


@pytest.fixture(scope="module")
def models(
    real_cluster: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """The demo's three models, and the champion made 5 points less accurate ("miscalibrated"),
    served over HTTP from the host like a model registry would."""
    directory = tmp_path_factory.mktemp("models")
    built = build_demo_models(directory)
    built["miscalibrated"] = build_miscalibrated_model(directory, 0.05)
    with serve_directory(real_cluster, directory) as base:
        yield {
            name: ServedModel(m.version, f"{base}/{m.path.relative_to(directory)}", m.digest)
            for name, m in built.items()
        }


@dataclass(frozen=True)
class ServedModel:
    version: str
    uri: str
    digest: str


class BackgroundLoad:
    """The demo's load generator on its own event loop, so tests stay synchronous."""

    def __init__(self, generator: LoadGenerator) -> None:
        self.generator = generator
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = threading.Event()
        self._thread.start()
        self._started.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def main() -> None:
            self._stop = asyncio.Event()
            self._started.set()
            await self.generator.run(self._stop)

        self._loop.run_until_complete(main())

    def snapshot(self) -> dict[str, Any]:
        return self.generator.snapshot()

    def stop(self) -> dict[str, Any]:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        return self.generator.snapshot()

    def wait(self, timeout: float) -> dict[str, Any]:
        """The counters once a bounded run (``max_requests``) has sent its last label."""
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"load not done in {timeout} s: {self.snapshot()}"
        return self.snapshot()


def data_plane_story(cluster: Any, namespace: str) -> str:
    """What the data plane's pods went through: restarts, terminations and the router's last
    log lines, for an assertion about failed requests to say where a request died."""
    lines = []
    for pod in get_json(cluster, "-n", namespace, "pods")["items"]:
        meta, status = pod["metadata"], pod.get("status") or {}
        restarts = {c["name"]: (c.get("restartCount", 0), c.get("lastState") or {})
                    for c in status.get("containerStatuses") or []}
        lines.append(f"pod {meta['name']} phase={status.get('phase')} "
                     f"deleting={'deletionTimestamp' in meta} restarts={restarts}")
    for event in get_json(cluster, "-n", namespace, "events")["items"]:
        if event.get("type") == "Warning" or event.get("reason") in ("Killing", "Started"):
            lines.append(f"event {event.get('lastTimestamp') or event.get('eventTime')} "
                         f"{event['involvedObject']['name']} {event['reason']}: "
                         f"{event.get('message', '')[:160]}")
    logs = cluster.kubectl("logs", "-n", namespace, f"deployment/{TARGET}-router",
                           "--tail=40", "--timestamps", check=False, timeout=30)
    lines.append("router log:\n" + (logs.stdout or logs.stderr))
    return "\n".join(lines)


def assert_no_failed_request(cluster: Any, namespace: str, final: dict[str, Any]) -> None:
    if final["requests"]["failed"]:
        pytest.fail(f"{final['requests']['failed']} failed requests: {final['recentErrors']}\n"
                    + data_plane_story(cluster, namespace))


def model_spec(model: ServedModel) -> dict[str, Any]:
    return {
        "name": "fraud",
        "version": model.version,
        "uri": model.uri,
        "format": "sklearn",
        "digest": model.digest,
    }


def apply(cluster: Any, namespace: str, manifest: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))


def deploy(cluster: Any, namespace: str, champion: ServedModel, replicas: int = 1,
           runtime: dict[str, Any] | None = None, **cc_spec: Any) -> None:
    apply(
        cluster,
        namespace,
        {
            "apiVersion": "modelops.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": TARGET},
            "spec": {
                "model": model_spec(champion),
                "runtime": {"replicas": replicas, **(runtime or {})},
                "monitoring": {"predictionBuckets": [0.5], "feedback": {"enabled": True}},
            },
        },
    )
    cluster.kubectl("wait", "-n", namespace, "--for=condition=Ready", f"mdep/{TARGET}",
                    "--timeout=120s")  # fmt: skip
    spec = {
        "targetRef": {"name": TARGET},
        "strategy": {"type": "canary", "steps": [10, 50]},
        # Accuracy only keeps these tests short; `make demo` adds an errorRate gate.
        "gates": [{"name": "accuracy", "type": "accuracy", "margin": 0.02}],
        "decision": {"alpha": 0.05, "interval": "5s", "minSamples": 150, "maxDuration": "10m",
                     "warmUp": "10s"},
        **cc_spec,
    }
    apply(
        cluster,
        namespace,
        {
            "apiVersion": "modelops.io/v1alpha1",
            "kind": "ChampionChallenger",
            "metadata": {"name": f"{TARGET}-gate"},
            "spec": spec,
        },
    )
    cluster.kubectl("wait", "-n", namespace, "--for=condition=Ready", f"cc/{TARGET}-gate",
                    "--timeout=120s")  # fmt: skip


def challenge(cluster: Any, namespace: str, model: ServedModel,
              runtime: dict[str, Any] | None = None) -> None:
    """A new version (and, with `runtime`, a new way to serve it: a merge patch)."""
    patch: dict[str, Any] = {"spec": {"model": model_spec(model)}}
    if runtime:
        patch["spec"]["runtime"] = runtime
    cluster.kubectl("patch", "-n", namespace, f"mdep/{TARGET}", "--type=merge", "-p",
                    json.dumps(patch))  # fmt: skip


def cc_status(cluster: Any, namespace: str) -> dict[str, Any]:
    return get_json(cluster, "-n", namespace, f"cc/{TARGET}-gate").get("status") or {}


def wait_phase(cluster: Any, namespace: str, phase: str, timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = cc_status(cluster, namespace)
        if status.get("phase") == phase:
            return status
        time.sleep(1)
    shown = {k: v for k, v in status.items() if k not in ("machine", "evidence")}
    pytest.fail(f"no phase {phase} after {timeout} s; status: {json.dumps(shown, indent=1)}")


def mdep_history_ends_with(cluster: Any, namespace: str, action: str) -> dict[str, Any]:
    """The ModelDeployment's status once its history ends with ``action``: its own controller
    copies the challenge's outcome a moment after the ChampionChallenger records it."""

    def status() -> dict[str, Any] | None:
        found = get_json(cluster, "-n", namespace, f"mdep/{TARGET}").get("status") or {}
        history = found.get("history") or []
        return found if history and history[-1]["action"] == action else None

    return wait_until(status, timeout=30, what=f"mdep history to end with {action}")


def start_load(real_cluster: Any, namespace: str) -> BackgroundLoad:
    """Load from outside the cluster, through the Service's address (kube-proxy picks the pod)."""
    return BackgroundLoad(LoadGenerator(router_url(real_cluster, namespace), DemoStream(),
                                        "fraud", rate_per_second=40,
                                        feedback_delay_seconds=(0.5, 2)))


def router_url(real_cluster: Any, namespace: str) -> str:
    """The Service's address from the host, once new connections to it reach the router."""
    cluster = real_cluster.cluster
    # Clients call the Service; once the router is ready the Service selects it.
    wait_until(
        lambda: get_json(cluster, "-n", namespace, f"service/{TARGET}")["spec"][
            "selector"
        ].get("modelops.io/role")
        == "router",
        timeout=60,
        what="the Service to select the router",
    )
    cluster.kubectl("rollout", "status", "-n", namespace, f"deployment/{TARGET}-router",
                    "--timeout=90s", timeout=100)
    service = get_json(cluster, "-n", namespace, f"service/{TARGET}")["spec"]
    port = real_cluster.node.forward(service["clusterIP"], service["ports"][0]["port"])
    url = f"http://127.0.0.1:{port}"
    # The selector says "router" a moment before kube-proxy does: a client connection opened
    # meanwhile goes to a champion pod and stays there (keep-alive), answered without the
    # router, while labels sent on another connection ask the router, which never saw those
    # answers. Only the router answers /healthz, so wait until fresh connections reach it.
    wait_until(lambda: all(_router_answers(url) for _ in range(3)), timeout=60,
               what="the Service's connections to reach the router")
    return url


def _router_answers(url: str) -> bool:
    try:
        with httpx.Client(timeout=5) as fresh:  # a new connection each time
            return fresh.get(f"{url}/healthz").json() == {"live": True}
    except (httpx.HTTPError, ValueError):
        return False


def test_better_challenger_is_promoted_worse_rolled_back_with_no_failed_request(
    real_cluster: Any, namespace: str, challenge_operator: OperatorProcess, models: Any
) -> None:
    cluster = real_cluster.cluster
    deploy(cluster, namespace, models["champion"], replicas=2)
    load = start_load(real_cluster, namespace)
    try:
        challenge(cluster, namespace, models["better"])
        promoted = wait_phase(cluster, namespace, "Promoted")
        assert promoted["champion"]["version"] == models["better"].version
        mdep = mdep_history_ends_with(cluster, namespace, "Promoted")
        assert mdep["champion"]["version"] == models["better"].version
        assert promoted["history"][-1]["action"] == "Promoted"
        assert any(e["name"] == "accuracy" for e in promoted["history"][-1]["evidence"])

        challenge(cluster, namespace, models["worse"])
        rolled_back = wait_phase(cluster, namespace, "RolledBack")
        assert rolled_back["champion"]["version"] == models["better"].version
        mdep = mdep_history_ends_with(cluster, namespace, "RolledBack")
        assert mdep["champion"]["version"] == models["better"].version
        # The rejected challenger is gone; the champion keeps serving.
        wait_until(
            lambda: cluster.kubectl(
                "get", "-n", namespace, f"deployment/{TARGET}-challenger", check=False
            ).returncode != 0,
            timeout=60,
            what="the challenger Deployment to be removed",
        )  # fmt: skip
        time.sleep(2)
    finally:
        final = load.stop()
    requests = final["requests"]
    assert requests["ok"] > 500
    assert requests["failed"] == 0, final["recentErrors"]
    # Labels of requests the challengers answered still reached them through both swaps.
    assert final["feedback"]["failed"] == 0, final["recentErrors"]
    # Two replicas per arm: each label reaches the replica that answered its request.
    assert final["feedback"]["unmatched"] == 0, final.get("recentUnmatched")
    reasons = {
        e["reason"]
        for e in get_json(cluster, "-n", namespace, "events")["items"]
        if e["involvedObject"]["name"] == f"{TARGET}-gate"
    }
    assert {"ChallengeStarted", "TrafficShifted", "GatesPassed", "Promoted"} <= reasons
    assert {"GatesFailed", "RolledBack"} <= reasons
    # The controller's own metrics tell the same story.
    exported = httpx.get(
        f"http://127.0.0.1:{challenge_operator.metrics_port}/metrics", timeout=10
    ).text
    ours = {"namespace": namespace, "name": f"{TARGET}-gate"}
    assert sample(exported, "modelops_challenge_phase", **ours, phase="RolledBack") == 1
    assert sample(exported, "modelops_challenge_phase", **ours, phase="Promoted") == 0
    for decision in ("PromotionStarted", "RollbackStarted"):
        assert sample(exported, "modelops_challenge_decisions_total", **ours,
                      decision=decision) == 1  # fmt: skip
    upper = sample(exported, "modelops_gate_estimate", **ours, gate="accuracy", bound="upper")
    assert upper is not None and upper < 0  # the worse model's accuracy bound, below zero


def sample(exposition: str, metric: str, **labels: str) -> float | None:
    """The value of the series of `metric` carrying `labels` in a text exposition."""
    for line in exposition.splitlines():
        if not line.startswith(metric + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


@pytest.mark.timeout(1200)
def test_an_accuracy_gate_without_margin_rolls_back_a_challenger_five_points_worse(
    real_cluster: Any, namespace: str, challenge_operator: OperatorProcess, models: Any
) -> None:
    """Without `margin` an accuracy gate tolerates its type's default, one point. The CRD once
    stored the errorRate default (0.2, twenty points) in every gate: then this challenger
    passed as "within twenty points" and, with onTimeout hold, was never rolled back."""
    cluster = real_cluster.cluster
    deploy(
        cluster,
        namespace,
        models["champion"],
        gates=[{"name": "accuracy", "type": "accuracy"}],
        # A timeout must not pass for the gate's verdict: hold keeps both running instead.
        decision={"alpha": 0.05, "interval": "5s", "minSamples": 150, "maxDuration": "30m",
                  "onTimeout": "hold", "warmUp": "10s"},
    )  # fmt: skip
    stored = get_json(cluster, "-n", namespace, f"cc/{TARGET}-gate")["spec"]["gates"]
    assert stored == [{"name": "accuracy", "type": "accuracy", "test": "nonInferiority"}]
    load = start_load(real_cluster, namespace)
    try:
        challenge(cluster, namespace, models["miscalibrated"])
        # ≈ 4,000 labels per arm at the 50% step (`modelops gating plan`: 80% likely in 3.5 min).
        rolled_back = wait_phase(cluster, namespace, "RolledBack", timeout=600)
    finally:
        final = load.stop()
    assert rolled_back["champion"]["version"] == models["champion"].version
    entry = rolled_back["history"][-1]
    assert (entry["action"], entry["version"]) == ("RolledBack", models["miscalibrated"].version)
    (evidence,) = entry["evidence"]
    # The gate failed on evidence against the one-point margin (not a timeout), and the
    # challenger was not shown twenty points worse: the old default could not have failed it.
    # Bounds are read at the nulls the tests reject and are open: the rejected one-point null is
    # the upper bound itself, and a lower bound of -0.2 says "better than twenty points worse"
    # (the grid's next null above it, -0.1, may not be rejected yet when the gate fails).
    assert (evidence["name"], evidence["verdict"]) == ("accuracy", "Fail")
    assert evidence["upper"] <= -0.01
    assert evidence["lower"] is not None and evidence["lower"] >= -0.2
    gate = next(g for g in rolled_back["gates"] if g["name"] == "accuracy")
    assert "roll back if upper < -0.01" in gate["message"], gate["message"]
    mdep = mdep_history_ends_with(cluster, namespace, "RolledBack")
    assert mdep["champion"]["version"] == models["champion"].version
    reasons = {
        e["reason"]
        for e in get_json(cluster, "-n", namespace, "events")["items"]
        if e["involvedObject"]["name"] == f"{TARGET}-gate"
    }
    assert {"GatesFailed", "RolledBack"} <= reasons
    assert_no_failed_request(cluster, namespace, final)


def test_operator_killed_mid_challenge_resumes_in_the_same_phase_and_step(
    real_cluster: Any, namespace: str, challenge_operator: OperatorProcess, models: Any
) -> None:
    cluster = real_cluster.cluster
    deploy(cluster, namespace, models["champion"], approval={"required": True})
    load = start_load(real_cluster, namespace)
    try:
        challenge(cluster, namespace, models["better"])
        waiting = wait_phase(cluster, namespace, "AwaitingApproval")
        challenge_operator.process.send_signal(signal.SIGKILL)
        challenge_operator.process.wait(10)
        challenge_operator.restart()
        time.sleep(8)  # several ticks of the restarted daemon
        resumed = cc_status(cluster, namespace)
        assert resumed["phase"] == "AwaitingApproval"
        assert resumed["currentStep"] == waiting["currentStep"]
        assert resumed["trafficPercent"] == waiting["trafficPercent"]
        assert resumed["challenger"] == waiting["challenger"]
        time.sleep(5)
        assert cc_status(cluster, namespace)["phase"] == "AwaitingApproval"  # nobody approved
        # `kubectl modelops approve` approves in the caller's name (admin here), exactly once.
        assert "as admin" in kubectl_modelops(cluster, namespace, "approve", f"{TARGET}-gate")
        done = wait_phase(cluster, namespace, "Promoted")
        assert [h["action"] for h in done["history"]] == ["Promoted"]
        assert done["approval"]["approvedBy"] == "admin"
    finally:
        final = load.stop()
    assert_no_failed_request(cluster, namespace, final)


def test_no_decision_while_prometheus_is_down(
    real_cluster: Any, namespace: str, challenge_operator: OperatorProcess, models: Any
) -> None:
    cluster = real_cluster.cluster
    deploy(cluster, namespace, models["champion"])
    load = start_load(real_cluster, namespace)
    try:
        challenge(cluster, namespace, models["worse"])
        wait_until(
            lambda: cc_status(cluster, namespace).get("startedAt"),
            timeout=120,
            what="the challenger to take traffic",
        )
        # Prometheus unreachable (its Service selects nothing), its data kept: a partition.
        unreachable = {"spec": {"selector": {"app.kubernetes.io/name": "nowhere"}}}
        reachable = {"spec": {"selector": {"app.kubernetes.io/name": "prometheus"}}}
        cluster.kubectl("patch", "-n", "monitoring", "service/prometheus-operated",
                        "--type=merge", "-p", json.dumps(unreachable))
        try:
            condition = wait_until(
                lambda: next(
                    (
                        c
                        for c in cc_status(cluster, namespace).get("conditions", [])
                        if c["type"] == "MetricsAvailable" and c["status"] == "False"
                        # Not the challenger's first scrape still to come ("no metrics yet"),
                        # which a fresh challenge may show too: the outage itself.
                        and "Prometheus" in c["message"]
                    ),
                    None,
                ),
                timeout=60,
                what="MetricsAvailable=False naming Prometheus",
            )
            assert condition["reason"] == "NoMetrics"
            time.sleep(15)  # three intervals without metrics
            assert cc_status(cluster, namespace)["phase"] == "Progressing"
        finally:
            cluster.kubectl("patch", "-n", "monitoring", "service/prometheus-operated",
                            "--type=merge", "-p", json.dumps(reachable))
        wait_phase(cluster, namespace, "RolledBack")
    finally:
        final = load.stop()
    assert_no_failed_request(cluster, namespace, final)


def test_shadow_challenger_is_judged_on_mirrored_traffic_clients_never_see_it(
    real_cluster: Any, namespace: str, challenge_operator: OperatorProcess, models: Any
) -> None:
    cluster = real_cluster.cluster
    deploy(
        cluster,
        namespace,
        models["champion"],
        strategy={"type": "shadow"},
        approval={"required": True},
    )
    load = start_load(real_cluster, namespace)
    try:
        challenge(cluster, namespace, models["better"])
        waiting = wait_phase(cluster, namespace, "AwaitingApproval")
        assert waiting["trafficPercent"] == 100  # mirrored, not answered
        seen = load.snapshot()["requests"]["byVersion"]
        assert set(seen) == {models["champion"].version}, seen
        agreement = real_cluster.query(
            f'sum(modelops_shadow_agreement_total{{namespace="{namespace}"}})'
        )
        assert agreement and float(agreement[0]["value"][1]) > 0
        accuracy = next(g for g in waiting["gates"] if g["name"] == "accuracy")
        # Bounds are read on the grid of nulls, whose point at the margin is where a Pass lands.
        assert accuracy["verdict"] == "Pass" and accuracy["lower"] >= -0.02
        kubectl_modelops(cluster, namespace, "approve", f"{TARGET}-gate")
        wait_phase(cluster, namespace, "Promoted")
        time.sleep(3)
    finally:
        final = load.stop()
    assert_no_failed_request(cluster, namespace, final)
    assert models["better"].version in final["requests"]["byVersion"]


def delete_one_pod(cluster: Any, namespace: str, role: str) -> str:
    pods = get_json(cluster, "-n", namespace, "pods", "-l",
                    f"modelops.io/deployment={TARGET},modelops.io/role={role}")["items"]
    running = [p["metadata"]["name"] for p in pods if "deletionTimestamp" not in p["metadata"]
               and (p.get("status") or {}).get("phase") == "Running"]
    assert len(running) >= 2, f"{role}: {running}"
    cluster.kubectl("delete", "pod", "-n", namespace, running[0], "--wait=false")
    return running[0]


def prometheus_sum(real_cluster: Any, metric: str, namespace: str, **labels: str) -> float:
    selector = ",".join([f'namespace="{namespace}"', *(f'{k}="{v}"' for k, v in labels.items())])
    found = real_cluster.query(f"sum({metric}{{{selector}}})")
    return float(found[0]["value"][1]) if found else 0.0


def test_two_routers_and_two_replicas_match_every_label_through_pod_deletions(
    real_cluster: Any, namespace: str, challenge_operator: OperatorProcess, models: Any
) -> None:
    """Issue 13's acceptance on the real node: 1,000 predictions through the Service, labels
    1-60 s later, a router pod and a model pod deleted mid-load: no failed request, every label
    matched once, and forged and replayed labels refused and counted."""
    cluster = real_cluster.cluster
    # Held at a 50/50 split awaiting approval: the router stays in front for the whole run.
    deploy(cluster, namespace, models["champion"], replicas=2,
           strategy={"type": "canary", "steps": [50]}, approval={"required": True})
    challenge(cluster, namespace, models["better"])
    wait_until(lambda: cc_status(cluster, namespace).get("trafficPercent") == 50, timeout=180,
               what="the split at 50 %")
    routers = get_json(cluster, "-n", namespace, f"deployment/{TARGET}-router")
    assert routers["spec"]["replicas"] == 2
    cluster.kubectl("get", "-n", namespace, f"pdb/{TARGET}-router")  # it exists
    url = router_url(real_cluster, namespace)
    # 1,000 predictions at 20/s, each labelled 1-60 s later.
    load = BackgroundLoad(LoadGenerator(url, DemoStream(), TARGET, rate_per_second=20,
                                        feedback_delay_seconds=(1, 60), max_requests=1000))
    try:
        time.sleep(15)
        deleted = [delete_one_pod(cluster, namespace, "router")]
        time.sleep(10)
        deleted.append(delete_one_pod(cluster, namespace, "champion"))
        final = load.wait(timeout=240)
    finally:
        load.stop()
    assert_no_failed_request(cluster, namespace, final)
    assert final["requests"]["ok"] == 1000
    labels = final["feedback"]
    assert (labels["sent"], labels["unmatched"], labels["failed"], labels["dropped"]) == \
        (1000, 0, 0, 0), f"deleted {deleted}: {labels} {final['recentErrors']}"

    # Forged and replayed labels, through the Service as any client sends them.
    row, _ = next(DemoStream())
    with httpx.Client(base_url=url, timeout=10) as client:
        answer = client.post(f"/v2/models/{TARGET}/infer", json={
            "id": "replayed", "inputs": [{"name": "input-0", "shape": [1, len(row)],
                                          "datatype": "FP64", "data": row}]})
        assert answer.status_code == 200, answer.text
        token = answer.headers["x-modelops-receipt"]
        first = client.post("/v2/feedback", json={"receipt": token, "truth": 1})
        replay = client.post("/v2/feedback", json={"receipt": token, "truth": 1})
        version, key, payload, mac = token.split(".")
        forged = client.post("/v2/feedback", json={"receipt": ".".join(
            (version, key, payload, mac[:-4] + ("AAAA" if mac[-4:] != "AAAA" else "BBBB"))),
            "truth": 1})
        bare = client.post("/v2/feedback", json={"id": "replayed", "truth": 1})
    assert first.status_code == 200, first.text
    assert (replay.status_code, replay.json()["reason"]) == (409, "duplicate"), replay.text
    assert (forged.status_code, forged.json()["reason"]) == (403, "forged"), forged.text
    assert (bare.status_code, bare.json()["reason"]) == (400, "missing"), bare.text
    wait_until(lambda: prometheus_sum(real_cluster, "modelops_feedback_refused_total",
                                      namespace, reason="duplicate") >= 1
               and prometheus_sum(real_cluster, "modelops_router_feedback_refused_total",
                                  namespace, reason="forged") >= 1,
               timeout=60, what="the refusals in Prometheus")
