"""``modelops-serve``: a model server speaking the Open Inference Protocol (KServe V2 REST).

The server listens at once and answers ``/v2/health/live`` while the model is fetched and
loaded; ``/v2/health/ready`` turns true only when the model can answer. A model that cannot be
loaded (digest mismatch, unsafe pickle, missing runtime) stops the process with the reason on
stderr and in the Kubernetes termination log, so the pod never serves something unverified.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import signal
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from .cli import EnvArgumentParser, configure_logging, fail, install_fast_event_loop
from .fetch import FetchError, resolve_local
from .httpkit import JSONDecodeError, error_response, json_response, loads, serve_until_signalled
from .requestbodies import (
    BodyError,
    content_coding,
    decode_body,
    read_body,
    refuse_binary_extension,
)
from .runtimes import FORMATS, ModelLoadError, Runtime, load_runtime
from .v2protocol import ProtocolError, decode_request, encode_response

log = logging.getLogger("modelops_serving.server")
SERVER_NAME = "modelops"
SERVER_VERSION = "0.1.0"


@dataclass
class ServedModel:
    name: str
    version: str | None
    runtime: Runtime | None = None

    def metadata(self) -> dict[str, Any]:
        assert self.runtime is not None
        return {
            "name": self.name,
            "versions": [self.version] if self.version else [],
            "platform": self.runtime.platform,
            "inputs": [t.as_metadata() for t in self.runtime.inputs],
            "outputs": [t.as_metadata() for t in self.runtime.outputs],
        }


class InferencePool:
    """Threads that run the model, and a bound on the requests waiting for one.

    Inference never runs on the event loop, so health probes and metadata answer while a
    large or slow request is computed. Past ``threads + queue`` requests in flight the server
    answers 503 at once: a backlog would only turn into timeouts later, and a 503 tells a
    load balancer or client to try another replica now.
    """

    def __init__(self, threads: int, queue: int) -> None:
        self.capacity = threads + queue
        # numpy's error state is per thread: overflow in a model is its result, not a warning.
        self.executor = concurrent.futures.ThreadPoolExecutor(
            threads, "inference", initializer=np.seterr, initargs=("ignore",))
        # Released by the worker when it finishes, even if the client gave up before.
        self.slots = threading.BoundedSemaphore(self.capacity)

    async def run(self, function: Any, *args: Any) -> Any:
        """``function(*args)`` in a thread; None when every slot is taken."""
        if not self.slots.acquire(blocking=False):
            return None
        try:
            future = self.executor.submit(function, *args)
        except BaseException:
            self.slots.release()
            raise
        future.add_done_callback(lambda _: self.slots.release())
        return await asyncio.wrap_future(future)


MODEL = web.AppKey("model", ServedModel)
INFERENCE = web.AppKey("inference", InferencePool)
MAX_BODY = web.AppKey("max_body", int)


def _lookup(request: web.Request) -> ServedModel | web.Response:
    model = request.app[MODEL]
    name = request.match_info["name"]
    version = request.match_info.get("version")
    if name != model.name:
        return error_response(f"model '{name[:100]}' is not served here; this server serves "
                              f"'{model.name}'", status=404)
    if version is not None and version != (model.version or ""):
        serving = f"version '{model.version}'" if model.version else "no version"
        return error_response(f"version '{version[:100]}' of model '{name}' is not served here; "
                              f"serving {serving}", status=404)
    if model.runtime is None:
        return error_response(f"model '{name}' is still loading", status=503)
    return model


async def live(request: web.Request) -> web.Response:
    return json_response({"live": True})


async def ready(request: web.Request) -> web.Response:
    is_ready = request.app[MODEL].runtime is not None
    return json_response({"ready": is_ready}, status=200 if is_ready else 503)


async def server_metadata(request: web.Request) -> web.Response:
    return json_response({"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": []})


async def model_metadata(request: web.Request) -> web.Response:
    found = _lookup(request)
    return found if isinstance(found, web.Response) else json_response(found.metadata())


async def model_ready(request: web.Request) -> web.Response:
    found = _lookup(request)
    if isinstance(found, web.Response) and found.status != 503:
        return found
    is_ready = not isinstance(found, web.Response)
    return json_response({"name": request.match_info["name"], "ready": is_ready},
                         status=200 if is_ready else 503)


def _run_model(model: ServedModel, body: bytes, coding: str | None, limit: int,
               header_id: str | None) -> dict[str, Any]:
    """Everything that costs time in proportion to the body, in an inference thread."""
    text = decode_body(body, coding, limit)
    try:
        parsed = loads(text)
    except (JSONDecodeError, ValueError) as exc:
        raise ProtocolError(f"request body is not valid JSON: {str(exc)[:200]}") from exc
    request = decode_request(parsed, header_id)
    assert model.runtime is not None
    try:
        outputs = model.runtime.predict(request.inputs, request.input_order,
                                        request.requested_outputs)
    except ProtocolError:
        raise
    except (ValueError, TypeError, IndexError, KeyError, ArithmeticError) as exc:
        # Estimators signal bad input (NaN, wrong dtype) with these; the client must fix it.
        raise ProtocolError(f"the model rejected the input: {str(exc)[:300]}") from exc
    return encode_response(model.name, model.version, request.id, outputs)


async def infer(request: web.Request) -> web.Response:
    found = _lookup(request)
    if isinstance(found, web.Response):
        return found
    limit = request.app[MAX_BODY]
    try:
        refuse_binary_extension(request.headers)
        coding = content_coding(request.headers.get("Content-Encoding"))
        body = await read_body(request, limit)
        result = await request.app[INFERENCE].run(
            _run_model, found, body, coding, limit, request.headers.get("X-Request-Id"))
    except (BodyError, ProtocolError) as exc:
        return error_response(str(exc), status=getattr(exc, "status", 400))
    except Exception:
        log.exception("inference failed")
        return error_response("internal error while running the model", status=500)
    if result is None:
        return json_response({"error": "the server is busy: every inference thread and queue "
                              "slot is taken (--inference-threads, --inference-queue); retry"},
                             status=503, headers={"Retry-After": "1"})
    return json_response(result, headers={"X-Request-Id": result["id"]})


@web.middleware
async def v2_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every refusal in the protocol's ``{"error": ...}`` form, and paths taken literally.

    aiohttp routes on the percent-decoded path, so ``/v2/models/m/inf%65r`` would be an
    inference call that a proxy comparing paths as sent (the metrics sidecar counts inference
    by its path) takes for something else. No name or version this server serves needs an
    escape, so a percent sign in the path is refused instead of decoded.
    """
    path = request.raw_path.split("?", 1)[0]
    if "%" in path:
        return error_response(f"percent-encoded paths are not served: send the path "
                              f"literally (got {path[:200]!r})")
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return json_response({"error": f"{request.method} {path[:200]}: {exc.reason}"},
                             status=exc.status, headers=allow)


