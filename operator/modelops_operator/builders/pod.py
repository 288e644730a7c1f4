"""Pure builders of the model pod: fetch init container, model server, metrics sidecar.

Every container runs non-root with a read-only root filesystem, no privilege escalation, all
capabilities dropped and the RuntimeDefault seccomp profile (the "restricted" Pod Security
Standard), so the pods are admitted in namespaces that enforce it.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from ..api.modeldeployment import ModelDeploymentSpec
from ..constants import (
    DEFAULT_SERVING_IMAGE,
    METRICS_PORT,
    MODEL_DIR,
    MODEL_PORT,
    SIDECAR_PORT,
)
from ..gating.config import parse_duration

PVC_MOUNT = "/mnt/model-source"
TERMINATION_LOG = "/dev/termination-log"
DEFAULT_FEEDBACK_TTL_SECONDS = 3600.0  # the sidecar's --feedback-ttl default
RUN_AS_USER = 65532  # the conventional "nonroot" uid of distroless images

MODEL_VOLUME = "model"
TMP_VOLUME = "tmp"
SOURCE_VOLUME = "model-source"


@dataclass(frozen=True)
class ModelFetchPlan:
    """How the init container reaches the model file, and where the server then finds it."""

    fetch_uri: str
    served_uri: str
    pvc_claim: str | None


def plan_model_fetch(uri: str) -> ModelFetchPlan:
    """Map spec.model.uri to the fetch container's source and the model server's local file."""
    parts = urlsplit(uri)
    file_name = posixpath.basename(unquote(parts.path)) or "model"
    served = f"file://{MODEL_DIR}/{file_name}"
    if parts.scheme == "pvc":
        # pvc://claim/path: the claim is mounted read-only, the fetch reads it as a local file.
        return ModelFetchPlan(f"file://{PVC_MOUNT}{parts.path}", served, parts.netloc)
    return ModelFetchPlan(uri, served, None)


def container_security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "fsGroup": RUN_AS_USER,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _common_env() -> list[dict[str, str]]:
    # Our programs write why they failed (e.g. a digest mismatch) where the kubelet reads it.
    return [{"name": "MODELOPS_TERMINATION_LOG", "value": TERMINATION_LOG}]


def model_image(spec: ModelDeploymentSpec, serving_image: str = DEFAULT_SERVING_IMAGE) -> str:
    return spec.runtime.image or serving_image


def build_fetch_container(
    spec: ModelDeploymentSpec, serving_image: str = DEFAULT_SERVING_IMAGE
) -> dict[str, Any]:
    """Init container: copy the model into the shared emptyDir, refusing a wrong digest."""
    plan = plan_model_fetch(spec.model.uri)
    # A file:// model lives inside the model image, so the fetch must run that image.
    image = (
        model_image(spec, serving_image) if spec.model.uri.startswith("file://") else serving_image
    )
    mounts: list[dict[str, Any]] = [
        {"name": MODEL_VOLUME, "mountPath": MODEL_DIR},
        {"name": TMP_VOLUME, "mountPath": "/tmp"},
    ]
    if plan.pvc_claim:
        mounts.append({"name": SOURCE_VOLUME, "mountPath": PVC_MOUNT, "readOnly": True})
    container: dict[str, Any] = {
        "name": "model-fetch",
        "image": image,
        "imagePullPolicy": spec.runtime.image_pull_policy,
        "command": ["modelops-fetch"],
        "args": [plan.fetch_uri, f"{MODEL_DIR}/", "--digest", spec.model.digest],
        "env": _common_env(),
        "volumeMounts": mounts,
        "securityContext": container_security_context(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}},
    }
    if spec.model.credentials_secret:
        container["envFrom"] = [{"secretRef": {"name": spec.model.credentials_secret}}]
    return container


def build_model_container(
    spec: ModelDeploymentSpec, serving_image: str = DEFAULT_SERVING_IMAGE
) -> dict[str, Any]:
    """The model server: loads the verified file and speaks the Open Inference Protocol."""
    plan = plan_model_fetch(spec.model.uri)
    model = spec.model
    container: dict[str, Any] = {
        "name": "model",
        "image": model_image(spec, serving_image),
        "imagePullPolicy": spec.runtime.image_pull_policy,
        "args": [
            "--name",
            model.name,
            "--uri",
            plan.served_uri,
            "--format",
            model.format,
            "--digest",
            model.digest,
            "--version",
            model.version,
            "--port",
            str(MODEL_PORT),
        ],
        "ports": [{"name": "model", "containerPort": MODEL_PORT, "protocol": "TCP"}],
        "env": _common_env() + [{"name": e.name, "value": e.value} for e in spec.runtime.env],
        "volumeMounts": [
            {"name": MODEL_VOLUME, "mountPath": MODEL_DIR, "readOnly": True},
            {"name": TMP_VOLUME, "mountPath": "/tmp"},
        ],
        "readinessProbe": {
            "httpGet": {"path": "/v2/health/ready", "port": "model"},
            "periodSeconds": 5,
            "failureThreshold": 3,
        },
        "livenessProbe": {
            "httpGet": {"path": "/v2/health/live", "port": "model"},
            "periodSeconds": 10,
            "failureThreshold": 6,
        },
        "securityContext": container_security_context(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if not spec.runtime.image:
        # Our own image: the entry point is named; a foreign server keeps its own entry point.
        container["command"] = ["modelops-serve"]
    if spec.runtime.resources:
        container["resources"] = spec.runtime.resources.to_wire()
    return container


def build_sidecar_container(
    deployment: str,
    spec: ModelDeploymentSpec,
    role: str,
    serving_image: str = DEFAULT_SERVING_IMAGE,
) -> dict[str, Any]:
    """The metrics sidecar in front of the model server (traffic 8000, /metrics 9090)."""
    args = [
        "--upstream",
        f"http://127.0.0.1:{MODEL_PORT}",
        "--port",
        str(SIDECAR_PORT),
        "--metrics-port",
        str(METRICS_PORT),
        "--deployment",
        deployment,
        "--model",
        spec.model.name,
        "--version",
        spec.model.version,
        "--role",
        role,
    ]
    buckets = spec.monitoring.prediction_buckets
    if buckets:
        args += ["--prediction-buckets", ",".join(format(b, "g") for b in buckets)]
    feedback = spec.monitoring.feedback
    maturity = parse_duration(feedback.maturity)
    if not feedback.enabled:
        args += ["--feedback", "off"]  # labels are refused (404)
    elif feedback.loss_bound is not None:
        args += ["--loss-bound", repr(feedback.loss_bound)]  # the number the gate divides by
    if feedback.enabled and maturity:
        # The prediction must still be remembered when its label matures.
        ttl = max(maturity, DEFAULT_FEEDBACK_TTL_SECONDS)
        args += ["--label-maturity", format(maturity, "g"), "--feedback-ttl", format(ttl, "g")]
    return {
        "name": "metrics-sidecar",
        "image": serving_image,
        "imagePullPolicy": spec.runtime.image_pull_policy,
        "command": ["modelops-sidecar"],
        "args": args,
        "ports": [
            {"name": "http", "containerPort": SIDECAR_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
        ],
        "env": _common_env(),
        "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 5},
        "securityContext": container_security_context(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
    }


def build_volumes(spec: ModelDeploymentSpec) -> list[dict[str, Any]]:
    volumes: list[dict[str, Any]] = [
        {"name": MODEL_VOLUME, "emptyDir": {}},
        {"name": TMP_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
    ]
    claim = plan_model_fetch(spec.model.uri).pvc_claim
    if claim:
        volumes.append(
            {"name": SOURCE_VOLUME, "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        )
    return volumes
