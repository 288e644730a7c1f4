"""Pure builders of what a challenge adds beside the champion: challenger, arm Services, router.

- `<md>-challenger`: the same pod as the champion's, running the challenger's model;
- `<md>-champion` / `<md>-challenger` Services: one per arm, on the sidecar's traffic port, so a
  route (router or HTTPRoute) can weigh them;
- `<md>-router` Deployment + ConfigMap: the built-in router; the `<md>` Service selects it while
  a ChampionChallenger with the router provider gates the ModelDeployment.
"""

from __future__ import annotations

import json
from typing import Any

from ..api.modeldeployment import ModelDeploymentSpec, ModelProfile, Runtime
from ..builders.keys import (
    KEYS_DIR,
    KEYS_MOUNT,
    LONGEST_MAX_DELAY_SECONDS,
    RECEIPT_KEYS_ITEM,
    RECEIPT_KEYS_PATH,
    STICKY_KEY_ITEM,
    keys_volume,
)
from ..builders.pod import (
    SIDECAR_STOP_DELAY_SECONDS,
    container_security_context,
    pod_security_context,
    stop_delay,
)
from ..builders.workload import object_labels, selector_labels
from ..constants import (
    DEFAULT_SERVING_IMAGE,
    LABEL_NAME,
    METRICS_PORT,
    ROLE_ROUTER,
    ROUTER_APP_NAME,
    ROUTER_CONFIG_DIR,
)
from .model import ModelRef
from .traffic import ROUTER_CONFIG_KEY, SIDECAR_TRAFFIC_PORT, arm_service_name

ROUTER_CONFIG_VOLUME = "router-config"


# The parts of spec.runtime that say how a version is served; replicas, resources, placement
# and environment stay the ModelDeployment's current ones for both arms.
SERVING_FIELDS = (
    "server",
    "image",
    "image_pull_policy",
    "command",
    "args",
    "port",
    "readiness_path",
    "options",
)


def serving_of(spec: ModelDeploymentSpec) -> str:
    """The model's format and server setup, as the compact JSON a ModelRef carries."""
    runtime = spec.runtime.model_dump(
        by_alias=True, exclude_defaults=True, mode="json", include=set(SERVING_FIELDS)
    )
    serving: dict[str, Any] = {"format": spec.model.format, "runtime": runtime}
    if spec.model.profile is not None:  # the version's own profile goes where it goes
        serving["profile"] = spec.model.profile.model_dump(mode="json")
    return json.dumps(serving, sort_keys=True, separators=(",", ":"))


def spec_with_model(spec: ModelDeploymentSpec, model: ModelRef) -> ModelDeploymentSpec:
    """The ModelDeployment's spec with another version of its model, served as that version
    was (its format, server and training profile) when the reference records it."""
    update: dict[str, Any] = {"version": model.version, "uri": model.uri, "digest": model.digest}
    runtime = spec.runtime
    if model.serving:
        serving = json.loads(model.serving)
        update["format"] = serving["format"]
        profile = serving.get("profile")
        update["profile"] = ModelProfile.model_validate(profile) if profile else None
        wire = {**spec.runtime.to_wire(), **serving["runtime"]}
        for name in SERVING_FIELDS:  # a field the recorded setup left unset is unset
            alias = Runtime.model_fields[name].alias or name
            if alias not in serving["runtime"]:
                wire.pop(alias, None)
        runtime = Runtime.model_validate(wire)
    return spec.model_copy(
        update={"model": spec.model.model_copy(update=update), "runtime": runtime}
    )


def model_ref(spec: ModelDeploymentSpec) -> ModelRef:
    return ModelRef(
        version=spec.model.version,
        uri=spec.model.uri,
        digest=spec.model.digest,
        serving=serving_of(spec),
    )


