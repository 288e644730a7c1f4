"""``modelops-router``: champion/challenger traffic split, shadow mirroring, sticky routing.

Inference calls (``POST .../infer``) are split by weight (optionally sticky by a header) or, in
shadow mode, answered by the champion and copied to the challenger. The copy is queued only
after the champion's answer is ready, in a bounded queue served by background workers: it can
never change or delay the response, and when the challenger is slow the queue fills and copies
are dropped (and counted). Other paths (health, metadata) go to the champion.
The live configuration is one immutable object swapped atomically on reload, so every request
sees either the old or the new configuration in full.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from .cli import EnvArgumentParser, configure_logging, fail, install_fast_event_loop
from .feedback_store import BoundedTTLMap
from .httpkit import (
    JSONDecodeError,
    error_response,
    forwardable,
    json_response,
    loads,
    plain_text,
    serve_until_signalled,
)
from .router_config import ConfigError, ConfigWatcher, RouterConfig
from .router_metrics import RouterMetrics
from .routing import CHAMPION, agreement, choose_arm, first_output, should_mirror
from .upstream import UpstreamPool

log = logging.getLogger("modelops_serving.router")


@dataclass(frozen=True)
class Answered:
    """Where one request went, so its feedback can follow it."""

    arm: str
    url: str
    shadow_url: str | None


@dataclass(frozen=True)
class MirrorJob:
    base_url: str
    path_qs: str
    body: bytes
    headers: Any
    primary_status: int
    primary_payload: bytes


class Router:
    def __init__(self, watcher: ConfigWatcher, config: RouterConfig, metrics: RouterMetrics,
                 mirror_queue: int, mirror_workers: int, mirror_timeout: float,
                 memory: int, memory_ttl: float):
        self.watcher = watcher
        self.config = config
        self.metrics = metrics
        self.answered: BoundedTTLMap[str, Answered] = BoundedTTLMap(memory, memory_ttl)
        self.queue: asyncio.Queue[MirrorJob] = asyncio.Queue(maxsize=mirror_queue)
        # The queue is bounded in bytes too: a few huge bodies must not pile up in memory.
        self.queued_bytes = 0
        self.max_queued_bytes = 64 * 1024**2
        self.mirror_workers = mirror_workers
        self.mirror_timeout = mirror_timeout
        self.session: aiohttp.ClientSession | None = None  # for https:// backends only
        self.pools: dict[str, UpstreamPool] = {}
        metrics.show_config(config)

    # -- configuration -------------------------------------------------------------------
    def apply_poll(self) -> None:
        result = self.watcher.poll()
        if isinstance(result, RouterConfig):
            self.config = result  # one reference swap: requests hold the object they started with
            self.metrics.show_config(result)
            self.metrics.count_reload(True)
            log.info("configuration reloaded: mode=%s challengerWeight=%s mirrorPercent=%s",
                     result.mode, result.challengerWeight, result.mirrorPercent)
        elif isinstance(result, ConfigError):
            self.metrics.count_reload(False)

    async def watch(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                self.apply_poll()
            except Exception:  # never let a surprise stop reloading for good
                log.exception("configuration poll failed")

    # -- traffic ---------------------------------------------------------------------------
    async def _forward(self, method: str, base_url: str, path_qs: str, body: bytes, headers: Any,
                       timeout: float = 120.0) -> tuple[int, Any, bytes]:
        """Raises TimeoutError, or OSError / aiohttp.ClientError when the backend fails."""
        if base_url.startswith("http://"):
            pool = self.pools.get(base_url)
            if pool is None:
                pool = self.pools[base_url] = UpstreamPool(base_url)
            return await pool.request(method, path_qs, headers, body, timeout)
        assert self.session is not None
        async with self.session.request(method, base_url + path_qs, data=body, headers=headers,
                                        timeout=aiohttp.ClientTimeout(total=timeout)) as upstream:
            return upstream.status, forwardable(upstream.headers), await upstream.read()

    async def proxy(self, request: web.Request) -> web.Response:
        config = self.config
        started = time.perf_counter()
        body = await request.read()
        headers = forwardable(request.headers)
        is_inference = request.method == "POST" and request.path.endswith("/infer")
        arm = CHAMPION
        if is_inference and config.mode == "split":
            sticky = request.headers.get(config.stickyHeader) if config.stickyHeader else None
            arm = choose_arm(config.challengerWeight, sticky)
        backend = config.champion if arm == CHAMPION else config.challenger
        assert backend is not None
        try:
            status, out_headers, payload = await self._forward(
                request.method, backend.url, request.path_qs, body, headers)
        except TimeoutError:
            status, out_headers, payload = 504, None, b""
        except (OSError, aiohttp.ClientError) as exc:
            status, out_headers, payload = 502, None, type(exc).__name__.encode()
        if not is_inference:
            if out_headers is None:
                return error_response(f"the champion is unavailable ({payload.decode()})", status)
            return web.Response(body=payload, status=status, headers=out_headers)
        request_id = (out_headers or {}).get("X-Request-Id") or request.headers.get("X-Request-Id")
        shadow_url = None
        if config.mode == "shadow" and config.challenger and should_mirror(config.mirrorPercent):
            shadow_url = config.challenger.url
            self._enqueue_mirror(shadow_url, request.path_qs, body, headers, request_id,
                                 status, payload)
        if request_id:
            self.answered.put(request_id, Answered(arm, backend.url, shadow_url))
        self.metrics.count_request(arm, status)
        self.metrics.duration[arm].observe(time.perf_counter() - started)
        if out_headers is None:
            message = "timed out" if status == 504 else f"is unavailable ({payload.decode()})"
            return error_response(f"the {arm} {message}", status)
        return web.Response(body=payload, status=status, headers=out_headers)

    def _enqueue_mirror(self, base_url: str, path_qs: str, body: bytes, headers: Any,
                        request_id: str | None, status: int, payload: bytes) -> None:
        mirror_headers = headers.copy()
        if request_id:
            # The same id on both arms is what lets feedback score the pair.
            mirror_headers["X-Request-Id"] = request_id
        size = len(body) + len(payload)
        if self.queued_bytes + size > self.max_queued_bytes:
            self.metrics.mirror["dropped"].inc()
            return
        try:
            self.queue.put_nowait(MirrorJob(base_url, path_qs, body, mirror_headers, status,
                                            payload))
        except asyncio.QueueFull:
            self.metrics.mirror["dropped"].inc()
            return
        self.queued_bytes += size

    async def mirror_worker(self) -> None:
        while True:
            job = await self.queue.get()
            self.queued_bytes -= len(job.body) + len(job.primary_payload)
            self.metrics.queue_depth.set(self.queue.qsize())
            try:
                status, _, payload = await self._forward(
                    "POST", job.base_url, job.path_qs, job.body, job.headers, self.mirror_timeout)
                self.metrics.mirror["sent"].inc()
            except (OSError, aiohttp.ClientError):  # TimeoutError is an OSError
                self.metrics.mirror["failed"].inc()
                self.metrics.agreement["error"].inc()
                continue
            self.metrics.agreement[agreement(_outputs(job.primary_status, job.primary_payload),
                                             _outputs(status, payload))].inc()

    async def feedback(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            parsed = loads(body)
        except (JSONDecodeError, ValueError):
            parsed = None
        request_id = parsed.get("id") if isinstance(parsed, dict) else None
        request_id = request_id or request.headers.get("X-Request-Id")
        if not isinstance(request_id, str):
            self.metrics.count_feedback("invalid")
            return error_response("feedback body must be JSON {\"id\": ..., \"truth\": ...} "
                                  "(or send the id in X-Request-Id)")
        answered = self.answered.take(request_id)
        if answered is None:
            self.metrics.count_feedback("unmatched")
            return json_response({"id": request_id, "outcome": "unmatched",
                                  "error": "this router has no record of the request id"}, 404)
        headers = forwardable(request.headers)
        headers["X-Request-Id"] = request_id
        urls = [answered.url] + ([answered.shadow_url] if answered.shadow_url else [])
        results = await asyncio.gather(
            *(self._forward("POST", url, "/v2/feedback", body, headers) for url in urls),
            return_exceptions=True)
        primary = results[0]
        if isinstance(primary, BaseException):
            self.metrics.count_feedback("failed")
            return error_response(f"the {answered.arm} did not take the feedback", 502)
        self.metrics.count_feedback("forwarded")
        if len(results) == 2 and not isinstance(results[1], BaseException):
            self._count_pair(primary[0], primary[2], results[1][0], results[1][2])
        return web.Response(body=primary[2], status=primary[0], headers=primary[1])

    def _count_pair(self, status_a: int, body_a: bytes, status_b: int, body_b: bytes) -> None:
        verdicts = [_single_row_verdict(s, b) for s, b in ((status_a, body_a), (status_b, body_b))]
        if verdicts[0] and verdicts[1]:
            self.metrics.count_paired(verdicts[0], verdicts[1])

    async def metrics_page(self, request: web.Request) -> web.Response:
        self.metrics.queue_depth.set(self.queue.qsize())
        return plain_text(self.metrics.exposition(), "text/plain; version=0.0.4; charset=utf-8")


def _outputs(status: int, payload: bytes) -> list[object] | None:
    if status != 200:
        return None
    try:
        return first_output(loads(payload))
    except (JSONDecodeError, ValueError):
        return None


def _single_row_verdict(status: int, payload: bytes) -> str | None:
    if status != 200:
        return None
    try:
        result = loads(payload)
    except (JSONDecodeError, ValueError):
        return None
    if not isinstance(result, dict) or result.get("correct", 0) + result.get("incorrect", 0) != 1:
        return None
    return "correct" if result.get("correct") == 1 else "incorrect"


def build_apps(router: Router, reload_interval: float, max_body_bytes: int = 64 * 1024**2
               ) -> tuple[web.Application, web.Application]:
    # Bodies are held in memory while forwarded (and queued for a mirror); larger ones get 413.
    traffic = web.Application(client_max_size=max_body_bytes)

    async def lifecycle(app: web.Application) -> Any:
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30, ttl_dns_cache=10)
        router.session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",),
            timeout=aiohttp.ClientTimeout(total=None, sock_read=120))
        tasks = [asyncio.create_task(router.watch(reload_interval))]
        tasks += [asyncio.create_task(router.mirror_worker()) for _ in range(router.mirror_workers)]
        yield
        for pool in router.pools.values():
            pool.close()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await router.session.close()

    async def healthy(request: web.Request) -> web.Response:
        return json_response({"live": True})

    traffic.cleanup_ctx.append(lifecycle)
    traffic.router.add_get("/healthz", healthy)
    traffic.router.add_post("/v2/feedback", router.feedback)
    traffic.router.add_route("*", "/{tail:.*}", router.proxy)
    metrics = web.Application()
    metrics.router.add_get("/metrics", router.metrics_page)
    return traffic, metrics


def parse_args(argv: list[str] | None) -> Any:
    parser = EnvArgumentParser(prog="modelops-router", description=__doc__.splitlines()[0])
    parser.add_flag("--config", required=True, help="router configuration file (JSON or YAML)")
    parser.add_flag("--host", default="0.0.0.0", help="address to listen on")
    parser.add_flag("--port", type=int, default=8000, help="traffic port")
    parser.add_flag("--metrics-port", type=int, default=9090, help="port of /metrics")
    parser.add_flag("--deployment", default="", help="ModelDeployment name (metric label)")
    parser.add_flag("--reload-interval", type=float, default=1.0,
                    help="seconds between checks of the configuration file")
    parser.add_flag("--max-body-bytes", type=int, default=64 * 1024**2,
                    help="largest request body forwarded")
    parser.add_flag("--mirror-queue", type=int, default=1000,
                    help="shadow copies waiting at most; more are dropped")
    parser.add_flag("--mirror-workers", type=int, default=16, help="concurrent shadow copies")
    parser.add_flag("--mirror-timeout", type=float, default=10.0, help="seconds per shadow copy")
    parser.add_flag("--feedback-capacity", type=int, default=100_000,
                    help="request ids remembered to route feedback")
    parser.add_flag("--feedback-ttl", type=float, default=3600.0,
                    help="seconds a request id is remembered")
    parser.add_flag("--log-level", default="INFO", help="logging level")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.log_level)
    watcher = ConfigWatcher(Path(args.config))
    try:
        config = watcher.load_initial()
    except ConfigError as exc:
        return fail(f"{args.config}: {exc}")
    router = Router(watcher, config, RouterMetrics(args.deployment), int(args.mirror_queue),
                    int(args.mirror_workers), float(args.mirror_timeout),
                    int(args.feedback_capacity), float(args.feedback_ttl))
    traffic, metrics_app = build_apps(router, float(args.reload_interval),
                                      int(args.max_body_bytes))
    install_fast_event_loop()
    asyncio.run(serve_until_signalled(
        [(traffic, args.host, int(args.port)), (metrics_app, args.host, int(args.metrics_port))]
    ))
    return 0


if __name__ == "__main__":
    sys.exit(main())
