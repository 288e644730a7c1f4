"""What the operator process loads: its memory at 1,000 objects starts from this floor."""

from __future__ import annotations

import subprocess
import sys


def test_the_operator_loads_numpy_and_scipy_only_when_a_challenge_or_monitor_needs_them() -> None:
    # numpy and scipy.special are 28 MiB of the operator's RSS (scipy.stats alone would be
    # ~45 more): a fleet with no challenge or monitored model never needs them.
    probe = (
        "import sys, modelops_operator.main\n"
        "print(sorted(m for m in ('numpy', 'scipy') if m in sys.modules))\n"
        "from modelops_operator import gating\n"
        "assert callable(gating.evaluate) and gating.NODATA == 'NoData'\n"
        "print(sorted(m for m in ('numpy', 'scipy.special', 'scipy.stats') if m in sys.modules))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    ).stdout.splitlines()
    assert loaded == ["[]", "['numpy', 'scipy.special']"]


def test_a_kept_modeldeployment_drops_what_no_handler_reads_and_keeps_its_change_source() -> None:
    from modelops_operator.lineage.source import change_source
    from modelops_operator.observe import slim_modeldeployment

    spec_fields = {"f:spec": {"f:model": {"f:version": {}}, "f:runtime": {}}}
    body = {
        "apiVersion": "modelops.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {
            "name": "fraud", "namespace": "risk", "uid": "u-1", "generation": 3,
            "labels": {"argocd.argoproj.io/instance": "risk-models"},
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": "{" + "x" * 4000 + "}",
                "modelops.io/source-revision": "abc123",
            },
            "managedFields": [
                {"manager": "argocd-controller", "operation": "Apply",
                 "time": "2026-12-01T10:00:00Z", "fieldsV1": spec_fields},
                {"manager": "modelops", "operation": "Update", "subresource": "status",
                 "time": "2026-12-01T10:01:00Z", "fieldsV1": {"f:status": {"f:x": {}}}},
            ],
        },
        "spec": {"model": {"name": "fraud", "version": "2.0.0"}},
        "status": {"observedGeneration": 3},
    }  # fmt: skip
    slim = slim_modeldeployment(body)
    assert change_source(slim["metadata"]) == change_source(body["metadata"])
    assert [e["manager"] for e in slim["metadata"]["managedFields"]] == ["argocd-controller"]
    assert "kubectl.kubernetes.io/last-applied-configuration" not in slim["metadata"]["annotations"]
    assert (slim["spec"], slim["status"]) == (body["spec"], body["status"])
    assert {k: slim["metadata"][k] for k in ("name", "namespace", "uid", "generation")} == {
        "name": "fraud", "namespace": "risk", "uid": "u-1", "generation": 3}


def test_every_object_kopf_sees_shares_the_operators_memo_instead_of_a_copy() -> None:
    import asyncio

    import kopf
    from kopf._core.reactor.inventory import ResourceMemories

    from modelops_operator.handlers.operator import share_memo

    memo = kopf.Memo()
    memo.queue = ["shared state"]
    share_memo(memo)
    memo.bodies = {}
    memories = ResourceMemories()

    async def recall(name: str) -> object:
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"uid": name, "name": name}}
        return await memories.recall_memo(kopf.RawBody(body), memobase=memo)  # type: ignore[misc]

    first, second = asyncio.run(recall("a")), asyncio.run(recall("b"))
    assert first is memo and second is memo
    assert memo.queue == ["shared state"] and memo.bodies == {}
