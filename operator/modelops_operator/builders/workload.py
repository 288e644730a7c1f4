"""Pure builders: a ModelDeployment spec in, Deployment and Service manifests (dicts) out.

Names are deterministic so a retried reconcile applies the same objects instead of creating
duplicates. Owner references are added by the caller (they need the live object's uid).
"""

from __future__ import annotations

from typing import Any

from ..api.modeldeployment import ModelDeploymentSpec
from ..constants import (
    DEFAULT_SERVING_IMAGE,
    LABEL_DEPLOYMENT,
    LABEL_MODEL_VERSION,
    LABEL_ROLE,
    ROLE_CHAMPION,
    ROLE_ROUTER,
    SERVICE_PORT,
)
from .labels import object_labels
from .pod import (
    build_init_containers,
    build_model_container,
    build_sidecar_container,
    build_volumes,
    pod_placement,
    pod_security_context,
)


def workload_name(deployment: str, role: str) -> str:
    """`<mdep>-champion` / `<mdep>-challenger`."""
    return f"{deployment}-{role}"


def selector_labels(deployment: str, role: str) -> dict[str, str]:
    """Labels a Deployment selects its pods by: immutable, so never the model version."""
    return {LABEL_DEPLOYMENT: deployment, LABEL_ROLE: role}


def selector_string(deployment: str, role: str) -> str:
    """The same selector as the string the scale subresource (and HPA) needs."""
    return ",".join(f"{k}={v}" for k, v in sorted(selector_labels(deployment, role).items()))


def pod_labels(deployment: str, spec: ModelDeploymentSpec, role: str) -> dict[str, str]:
    return {
        **object_labels(deployment),
        LABEL_ROLE: role,
        LABEL_MODEL_VERSION: spec.model.version,
    }


def endpoint_url(deployment: str, namespace: str) -> str:
    return f"http://{deployment}.{namespace}.svc.cluster.local"


def build_model_deployment(
    deployment: str,
    namespace: str,
    spec: ModelDeploymentSpec,
    role: str = ROLE_CHAMPION,
    serving_image: str = DEFAULT_SERVING_IMAGE,
) -> dict[str, Any]:
    """The apps/v1 Deployment running one model version in one role.

    Its pod template carries the version (label and args), so a new version rolls the pods.
    """
    labels = pod_labels(deployment, spec, role)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": workload_name(deployment, role),
            "namespace": namespace,
            "labels": {**object_labels(deployment), LABEL_ROLE: role},
        },
        "spec": {
            "replicas": spec.runtime.replicas,
            "selector": {"matchLabels": selector_labels(deployment, role)},
            # Keep serving while a new version starts: never fewer ready pods than wanted.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "progressDeadlineSeconds": 600,
            "revisionHistoryLimit": 3,
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": "9090",
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": pod_security_context(),
                    "initContainers": build_init_containers(spec, serving_image),
                    "containers": [
                        build_model_container(spec, serving_image),
                        build_sidecar_container(deployment, spec, role, serving_image),
                    ],
                    "volumes": build_volumes(deployment, spec),
                    "terminationGracePeriodSeconds": 30,
                    **pod_placement(spec),
                },
            },
        },
    }


def build_service(deployment: str, namespace: str, routed: bool = False) -> dict[str, Any]:
    """The stable endpoint `<mdep>`: the champion pods' sidecars, or the router when routed."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": deployment,
            "namespace": namespace,
            "labels": object_labels(deployment),
        },
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(deployment, ROLE_ROUTER if routed else ROLE_CHAMPION),
            "ports": [
                {"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"},
                {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"},
            ],
        },
    }
