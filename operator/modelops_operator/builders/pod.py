"""Pure builders of the model pod: fetch init container, model server, metrics sidecar.

Every container runs non-root with a read-only root filesystem, no privilege escalation, all
capabilities dropped and the RuntimeDefault seccomp profile (the "restricted" Pod Security
Standard), so the pods are admitted in namespaces that enforce it.
"""

from __future__ import annotations

import copy
import json
import posixpath
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from ..api.modeldeployment import Humility, ModelDeploymentSpec, Resources
from ..constants import (
    DEFAULT_SERVING_IMAGE,
    METRICS_PORT,
    MODEL_DIR,
    SIDECAR_PORT,
)
from ..gating.config import parse_duration
from ..manifestdiff import parse_quantity
from .keys import (
    DEFAULT_MAX_DELAY_SECONDS,
    KEYS_MOUNT,
    RECEIPT_KEYS_ITEM,
    RECEIPT_KEYS_PATH,
    keys_volume,
)
from .servers import TRITON_VERSION_DIR, plan_server, server_port

PVC_MOUNT = "/mnt/model-source"
TERMINATION_LOG = "/dev/termination-log"
DEFAULT_FEEDBACK_TTL_SECONDS = 3600.0  # the sidecar's --feedback-ttl default
RUN_AS_USER = 65532  # the conventional "nonroot" uid of distroless images
# A terminating pod stays in its Services' endpoints until kube-proxy and the router catch up;
# until then each container keeps serving (the kubelet's own sleep, no binary needed). Then
# the sidecar drains: clients that still hold a connection to it (kube-proxy keeps established
# ones, a router's keep-alive pool too) get answers with Connection: close for
# SIDECAR_DRAIN_SECONDS. The model must outlive all of that, or those last requests find its
# port closed (a 502 "connection refused"): it stops after the sidecar's delay and drain.
SIDECAR_STOP_DELAY_SECONDS = 5
SIDECAR_DRAIN_SECONDS = 5
MODEL_STOP_DELAY_SECONDS = SIDECAR_STOP_DELAY_SECONDS + SIDECAR_DRAIN_SECONDS + 2

# The operator's containers beside the model. Burstable by default: a small request, no CPU
# limit (a CFS quota would throttle the proxy in bursts). When the model container's resources
# make it Guaranteed, they get requests equal to limits too, or the pod would be Burstable: only
# a Guaranteed pod's integer CPUs are the model's alone under the kubelet's static CPU manager
# policy, which on a busy node is what keeps the sidecar's goroutines off the model's core
# (docs/serving.md, Performance). 500m is ~2,500 answers a second at the sidecar's measured
# 130-200 us of CPU each before its quota throttles it.
SIDECAR_RESOURCES = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}
SIDECAR_GUARANTEED = {"cpu": "500m", "memory": "256Mi"}
FETCH_RESOURCES = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}}
FETCH_GUARANTEED = {"cpu": "250m", "memory": "512Mi"}

MODEL_VOLUME = "model"
TMP_VOLUME = "tmp"
SOURCE_VOLUME = "model-source"
# The training profile (spec.model.profile): fetched into its own emptyDir, read by the sidecar.
PROFILE_VOLUME = "profile"
PROFILE_DIR = "/profile"
PROFILE_SOURCE_VOLUME = "profile-source"
PROFILE_PVC_MOUNT = "/mnt/profile-source"


ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


@dataclass(frozen=True)
class ModelFetchPlan:
    """How the init container reaches the model, where it puts it, and where the server then
    finds it (modelops-fetch's layout: a file lands as DEST/<file name>, a directory or an
    archive as DEST/<name>/)."""

    fetch_uri: str
    fetch_dest: str
    served_path: str
    pvc_claim: str | None


def _landing_name(path: str) -> tuple[str, bool]:
    """The name the fetched model lands under, and whether it is a directory."""
    path = unquote(path)
    if path.endswith("/"):
        return posixpath.basename(path.rstrip("/")) or "model", True
    name = posixpath.basename(path) or "model"
    for suffix in ARCHIVE_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], True
    return name, False


