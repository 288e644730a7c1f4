"""Traffic providers: the data plane that splits (and mirrors) a challenge's traffic.

A provider says which objects carry a topology, whether the split it was given is in force,
and what it can do. `provider_for` is the one place that maps `spec.traffic.provider` to one;
`unsupported` turns a gate or strategy that needs what the chosen provider cannot do into a
configuration error naming the field, instead of a gate that silently starves.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from ..api.championchallenger import ChampionChallengerSpec
from ..api.modeldeployment import ModelDeploymentSpec
from .model import Topology
from .traffic import ROUTER_CONFIG_KEY, http_route, router_configmap
from .workloads import build_router_deployment, build_router_disruption_budget

# Gates scored from clients' labels (POST /v2/feedback) rather than from the traffic itself
# (accuracy: the share correct, or the loss for a regression model).
LABEL_GATES = frozenset({"accuracy"})


class Capability(enum.Enum):
    ROUTES_FEEDBACK = "send each label to the arm that answered the request"
    STICKY_SESSIONS = "keep each user on one arm"


class ClusterReads(Protocol):
    """What a provider may read to tell whether its split is in force."""

    async def router_revisions(self, namespace: str, deployment: str) -> list[str] | None:
        """The configuration revision each router pod runs; None when it cannot be read."""

    def router_ready_replicas(self) -> int:
        """Ready pods of the challenge's router Deployment."""

    async def object(
        self, api_version: str, kind: str, namespace: str, name: str
    ) -> Mapping[str, Any] | None:
        """One object as the API server has it (None: not found)."""


class TrafficProvider(Protocol):
    name: ClassVar[str]
    capabilities: ClassVar[frozenset[Capability]]
    # Its own pods take the ModelDeployment's Service (once ready), rather than a Gateway.
    fronts_service: ClassVar[bool]

    def objects(
        self, deployment: str, namespace: str, topology: Topology, serving_image: str
    ) -> list[dict[str, Any]]:
        """The objects that carry the topology."""

    async def route_live(
        self, reads: ClusterReads, namespace: str, objects: Sequence[Mapping[str, Any]]
    ) -> bool:
        """Is the split of `objects` (this provider's, as `objects` built them) in force?"""


@dataclass(frozen=True)
class RouterProvider:
    """The built-in router: a ConfigMap it reloads, and its Deployment."""

    sticky_header: str | None = None
    name: ClassVar[str] = "router"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(Capability)
    fronts_service: ClassVar[bool] = True

    def objects(
        self, deployment: str, namespace: str, topology: Topology, serving_image: str
    ) -> list[dict[str, Any]]:
        return [
            router_configmap(deployment, namespace, topology, self.sticky_header),
            build_router_deployment(deployment, namespace, serving_image),
            build_router_disruption_budget(deployment, namespace),
        ]

    async def route_live(
        self, reads: ClusterReads, namespace: str, objects: Sequence[Mapping[str, Any]]
    ) -> bool:
        config = _router_config(objects)
        deployment = config["metadata"]["labels"]["modelops.io/deployment"]
        running = await reads.router_revisions(namespace, deployment)
        return routers_run(running, reads.router_ready_replicas(), self.revision(objects))

    @staticmethod
    def revision(objects: Sequence[Mapping[str, Any]]) -> str:
        """The configuration revision the router pods must report (written in the ConfigMap)."""
        return str(json.loads(_router_config(objects)["data"][ROUTER_CONFIG_KEY])["revision"])


