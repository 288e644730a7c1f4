"""The sidecar's hot path for plain inference calls: callbacks only, bookkeeping after the answer.

Nearly all traffic through a sidecar has one shape: ``POST .../infer`` over HTTP/1.1 with a
Content-Length body, arriving in one read on a keep-alive connection. For that shape the general
path (every header parsed into a list, a task per request, a future per upstream exchange,
metrics before the answer) costs more than the hop itself on a small node, where each step of
Python between two socket calls shows in the latency. Here the request is checked by the same
parser as the general path (llhttp, through httptools), forwarded with only its Host line
replaced, and answered from the upstream connection's callback; the metrics and the feedback
memory are updated after the answer is written, in batches (``afterwork.py``).

Anything else (chunked bodies, Expect, Connection or other hop-by-hop headers, HTTP/1.0,
pipelined bytes, a request split over reads, HEAD, feedback, an upstream with a path prefix)
takes the general path, so both give the same answers.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

import httptools

from .httpkit import CONNECTION_LEVEL_FIELDS, single_content_length
from .leanhttp import Reply, header_block
from .requestids import (
    UNPARSED,
    parse_response,
    replace_request_id,
    response_key,
    with_request_id,
)
from .retries import read_marks
from .upstream import PlainAnswer, failure_name

if TYPE_CHECKING:
    from .leanhttp import _Connection
    from .sidecar import Sidecar
    from .upstream import Answer

# Headers that need the general path's handling: hop-by-hop ones, Expect. A Connection header
# saying only keep-alive (HTTP/1.1's default, which many clients send anyway) is dropped here.
_NOT_PLAIN = re.compile(rb"\r\n(?:expect|" + CONNECTION_LEVEL_FIELDS + rb")[ \t]*:",
                        re.IGNORECASE)
_CONNECTION = re.compile(rb"\r\nconnection[ \t]*:([^\r\n]*)", re.IGNORECASE)
# Replaced on the way: Host, Connection, and X-Modelops-Attempt, which only the router writes
# (retries.py): a client's never passes, and the model server has no use for the router's.
_REPLACED = re.compile(rb"\r\n(?:host|connection|x-modelops-attempt)[ \t]*:[^\r\n]*",
                       re.IGNORECASE)


def plain_inference_request(data: bytes, max_body_bytes: int) -> tuple[int, int] | None:
    """``(end of the request line, end of the head)`` when ``data`` is exactly one plain
    inference request the shortcut may take; None sends it down the general path."""
    if not data.startswith(b"POST "):
        return None
    head_end = data.find(b"\r\n\r\n")
    line_end = data.find(b"\r\n")
    if head_end < 0:
        return None
    request_line = data[:line_end].split(b" ")
    if (len(request_line) != 3 or request_line[2] != b"HTTP/1.1"
            or not request_line[1].partition(b"?")[0].endswith(b"/infer")):
        return None
    head = data[line_end:head_end + 2]  # "\r\nName: value" lines, each ending in \r\n
    if _NOT_PLAIN.search(head):
        return None
    if any(value.strip(b" \t").lower() != b"keep-alive" for value in _CONNECTION.findall(head)):
        return None
    length = single_content_length(head)
    if length is None or length > max_body_bytes or len(data) != head_end + 4 + length:
        return None  # too large (the general path answers 413), partial, or pipelined
    return line_end, head_end


class _Completion:
    """httptools callbacks of the validating parser: only whether a message completed."""

    __slots__ = ("complete",)

    def __init__(self) -> None:
        self.complete = False

    def on_message_complete(self) -> None:
        self.complete = True


class PlainRequest:
    """One plain inference request as it arrived: ``head`` is its header lines, each as
    ``"\r\nName: value"``, with the final ``"\r\n"``."""

    __slots__ = ("data", "head", "head_end", "line_end")

    def __init__(self, data: bytes, line_end: int, head_end: int):
        self.data = data
        self.line_end = line_end
        self.head_end = head_end
        self.head = data[line_end:head_end + 2]

    def forwarded(self, host_line: bytes) -> bytes:
        """The request for the next hop: its Host (``host_line``, ``"\r\nHost: …"``, and any
        line to add after it) instead of the client's, without a Connection or
        X-Modelops-Attempt line, otherwise as it came."""
        data = self.data
        return b"%s%s%s\r\n%s" % (data[:self.line_end], host_line, _REPLACED.sub(b"", self.head),
                                  data[self.head_end + 4:])

    def last_value(self, field: re.Pattern[bytes]) -> str | None:
        """The last value of a header, given a pattern from ``field_pattern``."""
        values = field.findall(self.head)
        return values[-1].rstrip(b" \t").decode("utf-8", "surrogateescape") if values else None

    def first_value(self, field: re.Pattern[bytes]) -> str | None:
        match = field.search(self.head)
        return match[1].rstrip(b" \t").decode("utf-8", "surrogateescape") if match else None


def field_pattern(name: str) -> re.Pattern[bytes]:
    return re.compile(rb"\r\n" + re.escape(name.encode("latin-1")) + rb"[ \t]*:[ \t]*([^\r\n]*)",
                      re.IGNORECASE)


REQUEST_ID_FIELD = field_pattern("x-request-id")


class PlainRequestReader:
    """Tells plain inference requests (see ``plain_inference_request``) from the rest, with
    llhttp, the general path's parser, as the last word on whether the bytes are HTTP."""

    def __init__(self, max_body_bytes: int):
        self.max_body_bytes = max_body_bytes
        self._completion = _Completion()
        self._validator = httptools.HttpRequestParser(self._completion)

    def read(self, data: bytes) -> PlainRequest | None:
        bounds = plain_inference_request(data, self.max_body_bytes)
        if bounds is None or not self._valid(data):
            return None
        return PlainRequest(data, *bounds)

    def _valid(self, data: bytes) -> bool:
        """Whether llhttp reads ``data`` as exactly one well-formed request."""
        completion = self._completion
        completion.complete = False
        try:
            self._validator.feed_data(data)
        except httptools.HttpParserError:
            completion.complete = False
        if not completion.complete:
            # Mid-message or failed: a fresh parser for the next request.
            self._validator = httptools.HttpRequestParser(completion)
            return False
        return True


