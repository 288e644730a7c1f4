"""The router accepts every configuration the operator's route builder writes (a shared name)."""

from __future__ import annotations

import pytest

from modelops_serving.router_config import parse_config

traffic = pytest.importorskip("modelops_operator.challenge.traffic")
model = pytest.importorskip("modelops_operator.challenge.model")


@pytest.mark.parametrize(("challenger", "percent", "mirror", "sticky", "mode"), [
    (None, 0, 0, None, "split"),
    ("v2", 25, 0, None, "split"),
    ("v2", 50, 0, "x-user", "split"),
    ("v2", 0, 100, None, "shadow"),
])
def test_operator_router_documents_validate(challenger: str | None, percent: int, mirror: int,
                                            sticky: str | None, mode: str) -> None:
    topology = model.Topology(
        champion=model.ModelRef("v1"),
        challenger=model.ModelRef(challenger) if challenger else None,
        challenger_percent=percent, mirror_percent=mirror)
    configmap = traffic.router_configmap("fraud", "prod", topology, sticky)
    config = parse_config(configmap["data"][traffic.ROUTER_CONFIG_KEY])
    assert config.mode == mode and config.stickyHeader == sticky
    assert config.champion.url == "http://fraud-champion.prod.svc:8000"
    if mode == "split":
        assert config.challengerWeight == percent
    else:
        assert config.mirrorPercent == mirror and config.challenger is not None
