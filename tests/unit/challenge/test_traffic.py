"""Route builders: the router accepts what the operator writes; weights follow the topology."""

from __future__ import annotations

import json

import pytest

from modelops_operator.challenge import ModelRef, Topology
from modelops_operator.challenge.traffic import http_route, router_configmap
from modelops_serving.router_config import parse_config

V1, V2 = ModelRef("v1"), ModelRef("v2")
TOPOLOGIES = {
    "champion only": Topology(V1, None, 0, 0),
    "canary 25%": Topology(V1, V2, 25, 0),
    "shadow 50%": Topology(V1, V2, 0, 50),
    "promotion shift": Topology(V1, V2, 100, 0),
}


@pytest.mark.parametrize("name", TOPOLOGIES)
def test_the_router_accepts_every_configuration_the_operator_writes(name: str) -> None:
    topology = TOPOLOGIES[name]
    configmap = router_configmap("fraud", "shop", topology, sticky_header="x-user")
    config = parse_config(configmap["data"]["router.json"])
    assert config.champion.url == "http://fraud-champion.shop.svc:8000"
    assert config.challengerWeight == topology.challenger_percent
    assert config.mode == ("shadow" if topology.mirror_percent else "split")
    if topology.mirror_percent:
        assert config.mirrorPercent == topology.mirror_percent
    assert (config.challenger is None) == (topology.challenger is None)
    assert config.stickyHeader == "x-user"


def test_same_topology_same_bytes() -> None:
    a = router_configmap("fraud", "shop", TOPOLOGIES["canary 25%"])
    b = router_configmap("fraud", "shop", Topology(V1, V2, 25, 0))
    assert a == b
    assert json.loads(a["data"]["router.json"])["challengerWeight"] == 25


def test_http_route_weights_and_mirror() -> None:
    parents = [{"name": "public", "namespace": "gateways"}]
    canary = http_route("fraud", "shop", TOPOLOGIES["canary 25%"], parents)
    rule = canary["spec"]["rules"][0]
    assert [(b["name"], b["weight"]) for b in rule["backendRefs"]] == [
        ("fraud-champion", 75),
        ("fraud-challenger", 25),
    ]
    assert "filters" not in rule
    shadow = http_route("fraud", "shop", TOPOLOGIES["shadow 50%"], parents)["spec"]["rules"][0]
    assert [b["weight"] for b in shadow["backendRefs"]] == [100, 0]
    mirror = shadow["filters"][0]["requestMirror"]
    assert (mirror["backendRef"]["name"], mirror["percent"]) == ("fraud-challenger", 50)
    alone = http_route("fraud", "shop", TOPOLOGIES["champion only"], parents)
    assert [b["name"] for b in alone["spec"]["rules"][0]["backendRefs"]] == ["fraud-champion"]
