"""The controller with `spec.traffic.provider: gatewayAPI`, on the real Gateway API CRDs.

Pods here are kwok's paper pods and no Prometheus is configured, so this checks the control
path: a gate the provider cannot feed is refused naming the field, the HTTPRoute carries the
canary weights, no decision is taken without metrics (the condition says why), Ready holds
while the challenge waits, and a person's rollback removes the challenger and its route weight
only once the Gateway has accepted the route without it.

No Gateway implementation runs here, so the test plays its controller's one part the operator
reads: it writes the route's status (Accepted, ResolvedRefs) for each new generation.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.harness.gateway import accepted_status
from tests.harness.operator_process import OperatorProcess

from .operator_fixtures import *  # noqa: F403 - fixtures
from .operator_fixtures import get_json, kubectl_modelops, wait_until

pytestmark = pytest.mark.e2e

DIGEST_V1 = "sha256:" + "1" * 64
DIGEST_V2 = "sha256:" + "2" * 64


def model(version: str, digest: str) -> dict[str, Any]:
    return {
        "name": "gw",
        "version": version,
        "uri": f"https://models.example.com/gw-{version}.skops",
        "format": "sklearn",
        "digest": digest,
    }


def backend_weights(devcluster: Any, namespace: str) -> dict[str, int]:
    route = get_json(devcluster, "-n", namespace, "httproute/gw")
    return {b["name"]: b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]}


@contextmanager
def gateway_controller(devcluster: Any, namespace: str) -> Iterator[list[int]]:
    """Accept each new generation of httproute/gw on Gateway `public`, as a Gateway
    implementation would; yields the generations accepted so far."""
    accepted: list[int] = []
    stop = threading.Event()

    def accept_new_generations() -> None:
        while not stop.wait(0.5):
            found = devcluster.kubectl("get", "-n", namespace, "httproute/gw", "-o", "json",
                                       check=False)  # fmt: skip
            if found.returncode != 0:
                continue
            generation = json.loads(found.stdout)["metadata"]["generation"]
            if accepted and accepted[-1] == generation:
                continue
            status = {"status": accepted_status(generation)}
            patched = devcluster.kubectl("patch", "-n", namespace, "httproute/gw",
                                         "--subresource=status", "--type=merge",
                                         "-p", json.dumps(status), check=False)  # fmt: skip
            if patched.returncode == 0:
                accepted.append(generation)

    worker = threading.Thread(target=accept_new_generations, daemon=True)
    worker.start()
    try:
        yield accepted
    finally:
        stop.set()
        worker.join(timeout=30)


def test_gateway_api_route_follows_the_challenge(
    devcluster: Any, namespace: str, operator: OperatorProcess
) -> None:
    mdep = {
        "apiVersion": "modelops.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "gw"},
        "spec": {"model": model("1.0.0", DIGEST_V1), "runtime": {"replicas": 1}},
    }
    cc = {
        "apiVersion": "modelops.io/v1alpha1",
        "kind": "ChampionChallenger",
        "metadata": {"name": "gw-gate"},
        "spec": {
            "targetRef": {"name": "gw"},
            "strategy": {"type": "canary", "steps": [10, 50]},
            # Labels sent through a Gateway reach an arm by weight, not the arm that answered.
            "gates": [{"name": "accuracy", "type": "accuracy", "margin": 0.02}],
            "decision": {"interval": "5s", "warmUp": "10s"},
            "traffic": {"provider": "gatewayAPI", "parentRefs": [{"name": "public"}]},
        },
    }
    for manifest in (mdep, cc):
        devcluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))

    def failed() -> dict[str, Any] | None:
        status = get_json(devcluster, "-n", namespace, "cc/gw-gate").get("status") or {}
        return status if status.get("phase") == "Failed" else None

    refused = wait_until(failed, timeout=90, what="the accuracy gate to be refused")
    assert "spec.gates[0].type" in refused["message"], refused["message"]
    assert "gatewayAPI" in refused["message"], refused["message"]
    cc["spec"]["gates"] = [{"name": "errors", "type": "errorRate"}]
    devcluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(cc))
    devcluster.kubectl("wait", "-n", namespace, "--for=condition=Ready", "mdep/gw", "cc/gw-gate",
                       "--timeout=90s")  # fmt: skip
    assert backend_weights(devcluster, namespace) == {"gw-champion": 100}

    patch = {"spec": {"model": model("1.1.0", DIGEST_V2)}}
    devcluster.kubectl("patch", "-n", namespace, "mdep/gw", "--type=merge", "-p", json.dumps(patch))
    deadline = time.monotonic() + 90
    while backend_weights(devcluster, namespace) != {"gw-champion": 90, "gw-challenger": 10}:
        if time.monotonic() > deadline:
            status = get_json(devcluster, "-n", namespace, "cc/gw-gate").get("status")
            pytest.fail(f"the HTTPRoute never sent 10% to the challenger; cc status: {status}")
        time.sleep(1)
    row = devcluster.kubectl("get", "-n", namespace, "cc/gw-gate", "--no-headers").stdout.split()
    # NAME TARGET PHASE CHALLENGER TRAFFIC DECISION READY STATUS AGE
    assert row[1:6] == ["gw", "Progressing", "1.1.0", "10", "Continue"], row
    # The Service stays on the champion's pods: the Gateway splits, not a router.
    selector = get_json(devcluster, "-n", namespace, "service/gw")["spec"]["selector"]
    assert selector["modelops.io/role"] == "champion"

    def metrics_missing() -> dict[str, Any] | None:
        status = get_json(devcluster, "-n", namespace, "cc/gw-gate").get("status") or {}
        return next(
            (
                c
                for c in status.get("conditions", [])
                if c["type"] == "MetricsAvailable" and c["status"] == "False"
            ),
            None,
        )

    condition = wait_until(metrics_missing, timeout=90, what="MetricsAvailable=False")
    assert "Prometheus" in condition["message"]
    status = get_json(devcluster, "-n", namespace, "cc/gw-gate")["status"]
    assert status["phase"] == "Progressing" and status["trafficPercent"] == 10
    # Waiting for evidence is not a failure: Ready holds, so `kubectl wait` works throughout.
    devcluster.kubectl("wait", "-n", namespace, "--for=condition=Ready", "cc/gw-gate",
                       "--timeout=5s")  # fmt: skip
    mdep_status = get_json(devcluster, "-n", namespace, "mdep/gw")["status"]
    assert mdep_status["champion"]["version"] == "1.0.0"
    assert mdep_status["challenger"]["version"] == "1.1.0"

    assert "as admin" in kubectl_modelops(devcluster, namespace, "rollback", "gw-gate")
    wait_until(
        lambda: get_json(devcluster, "-n", namespace, "cc/gw-gate")["status"]["phase"]
        == "RollingBack",
        timeout=60,
        what="the manual rollback to start",
    )
    time.sleep(5)  # several ticks: without the Gateway's word the swap does not go on
    waiting = get_json(devcluster, "-n", namespace, "cc/gw-gate")["status"]
    assert waiting["phase"] == "RollingBack", waiting
    assert devcluster.kubectl("get", "-n", namespace, "deployment/gw-challenger",
                              check=False).returncode == 0  # fmt: skip
    with gateway_controller(devcluster, namespace) as accepted:
        wait_until(
            lambda: get_json(devcluster, "-n", namespace, "cc/gw-gate")["status"]["phase"]
            == "RolledBack",
            timeout=120,
            what="the manual rollback to finish",
        )
    assert accepted, "the rollback finished before the Gateway accepted any route"
    assert backend_weights(devcluster, namespace) == {"gw-champion": 100}
    assert devcluster.kubectl(
        "get", "-n", namespace, "deployment/gw-challenger", check=False
    ).returncode != 0
    # The ModelDeployment's own controller copies the outcome a moment later.
    def history_after_rollback() -> list[dict[str, Any]] | None:
        history = get_json(devcluster, "-n", namespace, "mdep/gw")["status"].get("history") or []
        return history if history and history[-1]["action"] == "RolledBack" else None

    history = wait_until(history_after_rollback, timeout=30,
                         what="mdep history to end with the rollback")
    assert history[-1]["action"] == "RolledBack" and "admin" in history[-1]["message"]
