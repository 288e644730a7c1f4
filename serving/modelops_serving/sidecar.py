"""``modelops-sidecar``: a metrics reverse proxy in front of any V2 model server.

Everything is forwarded unchanged to ``--upstream`` (ours, MLServer, Triton). Inference calls
(``POST .../infer``) are counted and timed, their predicted values go into a histogram and are
remembered by request id, so that ``POST /v2/feedback`` with the true value can score them.
Their answers carry ``X-Modelops-Served-By`` (this replica's address, ``servedby.py``), so that
a router in front of several replicas sends the feedback back to this one. Retries are served and
remembered alike but counted apart (``retries.py``).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .afterwork import AfterWork
from .cli import EnvArgumentParser, configure_logging, fail, install_fast_event_loop
from .feedback_store import FeedbackStore, MaturingScores, Score, score
from .httpkit import (
    JSONDecodeError,
    loads,
    plain_text,
    serve_until_signalled,
)
from .leanhttp import LeanServer, Reply, Request, header_block, json_reply
from .metrics import (
    DEFAULT_LATENCY_BUCKETS,
    DEFAULT_PREDICTION_BUCKETS,
    SidecarMetrics,
    parse_buckets,
)
from .requestids import UNPARSED, parse_response, response_key, with_request_id
from .retries import RETRY_WINDOW_SECONDS, marks_of
from .shortcut import InferenceShortcut
from .upstream import UpstreamPool, failure_name

log = logging.getLogger("modelops_serving.sidecar")
TASKS = ("auto", "classification", "regression")
MAX_FEEDBACK_BODY = 1024 * 1024


@dataclass
class Sidecar:
    upstream: str
    metrics: SidecarMetrics
    store: FeedbackStore
    task: str = "auto"
    prediction_output: str | None = None
    pool: UpstreamPool | None = None
    timeout: float = 120.0
    # Labels counted when their prediction is this old (None: at arrival); see MaturingScores.
    maturing: MaturingScores | None = None
    # Off (--feedback off): POST /v2/feedback is refused. Predictions are still remembered:
    # the store is also how a repeated X-Request-Id is told to be a retry.
    feedback_on: bool = True
    # Regression: the largest absolute error one label counts for (None: unbounded).
    loss_bound: float | None = None
    # A request whose X-Request-Id this sidecar answered this recently is a retry.
    retry_window: float = RETRY_WINDOW_SECONDS
    # The hot path's bookkeeping (``account``), done in batches after the answers.
    after_answers: AfterWork = field(init=False)

    def __post_init__(self) -> None:
        self.after_answers = AfterWork(self.account)

    def _prediction_values(self, response: Any) -> tuple[list[Any], bool] | None:
        outputs = response.get("outputs") if isinstance(response, dict) else None
        if not isinstance(outputs, list) or not outputs:
            return None
        chosen = outputs[0]
        if self.prediction_output:
            chosen = next((o for o in outputs if isinstance(o, dict)
                           and o.get("name") == self.prediction_output), None)
        if not isinstance(chosen, dict) or not isinstance(chosen.get("data"), list):
            return None
        values = chosen["data"]
        if self.task == "auto":
            datatype = str(chosen.get("datatype", ""))
            classification = datatype in ("BOOL", "BYTES") or datatype[:3] in ("INT", "UIN")
        else:
            classification = self.task == "classification"
        return values, classification

    def is_retry(self, attempt: int, client_id: str | None) -> bool:
        """Whether an inference attempt is counted apart: a marker calls it a retry
        (``attempt`` > 1, ``retries.Marks.attempt``), or this sidecar answered the client's
        X-Request-Id less than ``retry_window`` seconds before (the store still holds that
        prediction; an answer that failed is not remembered, so only the router or a marker
        recognises the retry of a failure)."""
        if attempt > 1:
            return True
        if client_id is None:
            return False
        found = self.store.get_aged(client_id)
        return found is not None and found[1] <= self.retry_window

    def account(self, key: str, status: int, body: bytes, response: Any,
                elapsed: float, attempt: int = 1, client_named: bool = False) -> None:
        """Metrics and feedback memory for one answered inference; ``response`` is its parsed
        body, or ``UNPARSED`` when the hot path did not need to read it. ``key`` is the
        client's X-Request-Id when ``client_named``. A retry is remembered for its feedback
        as any answer, but counted only in ``modelops_retries_total``."""
        retry = self.is_retry(attempt, key if client_named else None)
        if status == 200:
            if response is UNPARSED:
                response = parse_response(body)
            if response is not None:
                self.remember(key, response, retry)
        if retry:
            self.metrics.count_retry(status)
            return
        self.metrics.count_request(status)
        self.metrics.duration.observe(elapsed)

    def remember(self, key: str, response: Any, retry: bool = False) -> None:
        """The predictions of one successful response: histogram (not a retry's: its input
        was counted once already) and feedback memory."""
        found = self._prediction_values(response)
        if found is None:
            return
        values, classification = found
        evicted_before = self.store.evicted
        if not retry:
            self.metrics.observe_predictions(values)
        self.store.remember(key, values, classification, keep_time=retry)
        response_id = response.get("id")
        if isinstance(response_id, str) and response_id != key:
            self.store.remember(response_id, values, classification, keep_time=retry)
        self.metrics.store_entries.set(len(self.store))
        if self.store.evicted != evicted_before:
            self.metrics.store_evictions.inc(self.store.evicted - evicted_before)

    async def handle(self, request: Request) -> Reply:
        """Every request on the traffic port: feedback is answered here, the rest proxied."""
        if request.method == b"POST" and request.route == b"/v2/feedback":
            return self.feedback(request)
        return await self.proxy(request)

    async def proxy(self, request: Request) -> Reply:
        started = time.perf_counter()
        method = request.method
        is_inference = method == b"POST" and request.path.endswith(b"/infer")
        assert self.pool is not None
        marks = marks_of(request.headers)  # the last X-Request-Id, as on the hot path
        client_id, attempt = marks.request_id, marks.attempt
        headers = [(name, value) for name, value in request.headers
                   if name.lower() != b"x-modelops-attempt"] if marks.ours else request.headers
        payload = self.pool.serialise(method, request.target, headers, request.body)
        try:
            status, lines, payload, length = await self.pool.send(payload, self.timeout)
        except TimeoutError:
            return self.failed(is_inference, started, 504, "the model server timed out",
                               attempt, client_id)
        except OSError as exc:  # refused, reset, or not HTTP (UpstreamError)
            return self.failed(is_inference, started, 502,
                               f"the model server is unavailable: {failure_name(exc)}",
                               attempt, client_id)
        if is_inference:
            response = parse_response(payload) if status == 200 else None
            request_id = response_key(client_id, response)
            lines = with_request_id(lines, request_id, request.served_by)
            self.account(request_id, status, payload, response, time.perf_counter() - started,
                         attempt, client_id is not None)
        return Reply(status, header_block(lines), payload, length)

    def failed(self, is_inference: bool, started: float, status: int, message: str,
               attempt: int = 1, client_id: str | None = None) -> Reply:
        if is_inference:
            if self.is_retry(attempt, client_id):
                self.metrics.count_retry(status)
            else:
                self.metrics.count_request(status)
                self.metrics.duration.observe(time.perf_counter() - started)
        return json_reply({"error": message}, status)

    def feedback(self, request: Request) -> Reply:
        counters = self.metrics.feedback
        if not self.feedback_on:
            counters["invalid"].inc()
            return json_reply({"error": "this model takes no feedback: its ModelDeployment's "
                               "spec.monitoring.feedback.enabled is false"}, 404)
        self.after_answers.settle()  # the prediction it names may still wait there
        if len(request.body) > MAX_FEEDBACK_BODY:
            counters["invalid"].inc()
            return json_reply(
                {"error": f"feedback body is larger than {MAX_FEEDBACK_BODY} bytes"}, 400)
        try:
            body = loads(request.body)
        except (JSONDecodeError, ValueError):
            counters["invalid"].inc()
            return json_reply(
                {"error": "feedback body must be JSON: {\"id\": ..., \"truth\": ...}"}, 400)
        header_id = request.header(b"x-request-id")
        outcome = parse_feedback(
            body, None if header_id is None else header_id.decode("utf-8", "surrogateescape"))
        if isinstance(outcome, str):
            counters["invalid"].inc()
            return json_reply({"error": outcome}, 400)
        request_id, truth = outcome
        self.count_matured()
        dated = self.store.take_dated(request_id)
        self.metrics.store_entries.set(len(self.store))
        remembered, predicted_at = dated if dated is not None else (None, 0.0)
        if remembered is None:
            counters["unmatched"].inc()
            return json_reply({"id": request_id, "outcome": "unmatched",
                               "error": "no remembered prediction for this id (unknown, "
                               "already scored, or expired)"}, 404)
        try:
            result = score(remembered, truth, self.loss_bound)
        except ValueError as exc:
            counters["invalid"].inc()
            return json_reply({"error": str(exc)}, 400)
        if self.maturing is None:
            self.count_score(result)
        elif not self.maturing.add(predicted_at, result):
            counters["late"].inc()
            return json_reply({"id": request_id, "outcome": "late",
                               "error": "the label came after the maturity window of "
                               f"{self.maturing.window:g} s; it is not counted"}, 200)
        return json_reply({"id": request_id, "correct": result.correct,
                           "incorrect": result.incorrect, "scored": result.scored}, 200)

    def count_score(self, result: Score) -> None:
        counters = self.metrics.feedback
        counters["correct"].inc(result.correct)
        counters["incorrect"].inc(result.incorrect)
        counters["scored"].inc(result.scored)
        self.metrics.absolute_error.inc(result.absolute_error)
        self.metrics.squared_error.inc(result.squared_error)

    def count_matured(self) -> None:
        """Count the held labels whose predictions reached the maturity window's age."""
        if self.maturing is not None:
            for result in self.maturing.release():
                self.count_score(result)

    async def metrics_page(self, request: web.Request) -> web.Response:
        self.after_answers.settle()
        self.count_matured()
        return plain_text(self.metrics.exposition(), "text/plain; version=0.0.4; charset=utf-8")


