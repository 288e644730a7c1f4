"""The HTTPRoute the operator writes is valid against the real Gateway API CRDs."""

from __future__ import annotations

import json

import pytest
import yaml

from modelops_devcluster.cluster import DevCluster
from modelops_operator.challenge import ModelRef, Topology
from modelops_operator.challenge.providers import http_route_accepted
from modelops_operator.challenge.traffic import http_route
from tests.harness.gateway import accepted_status

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("challenger_percent", "mirror_percent"), [(0, 0), (5, 0), (50, 0), (0, 100), (100, 0)]
)
def test_http_route_is_accepted_by_the_api_server(
    devcluster: DevCluster, namespace: str, challenger_percent: int, mirror_percent: int
) -> None:
    challenger = ModelRef("v2") if challenger_percent or mirror_percent else None
    topology = Topology(ModelRef("v1"), challenger, challenger_percent, mirror_percent)
    route = http_route("fraud", namespace, topology, [{"name": "public"}])
    applied = devcluster.kubectl(
        "apply",
        "--server-side",
        "--field-manager=modelops",
        "-o",
        "json",
        "-f",
        "-",
        input=yaml.safe_dump(route),
    )
    stored = json.loads(applied.stdout)
    weights = [b["weight"] for b in stored["spec"]["rules"][0]["backendRefs"]]
    assert weights == [b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]]
    filters = stored["spec"]["rules"][0].get("filters", [])
    assert bool(filters) == bool(mirror_percent)
    # The operator's liveness check reads the route as the API server keeps it (with its
    # defaults added): not live until a Gateway accepts this generation, live after.
    assert not http_route_accepted(stored, route["spec"])
    generation = stored["metadata"]["generation"]
    status = {"status": accepted_status(generation)}
    patched = devcluster.kubectl("patch", "-n", namespace, "httproute/fraud",
                                 "--subresource=status", "--type=merge", "-o", "json",
                                 "-p", json.dumps(status))  # fmt: skip
    assert http_route_accepted(json.loads(patched.stdout), route["spec"])
