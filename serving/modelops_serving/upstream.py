"""A lean HTTP/1.1 keep-alive client for the proxy hops (sidecar -> server, router -> sidecar).

Why not aiohttp's client: per request it builds request/response objects, cookie and tracing
machinery, and a timer task; on the sidecar's hot path that costs more CPU than the rest of the
hop together. A proxy talking plain HTTP/1.1 to a known upstream needs far less: write one
buffer, parse one status line, headers and a Content-Length or chunked body. Only ``http://``
upstreams use this path (the pod-local and in-cluster hops); anything else goes through aiohttp.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from multidict import CIMultiDict

from .httpkit import (
    CONNECTION_LEVEL_FIELDS,
    HOP_BY_HOP_BYTES,
    single_content_length,
)

MAX_HEAD = 64 * 1024
# (status, header lines minus hop-by-hop ones, body, keep-alive, announced Content-Length)
RawResponse = tuple[int, list[bytes], bytes, bool, int | None]
# What a caller gets: (status, header lines, body, announced Content-Length)
Answer = tuple[int, list[bytes], bytes, int | None]
_CONNECTION_FIELD = re.compile(rb"\r\n(?:connection|" + CONNECTION_LEVEL_FIELDS + rb")[ \t]*:",
                               re.IGNORECASE)


class PlainAnswer:
    """A response that can be passed on as it came: HTTP/1.1, one Content-Length, no
    connection-level headers. ``head`` is the status line and headers without the final
    blank line."""

    __slots__ = ("body", "head", "status")

    def __init__(self, status: int, head: bytes, body: bytes):
        self.status = status
        self.head = head
        self.body = body


def frame_plain(data: bytes) -> PlainAnswer | None:
    """``data`` as exactly one plain response, or None (incomplete, or not plain)."""
    end = data.find(b"\r\n\r\n")
    if end < 0 or not data.startswith(b"HTTP/1.1 ") or data[12:13] not in (b" ", b"\r"):
        return None
    status_text = data[9:12]
    if not status_text.isdigit():
        return None
    status = int(status_text)
    head = data[:end]
    if status < 200 or status in (204, 304) or _CONNECTION_FIELD.search(head):
        return None
    length = single_content_length(head)
    if length is None or len(data) != end + 4 + length:
        return None
    return PlainAnswer(status, head, data[end + 4:])


class UpstreamError(ConnectionError):
    """The upstream closed, refused or sent something that is not HTTP/1.1."""


class UpstreamUnreachable(UpstreamError):
    """No connection could be made (refused, no route, or the pool's connect timeout), so the
    request was never sent. ``reason`` names the cause (``ConnectionRefusedError``)."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def failure_name(error: BaseException) -> str:
    """What failed, for an error message: the exception's class, or the cause of a failed
    connect."""
    return error.reason if isinstance(error, UpstreamUnreachable) else type(error).__name__


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        # Called once with the response or the error of the request in flight.
        self.answer: Callable[[RawResponse | PlainAnswer | BaseException], None] | None = None
        self.closed = False
        self.received_any = False
        self.head_request = False  # a HEAD answer has headers only, whatever its length says
        self.plain = False  # the caller takes a PlainAnswer when the response is one
        self.deadline = 0.0  # loop time after which the request in flight has timed out

    def _deliver(self, outcome: RawResponse | PlainAnswer | BaseException) -> None:
        answer, self.answer = self.answer, None
        if answer is not None:
            answer(outcome)

    def expire(self) -> None:
        self._deliver(TimeoutError("the upstream did not answer in time"))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.answer is None:
            return
        # A body without a length ends at close (HTTP/1.0 style); otherwise it is an error.
        try:
            parsed = _parse_raw(self.buffer, True, self.head_request) if self.buffer else None
        except UpstreamError as error:
            self._deliver(error)
            return
        self._deliver(parsed if parsed is not None
                      else UpstreamError("the upstream closed the connection"))

    def data_received(self, data: bytes) -> None:
        self.received_any = True
        if self.plain and not self.buffer and self.answer is not None:
            # The common case, a whole plain response in one read: no copy, no line split.
            framed = frame_plain(data)
            if framed is not None:
                self._deliver(framed)
                return
        self.buffer += data
        if self.answer is None:
            return
        try:
            parsed = _parse_raw(self.buffer, False, self.head_request)
        except UpstreamError as exc:
            self._deliver(exc)
            return
        if parsed is not None:
            self.buffer.clear()
            self._deliver(parsed)


def _parse(
    buffer: bytearray, eof: bool, head_request: bool = False
) -> tuple[int, CIMultiDict[str], bytes, bool] | None:
    """A complete response from the buffer, or None when more bytes are needed."""
    parsed = _parse_raw(buffer, eof, head_request)
    if parsed is None:
        return None
    status, lines, body, keep_alive, _ = parsed
    return status, _header_dict(lines), body, keep_alive


def _header_dict(lines: list[bytes]) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict()
    for line in lines:
        name, _, value = line.decode("latin-1").partition(":")
        headers.add(name, value.strip())
    return headers


def _parse_raw(buffer: bytearray, eof: bool, head_request: bool = False) -> RawResponse | None:
    """``(status, header lines, body, keep-alive, announced length)`` or None for more bytes.

    The header lines are the raw ``Name: value`` lines minus the hop-by-hop ones, so a proxy can
    pass them on without decoding; the announced Content-Length is what a HEAD answer needs.
    """
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > MAX_HEAD:
            raise UpstreamError("response head too large")
        return None
    lines = bytes(buffer[:end]).split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise UpstreamError(f"not an HTTP/1.x response: {lines[0][:80].decode('latin-1')!r}")
    status = int(parts[1])
    kept: list[bytes] = []
    length: int | None = None
    chunked = False
    keep_alive = parts[0] == b"HTTP/1.1"
    hop_by_hop = HOP_BY_HOP_BYTES
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        lowered = name.lower()
        if lowered not in hop_by_hop:
            kept.append(line)
        elif lowered == b"content-length":
            value = value.strip()
            length = int(value) if value.isdigit() else -1
            if length < 0:
                raise UpstreamError("invalid Content-Length")
        elif lowered == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif lowered == b"connection":
            keep_alive = keep_alive and b"close" not in value.lower()
    start = end + 4
    if head_request or status in (204, 304) or 100 <= status < 200:
        return status, kept, b"", keep_alive, length
    if chunked:
        body = _dechunk(buffer, start)
        return None if body is None else (status, kept, body, keep_alive, None)
    if length is not None:
        if len(buffer) - start < length:
            return None
        return status, kept, bytes(buffer[start:start + length]), keep_alive, length
    # No length: the body runs to the end of the connection.
    return (status, kept, bytes(buffer[start:]), False, None) if eof else None


def _dechunk(buffer: bytearray, position: int) -> bytes | None:
    pieces: list[bytes] = []
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return None
        size_text = bytes(buffer[position:line_end]).split(b";")[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError as exc:
            raise UpstreamError("invalid chunk size") from exc
        position = line_end + 2
        if size == 0:
            trailer_end = buffer.find(b"\r\n\r\n", position - 2)
            return b"".join(pieces) if trailer_end >= 0 else None
        if len(buffer) < position + size + 2:
            return None
        pieces.append(bytes(buffer[position:position + size]))
        position += size + 2


class UpstreamPool:
    """Keep-alive connections to one ``http://host:port`` origin."""

    def __init__(self, base_url: str, max_idle: int = 256,
                 connect_timeout: float | None = None):
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"--upstream: must be an http:// URL, got '{base_url}'")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self.host_header = parts.netloc
        self.prefix_bytes = self.prefix.encode("latin-1")
        self.host_header_bytes = self.host_header.encode("latin-1")
        self.host_line = b"\r\nHost: " + self.host_header_bytes  # to splice after a request line
        self.idle: deque[_Connection] = deque()
        self.max_idle = max_idle
        self.connect_timeout = connect_timeout  # None: as long as the kernel tries
        self._tasks: set[asyncio.Task[None]] = set()  # tasks of dispatch()
        # dispatch(): connections with a request in flight, checked against their deadlines by
        # one timer, rather than a timer armed and cancelled per request.
        self._in_flight: set[_Connection] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(_Connection, self.host, self.port), self.connect_timeout)
        except TimeoutError as exc:
            raise UpstreamUnreachable("connect timeout", f"{self.host}:{self.port}") from exc
        except OSError as exc:
            raise UpstreamUnreachable(type(exc).__name__, f"{self.host}:{self.port}") from exc
        return protocol

    async def request(self, method: str, path_qs: str, headers: Mapping[str, str],
                      body: bytes, timeout: float = 120.0) -> tuple[int, CIMultiDict[str], bytes]:
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        payload = self.serialise(method.encode("latin-1"), path_qs.encode("latin-1"), raw, body)
        status, lines, content, _ = await self.send(payload, timeout)
        return status, _header_dict(lines), content

    def serialise(self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]],
                  body: bytes) -> bytes:
        """A request to this origin: our Host and the body's length, then the end-to-end ones
        of ``headers`` (hop-by-hop ones and Expect are the proxy's own business)."""
        head = [b"%s %s%s HTTP/1.1%s\r\nContent-Length: %d\r\n" % (
            method, self.prefix_bytes, target, self.host_line, len(body))]
        head.extend(b"%s: %s\r\n" % (name, value) for name, value in headers
                    if name.lower() not in HOP_BY_HOP_BYTES)
        head.append(b"\r\n")
        head.append(body)
        return b"".join(head)

    def _idle_connection(self) -> _Connection | None:
        while self.idle:
            candidate = self.idle.pop()
            if not candidate.closed:
                return candidate
        return None

    def _release(self, connection: _Connection, keep_alive: bool) -> None:
        if keep_alive and not connection.closed and len(self.idle) < self.max_idle:
            connection.received_any = False
            self.idle.append(connection)
        elif connection.transport is not None:
            connection.transport.close()

    async def send(self, payload: bytes, timeout: float = 120.0) -> Answer:
        """Send one complete, already serialised request; ``(status, header lines, body,
        announced length)`` with the hop-by-hop header lines removed."""
        for attempt in (0, 1):
            connection = self._idle_connection()
            reused = connection is not None
            if connection is None:
                connection = await self._connect()
            try:
                status, lines, content, keep_alive, length = await self._exchange(
                    connection, payload, timeout)
            except UpstreamError:
                # A pooled connection the server had already closed: retry once, fresh, but
                # only if nothing came back (so the request was never processed).
                if reused and attempt == 0 and not connection.received_any:
                    continue
                raise
            self._release(connection, keep_alive)
            return status, lines, content, length
        raise UpstreamError("unreachable")

    def dispatch(self, payload: bytes, timeout: float,
                 done: Callable[[Answer | PlainAnswer | BaseException], None]) -> None:
        """``send`` for the hot path: ``done`` gets the answer (a ``PlainAnswer`` when the
        response can be passed on as it came) or the error (OSError, TimeoutError). On an idle
        keep-alive connection the request goes out now and ``done`` is called from the
        connection's own callbacks, with no task or future; otherwise a task connects first."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        if not self._start(loop, payload, timeout, done):
            self._keep(loop.create_task(self._send_then(payload, timeout, done)))

    def _keep(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _start(self, loop: asyncio.AbstractEventLoop, payload: bytes, timeout: float,
               done: Callable[[Answer | PlainAnswer | BaseException], None]) -> bool:
        connection = self._idle_connection()
        if connection is None or connection.transport is None:
            return False
        in_flight = self._in_flight

        def finish(outcome: RawResponse | PlainAnswer | BaseException) -> None:
            in_flight.discard(connection)
            connection.plain = False
            if isinstance(outcome, PlainAnswer):
                self._release(connection, True)
                done(outcome)
            elif isinstance(outcome, BaseException):
                if connection.transport is not None:
                    connection.transport.close()
                if isinstance(outcome, UpstreamError) and not connection.received_any:
                    # The server had closed this pooled connection: once more, fresh.
                    self._keep(loop.create_task(self._send_then(payload, timeout, done)))
                    return
                done(outcome)
            else:
                status, lines, content, keep_alive, length = outcome
                self._release(connection, keep_alive)
                done((status, lines, content, length))

        connection.answer = finish
        connection.plain = True
        connection.head_request = payload.startswith(b"HEAD ")
        connection.deadline = loop.time() + timeout
        in_flight.add(connection)
        if self._sweeper is None:
            self._sweeper = loop.call_later(min(timeout, 1.0), self._sweep)
        connection.transport.write(payload)
        return True

    def _sweep(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        for connection in [c for c in self._in_flight if c.deadline <= now]:
            connection.expire()  # finish() takes it out of the set and closes it
        self._sweeper = (self._loop.call_later(1.0, self._sweep) if self._in_flight else None)

    async def _send_then(self, payload: bytes, timeout: float,
                         done: Callable[[Answer | PlainAnswer | BaseException], None]) -> None:
        try:
            outcome: Answer | BaseException = await self.send(payload, timeout)
        except Exception as error:  # whatever failed, the caller must still answer
            outcome = error
        done(outcome)

    async def _exchange(self, connection: _Connection, payload: bytes,
                        timeout: float) -> RawResponse:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[RawResponse] = loop.create_future()

        def settle(outcome: RawResponse | PlainAnswer | BaseException) -> None:
            if waiter.done():
                return
            assert not isinstance(outcome, PlainAnswer)  # only dispatch() asks for those
            if isinstance(outcome, BaseException):
                waiter.set_exception(outcome)
            else:
                waiter.set_result(outcome)

        connection.answer = settle
        connection.head_request = payload.startswith(b"HEAD ")
        assert connection.transport is not None
        connection.transport.write(payload)
        # A timer handle is far cheaper than asyncio.wait_for's extra task per request.
        timer = loop.call_later(timeout, connection.expire)
        try:
            return await waiter
        except BaseException:
            if connection.transport is not None:
                connection.transport.close()
            raise
        finally:
            timer.cancel()
            connection.answer = None

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        while self.idle:
            connection = self.idle.pop()
            if connection.transport is not None:
                connection.transport.close()

