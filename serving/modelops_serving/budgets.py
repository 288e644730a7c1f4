"""What one ``modelops-fetch`` may spend in all: seconds from its start and bytes downloaded.

``--timeout`` bounds each wait (connect, one read), so a server that sends a byte now and then
could hold a fetch for ever; the budget bounds the whole. It is enforced in the client's
transport, under every request the fetch makes (objects, listings, credentials, redirects):
no wait may outlast what is left of the time, and every chunk received counts against both.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import httpx

from .trees import FetchError

MAX_SECONDS = 3600.0


class Budget:
    def __init__(self, what: str, max_seconds: float, max_bytes: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.what, self.max_seconds, self.max_bytes = what, max_seconds, max_bytes
        self.clock = clock
        self.deadline = clock() + max_seconds
        self.downloaded = 0

    def expired(self) -> bool:
        return self.clock() >= self.deadline

    def remaining(self) -> float:
        """Seconds left; FetchError when none are."""
        left = self.deadline - self.clock()
        if left <= 0:
            raise self.out_of_time()
        return left

    def out_of_time(self) -> FetchError:
        return FetchError(f"cannot fetch {self.what}: gave up after {self.max_seconds:g} s "
                          "(the limit, --max-seconds)")

    def spend(self, size: int) -> None:
        self.downloaded += size
        if self.downloaded > self.max_bytes:
            raise FetchError(f"refusing {self.what}: more than {self.max_bytes} bytes "
                             "downloaded (the limit, --max-bytes)")
        self.remaining()


class BudgetTransport(httpx.BaseTransport):
    """An httpx transport that holds every request and response to a ``Budget``."""

    def __init__(self, budget: Budget, inner: httpx.BaseTransport | None = None) -> None:
        self.budget = budget
        self.inner = inner or httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        left = self.budget.remaining()
        timeouts = request.extensions.get("timeout", {})
        request.extensions["timeout"] = {
            name: left if value is None else min(value, left) for name, value in timeouts.items()
        }
        response = self.inner.handle_request(request)
        response.stream = _CountedStream(response.stream, self.budget)  # type: ignore[arg-type]
        return response

    def close(self) -> None:
        self.inner.close()


class _CountedStream(httpx.SyncByteStream):
    def __init__(self, stream: httpx.SyncByteStream, budget: Budget) -> None:
        self.stream, self.budget = stream, budget

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.stream:
            self.budget.spend(len(chunk))
            yield chunk

    def close(self) -> None:
        self.stream.close()


__all__ = ["MAX_SECONDS", "Budget", "BudgetTransport"]
