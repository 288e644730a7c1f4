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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import web

from .cli import EnvArgumentParser, configure_logging, fail, install_fast_event_loop
from .fetch import FetchError, resolve_local
from .httpkit import JSONDecodeError, error_response, json_response, loads, serve_until_signalled
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


MODEL = web.AppKey("model", ServedModel)
EXECUTOR = web.AppKey("executor", object)
MAX_BODY = web.AppKey("max_body", int)


def _lookup(request: web.Request) -> ServedModel | web.Response:
    model = request.app[MODEL]
    name = request.match_info["name"]
    version = request.match_info.get("version")
    if name != model.name:
        return error_response(f"model '{name[:100]}' is not served here; this server serves "
                              f"'{model.name}'", status=404)
    if version is not None and version != (model.version or ""):
        return error_response(f"version '{version[:100]}' of model '{name}' is not served here; "
                              f"serving version '{model.version}'", status=404)
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


def _run_model(model: ServedModel, body: bytes, header_id: str | None) -> dict[str, Any]:
    try:
        parsed = loads(body)
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
    if request.content_length is not None and request.content_length > limit:
        return error_response(f"request body is {request.content_length} bytes, more than the "
                              f"limit of {limit} bytes (--max-body-bytes)")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return error_response(f"request body is more than the limit of {limit} bytes "
                              "(--max-body-bytes)")
    header_id = request.headers.get("X-Request-Id")
    executor = request.app[EXECUTOR]
    try:
        if executor is None:
            # Small models answer in well under a millisecond: a thread hop would cost more.
            result = _run_model(found, body, header_id)
        else:
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(executor, _run_model, found, body, header_id)  # type: ignore[arg-type]
    except ProtocolError as exc:
        return error_response(str(exc))
    except Exception:
        log.exception("inference failed")
        return error_response("internal error while running the model", status=500)
    return json_response(result, headers={"X-Request-Id": result["id"]})


def build_app(
    model: ServedModel, max_body_bytes: int, inference_threads: int = 0
) -> web.Application:
    app = web.Application(client_max_size=max_body_bytes + 1)
    app[MODEL] = model
    app[MAX_BODY] = max_body_bytes
    app[EXECUTOR] = (concurrent.futures.ThreadPoolExecutor(inference_threads)
                     if inference_threads > 0 else None)
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
    parser.add_flag("--inference-threads", type=int, default=0,
                    help="run the model in this many threads (0: on the event loop)")
    parser.add_flag("--termination-log", default="/dev/termination-log",
                    help="file that receives the reason for a failed start")
    parser.add_flag("--log-level", default="INFO", help="logging level")
    return parser.parse_args(argv)


async def _serve(args: Any) -> int:
    model = ServedModel(args.name, args.version)
    app = build_app(model, int(args.max_body_bytes), int(args.inference_threads))
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

    await serve_until_signalled([(app, args.host, int(args.port))], on_ready, shutdown_grace=10)
    if failure:
        return fail(failure[0], args.termination_log)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.log_level)
    install_fast_event_loop()
    np.seterr(all="ignore")
    return asyncio.run(_serve(args))


if __name__ == "__main__":
    sys.exit(main())
