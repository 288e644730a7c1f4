"""A queue of keys due for work, as client-go's workqueue: each key queued at most once, never
worked on by two workers at once, and a key marked again while worked on is queued again after.

One such queue and a few workers replace a kopf daemon per object: a thousand ModelDeployments
cost a thousand dictionary entries, not a thousand tasks, and no finalizer.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Callable, Hashable


class WorkQueue:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._due: dict[Hashable, float] = {}  # queued key -> when it is due
        self._heap: list[tuple[float, int, Hashable]] = []  # entries not in _due are stale
        self._order = itertools.count()
        self._busy: set[Hashable] = set()
        self._again: dict[Hashable, float] = {}  # busy keys marked meanwhile -> when due
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._due) + len(self._again)

    def add(self, key: Hashable, delay: float = 0.0) -> None:
        """Queue `key` to be due in `delay` seconds; an earlier due time already queued stays."""
        due = self._clock() + delay
        if key in self._busy:
            self._again[key] = min(self._again.get(key, due), due)
            return
        if due < self._due.get(key, float("inf")):
            self._due[key] = due
            heapq.heappush(self._heap, (due, next(self._order), key))
            self._changed.set()

    def forget(self, key: Hashable) -> None:
        """Drop `key` from the queue (a worker on it finishes, and it is not queued again)."""
        self._due.pop(key, None)
        self._again.pop(key, None)

    def done(self, key: Hashable) -> None:
        """A worker finished `key`: if it was marked meanwhile, it is queued again."""
        self._busy.discard(key)
        if key in self._again:
            self.add(key, max(0.0, self._again.pop(key) - self._clock()))

    async def get(self) -> Hashable:
        """The key due first, once due; it is busy until `done`."""
        while True:
            self._changed.clear()
            while self._heap and self._due.get(self._heap[0][2]) != self._heap[0][0]:
                heapq.heappop(self._heap)  # stale: forgotten, or queued again sooner
            wait = None
            if self._heap:
                due, _, key = self._heap[0]
                wait = due - self._clock()
                if wait <= 0:
                    heapq.heappop(self._heap)
                    del self._due[key]
                    self._busy.add(key)
                    return key
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=wait)
