"""Sharding by namespace: two operators, each serving its own list of namespaces (the chart's
`watchNamespaces`), on one API server, as the chart's ServiceAccount."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from modelops_devcluster.cluster import wait_for_service_account
from modelops_operator.conditions import PENDING_STATUS
from tests.harness.operator_process import OperatorProcess

from .operator_fixtures import *  # noqa: F403  (crds, operator_identity)
from .operator_fixtures import RESYNC_SECONDS, get_json, wait_until
from .test_modeldeployment import apply, manifest, wait_ready

pytestmark = pytest.mark.e2e


@pytest.fixture
def three_namespaces(devcluster: Any) -> Iterator[list[str]]:
    names = [f"shard-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    for name in names:
        devcluster.kubectl("create", "namespace", name)
        wait_for_service_account(devcluster, name)
    try:
        yield names
    finally:
        for name in names:
            devcluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_each_shard_serves_its_namespaces_only(
    devcluster: Any,
    three_namespaces: list[str],
    operator_identity: tuple[Any, str],
    tmp_path: Any,
) -> None:
    first, second, unserved = three_namespaces
    kubeconfig, _ = operator_identity
    shards = []
    try:
        for served in (first, second):
            shards.append(OperatorProcess.start(
                kubeconfig, tmp_path / f"{served}.log", resync_seconds=RESYNC_SECONDS,
                namespaces=[served],
            ))  # fmt: skip
        for namespace in three_namespaces:
            apply(devcluster, namespace, manifest("fraud"))
        for namespace in (first, second):
            wait_ready(devcluster, namespace, "fraud")
        # A resync of each shard later (every RESYNC_SECONDS), the namespace nobody serves is
        # still untouched.
        wait_until(lambda: all(s.log().count("reconciled generation") >= 2 for s in shards),
                   timeout=30, what="a resync of both shards")  # fmt: skip
        body = get_json(devcluster, "-n", unserved, "mdep/fraud")
        # Nobody reported on it: its status is the CRD's pending default, as applied.
        assert body.get("status") == PENDING_STATUS, body.get("status")
        children = devcluster.kubectl(
            "get", "-n", unserved, "deployment,service,secret", "-l",
            "modelops.io/deployment=fraud", "-o", "name",
        ).stdout.strip()  # fmt: skip
        assert children == ""
        for shard, served in zip(shards, (first, second), strict=True):
            log = shard.log()
            assert f"[{served}/fraud]" in log
            others = [n for n in three_namespaces if n != served]
            assert not [n for n in others if f"[{n}/" in log], log[-3000:]
    finally:
        for shard in shards:
            shard.stop()
