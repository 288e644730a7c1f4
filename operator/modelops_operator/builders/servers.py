"""Model servers as data: how each one is started, where it listens and finds the model.

KServe's ServingRuntime is the model: a server is an image, a command, a port, probes and a
model location. Ours is smaller: the four servers are fixed here (no extra CRD), chosen by
`spec.runtime.server`, and what varies per model (name, version, format, options) is filled in
from the spec. The metrics sidecar, the probes and the fetch container all read the chosen
server's port and paths from one `ServerPlan`, so they fit whichever server runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..api.modeldeployment import ModelDeploymentSpec
from ..constants import DEFAULT_SERVING_IMAGE, MODEL_DIR, MODEL_PORT

# Upstream images, used when spec.runtime.image is empty (the operator's settings may override).
DEFAULT_MLSERVER_IMAGE = "docker.io/seldonio/mlserver:1.7.1"
DEFAULT_TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:25.01-py3"
# The ports MLServer and Triton open besides HTTP; inside the pod, clear of the sidecar's.
GRPC_PORT = 8081
SERVER_METRICS_PORT = 8082
WRITABLE_DIR = "/tmp"  # the only writable path of a model container (an emptyDir)
TRITON_VERSION_DIR = "1"  # Triton's versions are integers; the model version is a label

MLSERVER_RUNTIMES = {
    "sklearn": "mlserver_sklearn.SKLearnModel",
    "xgboost": "mlserver_xgboost.XGBoostModel",
    "lightgbm": "mlserver_lightgbm.LightGBMModel",
    "mlflow": "mlserver_mlflow.MLflowRuntime",
}


@dataclass(frozen=True)
class ServerPlan:
    """The model container's server-specific parts."""

    image: str
    command: list[str] | None  # None: the image's own entry point
    args: list[str]
    env: list[dict[str, str]]
    port: int
    readiness_path: str
    liveness: dict[str, Any]  # a probe handler (httpGet or tcpSocket)
    working_dir: str | None = None


def _env(pairs: dict[str, str], spec: ModelDeploymentSpec) -> list[dict[str, str]]:
    """The server's variables, then the user's (spec.runtime.env wins on a clash)."""
    mine = {e.name for e in spec.runtime.env}
    return [{"name": k, "value": v} for k, v in pairs.items() if k not in mine] + [
        {"name": e.name, "value": e.value} for e in spec.runtime.env
    ]


def _http_get(path: str) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": "model"}}


def server_port(spec: ModelDeploymentSpec) -> int:
    """The port the model server listens on (what the sidecar and the probes call)."""
    return spec.runtime.port if spec.runtime.server == "custom" else MODEL_PORT


def plan_server(
    spec: ModelDeploymentSpec, served_path: str, serving_image: str = DEFAULT_SERVING_IMAGE
) -> ServerPlan:
    """`served_path` is where the fetched model is inside the pod (a file or a directory)."""
    runtime, model = spec.runtime, spec.model
    if runtime.server == "mlserver":
        implementation = MLSERVER_RUNTIMES.get(model.format) or str(
            runtime.options.custom_class or ""
        ).replace(":", ".")
        env = {
            "MLSERVER_MODEL_NAME": model.name,
            "MLSERVER_MODEL_VERSION": model.version,
            "MLSERVER_MODEL_IMPLEMENTATION": implementation,
            "MLSERVER_MODEL_URI": served_path,
            "MLSERVER_HTTP_PORT": str(MODEL_PORT),
            "MLSERVER_GRPC_PORT": str(GRPC_PORT),
            "MLSERVER_METRICS_PORT": str(SERVER_METRICS_PORT),
            # Its own Prometheus files go to the writable directory, not the image's.
            "MLSERVER_METRICS_DIR": f"{WRITABLE_DIR}/mlserver-metrics",
            "MLSERVER_ENVIRONMENTS_DIR": f"{WRITABLE_DIR}/mlserver-envs",
            # Inference in the server process: no worker pool to fork under a memory limit.
            "MLSERVER_PARALLEL_WORKERS": "0",
            "MLSERVER_DEBUG": "false",  # its default logs every request
            "HOME": WRITABLE_DIR,
        }
        return ServerPlan(
            runtime.image or DEFAULT_MLSERVER_IMAGE,
            # The folder is searched for model-settings.json files, which would win over the
            # environment; /tmp has none, so the MLSERVER_MODEL_* variables name the model.
            ["mlserver", "start", WRITABLE_DIR],
            list(runtime.args),
            _env(env, spec),
            MODEL_PORT,
            # /v2/health/ready is true before the model is registered; the model's is not.
            f"/v2/models/{model.name}/ready",
            _http_get("/v2/health/live"),
            working_dir=WRITABLE_DIR,
        )
    if runtime.server == "triton":
        args = [
            f"--model-repository={MODEL_DIR}",
            f"--http-port={MODEL_PORT}",
            f"--grpc-port={GRPC_PORT}",
            f"--metrics-port={SERVER_METRICS_PORT}",
            *runtime.args,
        ]
        return ServerPlan(
            runtime.image or DEFAULT_TRITON_IMAGE, ["tritonserver"], args,
            _env({"HOME": WRITABLE_DIR}, spec), MODEL_PORT, "/v2/health/ready",
            _http_get("/v2/health/live"),
        )
    if runtime.server == "custom":
        env = {
            "MODELOPS_MODEL_NAME": model.name,
            "MODELOPS_MODEL_VERSION": model.version,
            "MODELOPS_MODEL_FORMAT": model.format,
            "MODELOPS_MODEL_URI": f"file://{served_path}",
            "MODELOPS_PORT": str(server_port(spec)),
            "HOME": WRITABLE_DIR,
        }
        return ServerPlan(
            runtime.image or serving_image, list(runtime.command) if runtime.command else None,
            list(runtime.args), _env(env, spec), server_port(spec), runtime.readiness_path,
            {"tcpSocket": {"port": "model"}},
        )
    options = runtime.options
    args = [
        "--name", model.name, "--uri", f"file://{served_path}", "--format", model.format,
        "--digest", model.digest, "--version", model.version, "--port", str(MODEL_PORT),
    ]
    if options.allow_unsafe_pickle:
        args.append("--allow-unsafe-pickle")
    if options.trusted_types:
        args += ["--trusted-types", ",".join(options.trusted_types)]
    if options.custom_class:
        args += ["--custom-class", options.custom_class]
    return ServerPlan(
        runtime.image or serving_image,
        # Our own image names its entry point; an image of the user's keeps its own.
        None if runtime.image else ["modelops-serve"],
        args + list(runtime.args),
        _env({}, spec),
        MODEL_PORT,
        "/v2/health/ready",
        _http_get("/v2/health/live"),
    )
