"""A failed reconcile keeps the reason it ran, so the worker's retry runs it again."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
import pytest

from modelops_operator.handlers import fleet, modeldeployment
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
