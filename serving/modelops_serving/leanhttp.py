"""A lean HTTP/1.1 server for the proxies' traffic ports: ``asyncio.Protocol`` + httptools.

Why not aiohttp's server: per request it builds a request object, a multidict of headers, a
payload stream, a router match, a response object and its header multidict, and runs the
access-log and middleware machinery. For a proxy whose every request is "read a body, forward
it, write the answer back" that is most of its CPU per request, and on a small node CPU per
request is what a hop adds to latency. Here a request is parsed by httptools (llhttp, the
parser aiohttp and uvicorn use), kept as raw bytes, and answered with one ``write``.

What it does: keep-alive (HTTP/1.1 default, HTTP/1.0 with ``Connection: keep-alive``),
pipelined requests answered in order, Content-Length and chunked request bodies,
``Expect: 100-continue``, a body-size limit (413), 400 for malformed requests, HEAD answers
without a body, an idle timeout, and a drain of requests in flight on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import unquote_to_bytes

import httptools

from .httpkit import dumps
from .servedby import served_by_line

log = logging.getLogger("modelops_serving.leanhttp")

MAX_PIPELINED = 16  # requests queued on one connection before reading pauses
_STATUS_LINES: dict[int, bytes] = {}


def status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Unknown"
        line = b"HTTP/1.1 %d %s\r\n" % (status, reason.encode("latin-1"))
        if len(_STATUS_LINES) < 1000:
            _STATUS_LINES[status] = line
    return line


@dataclass(slots=True)
class Request:
    method: bytes  # b"POST"
    target: bytes  # the raw request target: path and query, as sent
    headers: list[tuple[bytes, bytes]]  # raw names and values, in order
    body: bytes
    keep_alive: bool
    http_10: bool
    # The connection's X-Modelops-Served-By line (see ``LeanServer``), or b"".
    served_by: bytes = b""

    @property
    def path(self) -> bytes:
        return self.target.partition(b"?")[0]

    @property
    def route(self) -> bytes:
        """The path percent-decoded, to match routes by (the target is forwarded as sent)."""
        path = self.path
        return unquote_to_bytes(path) if b"%" in path else path

    def header(self, lowered_name: bytes) -> bytes | None:
        for name, value in self.headers:
            if name.lower() == lowered_name:
                return value
        return None


@dataclass(slots=True)
class Reply:
    status: int
    headers: bytes  # complete "Name: value\r\n" lines, without Content-Length and Connection
    body: bytes = b""
    # The Content-Length a HEAD answer announces (the body it would have); None: len(body).
    head_length: int | None = None


Handler = Callable[[Request], Awaitable[Reply]]
# What a copy of a request is made of: its target, body and raw headers.
RequestParts = tuple[bytes, bytes, list[tuple[bytes, bytes]]]
# A shortcut may take one whole request off the general path: called with the bytes of a read
# that begins at a message boundary, it returns True when it took them (exactly one complete
# request) and answers later, never from inside the call, with ``connection.finish_shortcut``.
Shortcut = Callable[["_Connection", bytes], bool]
JSON_HEADERS = b"Content-Type: application/json; charset=utf-8\r\n"


def header_block(lines: list[bytes]) -> bytes:
    """``Reply.headers`` from header lines (hop-by-hop ones already removed)."""
    return b"".join([line + b"\r\n" for line in lines])


def header_value(lines: list[bytes], lowered_name: bytes = b"x-request-id:") -> str | None:
    """A header's value from raw header lines (``lowered_name`` with its colon)."""
    size = len(lowered_name)
    for line in lines:
        if line[:size].lower() == lowered_name:
            return line[size:].strip().decode("utf-8", "surrogateescape") or None
    return None


def json_reply(value: object, status: int) -> Reply:
    return Reply(status, JSON_HEADERS, dumps(value))


def _error_reply(status: int, message: str) -> Reply:
    return json_reply({"error": message}, status)


