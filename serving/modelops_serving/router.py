"""``modelops-router``: champion/challenger traffic split, shadow mirroring, sticky routing.

Inference calls (``POST .../infer``) are split by weight (optionally sticky by a header) or, in
shadow mode, answered by the champion and copied to the challenger. The copy is queued only
after the champion's answer is ready, in a bounded queue served by background workers: it can
never change or delay the response, and when the challenger is slow the queue fills and copies
are dropped (and counted). Other paths (health, metadata) go to the champion.
The live configuration is one immutable object swapped atomically on reload, so every request
sees either the old or the new configuration in full.

The traffic port is the sidecar's lean HTTP/1.1 server (``leanhttp.py``), with the router's hot
path for plain inference calls (``router_shortcut.py``); ``/metrics`` and the client for
https:// backends stay on aiohttp.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

from .afterwork import AfterWork
from .cli import EnvArgumentParser, configure_logging, fail, install_fast_event_loop
from .httpkit import (
    HOP_BY_HOP_BYTES,
    JSONDecodeError,
    forwardable,
    loads,
    plain_text,
    serve_until_signalled,
)
from .leanhttp import (
    LeanServer,
    Reply,
    Request,
    RequestParts,
    header_block,
    header_value,
    json_reply,
)
from .retries import (
    RETRY_WINDOW_SECONDS,
    RouteMemory,
    marks_of,
    route_arm,
    with_attempt,
)
from .router_config import ConfigError, ConfigWatcher, RouterConfig
from .router_metrics import RouterMetrics
from .router_shortcut import RouterShortcut
from .routing import CHAMPION, agreement, first_output, should_mirror
from .servedby import ReplicaPools, replica_address, take_served_by_line
from .upstream import Answer, UpstreamPool, UpstreamUnreachable, failure_name

log = logging.getLogger("modelops_serving.router")
UPSTREAM_TIMEOUT = 120.0


@dataclass(frozen=True)
class MirrorJob:
    base_url: str
    path_qs: str
    body: bytes
    headers: Any
    primary_status: int
    primary_payload: bytes
    request_id: str | None


class Router:
    def __init__(self, watcher: ConfigWatcher, config: RouterConfig, metrics: RouterMetrics,
                 mirror_queue: int, mirror_workers: int, mirror_timeout: float,
                 memory: int, memory_ttl: float, retry_window: float = RETRY_WINDOW_SECONDS):
        self.watcher = watcher
        self.config = config
        self.metrics = metrics
        # Where each request id went: its feedback follows, and so do its retries (retries.py).
        self.memory = RouteMemory(memory, memory_ttl, retry_window)
        self.queue: asyncio.Queue[MirrorJob] = asyncio.Queue(maxsize=mirror_queue)
        # The queue is bounded in bytes too: a few huge bodies must not pile up in memory.
        self.queued_bytes = 0
        self.max_queued_bytes = 64 * 1024**2
        self.mirror_workers = mirror_workers
        self.mirror_timeout = mirror_timeout
        self.session: aiohttp.ClientSession | None = None  # for https:// backends only
        self.pools: dict[str, UpstreamPool] = {}
        self.replicas = ReplicaPools()  # feedback to the replica that answered
        # The hot path's bookkeeping (``record``), done in batches after the answers.
        self.after_answers = AfterWork(self.record)
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
    def pool(self, base_url: str) -> UpstreamPool | None:
        """The keep-alive pool of an ``http://`` backend (None: https, through aiohttp)."""
        if not base_url.startswith("http://"):
            return None
        pool = self.pools.get(base_url)
        if pool is None:
            pool = self.pools[base_url] = UpstreamPool(base_url)
        return pool

    async def _forward(self, method: str, base_url: str, path_qs: str, body: bytes, headers: Any,
                       timeout: float = UPSTREAM_TIMEOUT) -> tuple[int, Any, bytes]:
        """Raises TimeoutError, or OSError / aiohttp.ClientError when the backend fails."""
        pool = self.pool(base_url)
        if pool is not None:
            return await pool.request(method, path_qs, headers, body, timeout)
        assert self.session is not None
        async with self.session.request(method, base_url + path_qs, data=body, headers=headers,
                                        timeout=aiohttp.ClientTimeout(total=timeout)) as upstream:
            return upstream.status, forwardable(upstream.headers), await upstream.read()

    async def _pass_on(self, request: Request, base_url: str,
                       headers: list[tuple[bytes, bytes]]) -> Answer:
        """The request as it came (minus hop-by-hop headers, with ``headers``) to a backend;
        its raw answer."""
        pool = self.pool(base_url)
        if pool is None:
            status, answer_headers, payload = await self._forward(
                request.method.decode("latin-1"), base_url, request.target.decode("latin-1"),
                request.body, header_dict(headers))
            return status, header_lines(answer_headers), payload, None
        return await pool.send(
            pool.serialise(request.method, request.target, headers, request.body),
            UPSTREAM_TIMEOUT)

    async def handle(self, request: Request) -> Reply:
        """Every request on the traffic port."""
        method, path = request.method, request.route
        if path == b"/healthz" and method in (b"GET", b"HEAD"):
            return json_reply({"live": True}, 200)
        if path == b"/v2/feedback" and method == b"POST":
            return await self.feedback(request)
        return await self.proxy(request)

    async def proxy(self, request: Request) -> Reply:
        config = self.config
        started = time.perf_counter()
        is_inference = request.method == b"POST" and request.path.endswith(b"/infer")
        arm, attempt, request_id, headers = CHAMPION, 1, None, request.headers
        if is_inference:
            arm, attempt, request_id, headers = self._route(config, request)
        backend = config.champion if arm == CHAMPION else config.challenger
        assert backend is not None
        try:
            status, lines, payload, length = await self._pass_on(request, backend.url, headers)
        except TimeoutError:
            return self.failed(arm, started, 504, "timed out", is_inference, attempt)
        except (OSError, aiohttp.ClientError) as exc:
            return self.failed(arm, started, 502, f"is unavailable ({failure_name(exc)})",
                               is_inference, attempt)
        if is_inference:
            lines, served_by = take_served_by_line(lines)
            self.record(config, arm, backend.url, time.perf_counter() - started, status, payload,
                        header_value(lines) or request_id, served_by,
                        lambda: (request.target, request.body, request.headers), attempt)
        return Reply(status, header_block(lines), payload, length)

    def _route(self, config: RouterConfig, request: Request
               ) -> tuple[str, int, str | None, list[tuple[bytes, bytes]]]:
        """An inference call's arm (its first attempt's, for a retry: ``retries.py``), its
        attempt number and id, and the headers it goes on with."""
        marks = marks_of(request.headers)
        earlier, attempt = self.memory.earlier(marks)
        sticky = None
        if config.stickyHeader and config.mode == "split":
            value = request.header(config.stickyHeader.lower().encode("latin-1"))
            sticky = None if value is None else value.decode("utf-8", "surrogateescape")
        arm = route_arm(config, earlier, sticky)
        backend = config.champion if arm == CHAMPION else config.challenger
        assert backend is not None
        self.memory.dispatched(marks.request_id, earlier, arm, backend.url, attempt)
        headers = request.headers
        if attempt > 1 or marks.ours:  # a client's own X-Modelops-Attempt never passes
            headers = with_attempt(headers, attempt)
        return arm, attempt, marks.request_id, headers

    def failed(self, arm: str, started: float, status: int, what: str,
               is_inference: bool = True, attempt: int = 1) -> Reply:
        if is_inference:
            self.metrics.count_request(arm, status, attempt)
            self.metrics.duration[arm].observe(time.perf_counter() - started)
        return json_reply({"error": f"the {arm} {what}"}, status)

    def record(self, config: RouterConfig, arm: str, url: str, elapsed: float, status: int,
               payload: bytes, request_id: str | None, served_by: bytes | None,
               original: Callable[[], RequestParts], attempt: int = 1) -> None:
        """After an inference answer: where it went (for feedback: the arm's URL and the
        replica named by ``served_by``), its metrics, and in shadow mode the copy for the
        challenger (``original`` gives the request's target, body and raw headers, only then).
        A retry (``attempt`` > 1) is not copied again: the challenger saw its first attempt.
        The hot path calls it in batches (``after_answers``)."""
        shadow_url = None
        if (attempt == 1 and config.mode == "shadow" and config.challenger
                and should_mirror(config.mirrorPercent)):
            shadow_url = config.challenger.url
            target, body, raw_headers = original()
            self._enqueue_mirror(shadow_url, target.decode("latin-1"), body,
                                 header_dict(raw_headers), request_id, status, payload)
        if request_id:
            self.memory.answered(request_id, arm, url, shadow_url, _replica(url, served_by),
                                 attempt)
        self.metrics.count_request(arm, status, attempt)
        self.metrics.duration[arm].observe(elapsed)

    def _enqueue_mirror(self, base_url: str, path_qs: str, body: bytes, headers: Any,
                        request_id: str | None, status: int, payload: bytes) -> None:
        mirror_headers = headers.copy()
        # A client's own attempt header would reach the challenger's sidecar alone (retries.py).
        mirror_headers.popall("X-Modelops-Attempt", None)
        if request_id:
            # The same id on both arms is what lets feedback score the pair.
            mirror_headers["X-Request-Id"] = request_id
        size = len(body) + len(payload)
        if self.queued_bytes + size > self.max_queued_bytes:
            self.metrics.mirror["dropped"].inc()
            return
        try:
            self.queue.put_nowait(MirrorJob(base_url, path_qs, body, mirror_headers, status,
                                            payload, request_id))
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
                status, headers, payload = await self._forward(
                    "POST", job.base_url, job.path_qs, job.body, job.headers, self.mirror_timeout)
                self.metrics.mirror["sent"].inc()
            except (OSError, aiohttp.ClientError):  # TimeoutError is an OSError
                self.metrics.mirror["failed"].inc()
                self.metrics.agreement["error"].inc()
                continue
            self._note_shadow_replica(job, headers.getall("X-Modelops-Served-By", []))
            self.metrics.agreement[agreement(_outputs(job.primary_status, job.primary_payload),
                                             _outputs(status, payload))].inc()

    def _note_shadow_replica(self, job: MirrorJob, served_by: list[str]) -> None:
        """The challenger's replica that answered the copy, for the copy's feedback (unless
        that feedback came already, or the id was used again for another request)."""
        if not job.request_id or len(served_by) != 1:
            return
        replica = _replica(job.base_url, served_by[0].encode("latin-1"))
        routes = self.memory.routes
        answered = routes.get(job.request_id)
        if replica and answered is not None and answered.shadow_url == job.base_url:
            routes.replace(job.request_id, replace(answered, shadow_replica=replica))

    async def _send_feedback(self, replica: str | None, url: str, body: bytes,
                             headers: Any) -> tuple[int, Any, bytes]:
        """To the replica that answered, the one that remembers the prediction; through the
        arm's URL (to any replica, which finds nothing to score) when it is gone."""
        if replica is not None:
            try:
                return await self.replicas.pool(replica).request(
                    "POST", "/v2/feedback", headers, body, UPSTREAM_TIMEOUT)
            except UpstreamUnreachable as exc:  # never sent: safe to send elsewhere
                self.metrics.feedback_fallbacks.inc()
                log.debug("replica %s did not take feedback (%s); sending it to %s",
                         replica, exc.reason, url)
        return await self._forward("POST", url, "/v2/feedback", body, headers)

    async def feedback(self, request: Request) -> Reply:
        self.after_answers.settle()  # where the request went may still wait there
        body = request.body
        try:
            parsed = loads(body)
        except (JSONDecodeError, ValueError):
            parsed = None
        request_id = parsed.get("id") if isinstance(parsed, dict) else None
        request_id = request_id or _text(request.header(b"x-request-id"))
        if not isinstance(request_id, str):
            self.metrics.count_feedback("invalid")
            return json_reply({"error": "feedback body must be JSON {\"id\": ..., \"truth\": "
                                        "...} (or send the id in X-Request-Id)"}, 400)
        answered = self.memory.take(request_id)
        if answered is None:
            self.metrics.count_feedback("unmatched")
            return json_reply({"id": request_id, "outcome": "unmatched",
                               "error": "this router has no record of the request id"}, 404)
        headers = header_dict(request.headers)
        headers["X-Request-Id"] = request_id
        arms = [(answered.replica, answered.url)]
        if answered.shadow_url:
            arms.append((answered.shadow_replica, answered.shadow_url))
        results = await asyncio.gather(
            *(self._send_feedback(replica, url, body, headers) for replica, url in arms),
            return_exceptions=True)
        primary = results[0]
        if isinstance(primary, BaseException):
            self.metrics.count_feedback("failed")
            return json_reply({"error": f"the {answered.arm} did not take the feedback"}, 502)
        self.metrics.count_feedback("forwarded")
        if len(results) == 2 and not isinstance(results[1], BaseException):
            self._count_pair(primary[0], primary[2], results[1][0], results[1][2])
        return Reply(primary[0], header_block(header_lines(primary[1])), primary[2])

    def _count_pair(self, status_a: int, body_a: bytes, status_b: int, body_b: bytes) -> None:
        verdicts = [_single_row_verdict(s, b) for s, b in ((status_a, body_a), (status_b, body_b))]
        if verdicts[0] and verdicts[1]:
            self.metrics.count_paired(verdicts[0], verdicts[1])

    async def metrics_page(self, request: web.Request) -> web.Response:
        self.after_answers.settle()
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


