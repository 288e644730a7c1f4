"""The router's hot path for plain inference calls: choose the arm, pass the request on from
the connection's callbacks, record where it went after the answer is written.

As in the sidecar (``shortcut.py``), the shape is ``POST .../infer`` over HTTP/1.1 with a
Content-Length body arriving whole in one read; everything else, and arms behind https:// or a
path prefix, takes the router's general path. The arm is chosen exactly as there (weight, or the
sticky header's hash); in shadow mode the champion answers and the copy for the challenger is
queued after the answer is written, with the rest of the bookkeeping, in batches
(``afterwork.py``). The answer goes back as it came but for the sidecar's X-Modelops-Served-By,
which is kept for the feedback (``servedby.py``).
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

from .leanhttp import Reply, RequestParts, header_block, header_value
from .retries import attempt_line, read_marks, route_arm
from .routing import CHAMPION
from .servedby import take_served_by, take_served_by_line
from .shortcut import REQUEST_ID_FIELD, PlainRequest, PlainRequestReader, field_pattern
from .upstream import PlainAnswer, failure_name

if TYPE_CHECKING:
    from .leanhttp import _Connection
    from .router import Router
    from .router_config import RouterConfig
    from .upstream import Answer

UPSTREAM_TIMEOUT = 120.0
_FIELD_LINE = re.compile(rb"\r\n([^:\r\n]+):[ \t]*([^\r\n]*)")


class RouterShortcut:
    """``LeanServer`` shortcut of the router (see the module's docstring)."""

    def __init__(self, router: Router, max_body_bytes: int):
        self.router = router
        self.reader = PlainRequestReader(max_body_bytes)
        self._sticky: tuple[str, re.Pattern[bytes]] | None = None

    def __call__(self, connection: _Connection, data: bytes) -> bool:
        router = self.router
        config = router.config
        request = self.reader.read(data)
        if request is None:
            return False
        # A retry goes where its first attempt went (retries.py); the memory is only read
        # here, so that a request left to the general path is not taken for its own retry.
        marks = read_marks(request.head)
        earlier, attempt = router.memory.earlier(marks)
        # The first value, as the general path reads it (Request.header).
        sticky = (request.first_value(self._sticky_field(config.stickyHeader))
                  if config.stickyHeader and config.mode == "split" else None)
        arm = route_arm(config, earlier, sticky)
        backend = config.champion if arm == CHAMPION else config.challenger
        assert backend is not None
        pool = router.pool(backend.url)
        if pool is None or pool.prefix:
            return False  # the general path goes through aiohttp's client or adds the prefix
        router.memory.dispatched(marks.request_id, earlier, arm, backend.url, attempt)
        started = time.perf_counter()

        def done(outcome: Answer | PlainAnswer | BaseException) -> None:
            self._answer(connection, config, arm, backend.url, request, started, attempt,
                         outcome)

        # ``forwarded`` drops a client's X-Modelops-Attempt; ours follows the Host line.
        pool.dispatch(request.forwarded(pool.host_line + attempt_line(attempt)),
                      UPSTREAM_TIMEOUT, done)
        return True

    def _sticky_field(self, name: str) -> re.Pattern[bytes]:
        if self._sticky is None or self._sticky[0] != name:
            self._sticky = (name, field_pattern(name))
        return self._sticky[1]

    def _answer(self, connection: _Connection, config: RouterConfig, arm: str, url: str,
                request: PlainRequest, started: float, attempt: int,
                outcome: Answer | PlainAnswer | BaseException) -> None:
        router = self.router
        if isinstance(outcome, BaseException):
            what = ("timed out" if isinstance(outcome, TimeoutError)
                    else f"is unavailable ({failure_name(outcome)})")
            connection.finish_shortcut(
                router.failed(arm, started, 504 if isinstance(outcome, TimeoutError) else 502,
                              what, attempt=attempt))
            return
        # The replica's address is for feedback, not for the client: taken out of the answer.
        if isinstance(outcome, PlainAnswer):
            status, payload = outcome.status, outcome.body
            head, served_by = take_served_by(outcome.head)
            connection.finish_shortcut(b"%s\r\n\r\n%s" % (head, payload))
            answered_id = REQUEST_ID_FIELD.findall(head)
            request_id = (answered_id[0].strip().decode("utf-8", "surrogateescape")
                          if answered_id else None)
        else:
            status, lines, payload, length = outcome
            lines, served_by = take_served_by_line(lines)
            connection.finish_shortcut(Reply(status, header_block(lines), payload, length))
            request_id = header_value(lines)
        router.after_answers.add(config, arm, url, time.perf_counter() - started, status,
                                 payload, request_id or request.last_value(REQUEST_ID_FIELD),
                                 served_by, lambda: _original(request), attempt)


def _original(request: PlainRequest) -> RequestParts:
    data = request.data
    target = data[:request.line_end].split(b" ")[1]
    return target, data[request.head_end + 4:], _FIELD_LINE.findall(request.head)