class InferenceShortcut:
    """``LeanServer`` shortcut of the sidecar (see the module's docstring)."""

    def __init__(self, sidecar: Sidecar, max_body_bytes: int):
        assert sidecar.pool is not None
        self.sidecar = sidecar
        self.pool = sidecar.pool
        self.reader = PlainRequestReader(max_body_bytes)
        self.enabled = not self.pool.prefix  # verbatim targets only without a path prefix

    def __call__(self, connection: _Connection, data: bytes) -> bool:
        request = self.reader.read(data) if self.enabled else None
        if request is None:
            return False
        started = time.perf_counter()
        client_id, _, _ = marks = read_marks(request.head)
        attempt = marks.attempt

        def done(outcome: Answer | PlainAnswer | BaseException) -> None:
            self._answer(connection, started, client_id, attempt, outcome)

        self.pool.dispatch(request.forwarded(self.pool.host_line), self.sidecar.timeout, done)
        return True

    def _answer(self, connection: _Connection, started: float, client_id: str | None,
                attempt: int, outcome: Answer | PlainAnswer | BaseException) -> None:
        if isinstance(outcome, PlainAnswer):
            status, body = outcome.status, outcome.body
        elif isinstance(outcome, BaseException):
            self._failed(connection, started, attempt, client_id, outcome)
            return
        else:
            status, lines, body, _ = outcome
        response: Any = UNPARSED
        if client_id:
            key = client_id
        else:  # the id is the response's own: read it now, the rest waits
            response = parse_response(body) if status == 200 else None
            key = response_key(None, response)
        elapsed = time.perf_counter() - started
        if isinstance(outcome, PlainAnswer):
            connection.finish_shortcut(b"%s\r\n\r\n%s" % (
                replace_request_id(outcome.head, key, connection.served_by), body))
        else:
            connection.finish_shortcut(Reply(
                status, header_block(with_request_id(lines, key, connection.served_by)), body))
        self.sidecar.after_answers.add(key, status, body, response, elapsed, attempt,
                                       client_id is not None)

    def _failed(self, connection: _Connection, started: float, attempt: int,
                client_id: str | None, error: BaseException) -> None:
        if isinstance(error, TimeoutError):
            reply = self.sidecar.failed(True, started, 504, "the model server timed out",
                                        attempt, client_id)
        else:
            reply = self.sidecar.failed(
                True, started, 502, f"the model server is unavailable: {failure_name(error)}",
                attempt, client_id)
        connection.finish_shortcut(reply)
