"""Traffic providers: what each carries, when its split is in force, what it refuses."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Mapping
from typing import Any

from modelops_operator.api.championchallenger import ChampionChallengerSpec
from modelops_operator.api.modeldeployment import ModelDeploymentSpec
from modelops_operator.challenge import ModelRef, Topology
from modelops_operator.challenge.providers import (
    GatewayProvider,
    RouterProvider,
    http_route_accepted,
    provider_for,
    unsupported,
)
from tests.harness.gateway import accepted_status

V1 = ModelRef("1.0.0", "s3://models/fraud-1.skops", "sha256:" + "1" * 64)
V2 = ModelRef("1.1.0", "s3://models/fraud-2.skops", "sha256:" + "2" * 64)
CANARY = Topology(V1, V2, 10, 0)


def md_spec(feedback: bool = True) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate({
        "model": {"name": "fraud", "version": V1.version, "uri": V1.uri, "format": "sklearn",
                  "digest": V1.digest},
        "monitoring": {"feedback": {"enabled": feedback}},
    })


def cc_spec(provider: str = "router", gates: list[dict[str, Any]] | None = None,
            **strategy: Any) -> ChampionChallengerSpec:
    traffic: dict[str, Any] = {"provider": provider}
    if provider == "gatewayAPI":
        traffic["parentRefs"] = [{"name": "public", "namespace": "edge"}]
    return ChampionChallengerSpec.model_validate({
        "targetRef": {"name": "fraud"},
        "strategy": {"type": "canary", "steps": [10, 50], **strategy},
        "gates": gates or [{"name": "errors", "type": "errorRate"}],
        "traffic": traffic,
    })


class Reads:
    def __init__(self, revisions: list[str] | None = None, ready: int = 0,
                 stored: Mapping[str, Any] | None = None) -> None:
        self.revisions, self.ready, self.stored = revisions, ready, stored

    async def router_revisions(self, namespace: str, deployment: str) -> list[str] | None:
        assert (namespace, deployment) == ("prod", "fraud")
        return self.revisions

    def router_ready_replicas(self) -> int:
        return self.ready

    async def object(self, api_version: str, kind: str, namespace: str,
                     name: str) -> Mapping[str, Any] | None:
        assert (kind, namespace, name) == ("HTTPRoute", "prod", "fraud")
        return self.stored


def test_one_setting_picks_the_provider_and_what_it_carries() -> None:
    router = provider_for(cc_spec(type="ab", stickyHeader="x-user"))
    assert isinstance(router, RouterProvider) and router.fronts_service
    kinds = [o["kind"] for o in router.objects("fraud", "prod", CANARY, "img")]
    assert kinds == ["ConfigMap", "Deployment", "PodDisruptionBudget"]
    gateway = provider_for(cc_spec("gatewayAPI"))
    assert isinstance(gateway, GatewayProvider) and not gateway.fronts_service
    (route,) = gateway.objects("fraud", "prod", CANARY, "img")
    assert route["kind"] == "HTTPRoute"
    assert route["spec"]["parentRefs"] == [{"name": "public", "namespace": "edge"}]


def test_the_router_is_live_when_every_ready_pod_runs_the_revision_written() -> None:
    router = provider_for(cc_spec())
    objects = router.objects("fraud", "prod", CANARY, "img")
    older = router.objects("fraud", "prod", Topology(V1, V2, 50, 0), "img")
    wanted = RouterProvider.revision(objects)
    stale = RouterProvider.revision(older)
    assert wanted != stale

    def live(reads: Reads) -> bool:
        return asyncio.run(router.route_live(reads, "prod", objects))

    assert live(Reads([wanted, wanted], ready=2))
    assert not live(Reads([wanted, stale], ready=2))  # one pod has not reloaded yet
    assert not live(Reads([wanted], ready=2))  # one ready pod not scraped yet
    assert not live(Reads([], ready=0))
    assert not live(Reads(None, ready=2))  # Prometheus unreachable: not known to be live


def accepted_route(objects: list[dict[str, Any]], generation: int = 3) -> dict[str, Any]:
    """The route as the API server keeps it, after a Gateway controller accepted it."""
    stored = copy.deepcopy(objects[0])
    stored["metadata"]["generation"] = generation
    for backend in stored["spec"]["rules"][0]["backendRefs"]:
        backend.update({"group": "", "kind": "Service"})  # the API server's defaults
    stored["status"] = accepted_status(generation, "public", namespace="edge")
    return stored


def test_a_gateway_route_is_live_once_its_gateway_accepted_this_generation() -> None:
    gateway = provider_for(cc_spec("gatewayAPI"))
    objects = gateway.objects("fraud", "prod", CANARY, "img")
    stored = accepted_route(objects)
    assert asyncio.run(gateway.route_live(Reads(stored=stored), "prod", objects))
    assert not asyncio.run(gateway.route_live(Reads(stored=None), "prod", objects))
    wanted = objects[0]["spec"]

    older = copy.deepcopy(stored)  # accepted, but the generation before ours
    for condition in older["status"]["parents"][0]["conditions"]:
        condition["observedGeneration"] = 2
    assert not http_route_accepted(older, wanted)

    refused = copy.deepcopy(stored)  # backends not resolved (a Service missing, say)
    refused["status"]["parents"][0]["conditions"][1]["status"] = "False"
    assert not http_route_accepted(refused, wanted)

    other_gateway = copy.deepcopy(stored)
    other_gateway["status"]["parents"][0]["parentRef"]["name"] = "internal"
    assert not http_route_accepted(other_gateway, wanted)

    no_status = copy.deepcopy(stored)
    del no_status["status"]
    assert not http_route_accepted(no_status, wanted)

    other_split = accepted_route(gateway.objects("fraud", "prod", Topology(V1, V2, 50, 0), "img"))
    assert not http_route_accepted(other_split, wanted)  # still carries the previous step


def test_label_gates_need_a_provider_that_routes_labels_and_a_target_that_takes_them() -> None:
    gates = [{"name": "errors", "type": "errorRate"}, {"name": "quality", "type": "accuracy"}]
    message = unsupported(cc_spec("gatewayAPI", gates), md_spec())
    assert message is not None
    assert message.startswith("spec.gates[1].type: ")
    assert "gatewayAPI" in message and "arm that answered" in message
    message = unsupported(cc_spec("router", gates), md_spec(feedback=False))
    assert message is not None and "spec.monitoring.feedback.enabled" in message
    assert unsupported(cc_spec("router", gates), md_spec()) is None


def test_gates_on_traffic_work_with_either_provider_and_stickiness_needs_the_router() -> None:
    gates = [{"name": "errors", "type": "errorRate"}, {"name": "p99", "type": "latency"}]
    assert unsupported(cc_spec("gatewayAPI", gates), md_spec(feedback=False)) is None
    sticky = cc_spec("gatewayAPI", gates, type="ab", stickyHeader="x-user")
    message = unsupported(sticky, md_spec())
    assert message is not None and message.startswith("spec.strategy.stickyHeader: ")
    assert unsupported(cc_spec("router", gates, type="ab", stickyHeader="x-user"),
                       md_spec()) is None
