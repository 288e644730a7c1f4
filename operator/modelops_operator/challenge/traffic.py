"""Pure builders: a Topology becomes the route that carries it.

Two providers, one setting picks (`spec.traffic.provider`):
* `router` (default, any cluster): the built-in router's configuration document, written into a
  ConfigMap the router mounts and reloads without dropping requests;
* `gatewayAPI`: an HTTPRoute with weighted backendRefs and a RequestMirror filter.
Both send traffic to each arm's Service on the sidecar's traffic port.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .model import Topology

ROUTER_API_VERSION = "router.modelops.io/v1alpha1"
SIDECAR_TRAFFIC_PORT = 8000
ROUTER_CONFIG_KEY = "router.json"


def arm_service_name(deployment: str, role: str) -> str:
    return f"{deployment}-{role}"


def router_config(
    deployment: str, namespace: str, topology: Topology, sticky_header: str | None = None
) -> dict[str, Any]:
    """The router configuration document for a topology (schema: modelops_serving.router_config)."""

    def url(role: str) -> str:
        host = f"{arm_service_name(deployment, role)}.{namespace}.svc"
        return f"http://{host}:{SIDECAR_TRAFFIC_PORT}"

    document: dict[str, Any] = {
        "apiVersion": ROUTER_API_VERSION,
        "kind": "RouterConfig",
        "mode": "shadow" if topology.mirror_percent and topology.challenger else "split",
        "champion": {"url": url("champion")},
        "challengerWeight": topology.challenger_percent if topology.challenger else 0,
        "mirrorPercent": topology.mirror_percent if topology.challenger else 0,
    }
    if topology.challenger is not None:
        document["challenger"] = {"url": url("challenger")}
    if sticky_header:
        document["stickyHeader"] = sticky_header
    # The router exports the revision it runs; the operator waits for it before removing an arm.
    document["revision"] = config_revision(document)
    return document


def config_revision(document: dict[str, Any]) -> str:
    """A digest of the routing content (not the revision field itself)."""
    content = {k: v for k, v in document.items() if k != "revision"}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def router_configmap(
    deployment: str, namespace: str, topology: Topology, sticky_header: str | None = None
) -> dict[str, Any]:
    document = router_config(deployment, namespace, topology, sticky_header)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"{deployment}-router",
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/name": "modelops-router",
                "app.kubernetes.io/instance": deployment,
                "app.kubernetes.io/managed-by": "modelops",
                "modelops.io/deployment": deployment,
            },
        },
        # Sorted keys: the same topology always gives the same bytes, so a resync writes nothing.
        "data": {ROUTER_CONFIG_KEY: json.dumps(document, sort_keys=True, indent=2)},
    }


def http_route(
    deployment: str, namespace: str, topology: Topology, parent_refs: list[dict[str, Any]]
) -> dict[str, Any]:
    """A Gateway API HTTPRoute carrying the topology (weights, and mirroring in shadow mode)."""
    champion_weight = 100 - topology.challenger_percent if topology.challenger else 100
    backends: list[dict[str, Any]] = [
        {
            "name": arm_service_name(deployment, "champion"),
            "port": SIDECAR_TRAFFIC_PORT,
            "weight": champion_weight,
        }
    ]
    rule: dict[str, Any] = {
        "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
        "backendRefs": backends,
    }
    if topology.challenger is not None:
        backends.append(
            {
                "name": arm_service_name(deployment, "challenger"),
                "port": SIDECAR_TRAFFIC_PORT,
                "weight": topology.challenger_percent,
            }
        )
        if topology.mirror_percent:
            rule["filters"] = [
                {
                    "type": "RequestMirror",
                    "requestMirror": {
                        "backendRef": {
                            "name": arm_service_name(deployment, "challenger"),
                            "port": SIDECAR_TRAFFIC_PORT,
                        },
                        "percent": topology.mirror_percent,
                    },
                }
            ]
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {
            "name": deployment,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/managed-by": "modelops",
                "modelops.io/deployment": deployment,
            },
        },
        "spec": {"parentRefs": parent_refs, "rules": [rule]},
    }