def build_arm_service(deployment: str, namespace: str, role: str) -> dict[str, Any]:
    """`<md>-<role>`: the sidecars of one arm, the backend a route weighs."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": arm_service_name(deployment, role),
            "namespace": namespace,
            "labels": {**object_labels(deployment), "modelops.io/role": role},
        },
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(deployment, role),
            "ports": [
                {
                    "name": "http",
                    "port": SIDECAR_TRAFFIC_PORT,
                    "targetPort": "http",
                    "protocol": "TCP",
                }
            ],
        },
    }


def router_labels(deployment: str) -> dict[str, str]:
    return {
        **object_labels(deployment),
        LABEL_NAME: ROUTER_APP_NAME,
        "modelops.io/role": ROLE_ROUTER,
    }


ROUTER_REPLICAS = 2


def build_router_disruption_budget(deployment: str, namespace: str) -> dict[str, Any]:
    """At most one router pod evicted at a time (a drain waits for its replacement)."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {
            "name": f"{deployment}-router",
            "namespace": namespace,
            "labels": router_labels(deployment),
        },
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector_labels(deployment, ROLE_ROUTER)},
        },
    }


def build_router_deployment(
    deployment: str,
    namespace: str,
    serving_image: str = DEFAULT_SERVING_IMAGE,
    replicas: int = ROUTER_REPLICAS,
) -> dict[str, Any]:
    """The built-in router: reads its ConfigMap-mounted file and reloads it without drops.

    Two replicas, spread over nodes when there are several, with a PodDisruptionBudget: a
    drain or a lost node leaves one answering. The router holds nothing a label needs (the
    receipt names the arm and replica), so which replica a request or its label reaches does
    not matter, shadow pairs aside (docs/serving.md)."""
    labels = router_labels(deployment)
    container = {
        "name": "router",
        "image": serving_image,
        "command": ["modelops-router"],
        "args": [
            "--config",
            f"{ROUTER_CONFIG_DIR}/{ROUTER_CONFIG_KEY}",
            "--port",
            str(SIDECAR_TRAFFIC_PORT),
            "--metrics-port",
            str(METRICS_PORT),
            "--deployment",
            deployment,
            "--reload-interval",
            "0.5",
            "--sticky-key-file",
            f"{KEYS_DIR}/{STICKY_KEY_ITEM}",
            # The router checks a label's receipt to know its arm and replica; the sidecar that
            # scores it holds it to the deployment's own maxDelay, the router to the longest.
            "--receipt-keys-file",
            RECEIPT_KEYS_PATH,
            "--feedback-max-delay",
            format(LONGEST_MAX_DELAY_SECONDS, "g"),
        ],
        "ports": [
            {"name": "http", "containerPort": SIDECAR_TRAFFIC_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
        ],
        "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 5},
        # As for the sidecar: a terminating router keeps serving until kube-proxy has taken it
        # out of the Service, so clients on new connections never reach a closed port.
        "lifecycle": stop_delay(SIDECAR_STOP_DELAY_SECONDS),
        "volumeMounts": [
            {"name": ROUTER_CONFIG_VOLUME, "mountPath": ROUTER_CONFIG_DIR, "readOnly": True},
            KEYS_MOUNT,
        ],
        "securityContext": container_security_context(),
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": f"{deployment}-router",
            "namespace": namespace,
            "labels": router_labels(deployment),
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector_labels(deployment, ROLE_ROUTER)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(METRICS_PORT),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": pod_security_context(),
                    "containers": [container],
                    # Preferred, not required: a one-node cluster still runs both.
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": topology_key,
                            "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": {
                                "matchLabels": selector_labels(deployment, ROLE_ROUTER)
                            },
                        }
                        for topology_key in (
                            "kubernetes.io/hostname",
                            "topology.kubernetes.io/zone",
                        )
                    ],
                    "volumes": [
                        {
                            "name": ROUTER_CONFIG_VOLUME,
                            "configMap": {"name": f"{deployment}-router"},
                        },
                        keys_volume(deployment, [STICKY_KEY_ITEM, RECEIPT_KEYS_ITEM]),
                    ],
                    "terminationGracePeriodSeconds": 30,
                },
            },
        },
    }