def header_lines(headers: Any) -> list[bytes]:
    """Raw header lines from the string-based client's headers (a multidict)."""
    return [b"%s: %s" % (k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


def header_dict(raw: list[tuple[bytes, bytes]]) -> CIMultiDict[str]:
    """End-to-end headers from raw ones, for the string-based client (mirror, feedback)."""
    return CIMultiDict((name.decode("latin-1"), value.decode("latin-1")) for name, value in raw
                       if name.lower() not in HOP_BY_HOP_BYTES)


def _replica(arm_url: str, served_by: bytes | None) -> str | None:
    """The replica's address from a valid X-Modelops-Served-By value, for ``http://`` arms
    (feedback to an ``https://`` arm is not sent in the clear to an address behind it)."""
    return replica_address(served_by) if arm_url.startswith("http://") else None


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", "surrogateescape") or None


def build_metrics_app(router: Router, reload_interval: float) -> web.Application:
    """``/metrics``, and the router's background work for as long as it runs: reloading the
    configuration, the mirror workers, the client session for https:// backends."""

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
        router.replicas.close()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await router.session.close()

    metrics = web.Application()
    metrics.cleanup_ctx.append(lifecycle)
    metrics.router.add_get("/metrics", router.metrics_page)
    return metrics


async def serve(router: Router, host: str, port: int, metrics_port: int, reload_interval: float,
                max_body_bytes: int) -> None:
    # Bodies are held in memory while forwarded (and queued for a mirror); larger ones get 413.
    traffic = LeanServer(router.handle, max_body_bytes,
                         shortcut=RouterShortcut(router, max_body_bytes))

    async def listen() -> None:  # once the background work runs
        await traffic.start(host, port)
        log.info("listening on http://%s:%d", host, port)

    # The traffic port drains first on SIGTERM, then the background work stops.
    await serve_until_signalled([(build_metrics_app(router, reload_interval), host, metrics_port)],
                                on_ready=listen, servers=[traffic])


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
    parser.add_flag("--retry-window", type=float, default=RETRY_WINDOW_SECONDS,
                    help="seconds after a request's first attempt in which another with its "
                    "X-Request-Id is a retry: sent to the same arm, not counted again")
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
                    int(args.feedback_capacity), float(args.feedback_ttl),
                    float(args.retry_window))
    install_fast_event_loop()
    asyncio.run(serve(router, args.host, int(args.port), int(args.metrics_port),
                      float(args.reload_interval), int(args.max_body_bytes)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