def parse_feedback(body: Any, header_id: str | None) -> tuple[str, list[Any]] | str:
    """``(request id, true values)`` or an error message naming the field."""
    if not isinstance(body, dict):
        return "feedback body must be a JSON object: {\"id\": ..., \"truth\": ...}"
    request_id = body.get("id", header_id)
    if not isinstance(request_id, str) or not request_id or len(request_id) > 256:
        return "id: expected the request id (1-256 characters) from the response or X-Request-Id"
    if "truth" not in body:
        return "truth: missing; send the true value (or a list, one per row)"
    truth = body["truth"]
    values = truth if isinstance(truth, list) else [truth]
    if not values or any(isinstance(v, list | dict) or v is None for v in values):
        return "truth: expected a scalar or a flat, non-empty list of scalars"
    return request_id, values


def build_metrics_app(sidecar: Sidecar) -> web.Application:
    metrics = web.Application()
    metrics.router.add_get("/metrics", sidecar.metrics_page)
    return metrics


def build_server(sidecar: Sidecar, max_body_bytes: int = 64 * 1024**2) -> LeanServer:
    # Bodies are held in memory while forwarded; larger ones get a 413 here. Inference answers
    # name the address that answered, so that a router sends their feedback here (servedby.py).
    return LeanServer(sidecar.handle, max_body_bytes,
                      shortcut=InferenceShortcut(sidecar, max_body_bytes), announce_served_by=True)


