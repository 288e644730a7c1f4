"""Path tricks: spellings of the inference path that a model server may route as inference
while a proxy does not see it as one. The contract: an inference the model server answers is
counted like one (the sidecar's ``modelops_requests_total``, the router's
``modelops_router_requests_total``, so it is split and gated like the plain path), or the
proxy refuses it with a 4xx."""

from __future__ import annotations

import pytest

from tests.hostile.cases import BODY, Case, answered_or_refused, params
from tests.hostile.conftest import DataPlane, Proxy, Table
from tests.hostile.rawhttp import request

pytestmark = pytest.mark.hostile

PATHS = {
    "/v2/models/fraud/inf%65r": "/v2/models/fraud/inf%65r",
    "/v2/models/fraud/%69nfer?x=1": "/v2/models/fraud/%69nfer?x=1",
    "//v2/models/fraud/infer": "//v2/models/fraud/infer",
    "/v2/models/../v2/models/fraud/infer": "/v2/models/../v2/models/fraud/infer",
    "/v2/models/fraud/./infer": "/v2/models/fraud/./infer",
    "/v2/models/fraud/infer/.": "/v2/models/fraud/infer/.",
    "/v2/models/fraud/infer/": "/v2/models/fraud/infer/",
    "/v2/models/fraud/infer%2F": "/v2/models/fraud/infer%2F",
}
CASES = {name: Case(lambda target=target: [request("POST", target, body=BODY)],
                    answered_or_refused()) for name, target in PATHS.items()}

# The model server refuses a percent-encoded path (400) rather than route it decoded, so a
# proxy that compares paths as sent never answers an inference it did not count.
XFAILS: dict[tuple[str, str], str] = {}


def counted(proxy: Proxy) -> float:
    name = "modelops_requests_total" if proxy.name == "sidecar" else \
        "modelops_router_requests_total"
    return proxy.metric(name)


@pytest.mark.parametrize(("case", "target"), params(CASES, XFAILS))
def test_path(case: str, target: str, data_plane: DataPlane, table: Table) -> None:
    spec = CASES[case]
    table.once(case, "nginx", lambda: spec.run(data_plane.nginx.port).label())
    proxy = data_plane.target(target)
    before = counted(proxy)
    outcome = spec.run(proxy.port)
    moved = counted(proxy) - before
    table.record(case, target, outcome.label() + (", counted" if moved else ", not counted"))
    spec.contract(outcome)
    if outcome.status is not None and 200 <= outcome.status < 300:
        assert moved >= 1, f"{target} answered {outcome.label()} but did not count it"
    proxy.check_after(outcome)