def plan_model_fetch(uri: str, server: str = "modelops", model_name: str = "") -> ModelFetchPlan:
    """Map spec.model.uri to the fetch container's source and destination and the path the
    model server loads."""
    parts = urlsplit(uri)
    name, is_tree = _landing_name(parts.path)
    fetch_uri, claim = uri, None
    if parts.scheme == "pvc":
        # pvc://claim/path: the claim is mounted read-only, the fetch reads it as a local file.
        fetch_uri, claim = f"file://{PVC_MOUNT}{parts.path}", parts.netloc
    if server == "triton" and not is_tree:
        # Triton loads a repository: <repository>/<model name>/<integer version>/model.<ext>.
        extension = posixpath.splitext(name)[1] or ".onnx"
        destination = f"{MODEL_DIR}/{model_name}/{TRITON_VERSION_DIR}/model{extension}"
        return ModelFetchPlan(fetch_uri, destination, MODEL_DIR, claim)
    # A directory keeps its trailing '/': that is how the server tells it from a file.
    served = f"{MODEL_DIR}/{name}/" if is_tree else f"{MODEL_DIR}/{name}"
    return ModelFetchPlan(fetch_uri, f"{MODEL_DIR}/", served, claim)


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


def stop_delay(seconds: int) -> dict[str, Any]:
    return {"preStop": {"sleep": {"seconds": seconds}}}


def _common_env() -> list[dict[str, str]]:
    # Our programs write why they failed (e.g. a digest mismatch) where the kubelet reads it.
    return [{"name": "MODELOPS_TERMINATION_LOG", "value": TERMINATION_LOG}]


def _fetch_image(spec: ModelDeploymentSpec, serving_image: str) -> str:
    # A file:// model lives inside the model image, so the fetch must run that image.
    # (file:// is refused with MLServer and Triton, whose images have no modelops-fetch.)
    if spec.model.uri.startswith("file://"):
        return spec.runtime.image or serving_image
    return serving_image


def is_guaranteed(resources: Resources | None) -> bool:
    """The model container's resources are Guaranteed's: cpu and memory limits, and requests
    equal to them or unset (Kubernetes then sets them to the limits)."""
    if resources is None or not resources.limits:
        return False
    requests = resources.requests or {}
    for name in ("cpu", "memory"):
        limit = parse_quantity(resources.limits.get(name))
        if limit is None:
            return False
        if name in requests and parse_quantity(requests[name]) != limit:
            return False
    return True


def helper_resources(
    spec: ModelDeploymentSpec, burstable: dict[str, Any], guaranteed: dict[str, str]
) -> dict[str, Any]:
    """An operator container's resources: `guaranteed` as requests and limits when the model
    container is Guaranteed, so that the pod is too; `burstable` otherwise."""
    if is_guaranteed(spec.runtime.resources):
        return {"requests": dict(guaranteed), "limits": dict(guaranteed)}
    return copy.deepcopy(burstable)  # manifests are mutated downstream