class _Connection(asyncio.Protocol):
    def __init__(self, server: LeanServer):
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.queue: deque[Request | Reply] = deque()
        self.task: asyncio.Task[None] | None = None
        self.paused = False
        self.last_active = 0.0
        self.in_message = False
        self.rejected = False  # answered 400/413 or saw an upgrade: no further requests
        self.shortcut_busy = False  # a request taken by the shortcut is being answered
        self.served_by = b""  # see LeanServer's announce_served_by
        self._reset_message()

    def _reset_message(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.body_size = 0

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.last_active = self.server.loop.time()
        self.server.connections.add(self)
        if self.server.announce_served_by:
            self.served_by = served_by_line(transport.get_extra_info("sockname"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.transport = None
        self.queue.clear()

    def data_received(self, data: bytes) -> None:
        server = self.server
        self.last_active = server.loop.time()
        if self.rejected:
            return
        if (server.shortcut is not None and not self.in_message and self.task is None
                and not self.shortcut_busy and not self.queue and not server.closing
                and server.shortcut(self, data)):
            self.shortcut_busy = True
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # The request itself was read; its Upgrade header is hop-by-hop and is not
            # forwarded, and whatever follows is not HTTP we can read: answer, then close.
            self._enqueue(None)
        except httptools.HttpParserError:
            if not self.rejected:
                self.rejected = True
                self._enqueue(_error_reply(400, "malformed HTTP request"))

    def eof_received(self) -> bool | None:
        # A client that half-closes after its request still gets the answer.
        return self.task is not None or bool(self.queue) or self.shortcut_busy

    # -- httptools callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.in_message = True
        self._reset_message()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        # llhttp keeps trailing whitespace, which is not part of a field's value (RFC 9110).
        self.headers.append((name, value.rstrip(b" \t")))

    def on_headers_complete(self) -> None:
        limit = self.server.max_body_bytes
        expect_continue = False
        for name, value in self.headers:
            lowered = name.lower()
            if lowered == b"content-length":
                if value.strip().isdigit() and int(value) > limit:
                    self._reject_too_large()
                    return
            elif lowered == b"expect":
                expect_continue = value.strip().lower() == b"100-continue"
        if expect_continue and self.transport is not None and not self.queue and not self.task:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        if self.rejected:
            return
        self.body_size += len(body)
        if self.body_size > self.server.max_body_bytes:
            self._reject_too_large()
            return
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.in_message = False
        if self.rejected:
            return
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        self._enqueue(Request(
            self.parser.get_method(), self.url, self.headers, body,
            self.parser.should_keep_alive(), self.parser.get_http_version() == "1.0",
            self.served_by))

    # -- answering ---------------------------------------------------------------------------

    def _reject_too_large(self) -> None:
        self.rejected = True
        self.body = []
        self._enqueue(_error_reply(
            413, f"request body is larger than {self.server.max_body_bytes} bytes"))

    def _enqueue(self, item: Request | Reply | None) -> None:
        """Queue a request, an immediate answer (then close), or None (close when done)."""
        if item is None:
            self.rejected = True
        else:
            self.queue.append(item)
        if not self._answer_queue():
            return
        if len(self.queue) >= MAX_PIPELINED and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def _answer_queue(self) -> bool:
        """Start answering what is queued unless something is being answered; False when the
        connection was closed instead (rejected, nothing left to answer)."""
        if self.task is not None or self.shortcut_busy:
            return True
        if not self.queue:
            if self.transport is not None:
                self.transport.close()
            return False
        self.task = self.server.loop.create_task(self._answer_all())
        return True

    def finish_shortcut(self, reply: Reply | bytes) -> None:
        """The answer to the request the shortcut took, as a ``Reply`` or as a complete
        HTTP/1.1 keep-alive response; then whatever arrived meanwhile."""
        self.shortcut_busy = False
        self.last_active = self.server.loop.time()
        closing = self.server.closing
        if isinstance(reply, Reply):
            self._write(reply, not closing, False, False)
        elif self.transport is not None:
            if closing:
                reply = reply.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
            self.transport.write(reply)
        if closing:
            if self.transport is not None:
                self.transport.close()
            return
        if self.queue or self.rejected:
            self._answer_queue()

    async def _answer_all(self) -> None:
        try:
            while self.queue and self.transport is not None:
                item = self.queue.popleft()
                if isinstance(item, Reply):
                    self._write(item, False, False, False)
                    break
                try:
                    reply = await self.server.handler(item)
                except Exception:
                    log.exception("handler failed for %s %s", item.method.decode("latin-1"),
                                  item.target[:200].decode("latin-1"))
                    reply = _error_reply(500, "internal error in the proxy")
                keep_alive = item.keep_alive and not self.server.closing
                last = not keep_alive or (self.rejected and not self.queue)
                self._write(reply, keep_alive and not last, item.http_10,
                            item.method == b"HEAD")
                if last:
                    break
                if self.paused and len(self.queue) < MAX_PIPELINED // 2:
                    self.paused = False
                    if self.transport is not None:
                        self.transport.resume_reading()
            else:
                if not self.rejected:
                    return
            if self.transport is not None:
                self.transport.close()
        finally:
            self.task = None
            self.last_active = self.server.loop.time()

    def _write(self, reply: Reply, keep_alive: bool, http_10: bool, head: bool) -> None:
        transport = self.transport
        if transport is None:
            return
        status = reply.status
        if keep_alive:
            connection = b"Connection: keep-alive\r\n" if http_10 else b""
        else:
            connection = b"Connection: close\r\n"
        if status in (204, 304) or status < 200:
            transport.write(b"%s%s%s\r\n" % (status_line(status), reply.headers, connection))
            return
        if head:
            length = reply.head_length if reply.head_length is not None else len(reply.body)
            transport.write(b"%s%sContent-Length: %d\r\n%s\r\n" % (
                status_line(status), reply.headers, length, connection))
            return
        transport.write(b"%s%sContent-Length: %d\r\n%s\r\n%s" % (
            status_line(status), reply.headers, len(reply.body), connection, reply.body))


class LeanServer:
    """Serve ``handler`` on ``host:port`` until ``shutdown``.

    With ``announce_served_by``, each connection works out once the X-Modelops-Served-By line
    naming the address it was accepted on (``servedby.py``), for the handler (``Request``) and
    the shortcut (``_Connection.served_by``) to add to the answers that need it.
    """

    def __init__(self, handler: Handler, max_body_bytes: int = 64 * 1024**2,
                 idle_timeout: float = 75.0, shortcut: Shortcut | None = None,
                 announce_served_by: bool = False):
        self.handler = handler
        self.shortcut = shortcut
        self.announce_served_by = announce_served_by
        self.max_body_bytes = max_body_bytes
        self.idle_timeout = idle_timeout
        self.connections: set[_Connection] = set()
        self.closing = False
        self._server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self.loop: asyncio.AbstractEventLoop  # set by start()

    async def start(self, host: str, port: int, backlog: int = 1024) -> None:
        self.loop = asyncio.get_running_loop()
        self._server = await self.loop.create_server(
            lambda: _Connection(self), host, port, backlog=backlog, reuse_address=True)
        self._schedule_sweep()

    def _schedule_sweep(self) -> None:
        self._sweeper = self.loop.call_later(min(self.idle_timeout, 10.0), self._sweep)

    def _sweep(self) -> None:
        # One timer for all connections rather than one per request.
        deadline = self.loop.time() - self.idle_timeout
        for connection in list(self.connections):
            if (connection.task is None and not connection.in_message
                    and not connection.shortcut_busy and connection.last_active < deadline
                    and connection.transport is not None):
                connection.transport.close()
        self._schedule_sweep()

    async def shutdown(self, grace: float = 10.0) -> None:
        """Stop accepting, let requests in flight finish (up to ``grace`` seconds), close."""
        self.closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            if (connection.task is None and not connection.shortcut_busy
                    and connection.transport is not None):
                connection.transport.close()
        deadline = self.loop.time() + grace
        tasks = [c.task for c in self.connections if c.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        while (any(c.shortcut_busy for c in self.connections)
               and self.loop.time() < deadline):
            await asyncio.sleep(0.01)
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.abort()
