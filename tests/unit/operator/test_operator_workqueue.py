"""The work queue that replaces a daemon per ModelDeployment."""

from __future__ import annotations

import asyncio

import pytest

from modelops_operator.workqueue import WorkQueue


def run(coroutine):  # type: ignore[no-untyped-def]
    return asyncio.run(coroutine)


def test_a_key_marked_many_times_is_worked_on_once() -> None:
    async def scenario() -> list[str]:
        queue = WorkQueue()
        for _ in range(5):
            queue.add("a")
        queue.add("b")
        got = [await queue.get(), await queue.get()]
        assert len(queue) == 0
        return got

    assert run(scenario()) == ["a", "b"]


def test_an_earlier_due_time_wins_and_a_later_one_does_not_postpone() -> None:
    async def scenario() -> list[str]:
        queue = WorkQueue()
        queue.add("late", delay=0.2)
        queue.add("soon", delay=0.05)
        queue.add("soon", delay=10)  # does not postpone
        return [await queue.get(), await queue.get()]

    assert run(scenario()) == ["soon", "late"]


def test_a_key_marked_while_busy_comes_back_after_done_not_before() -> None:
    async def scenario() -> None:
        queue = WorkQueue()
        queue.add("a")
        assert await queue.get() == "a"
        queue.add("a")  # while a worker holds it
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(queue.get(), timeout=0.05)
        queue.done("a")
        assert await asyncio.wait_for(queue.get(), timeout=1) == "a"

    run(scenario())


def test_a_forgotten_key_is_not_handed_out() -> None:
    async def scenario() -> None:
        queue = WorkQueue()
        queue.add("gone")
        queue.add("kept", delay=0.01)
        queue.forget("gone")
        assert await queue.get() == "kept"
        assert len(queue) == 0

    run(scenario())


def test_a_waiting_worker_wakes_when_a_key_is_added() -> None:
    async def scenario() -> str:
        queue = WorkQueue()
        waiter = asyncio.ensure_future(queue.get())
        await asyncio.sleep(0.01)
        queue.add("new")
        return await asyncio.wait_for(waiter, timeout=1)

    assert run(scenario()) == "new"