def _router_config(objects: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    return next(o for o in objects if o["kind"] == "ConfigMap")


def routers_run(running: list[str] | None, ready_replicas: int, wanted: str) -> bool:
    """Every router pod reports the revision we wrote (a mounted ConfigMap reaches pods only
    after a delay), and no fewer pods report than are ready."""
    if not running:
        return False
    return len(running) >= ready_replicas and all(r == wanted for r in running)


@dataclass(frozen=True)
class GatewayProvider:
    """A Gateway API HTTPRoute with weighted backendRefs (and a RequestMirror in shadow mode).

    Labels sent to the route are split by the same weights, so most reach an arm that never
    saw the request: label gates are refused. The route is live once every parent Gateway
    has accepted this generation of it and resolved its backends."""

    parent_refs: tuple[Mapping[str, Any], ...] = ()
    name: ClassVar[str] = "gatewayAPI"
    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    fronts_service: ClassVar[bool] = False

    def objects(
        self, deployment: str, namespace: str, topology: Topology, serving_image: str
    ) -> list[dict[str, Any]]:
        return [http_route(deployment, namespace, topology, [dict(r) for r in self.parent_refs])]

    async def route_live(
        self, reads: ClusterReads, namespace: str, objects: Sequence[Mapping[str, Any]]
    ) -> bool:
        route = next(o for o in objects if o["kind"] == "HTTPRoute")
        found = await reads.object(
            route["apiVersion"], "HTTPRoute", namespace, route["metadata"]["name"]
        )
        return found is not None and http_route_accepted(found, route["spec"])


def http_route_accepted(found: Mapping[str, Any], wanted_spec: Mapping[str, Any]) -> bool:
    """The stored route carries our rules, and each parent in its spec reports Accepted and
    ResolvedRefs for the stored generation (Gateway API's route status)."""
    spec = found.get("spec") or {}
    if _split(spec) != _split(wanted_spec):
        return False  # not yet ours (or changed by someone else)
    generation = (found.get("metadata") or {}).get("generation")
    parents = (found.get("status") or {}).get("parents") or []
    for ref in spec.get("parentRefs") or ():
        reported = [p for p in parents if _same_parent(p.get("parentRef") or {}, ref)]
        if not reported or not all(_accepted(p, generation) for p in reported):
            return False
    return True


def _split(spec: Mapping[str, Any]) -> list[Any]:
    """Each rule's backends and weights, and its mirror's share: what the API server keeps of
    ours as we wrote it (it adds defaults around them, such as a backend's group and kind)."""
    split = []
    for rule in spec.get("rules") or ():
        backends = [(b.get("name"), b.get("weight")) for b in rule.get("backendRefs") or ()]
        mirrors = [
            ((f.get("requestMirror") or {}).get("backendRef", {}).get("name"),
             (f.get("requestMirror") or {}).get("percent"))
            for f in rule.get("filters") or ()
            if f.get("type") == "RequestMirror"
        ]
        split.append((backends, mirrors))
    return split


def _same_parent(reported: Mapping[str, Any], ref: Mapping[str, Any]) -> bool:
    keys = ("name", "namespace", "sectionName")
    return all(reported.get(k) == ref.get(k) for k in keys if ref.get(k) is not None)


def _accepted(parent: Mapping[str, Any], generation: Any) -> bool:
    conditions = {c.get("type"): c for c in parent.get("conditions") or ()}
    return all(
        (c := conditions.get(kind)) is not None
        and c.get("status") == "True"
        and (generation is None or c.get("observedGeneration") == generation)
        for kind in ("Accepted", "ResolvedRefs")
    )


def provider_for(spec: ChampionChallengerSpec) -> TrafficProvider:
    if spec.traffic.provider == "gatewayAPI":
        return GatewayProvider(tuple(ref.to_wire() for ref in spec.traffic.parent_refs or ()))
    return RouterProvider(spec.strategy.sticky_header)


def unsupported(spec: ChampionChallengerSpec, target: ModelDeploymentSpec) -> str | None:
    """The first field asking for what the provider (or the target) cannot do, with why."""
    provider = provider_for(spec)
    for index, gate in enumerate(spec.gates):
        if gate.type not in LABEL_GATES:
            continue
        field = f"spec.gates[{index}].type"
        if Capability.ROUTES_FEEDBACK not in provider.capabilities:
            return (
                f"{field}: a {gate.type} gate scores clients' labels, and "
                f"spec.traffic.provider {provider.name} cannot "
                f"{Capability.ROUTES_FEEDBACK.value} (use the router, or gates on errors, "
                "latency or Prometheus queries)"
            )
        if not target.monitoring.feedback.enabled:
            return (
                f"{field}: a {gate.type} gate scores clients' labels, and the target does not "
                "take them: set its spec.monitoring.feedback.enabled to true"
            )
    sticky = spec.strategy.sticky_header
    if sticky is not None and Capability.STICKY_SESSIONS not in provider.capabilities:
        return (
            f"spec.strategy.stickyHeader: spec.traffic.provider {provider.name} cannot "
            f"{Capability.STICKY_SESSIONS.value}"
        )
    return None