def _fetch_container(
    spec: ModelDeploymentSpec,
    serving_image: str,
    name: str,
    args: list[str],
    mounts: list[dict[str, Any]],
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": name,
        "image": _fetch_image(spec, serving_image),
        "imagePullPolicy": spec.runtime.image_pull_policy,
        "command": ["modelops-fetch"],
        "args": args,
        "env": _common_env(),
        "volumeMounts": mounts,
        "securityContext": container_security_context(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "resources": helper_resources(spec, FETCH_RESOURCES, FETCH_GUARANTEED),
    }
    if spec.model.credentials_secret:
        container["envFrom"] = [{"secretRef": {"name": spec.model.credentials_secret}}]
    return container


def build_fetch_container(
    spec: ModelDeploymentSpec, serving_image: str = DEFAULT_SERVING_IMAGE
) -> dict[str, Any]:
    """Init container: copy the model into the shared emptyDir, refusing a wrong digest."""
    plan = fetch_plan(spec)
    mounts: list[dict[str, Any]] = [
        {"name": MODEL_VOLUME, "mountPath": MODEL_DIR},
        {"name": TMP_VOLUME, "mountPath": "/tmp"},
    ]
    if plan.pvc_claim:
        mounts.append({"name": SOURCE_VOLUME, "mountPath": PVC_MOUNT, "readOnly": True})
    args = [plan.fetch_uri, plan.fetch_dest, "--digest", spec.model.digest]
    return _fetch_container(spec, serving_image, "model-fetch", args, mounts)


@dataclass(frozen=True)
class ProfileFetchPlan:
    """Where the profile comes from (a pvc:// one through its own read-only mount) and where
    the sidecar reads it."""

    fetch_uri: str
    path: str
    pvc_claim: str | None


def profile_fetch_plan(spec: ModelDeploymentSpec) -> ProfileFetchPlan | None:
    if spec.model.profile is None:
        return None
    parts = urlsplit(spec.model.profile.uri)
    name = posixpath.basename(unquote(parts.path)) or "profile.json"
    if parts.scheme == "pvc":
        return ProfileFetchPlan(f"file://{PROFILE_PVC_MOUNT}{parts.path}",
                                f"{PROFILE_DIR}/{name}", parts.netloc)  # fmt: skip
    return ProfileFetchPlan(spec.model.profile.uri, f"{PROFILE_DIR}/{name}", None)


def build_init_containers(
    spec: ModelDeploymentSpec, serving_image: str = DEFAULT_SERVING_IMAGE
) -> list[dict[str, Any]]:
    """The model's fetch, then the profile's (verified against its own digest)."""
    containers = [build_fetch_container(spec, serving_image)]
    plan = profile_fetch_plan(spec)
    if plan is not None and spec.model.profile is not None:
        mounts: list[dict[str, Any]] = [
            {"name": PROFILE_VOLUME, "mountPath": PROFILE_DIR},
            {"name": TMP_VOLUME, "mountPath": "/tmp"},
        ]
        if plan.pvc_claim:
            mounts.append(
                {"name": PROFILE_SOURCE_VOLUME, "mountPath": PROFILE_PVC_MOUNT, "readOnly": True}
            )
        args = [plan.fetch_uri, f"{PROFILE_DIR}/", "--digest", spec.model.profile.digest]
        containers.append(_fetch_container(spec, serving_image, "profile-fetch", args, mounts))
    return containers


def build_model_container(
    spec: ModelDeploymentSpec, serving_image: str = DEFAULT_SERVING_IMAGE
) -> dict[str, Any]:
    """The model server (spec.runtime.server): loads the verified model and speaks the Open
    Inference Protocol on its port, which only the sidecar in the same pod calls."""
    server = plan_server(spec, fetch_plan(spec).served_path, serving_image)
    container: dict[str, Any] = {
        "name": "model",
        "image": server.image,
        "imagePullPolicy": spec.runtime.image_pull_policy,
        "args": server.args,
        "ports": [{"name": "model", "containerPort": server.port, "protocol": "TCP"}],
        "env": _common_env() + server.env,
        "volumeMounts": [
            {"name": MODEL_VOLUME, "mountPath": MODEL_DIR, "readOnly": True},
            {"name": TMP_VOLUME, "mountPath": "/tmp"},
        ],
        "readinessProbe": {
            "httpGet": {"path": server.readiness_path, "port": "model"},
            "periodSeconds": 5,
            "failureThreshold": 3,
        },
        "livenessProbe": {**server.liveness, "periodSeconds": 10, "failureThreshold": 6},
        "lifecycle": stop_delay(MODEL_STOP_DELAY_SECONDS),
        "securityContext": container_security_context(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if server.command is not None:
        container["command"] = server.command
    if server.working_dir:
        container["workingDir"] = server.working_dir
    if spec.runtime.resources:
        container["resources"] = spec.runtime.resources.to_wire()
    return container


def fetch_plan(spec: ModelDeploymentSpec) -> ModelFetchPlan:
    return plan_model_fetch(spec.model.uri, spec.runtime.server, spec.model.name)


def build_sidecar_container(
    deployment: str,
    spec: ModelDeploymentSpec,
    role: str,
    serving_image: str = DEFAULT_SERVING_IMAGE,
) -> dict[str, Any]:
    """The metrics sidecar in front of the model server (traffic 8000, /metrics 9090)."""
    args = [
        "--upstream",
        f"http://127.0.0.1:{server_port(spec)}",
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
        "--drain-seconds",
        str(SIDECAR_DRAIN_SECONDS),
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
    if feedback.enabled:
        # Labels carry the answer's signed receipt: any replica scores them, after restarts,
        # until maxDelay (builders/keys.py, dataplane/internal/receipt).
        args += ["--receipt-keys-file", RECEIPT_KEYS_PATH,
                 "--feedback-max-delay", format(feedback_max_delay_seconds(spec), "g")]
    if feedback.enabled and maturity:
        # The prediction must still be remembered when its label matures.
        ttl = max(maturity, DEFAULT_FEEDBACK_TTL_SECONDS)
        args += ["--label-maturity", format(maturity, "g"), "--feedback-ttl", format(ttl, "g")]
    mounts = [KEYS_MOUNT] if feedback.enabled else []
    profile = profile_fetch_plan(spec)
    if profile is not None:
        # Inputs counted in the profile's bins, for the drift monitor (docs/monitoring.md).
        args += ["--profile-file", profile.path]
        mounts.append({"name": PROFILE_VOLUME, "mountPath": PROFILE_DIR, "readOnly": True})
    if spec.monitoring.humility is not None:
        args += ["--humility-rules", humility_rules_json(spec.monitoring.humility)]
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
        "lifecycle": stop_delay(SIDECAR_STOP_DELAY_SECONDS),
        "volumeMounts": mounts,
        "securityContext": container_security_context(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "resources": helper_resources(spec, SIDECAR_RESOURCES, SIDECAR_GUARANTEED),
    }


def humility_rules_json(humility: Humility) -> str:
    """spec.monitoring.humility.rules as the sidecar's --humility-rules (docs/serving.md)."""
    rules = []
    for rule in humility.rules:
        when: dict[str, Any]
        if rule.when.outlying_input is not None:
            when = {"outlyingInput": {"features": list(rule.when.outlying_input.features)}}
        else:
            when = {"confidenceBelow": rule.when.confidence_below,
                    "confidenceOutput": rule.when.confidence_output}
        entry: dict[str, Any] = {"name": rule.name, "when": when, "action": rule.action}
        if rule.override_value is not None:
            value = rule.override_value
            # 0, not 0.0: an INT64 output stays integers.
            entry["overrideValue"] = int(value) if value.is_integer() else value
        rules.append(entry)
    return json.dumps({"rules": rules}, separators=(",", ":"), sort_keys=True)


def pod_placement(spec: ModelDeploymentSpec) -> dict[str, Any]:
    """The pod-level fields of spec.runtime: identity, registry credentials, scheduling."""
    runtime = spec.runtime
    fields: dict[str, Any] = {}
    if runtime.service_account_name:
        # The token stays unmounted: IRSA and EKS Pod Identity project their own, GKE's
        # Workload Identity uses the metadata server, and the server needs no API access.
        fields["serviceAccountName"] = runtime.service_account_name
    if runtime.image_pull_secrets:
        fields["imagePullSecrets"] = [{"name": n} for n in runtime.image_pull_secrets]
    if runtime.node_selector:
        fields["nodeSelector"] = dict(runtime.node_selector)
    if runtime.tolerations:
        fields["tolerations"] = [t.to_wire() for t in runtime.tolerations]
    if runtime.affinity:
        fields["affinity"] = runtime.affinity.to_wire()
    return fields


def feedback_max_delay_seconds(spec: ModelDeploymentSpec) -> float:
    """spec.monitoring.feedback.maxDelay in seconds (its default when unset)."""
    max_delay = parse_duration(spec.monitoring.feedback.max_delay)
    return DEFAULT_MAX_DELAY_SECONDS if max_delay is None else max_delay


def build_volumes(deployment: str, spec: ModelDeploymentSpec) -> list[dict[str, Any]]:
    volumes: list[dict[str, Any]] = [
        {"name": MODEL_VOLUME, "emptyDir": {}},
        {"name": TMP_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
    ]
    if spec.monitoring.feedback.enabled:
        volumes.append(keys_volume(deployment, [RECEIPT_KEYS_ITEM]))
    claim = fetch_plan(spec).pvc_claim
    if claim:
        volumes.append(
            {"name": SOURCE_VOLUME, "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        )
    profile = profile_fetch_plan(spec)
    if profile is not None:
        volumes.append({"name": PROFILE_VOLUME, "emptyDir": {"sizeLimit": "4Mi"}})
        if profile.pvc_claim:
            volumes.append({"name": PROFILE_SOURCE_VOLUME, "persistentVolumeClaim": {
                "claimName": profile.pvc_claim, "readOnly": True}})  # fmt: skip
    return volumes
