"""The fleet's workers lose no key and invent no child: a failed reconcile keeps the reason it
ran, so the retry runs it again; a key taken while the replica was paused is processed once it
leads again; a child the indices do not hold yet is read before it is applied as new."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
import pytest

from modelops_operator.handlers import fleet, modeldeployment
from modelops_operator.observe import slim_manifest
from modelops_operator.status import ReconcileOutcome

KEY = ("team", "iris")


def memo_with_one_reconciled_object() -> kopf.Memo:
    memo = kopf.Memo()
    fleet.setup(memo)
    memo.outcomes = {KEY: ReconcileOutcome(generation=1)}
    memo.bodies[KEY] = {"metadata": {"name": "iris", "namespace": "team", "generation": 1}}
    memo.indices = {index: {} for index in fleet.INDICES}
    return memo


@pytest.mark.parametrize("mark", ["repairs", "resyncs"])
def test_a_failed_repair_or_resync_is_marked_again_for_the_retry(
    mark: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def failing_reconcile(**_: Any) -> None:
        raise kopf.TemporaryError("API error while applying children", delay=5)

    monkeypatch.setattr(modeldeployment, "_reconcile", failing_reconcile)

    async def look() -> kopf.Memo:
        memo = memo_with_one_reconciled_object()
        getattr(memo, mark).add(KEY)
        with pytest.raises(kopf.TemporaryError):
            await modeldeployment.process(memo, KEY)
        return memo

    memo = asyncio.run(look())
    assert KEY in getattr(memo, mark)


def test_a_key_taken_while_paused_is_processed_once_the_replica_leads_again() -> None:
    """A worker waits in the queue while its replica leads; the replica pauses, and on resuming
    kopf's listing queues the objects before the lead daemon sets `leading` again."""
    processed: list[tuple[str, str]] = []

    async def process(_: kopf.Memo, key: tuple[str, str]) -> None:
        processed.append(key)

    async def failover() -> list[tuple[str, str]]:
        memo = kopf.Memo()
        fleet.setup(memo)
        memo.leading.set()
        worker = asyncio.create_task(fleet._work(memo, process))
        await asyncio.sleep(0.05)  # the worker waits in the queue
        memo.leading.clear()  # paused
        memo.queue.add(KEY)  # the listing on resuming
        await asyncio.sleep(0.05)
        assert processed == []  # not while another replica leads
        memo.leading.set()  # the lead daemon runs
        await asyncio.sleep(0.05)
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        return processed

    assert asyncio.run(failover()) == [KEY]


def test_children_missing_from_the_indices_are_read_before_being_applied_as_new(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a pause kopf lists the children anew without waiting for the lists: an unindexed
    child may exist. One that does is compared as observed; one that does not stays absent."""
    reads: list[tuple[str, str]] = []
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "iris-champion", "namespace": "team", "uid": "d-1"},
        "spec": {"replicas": 2},
    }  # fmt: skip

    async def read_object(_: Any, api_version: str, kind: str, namespace: str, name: str) -> Any:
        reads.append((kind, name))
        return deployment if kind == "Deployment" else None

    monkeypatch.setattr(modeldeployment, "read_object", read_object)
    observed: dict[tuple[str, str], Any] = {}
    asyncio.run(modeldeployment._read_unindexed_children(None, "iris", "team", observed))
    assert reads == [("Deployment", "iris-champion"), ("Service", "iris")]
    assert observed == {("Deployment", "iris-champion"): slim_manifest(deployment)}
