"""Small HTTP helpers shared by the server, the sidecar and the router (all aiohttp).

aiohttp is used for both ends of every hop: its server and its pooled keep-alive client share
one event loop and its C HTTP parser, so a proxy hop costs one parse per direction and no
thread hand-off. JSON goes through orjson when it is installed (several times faster than the
standard library on the float lists that inference payloads are made of).
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

try:
    import orjson

    def dumps(value: Any) -> bytes:
        return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)

    def loads(data: bytes | str) -> Any:
        return orjson.loads(data)

    JSONDecodeError: type[Exception] = orjson.JSONDecodeError
except ImportError:  # pragma: no cover - exercised only without orjson
    import json

    def dumps(value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":")).encode()

    def loads(data: bytes | str) -> Any:
        return json.loads(data)

    JSONDecodeError = json.JSONDecodeError

JSON = "application/json"
# Connection-level header names besides Connection itself, as a regex alternation, for the
# proxies' fast paths: a message carrying one takes the general path, which removes them.
CONNECTION_LEVEL_FIELDS = rb"keep-alive|proxy-[!-~]*|te|trailers?|transfer-encoding|upgrade"
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length[ \t]*:[ \t]*(\d+)[ \t]*(?=\r\n|$)",
                             re.IGNORECASE)
_ANY_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length[ \t]*:", re.IGNORECASE)


def single_content_length(head: bytes) -> int | None:
    """The length a message head announces when it has exactly one well-formed Content-Length
    (header lines as ``"\r\nName: value"``); None otherwise."""
    lengths = _CONTENT_LENGTH.findall(head)
    if len(lengths) != 1 or len(_ANY_CONTENT_LENGTH.findall(head)) != 1:
        return None
    return int(lengths[0])
# Headers that describe one connection, not the message; a proxy must not forward them.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        # Our proxies read the whole body before forwarding and answer 100-continue themselves;
        # forwarded, it makes the upstream send an interim 100 the hop is not waiting for.
        "expect",
    }
)
HOP_BY_HOP_BYTES = frozenset(name.encode() for name in HOP_BY_HOP)  # for raw header names

log = logging.getLogger("modelops_serving")


def json_response(
    value: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(body=dumps(value), status=status, content_type=JSON, headers=headers)


def error_response(message: str, status: int = 400) -> web.Response:
    return json_response({"error": message}, status=status)


def forwardable(headers: Any) -> CIMultiDict[str]:
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in HOP_BY_HOP)


def plain_text(body: bytes, content_type: str) -> web.Response:
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    return response


async def serve_until_signalled(
    apps: list[tuple[web.Application, str, int]],
    on_ready: Callable[[], Awaitable[None]] | None = None,
    shutdown_grace: float = 10.0,
    servers: list[Any] | None = None,
) -> None:
    """Run one or more apps (``(app, host, port)``) until SIGTERM/SIGINT, then drain.

    On SIGTERM Kubernetes has already begun removing the pod from endpoints; finishing the
    requests in flight (up to ``shutdown_grace`` seconds) is what makes a rollout drop nothing.
    ``servers`` are already listening non-aiohttp servers (``await server.shutdown(grace)``).
    """
    runners = []
    for app, host, port in apps:
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_grace)
        await runner.setup()
        site = web.TCPSite(runner, host, port, backlog=1024, reuse_address=True)
        await site.start()
        runners.append(runner)
        log.info("listening on http://%s:%d", host, port)
    if on_ready is not None:
        await on_ready()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("signal received: draining")
    for server in servers or ():
        await server.shutdown(shutdown_grace)
    for runner in runners:
        await runner.cleanup()
