"""Bookkeeping after answers runs in batches: in order, bounded, soon, and at once on demand."""

from __future__ import annotations

import asyncio
import logging

import pytest

from modelops_serving.afterwork import AfterWork


def test_items_wait_for_the_delay_then_run_in_order() -> None:
    done: list[tuple[int, str]] = []

    async def scenario() -> None:
        after = AfterWork(lambda n, s: done.append((n, s)), delay=0.05, batch=100)
        after.add(1, "a")
        after.add(2, "b")
        assert done == [] and len(after) == 2
        await asyncio.sleep(0.2)
        assert done == [(1, "a"), (2, "b")] and len(after) == 0
        after.add(3, "c")  # a new timer for the next batch
        await asyncio.sleep(0.2)
        assert done[-1] == (3, "c")

    asyncio.run(scenario())


def test_a_full_batch_and_settle_run_at_once() -> None:
    done: list[int] = []

    async def scenario() -> None:
        after = AfterWork(done.append, delay=60, batch=3)
        after.add(1)
        after.add(2)
        assert done == []
        after.add(3)  # the batch is full: memory stays bounded under load
        assert done == [1, 2, 3]
        after.add(4)
        after.settle()  # what a /metrics page or a feedback call does first
        assert done == [1, 2, 3, 4]
        after.settle()
        assert done == [1, 2, 3, 4]

    asyncio.run(scenario())


def test_one_failing_item_does_not_lose_the_others(caplog: pytest.LogCaptureFixture) -> None:
    done: list[int] = []

    def work(n: int) -> None:
        if n == 2:
            raise ValueError("bad answer")
        done.append(n)

    async def scenario() -> None:
        after = AfterWork(work, delay=60, batch=10)
        for n in (1, 2, 3):
            after.add(n)
        with caplog.at_level(logging.ERROR):
            after.settle()

    asyncio.run(scenario())
    assert done == [1, 3]
    assert "bookkeeping after an answer failed" in caplog.text
