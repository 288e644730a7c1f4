"""The operator's evaluation path counts per-series increments between looks, kept in status.

A scripted Prometheus (the HTTP API, answering from recorded scrapes) loses its history and
gains a replica mid-challenge; the counts the gating engine consumed must never jump.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from modelops_operator.challenge import ModelRef, Phase, Status
from modelops_operator.challenge.controller import ChallengePolicy, Evaluation, parse_policy
from modelops_operator.challenge.evaluation import evaluate_challenge
from modelops_operator.promsource import PrometheusSettings, PrometheusSource

T0 = 1_800_000_000.0
LOOKBACK = 300.0  # Prometheus' instant-query lookback
ARMS = ("champion", "challenger")


@dataclass
class FakePod:
    name: str
    role: str
    version: str
    started: float
    ok: int = 0
    errors: int = 0

    def serve(self, ok: int, errors: int = 0) -> None:
        self.ok += ok
        self.errors += errors

    def series(self) -> Iterator[tuple[str, dict[str, str], float]]:
        target = {"namespace": "shop", "pod": self.name, "deployment": "fraud",
                  "model": "fraud", "role": self.role, "version": self.version}  # fmt: skip
        yield "modelops_process_start_time_seconds", target, self.started
        for code, value in (("200", self.ok), ("500", self.errors)):
            if value:  # a labelled child exists once it counted something
                yield "modelops_requests_total", {**target, "code": code}, float(value)


@dataclass
class FakePrometheus:
    """Answers instant queries from the scrapes it recorded (only those it still has)."""

    pods: list[FakePod] = field(default_factory=list)
    scrapes: list[tuple[float, list[FakePod]]] = field(default_factory=list)

    def scrape(self, at: float) -> None:
        self.scrapes.append((at, copy.deepcopy(self.pods)))

    def lose_history(self) -> None:
        self.scrapes.clear()

    def answer(self, request: httpx.Request) -> httpx.Response:
        query = request.url.params["query"]
        at = float(request.url.params["time"])
        match = re.fullmatch(r'(timestamp\()?(\w*)\{(?:__name__=~"([\w|]+)",)?.*\}\)?', query)
        assert match, query
        stamp = bool(match.group(1))
        metrics = {match.group(2)} if match.group(2) else set(match.group(3).split("|"))
        result = []
        recent = [(t, pods) for t, pods in self.scrapes if at - LOOKBACK < t <= at]
        if recent:
            scraped_at, pods = recent[-1]
            for pod in pods:
                for name, labels, value in pod.series():
                    if name in metrics:
                        shown = labels if stamp else {"__name__": name, **labels}
                        result.append({"metric": shown,
                                       "value": [at, str(scraped_at if stamp else value)]})
        body = {"status": "success", "data": {"resultType": "vector", "result": result}}
        return httpx.Response(200, json=body)


@pytest.fixture
def prometheus() -> FakePrometheus:
    return FakePrometheus()


def source_for(prometheus: FakePrometheus) -> PrometheusSource:
    client = httpx.AsyncClient(
        base_url="http://prometheus", transport=httpx.MockTransport(prometheus.answer)
    )
    return PrometheusSource(PrometheusSettings(url="http://prometheus"), client=client)


def policy() -> ChallengePolicy:
    parsed = parse_policy(
        {
            "targetRef": {"name": "fraud"},
            "strategy": {"type": "canary", "steps": [10, 50]},
            "gates": [{"name": "errors", "type": "errorRate"}],
            # No warm-up: these tests count every request (the ledger's own tests cover it).
            "decision": {"interval": "1m", "minSamples": 100, "warmUp": "0s"},
        }
    )
    assert isinstance(parsed, ChallengePolicy), parsed
    return parsed


STATUS = Status(
    phase=Phase.PROGRESSING,
    champion=ModelRef("v1"),
    challenger=ModelRef("v2"),
    started_at=T0,
)


async def look(
    prometheus: FakePrometheus, previous: Evaluation, at: float
) -> tuple[Evaluation, str | None]:
    source = source_for(prometheus)
    try:
        _, kept, problem = await evaluate_challenge(
            source, namespace="shop", deployment="fraud", policy=policy(), status=STATUS,
            previous=previous, now=at,
        )  # fmt: skip
    finally:
        await source.aclose()
    # Through status and back, as a restarted operator would read it.
    stored = json.loads(json.dumps({"gates": list(kept.gates), "evidence": kept.to_dict()}))
    return Evaluation.from_status(stored), problem


def consumed(evaluation: Evaluation) -> dict[str, tuple[float, float]]:
    """The cumulative counts the gating engine took, per arm: (requests, errors)."""
    assert evaluation.state is not None
    last = evaluation.state["lastCounts"]
    return {arm: (last[arm].get("requests", 0), last[arm].get("errors", 0)) for arm in ARMS}


async def test_counts_survive_lost_history_a_new_replica_and_an_operator_restart(
    prometheus: FakePrometheus,
) -> None:
    old = FakePod("fraud-champion-a", "champion", "v1", started=T0 - 86400, ok=1_000_000)
    challenger = FakePod("fraud-challenger-b", "challenger", "v2", started=T0 - 20)
    prometheus.pods = [old, challenger]
    prometheus.scrape(T0 - 10)

    old.serve(5990, 10)
    challenger.serve(599, 1)
    prometheus.scrape(T0 + 55)
    evaluation, problem = await look(prometheus, Evaluation(), T0 + 60)
    assert problem is None
    assert consumed(evaluation) == {"champion": (6000, 10), "challenger": (600, 1)}

    # Prometheus restarts on an empty disk: nothing to answer for a while, then only new
    # samples, with the old pod's whole value. A replica is added meanwhile.
    prometheus.lose_history()
    old.serve(2000)
    challenger.serve(200)
    replica = FakePod("fraud-champion-c", "champion", "v1", started=T0 + 100, ok=500)
    prometheus.pods.append(replica)
    kept, problem = await look(prometheus, evaluation, T0 + 120)
    assert problem and "no metrics yet" in problem
    assert kept == evaluation  # nothing counted, nothing forgotten
    prometheus.scrape(T0 + 170)
    evaluation, problem = await look(prometheus, kept, T0 + 180)
    assert problem is None
    assert consumed(evaluation) == {"champion": (8500, 10), "challenger": (800, 1)}

    # A pod restart: what it counted before was taken at the last look; after, it counts anew.
    challenger.ok, challenger.errors, challenger.started = 99, 1, T0 + 200
    old.serve(1000)
    prometheus.scrape(T0 + 235)
    evaluation, _ = await look(prometheus, evaluation, T0 + 240)
    assert consumed(evaluation) == {"champion": (9500, 10), "challenger": (900, 2)}
    ledger = json.loads(Evaluation(counters=evaluation.counters).to_dict()["counters"])
    assert ledger["looks"] == 4 and len(ledger["processes"]) == 3
