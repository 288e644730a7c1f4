"""Feedback forgery: labels without a receipt, with an altered one, replayed, malformed, and
steering a challenge by labelling only one arm's answers. The data plane runs as the operator
runs it, with a receipt key ring (docs/serving.md, feedback)."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.hostile.cases import BODY, TARGETS
from tests.hostile.conftest import DataPlane, Proxy, Table
from tests.hostile.rawhttp import converse, request

pytestmark = pytest.mark.hostile


def feedback_count(proxy: Proxy, outcome: str) -> float:
    """A feedback outcome's counter, or a refusal's (by its reason) when outcome names one."""
    sidecar = proxy.name == "sidecar"
    if outcome in REFUSALS:
        name = "modelops_feedback_refused_total" if sidecar else \
            "modelops_router_feedback_refused_total"
        return proxy.metric(name, reason=outcome)
    name = "modelops_feedback_total" if sidecar else "modelops_router_feedback_total"
    return proxy.metric(name, outcome=outcome)


REFUSALS = {"missing", "malformed", "forged", "duplicate", "expired"}


def label(port: int, body: bytes) -> str:
    return converse(port, [request("POST", "/v2/feedback", "Content-Type: application/json",
                                   body=body)], grace=0).label()


FORGED = {
    "feedback: id never issued (no receipt)": (
        json.dumps({"id": "never-issued-4711", "truth": 1}).encode(), 400, "missing"),
    "feedback: receipt not ours": (
        json.dumps({"receipt": "v1.k1.eyJkIjoiZnJhdWQifQ.AAAA", "truth": 1}).encode(), 400,
        "malformed"),
    "feedback: malformed JSON": (b'{"id": "x", "truth": ', 400, "invalid"),
}


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("case", list(FORGED))
def test_forged_feedback(case: str, target: str, data_plane: DataPlane, table: Table) -> None:
    body, status, outcome_name = FORGED[case]
    table.once(case, "nginx", lambda: label(data_plane.nginx.port, body) + " (model server)")
    proxy = data_plane.target(target)
    before = feedback_count(proxy, outcome_name)
    outcome = converse(proxy.port, [request("POST", "/v2/feedback",
                                            "Content-Type: application/json", body=body)])
    counted = feedback_count(proxy, outcome_name) - before
    table.record(case, target, f"{outcome.label()}, {outcome_name} +{counted:.0f}")
    assert outcome.status == status, outcome.label()
    assert counted == 1, f"modelops feedback {outcome_name} moved by {counted}"
    proxy.check_after(outcome)


def verdicts(proxy: Proxy) -> tuple[float, float]:
    return feedback_count(proxy, "correct"), feedback_count(proxy, "incorrect")


def test_steering_by_labelling_one_arm(data_plane: DataPlane, table: Table) -> None:
    """Router at 50/50, the same model on both arms: the attacker tells the arms apart by the
    answer's model_version, labels the champion's answers with their own prediction and the
    challenger's with the other class, naming bare request ids. A label that does not carry the
    answer's signed receipt is refused and counted nowhere, so neither arm's accuracy moves.
    (A client that holds receipts and lies about the truth is not stopped by receipts: only
    trusted labellers should reach /v2/feedback, docs/security.md.)"""
    case = "feedback: steering one arm (50/50)"
    table.once(case, "nginx", lambda: "n/a (no arms)")
    router = data_plane.router
    arms = {"v1": data_plane.sidecar, "v2": data_plane.challenger}
    before = {version: verdicts(proxy) for version, proxy in arms.items()}
    statuses: list[int] = []
    seen = {"v1": 0, "v2": 0}
    with httpx.Client(base_url=f"http://127.0.0.1:{router.port}", timeout=10) as client:
        for i in range(40):
            answer = client.post("/v2/models/fraud/infer", content=BODY,
                                 headers={"X-Request-Id": f"steer-{i}"})
            assert answer.status_code == 200, answer.text
            result = answer.json()
            version = result["model_version"]
            seen[version] += 1
            predicted = result["outputs"][0]["data"][0]
            truth = predicted if version == "v1" else 1 - predicted
            statuses.append(client.post("/v2/feedback",
                                        json={"id": f"steer-{i}", "truth": truth}).status_code)
    moved = {version: tuple(after - was for after, was in zip(verdicts(arms[version]),
                                                               before[version], strict=True))
             for version in arms}
    table.record(case, "router", f"labels {sorted(set(statuses))}; champion correct/incorrect "
                 f"+{moved['v1'][0]:.0f}/+{moved['v1'][1]:.0f}, challenger "
                 f"+{moved['v2'][0]:.0f}/+{moved['v2'][1]:.0f}")
    assert seen["v1"] and seen["v2"], seen
    assert all(400 <= s < 500 for s in statuses), f"un-receipted labels answered {statuses}"
    assert moved == {"v1": (0, 0), "v2": (0, 0)}, f"labels were scored: {moved}"
    router.check_after()


def test_a_replayed_or_altered_receipt_counts_nothing(data_plane: DataPlane, table: Table) -> None:
    """One genuine answer through the router; its label sent three times and once with the
    receipt's prediction altered: the first counts, the rest are refused (409, 403)."""
    case = "feedback: replayed and altered receipts"
    table.once(case, "nginx", lambda: "n/a (no receipts)")
    router = data_plane.router
    arms = (data_plane.sidecar, data_plane.challenger)
    before = [verdicts(proxy) for proxy in arms]
    with httpx.Client(base_url=f"http://127.0.0.1:{router.port}", timeout=10) as client:
        answer = client.post("/v2/models/fraud/infer", content=BODY,
                             headers={"X-Request-Id": "replayed-1"})
        assert answer.status_code == 200, answer.text
        token = answer.headers["X-Modelops-Receipt"]
        truth = answer.json()["outputs"][0]["data"][0]
        version, key, payload, mac = token.split(".")
        altered = ".".join((version, key, payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB"),
                            mac))
        statuses = [client.post("/v2/feedback", json={"receipt": t, "truth": truth}).status_code
                    for t in (token, token, token, altered)]
    gained = sum(sum(after) - sum(was) for after, was in
                 zip((verdicts(proxy) for proxy in arms), before, strict=True))
    table.record(case, "router", f"labels {statuses}; counted {gained:.0f}")
    assert statuses == [200, 409, 409, 403], statuses
    assert gained == 1, f"{gained} labels counted for one answer"
    router.check_after()