async def serve(sidecar: Sidecar, host: str, port: int, metrics_port: int,
                max_body_bytes: int) -> None:
    # One keep-alive pool for the process; upstream connections are reused.
    sidecar.pool = UpstreamPool(sidecar.upstream)
    traffic = build_server(sidecar, max_body_bytes)
    await traffic.start(host, port)
    log.info("listening on http://%s:%d", host, port)
    try:
        await serve_until_signalled([(build_metrics_app(sidecar), host, metrics_port)],
                                    servers=[traffic])
    finally:
        sidecar.pool.close()


def parse_args(argv: list[str] | None) -> Any:
    parser = EnvArgumentParser(prog="modelops-sidecar", description=__doc__.splitlines()[0])
    parser.add_flag("--upstream", default="http://127.0.0.1:8080",
                    help="model server URL (http://, normally in the same pod)")
    parser.add_flag("--upstream-timeout", type=float, default=120.0,
                    help="seconds to wait for the model server's answer")
    parser.add_flag("--host", default="0.0.0.0", help="address to listen on")
    parser.add_flag("--port", type=int, default=8000, help="traffic port")
    parser.add_flag("--metrics-port", type=int, default=9090, help="port of /metrics")
    parser.add_flag("--deployment", default="", help="ModelDeployment name (metric label)")
    parser.add_flag("--model", required=True, help="model name (metric label)")
    parser.add_flag("--version", required=True, help="model version (metric label)")
    parser.add_flag("--role", required=True, choices=("champion", "challenger", "shadow"),
                    help="role of this model (metric label)")
    parser.add_flag("--prediction-buckets", help="comma list of histogram buckets")
    parser.add_flag("--latency-buckets", help="comma list of latency buckets in seconds")
    parser.add_flag("--prediction-output", help="output whose values are recorded (default: first)")
    parser.add_flag("--task", default="auto", choices=TASKS,
                    help="how feedback is scored (auto: integer/string outputs are classes)")
    parser.add_flag("--max-body-bytes", type=int, default=64 * 1024**2,
                    help="largest request body forwarded")
    parser.add_flag("--feedback", default="on", choices=("on", "off"),
                    help="off: POST /v2/feedback is refused (404)")
    parser.add_flag("--feedback-capacity", type=int, default=50_000,
                    help="predictions remembered for feedback")
    parser.add_flag("--feedback-ttl", type=float, default=3600.0,
                    help="seconds a prediction waits for its feedback")
    parser.add_flag("--label-maturity", type=float, default=0.0,
                    help="count a label when its prediction is this many seconds old, and "
                    "drop later ones (0: count at arrival); at most --feedback-ttl")
    parser.add_flag("--loss-bound", type=float, default=None,
                    help="regression: the largest absolute error one label counts for")
    parser.add_flag("--retry-window", type=float, default=RETRY_WINDOW_SECONDS,
                    help="seconds after this sidecar answered an X-Request-Id in which another "
                    "request with it is a retry (counted in modelops_retries_total only)")
    parser.add_flag("--log-level", default="INFO", help="logging level")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.log_level)
    try:
        metrics = SidecarMetrics(
            {"deployment": args.deployment, "model": args.model, "version": args.version,
             "role": args.role},
            parse_buckets(args.prediction_buckets, DEFAULT_PREDICTION_BUCKETS,
                          "--prediction-buckets"),
            parse_buckets(args.latency_buckets, DEFAULT_LATENCY_BUCKETS, "--latency-buckets"),
        )
        store = FeedbackStore(int(args.feedback_capacity), float(args.feedback_ttl))
        maturity = float(args.label_maturity)
        if maturity > store.ttl:
            raise ValueError(
                f"--label-maturity ({maturity:g} s) must not exceed --feedback-ttl "
                f"({store.ttl:g} s): a prediction would be forgotten before its label counts")
        maturing = MaturingScores(maturity) if maturity > 0 else None
        loss_bound = None if args.loss_bound is None else float(args.loss_bound)
        if loss_bound is not None and not 0 < loss_bound < float("inf"):
            raise ValueError(f"--loss-bound ({loss_bound:g}) must be a positive finite number")
        UpstreamPool(args.upstream)  # validates the URL before anything listens
    except ValueError as exc:
        return fail(str(exc))
    sidecar = Sidecar(args.upstream.rstrip("/"), metrics, store, args.task, args.prediction_output,
                      timeout=float(args.upstream_timeout), maturing=maturing,
                      feedback_on=args.feedback == "on", loss_bound=loss_bound,
                      retry_window=float(args.retry_window))
    install_fast_event_loop()
    asyncio.run(serve(sidecar, args.host, int(args.port), int(args.metrics_port),
                      int(args.max_body_bytes)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
