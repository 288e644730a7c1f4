"""Small HTTP helpers of the model server (aiohttp).

JSON goes through orjson when it is installed (several times faster than the standard library
on the float lists that inference payloads are made of). The sidecar and the router are Go
(dataplane/).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

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

log = logging.getLogger("modelops_serving")


def json_response(
    value: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(body=dumps(value), status=status, content_type=JSON, headers=headers)


def error_response(message: str, status: int = 400) -> web.Response:
    return json_response({"error": message}, status=status)


async def serve_until_signalled(
    apps: list[tuple[web.Application, str, int]],
    on_ready: Callable[[], Awaitable[None]] | None = None,
    shutdown_grace: float = 10.0,
    *,
    auto_decompress: bool = True,
) -> None:
    """Run one or more apps (``(app, host, port)``) until SIGTERM/SIGINT, then drain.

    On SIGTERM Kubernetes has already begun removing the pod from endpoints; finishing the
    requests in flight (up to ``shutdown_grace`` seconds) is what makes a rollout drop nothing.
    ``auto_decompress=False`` hands request bodies to the handlers as sent (compressed), for a
    handler that bounds decompression itself.
    """
    runners = []
    for app, host, port in apps:
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_grace,
                               auto_decompress=auto_decompress)
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
    for runner in runners:
        await runner.cleanup()
