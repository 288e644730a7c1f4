"""The operator's Kubernetes client: lightkube AsyncClient, server-side apply as "modelops".

Every write this client sends is counted in `modelops_operator_api_writes_total`, so a
resync that changes nothing can be shown to write nothing (tests and benchmarks read it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx2
from lightkube import AsyncClient, codecs
from lightkube.core.exceptions import ApiError, LoadResourceError
from lightkube.core.resource_registry import resource_registry
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import PersistentVolumeClaim, Secret
from lightkube.types import PatchType
from prometheus_client import Counter

from .constants import FIELD_MANAGER
from .resources import ChampionChallengerResource, ModelDeploymentResource

# Defining it registers the kind with lightkube's codecs, so apply_manifest can send HTTPRoutes
# (spec.traffic.provider: gatewayAPI).
HTTPRouteResource = create_namespaced_resource(
    "gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes"
)

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

API_WRITES = Counter(
    "modelops_operator_api_writes",
    "Write requests the operator's own client sent to the Kubernetes API.",
    ["verb", "resource"],
)


def _resource_of(path: str) -> str:
    """'/apis/apps/v1/namespaces/x/deployments/y' -> 'deployments' (plus '/status')."""
    parts = [p for p in path.split("/") if p]
    if "namespaces" in parts:
        parts = parts[parts.index("namespaces") + 2 :]
    else:
        parts = parts[3:] if parts and parts[0] == "apis" else parts[2:]
    if not parts:
        return "unknown"
    return parts[0] + (f"/{parts[2]}" if len(parts) > 2 else "")


async def _count_write(request: httpx2.Request) -> None:
    if request.method in WRITE_METHODS:
        API_WRITES.labels(request.method, _resource_of(request.url.path)).inc()


def make_client() -> AsyncClient:
    """A client from the in-cluster service account or KUBECONFIG, counting its writes."""
    # 30 s, not lightkube's 10 s: a burst of creations (Service IP allocation in particular)
    # can queue in a busy API server, and a timed-out apply is retried, which costs more.
    client = AsyncClient(field_manager=FIELD_MANAGER, timeout=httpx2.Timeout(30.0))
    # lightkube builds its httpx client from the kubeconfig (TLS, token); add our hook to it.
    http = client._client._client
    http.event_hooks = {**http.event_hooks, "request": [*http.event_hooks["request"], _count_write]}
    return client


async def apply_manifest(client: AsyncClient, manifest: Mapping[str, Any]) -> None:
    """Server-side apply with force: we own these fields, and re-take them after manual drift."""
    await client.apply(codecs.from_dict(dict(manifest)), field_manager=FIELD_MANAGER, force=True)


async def _patch_status(
    client: AsyncClient, resource: Any, namespace: str, name: str, status: Mapping[str, Any]
) -> None:
    """Merge-patch the status subresource (each controller is the only writer of its keys)."""
    await client.patch(
        resource.Status,
        name,
        {"status": dict(status)},
        namespace=namespace,
        patch_type=PatchType.MERGE,
    )


async def patch_modeldeployment_status(
    client: AsyncClient, namespace: str, name: str, status: Mapping[str, Any]
) -> None:
    await _patch_status(client, ModelDeploymentResource, namespace, name, status)


async def patch_challenge_status(
    client: AsyncClient, namespace: str, name: str, status: Mapping[str, Any]
) -> None:
    await _patch_status(client, ChampionChallengerResource, namespace, name, status)


async def delete_deployment(client: AsyncClient, namespace: str, name: str) -> None:
    """Delete (foreground: its pods drain with their grace period); absent is fine."""
    try:
        await client.delete(Deployment, name, namespace=namespace)
    except ApiError as error:
        if error.status.code != 404:
            raise


async def read_object(
    client: AsyncClient, api_version: str, kind: str, namespace: str, name: str
) -> dict[str, Any] | None:
    """One namespaced object of a kind lightkube knows (built in, or defined in this module),
    as a plain dict; None when it does not exist."""
    try:
        resource: Any = resource_registry.load(api_version, kind)
        found: Any = await client.get(resource, name, namespace=namespace)
    except ApiError as error:
        if error.status.code == 404:
            return None
        raise
    return dict(found.to_dict())


async def _exists(client: AsyncClient, resource: Any, namespace: str, name: str) -> bool:
    try:
        await client.get(resource, name, namespace=namespace)
    except ApiError as error:
        if error.status.code == 404:
            return False
        raise
    return True


async def secret_exists(client: AsyncClient, namespace: str, name: str) -> bool:
    return await _exists(client, Secret, namespace, name)


async def create_once(client: AsyncClient, manifest: Mapping[str, Any]) -> bool:
    """Create an object unless one of that name exists; True when this call created it."""
    try:
        await client.create(codecs.from_dict(dict(manifest)))
    except ApiError as error:
        if error.status.code == 409:
            return False
        raise
    return True


def resource_of(api_version: str, kind: str, plural: str) -> Any:
    """The lightkube resource of a namespaced kind: a built-in or known one, else a generic
    resource named with ``plural`` (custom kinds such as Argo's Workflow)."""
    try:
        return resource_registry.load(api_version, kind)
    except LoadResourceError:  # a kind lightkube does not know
        group, _, version = api_version.rpartition("/")
        return create_namespaced_resource(group, version, kind, plural)


async def create_generated(client: AsyncClient, manifest: Mapping[str, Any], plural: str) -> str:
    """Create an object whose name the API server generates (metadata.generateName); returns
    the name it got."""
    resource = resource_of(manifest["apiVersion"], manifest["kind"], plural)
    created: Any = await client.create(resource.from_dict(dict(manifest)))
    return str(created.metadata.name)


async def patch_secret_item(
    client: AsyncClient, namespace: str, name: str, item: str, encoded: str,
    resource_version: str,
) -> None:
    """Replace one item of a Secret's data, only if the Secret is still the version we read (a
    second operator that rotated it first makes this a 409, retried from a fresh read)."""
    await client.patch(
        Secret,
        name,
        {"metadata": {"resourceVersion": resource_version}, "data": {item: encoded}},
        namespace=namespace,
        patch_type=PatchType.MERGE,
    )


async def claim_exists(client: AsyncClient, namespace: str, name: str) -> bool:
    return await _exists(client, PersistentVolumeClaim, namespace, name)