def build_app(
    model: ServedModel, max_body_bytes: int, inference_threads: int = 1,
    inference_queue: int = 64,
) -> web.Application:
    # aiohttp caps the body as it arrives (compressed); decode_body caps what it inflates to.
    app = web.Application(client_max_size=max_body_bytes + 1, middlewares=[v2_errors])
    app[MODEL] = model
    app[MAX_BODY] = max_body_bytes
    app[INFERENCE] = InferencePool(max(1, inference_threads), max(0, inference_queue))
    app.router.add_get("/v2/health/live", live)
    app.router.add_get("/v2/health/ready", ready)
    app.router.add_get("/v2", server_metadata)
    for prefix in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        app.router.add_get(prefix, model_metadata)
        app.router.add_get(prefix + "/ready", model_ready)
        app.router.add_post(prefix + "/infer", infer)
    return app


def load_model(args: Any) -> Runtime:
    cache = Path(args.model_dir or tempfile.mkdtemp(prefix="modelops-model-"))
    path = resolve_local(args.uri, cache, args.digest)
    trusted = tuple(t for t in (args.trusted_types or "").split(",") if t)
    return load_runtime(args.format, path, allow_unsafe_pickle=args.allow_unsafe_pickle,
                        trusted_types=trusted, custom_class=args.custom_class)


def parse_args(argv: list[str] | None) -> Any:
    parser = EnvArgumentParser(prog="modelops-serve", description=(__doc__ or "").split("\n")[0])
    parser.add_flag("--name", required=True, help="model name in /v2/models/{name}")
    parser.add_flag("--uri", required=True, help="file://, path, http(s):// or s3:// of the model")
    parser.add_flag("--format", required=True, choices=FORMATS, help="model format")
    parser.add_flag("--digest", help="sha256:<hex> the model file must match")
    parser.add_flag("--version", help="model version reported by the server")
    parser.add_flag("--host", default="0.0.0.0", help="address to listen on")
    parser.add_flag("--port", type=int, default=8080, help="port to listen on")
    parser.add_flag("--allow-unsafe-pickle", action="store_true",
                    help="allow joblib/pickle files (they run code when loaded)")
    parser.add_flag("--trusted-types", help="comma list of extra types skops may load")
    parser.add_flag("--custom-class", help="module:Class for --format custom")
    parser.add_flag("--model-dir", help="where remote models are downloaded to")
    parser.add_flag("--max-body-bytes", type=int, default=16 * 1024 * 1024,
                    help="largest accepted request body")
    parser.add_flag("--inference-threads", type=int, default=1,
                    help="threads that run the model (at least 1; never the event loop)")
    parser.add_flag("--inference-queue", type=int, default=64,
                    help="requests that may wait for an inference thread; more get 503")
    parser.add_flag("--termination-log", default="/dev/termination-log",
                    help="file that receives the reason for a failed start")
    parser.add_flag("--log-level", default="INFO", help="logging level")
    return parser.parse_args(argv)


async def _serve(args: Any) -> int:
    model = ServedModel(args.name, args.version)
    app = build_app(model, int(args.max_body_bytes), int(args.inference_threads),
                    int(args.inference_queue))
    failure: list[str] = []

    async def load_in_background() -> None:
        loop = asyncio.get_running_loop()
        try:
            model.runtime = await loop.run_in_executor(None, load_model, args)
            log.info("model %s version %s loaded (%s)", args.name, args.version, args.format)
        except (FetchError, ModelLoadError) as exc:
            failure.append(str(exc))
            os.kill(os.getpid(), signal.SIGTERM)

    background: list[asyncio.Task[None]] = []

    async def on_ready() -> None:
        background.append(asyncio.create_task(load_in_background()))

    await serve_until_signalled([(app, args.host, int(args.port))], on_ready, shutdown_grace=10,
                                auto_decompress=False)
    if failure:
        return fail(failure[0], args.termination_log)
    return 0


class OneLineClientErrors(logging.Filter):
    """aiohttp logs a request it cannot parse (the client's fault, answered 400 before the app
    sees it) at ERROR with a traceback; one line at WARNING says as much, and a client sending
    garbage cannot fill the log with tracebacks."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError) and 400 <= error.code < 500:
            reason = " ".join(str(error.message).split())[:200]
            record.msg, record.args = f"{record.getMessage()}: {reason}", None
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.log_level)
    logging.getLogger("aiohttp.server").addFilter(OneLineClientErrors())
    install_fast_event_loop()
    np.seterr(all="ignore")
    return asyncio.run(_serve(args))


if __name__ == "__main__":
    sys.exit(main())
