"""A resync with nothing changed writes nothing: counted on both sides of the wire.

1. The operator's own client counts every write it sends (modelops_operator_api_writes_total).
2. The API server counts every write it receives (apiserver_request_total); it has no user
   label, so the window is chosen when nothing else writes these resources, and the count is
   restricted to what the operator could write (ModelDeployments, their status, Deployments,
   Services). kopf's own writes (finalizers, annotations) go through its own HTTP client and
   are caught here.
3. Events (kopf posts them through its own client too) are listed in the test's namespace.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.harness.operator_process import OperatorProcess, apiserver_writes

from .operator_fixtures import *  # noqa: F403  (crds, operator_identity, operator)
from .operator_fixtures import RESYNC_SECONDS, wait_until

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "modeldeployment-sklearn.yaml"
# Events are left out: other components post them cluster-wide (node, namespace teardown);
# the operator's own events can only be about our object, so they are counted in its namespace.
WATCHED = {"modeldeployments", "deployments", "services", "replicasets", "pods"}


def _server_writes(devcluster: Any) -> dict[str, float]:
    return apiserver_writes(devcluster.kubectl("get", "--raw", "/metrics").stdout, WATCHED)


def _resyncs(process: OperatorProcess, namespace: str, name: str) -> int:
    pattern = re.compile(rf"\[{namespace}/{name}\].*reconciled generation \d+: applied nothing")
    return len(pattern.findall(process.log()))


def _other_test_namespaces(devcluster: Any, mine: str) -> list[str]:
    names = devcluster.kubectl("get", "namespaces", "-o", "name").stdout.split()
    return [n for n in names if n.startswith("namespace/t-") and n != f"namespace/{mine}"]


def _settled_example(devcluster: Any, namespace: str) -> None:
    """The example Ready, in a quiet window: nothing else writes while writes are counted."""
    # Other tests' namespaces being torn down would write (and the operator drops finalizers).
    wait_until(
        lambda: not _other_test_namespaces(devcluster, namespace),
        timeout=90,
        what="other test namespaces to be deleted",
    )
    devcluster.kubectl("apply", "-n", namespace, "-f", str(EXAMPLE))
    devcluster.kubectl(
        "wait", "-n", namespace, "--for=condition=Ready", "mdep/iris", "--timeout=90s"
    )
    time.sleep(2)  # the last events of the rollout settle


def test_noop_resync_makes_zero_writes(
    devcluster: Any, namespace: str, operator: OperatorProcess
) -> None:
    _settled_example(devcluster, namespace)

    operator_before, server_before = operator.writes(), _server_writes(devcluster)
    events_before = devcluster.kubectl(
        "get", "events", "-n", namespace, "-o", "name"
    ).stdout.split()
    resyncs_before = _resyncs(operator, namespace, "iris")
    time.sleep(3 * RESYNC_SECONDS + 1)
    resyncs = _resyncs(operator, namespace, "iris") - resyncs_before
    operator_after, server_after = operator.writes(), _server_writes(devcluster)
    events_after = devcluster.kubectl("get", "events", "-n", namespace, "-o", "name").stdout.split()

    assert resyncs >= 2, "the drift timer did not run in the window"
    operator_delta = {k: v - operator_before.get(k, 0) for k, v in operator_after.items()}
    server_delta = {k: v - server_before.get(k, 0) for k, v in server_after.items()}
    assert not {k: v for k, v in operator_delta.items() if v}, operator_delta
    assert not {k: v for k, v in server_delta.items() if v}, server_delta
    assert events_after == events_before
    print(f"{resyncs} resyncs, 0 writes (operator counter and apiserver_request_total)")


def test_operator_restart_resumes_without_writes(
    devcluster: Any, namespace: str, operator: OperatorProcess
) -> None:
    _settled_example(devcluster, namespace)
    before = operator.log().count(f"[{namespace}/iris] reconciled")
    server_before = _server_writes(devcluster)
    events_before = devcluster.kubectl(
        "get", "events", "-n", namespace, "-o", "name"
    ).stdout.split()

    operator.restart()
    # The resume handler runs the same reconcile once per object after a restart.
    wait_until(
        lambda: operator.log().count(f"[{namespace}/iris] reconciled") > before,
        timeout=30,
        what="the resume reconcile",
    )
    time.sleep(2)  # the status daemon has started and compared, too

    assert not {k: v for k, v in operator.writes().items() if v}, operator.writes()
    server_delta = {k: v - server_before.get(k, 0) for k, v in _server_writes(devcluster).items()}
    assert not {k: v for k, v in server_delta.items() if v}, server_delta
    assert devcluster.kubectl("get", "events", "-n", namespace, "-o", "name").stdout.split() == (
        events_before
    )
