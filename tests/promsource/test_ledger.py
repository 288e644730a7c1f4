"""Per-series increments between looks: resets, lost history, new pods, lagging replicas, bound."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelops_operator.promsource.counts import COUNTER_FAMILIES, ArmSelector, Sample, arm_counts
from modelops_operator.promsource.ledger import (
    KEEP_MISSING_LOOKS,
    MAX_SERIES,
    CounterLedger,
    Look,
    Snapshot,
    begin,
    take_look,
)
from modelops_serving.metrics import SidecarMetrics

T0 = 1_800_000_000.0  # the challenge began
CHAMPION = ArmSelector("champion", "v1")
CHALLENGER = ArmSelector("challenger", "v2")
ROLES = {"champion": "v1", "challenger": "v2"}


class Pod:
    """One sidecar: its counters as Prometheus returns them, and its start time."""

    def __init__(self, name: str, role: str, started: float) -> None:
        self.name, self.role, self.started = name, role, started
        self.requests = 0.0
        self.errors = 0.0

    @property
    def labels(self) -> dict[str, str]:
        return {
            "namespace": "shop",
            "pod": self.name,
            "deployment": "fraud",
            "model": "fraud",
            "role": self.role,
            "version": ROLES[self.role],
        }

    def serve(self, requests: int, errors: int = 0) -> Pod:
        self.requests += requests
        self.errors += errors
        return self

    def restart(self, at: float) -> Pod:
        self.started, self.requests, self.errors = at, 0.0, 0.0
        return self

    def samples(self) -> list[Sample]:
        out = [self._sample("modelops_requests_total", self.requests - self.errors, code="200")]
        if self.errors:
            out.append(self._sample("modelops_requests_total", self.errors, code="500"))
        return out

    def start_sample(self) -> Sample:
        return Sample({"__name__": "modelops_process_start_time_seconds", **self.labels},
                      self.started, 0.0)  # fmt: skip

    def _sample(self, name: str, value: float, **own: str) -> Sample:
        return Sample({"__name__": name, **self.labels, **own}, value, 0.0)


def snapshot(pods: Iterable[Pod], starts: bool = True) -> Snapshot:
    chosen = list(pods)
    return Snapshot(
        series={"requests": [s for p in chosen for s in p.samples()]},
        starts=[p.start_sample() for p in chosen] if starts else [],
    )


def look(ledger: CounterLedger, pods: Iterable[Pod], at: float, starts: bool = True) -> Look:
    return take_look(ledger, snapshot(pods, starts), at=at, challenge_start=T0)


def requests(ledger: CounterLedger, arm: ArmSelector = CHAMPION) -> float:
    return float(arm_counts(ledger.totals_by_series(), arm)["requests"])


def errors(ledger: CounterLedger, arm: ArmSelector = CHAMPION) -> float:
    return float(arm_counts(ledger.totals_by_series(), arm)["errors"])


def test_steady_counting_is_the_growth_since_the_challenge_began() -> None:
    a = Pod("a", "champion", T0 - 3600).serve(5000, 20)
    b = Pod("b", "challenger", T0 - 30)
    ledger = begin(snapshot([a, b]), at=T0)
    for minute in range(1, 6):
        a.serve(900, 3)
        b.serve(100, 1)
        result = look(ledger, [a, b], T0 + 60 * minute)
        ledger = result.ledger
        grown = arm_counts(result.increments_by_series(), CHAMPION)
        assert (grown["requests"], grown["errors"]) == (900, 3)
    assert (requests(ledger), errors(ledger)) == (4500, 15)
    # The challenger's first 500 appeared mid-challenge in a known process: all of it counts.
    assert (requests(ledger, CHALLENGER), errors(ledger, CHALLENGER)) == (500, 5)


def test_a_restarted_pod_counts_what_it_counted_before_and_after_the_restart() -> None:
    a = Pod("a", "champion", T0 - 3600).serve(1000)
    ledger = begin(snapshot([a]), at=T0)
    ledger = look(ledger, [a.serve(400, 4)], T0 + 60).ledger
    a.serve(100).restart(T0 + 90).serve(30, 1)  # the 100 after the last look are unknowable
    result = look(ledger, [a], T0 + 120)
    assert result.stats.restarted == 1
    assert (requests(result.ledger), errors(result.ledger)) == (400 + 30, 4 + 1)
    # A restart whose new process already counted past the old value is still a reset.
    a.restart(T0 + 150).serve(800)
    ledger = look(result.ledger, [a], T0 + 180).ledger
    assert requests(ledger) == 430 + 800


def test_prometheus_losing_its_history_adds_nothing() -> None:
    """10,000 real requests stay 10,000 when the 1,000,000 before the challenge reappear."""
    a = Pod("a", "champion", T0 - 86400).serve(1_000_000)
    ledger = begin(snapshot([a]), at=T0)
    ledger = look(ledger, [a.serve(4000)], T0 + 60).ledger
    for minute in (2, 3):  # Prometheus restarted with an empty disk: no series at all
        a.serve(1000)
        ledger = look(ledger, [], T0 + 60 * minute).ledger
    ledger = look(ledger, [a.serve(4000)], T0 + 240).ledger
    assert requests(ledger) == 10_000


def test_a_series_prometheus_never_had_at_the_start_is_not_counted_from_zero() -> None:
    """The history was lost before the first look: the old pod only sets a baseline."""
    a = Pod("a", "champion", T0 - 86400).serve(1_000_000)
    ledger = begin(snapshot([]), at=T0)  # nothing at the start
    result = look(ledger, [a.serve(2000)], T0 + 60)
    assert (result.stats.baseline_only, requests(result.ledger)) == (1, 0)
    ledger = look(result.ledger, [a.serve(10_000)], T0 + 120).ledger
    assert requests(ledger) == 10_000


def test_a_replica_started_mid_challenge_counts_from_zero() -> None:
    a = Pod("a", "champion", T0 - 3600).serve(500)
    ledger = begin(snapshot([a]), at=T0)
    b = Pod("b", "champion", T0 + 30).serve(70, 2)  # scaled up after the challenge began
    result = look(ledger, [a.serve(100), b], T0 + 60)
    assert result.stats.counted_new == 1
    assert (requests(result.ledger), errors(result.ledger)) == (170, 2)


def test_lagging_replicas_never_count_twice_or_negatively() -> None:
    """Two Prometheus replicas answer in turn; one scraped a moment before the other."""
    a = Pod("a", "champion", T0 - 3600).serve(1000)
    ledger = begin(snapshot([a]), at=T0)
    truth = 0
    for minute in range(1, 11):
        a.serve(100)
        truth += 100
        lagging = minute % 2 == 0
        if lagging:  # this replica has not scraped the last 7 requests yet
            a.requests -= 7
        result = look(ledger, [a], T0 + 60 * minute)
        if lagging:
            a.requests += 7
        assert all(v >= 0 for f in result.increments.values() for v in f.values())
        ledger = result.ledger
        assert truth - 7 <= requests(ledger) <= truth
    # A lower value from the same process is an older answer, never a reset.
    a.requests -= 50
    result = look(ledger, [a], T0 + 700)
    assert (result.stats.stale_answers, result.stats.restarted) == (1, 0)
    assert requests(result.ledger) == requests(ledger)


def test_an_answer_about_the_process_before_a_restart_is_ignored() -> None:
    a = Pod("a", "champion", T0 - 3600).serve(1000)
    ledger = begin(snapshot([a]), at=T0)
    old = Pod("a", "champion", T0 - 3600).serve(1200)  # what a lagging replica still shows
    a.serve(200).restart(T0 + 50).serve(10)
    ledger = look(ledger, [a], T0 + 60).ledger
    assert requests(ledger) == 10
    result = look(ledger, [old], T0 + 120)
    assert (result.stats.stale_answers, requests(result.ledger)) == (1, 10)
    ledger = look(result.ledger, [a.serve(5)], T0 + 180).ledger
    assert requests(ledger) == 15


def test_without_a_start_time_a_drop_is_a_reset() -> None:
    a = Pod("a", "champion", T0 - 3600).serve(1000)
    ledger = begin(snapshot([a], starts=False), at=T0)
    ledger = look(ledger, [a.serve(100)], T0 + 60, starts=False).ledger
    a.restart(T0 + 70).serve(40)
    ledger = look(ledger, [a], T0 + 120, starts=False).ledger
    assert requests(ledger) == 140
    # And a pod never seen, with no start time, cannot be shown to be new: baseline only.
    b = Pod("b", "champion", T0 + 80).serve(60)
    ledger = look(ledger, [a, b], T0 + 180, starts=False).ledger
    assert requests(ledger) == 140


def test_a_missing_pod_keeps_its_baseline_for_a_bounded_number_of_looks() -> None:
    a = Pod("a", "champion", T0 - 3600).serve(100)
    b = Pod("b", "champion", T0 - 3600).serve(100)
    ledger = begin(snapshot([a, b]), at=T0)
    for i in range(1, KEEP_MISSING_LOOKS + 1):
        ledger = look(ledger, [a.serve(1)], T0 + i).ledger
    assert len(ledger.processes) == 2  # b missed KEEP_MISSING_LOOKS looks: still kept
    result = look(ledger, [a.serve(1)], T0 + KEEP_MISSING_LOOKS + 1)
    assert (result.stats.forgotten, len(result.ledger.processes)) == (1, 1)
    assert result.ledger.forgotten_before == T0 - 3600
    # Back after being forgotten: it started before the challenge, so only a new baseline.
    ledger = look(result.ledger, [a, b.serve(500)], T0 + 1000).ledger
    assert requests(ledger) == KEEP_MISSING_LOOKS + 1


def test_the_ledger_is_bounded_and_forgets_the_longest_unseen_first() -> None:
    per_pod = 2  # codes 200 and 500
    pods = [Pod(f"p{i}", "champion", T0 + 1 + i).serve(10, 1) for i in range(MAX_SERIES // per_pod)]
    ledger = begin(snapshot([]), at=T0)
    ledger = look(ledger, pods, T0 + 5000).ledger
    assert ledger.series_count == MAX_SERIES
    assert requests(ledger) == 10 * len(pods)
    extra = [Pod(f"q{i}", "champion", T0 + 6000 + i).serve(10, 1) for i in range(3)]
    result = look(ledger, [*pods[3:], *extra], T0 + 7000)  # p0..p2 missing this look
    assert result.ledger.series_count <= MAX_SERIES
    assert result.stats.forgotten == 3
    assert {dict(k)["pod"] for k in result.ledger.processes}.isdisjoint({"p0", "p1", "p2"})
    assert requests(result.ledger) == 10 * (len(pods) + 3)
    # A forgotten pod coming back is not counted again; a pod newer than it is. (p3 and p4,
    # missing now, are over the bound and go, the longest unseen first.)
    late = Pod("late", "champion", T0 + 7500).serve(9)
    again = look(result.ledger, [*pods[5:], *extra, pods[0].serve(1), late], T0 + 8000)
    assert again.ledger.series_count <= MAX_SERIES
    assert {"p3", "p4"}.isdisjoint(dict(k)["pod"] for k in again.ledger.processes)
    assert again.ledger.forgotten_before == pods[4].started
    assert requests(again.ledger) == 10 * (len(pods) + 3) + 9


def test_a_sidecar_pod_costs_about_a_kilobyte_of_status() -> None:
    """The real sidecar's exposition, default buckets: the bound in bytes behind MAX_SERIES."""
    metrics = SidecarMetrics({"deployment": "fraud", "model": "fraud", "version": "v1",
                              "role": "champion"})  # fmt: skip
    metrics.count_request(200)
    metrics.count_request(500)
    wanted = {metric: family for family, (metric, _) in COUNTER_FAMILIES.items()}

    def scraped(*pods: str) -> Snapshot:
        series: dict[str, list[Sample]] = {}
        starts = []
        for pod in pods:
            target = {"namespace": "shop", "pod": f"fraud-champion-7d9f5c8b6-{pod}",
                      "instance": "10.1.2.3:9090", "job": "modelops-models"}  # fmt: skip
            for family in text_string_to_metric_families(metrics.exposition().decode()):
                for s in family.samples:
                    sample = Sample({"__name__": s.name, **s.labels, **target}, s.value, 0.0)
                    if s.name in wanted:
                        series.setdefault(wanted[s.name], []).append(sample)
                    elif s.name == "modelops_process_start_time_seconds":
                        starts.append(sample)
        return Snapshot(series, starts)

    one, two = begin(scraped("x2k4q"), at=T0), begin(scraped("x2k4q", "b7m2z"), at=T0)
    assert one.series_count == 35 and len(one.processes) == 1
    assert two.series_count == 70 and len(two.processes) == 2
    per_pod = len(json.dumps(two.to_dict())) - len(json.dumps(one.to_dict()))
    assert per_pod < 1000, per_pod  # about 30 pods within MAX_SERIES: under 30 kB of status
    # The totals are per arm, not per pod: their size does not grow with pods.
    assert one.totals == two.totals


def test_an_operator_restart_resumes_from_status_without_double_counting() -> None:
    a = Pod("a", "champion", T0 - 3600).serve(1000)
    b = Pod("b", "challenger", T0 - 10)
    ledger = begin(snapshot([a, b]), at=T0)
    ledger = look(ledger, [a.serve(300, 3), b.serve(30, 1)], T0 + 60).ledger
    stored = json.loads(json.dumps(ledger.to_dict()))
    resumed = CounterLedger.from_dict(stored)
    assert resumed == ledger
    after = look(resumed, [a.serve(100), b.serve(10)], T0 + 120).ledger
    assert (requests(after), errors(after)) == (400, 3)
    assert (requests(after, CHALLENGER), errors(after, CHALLENGER)) == (40, 1)


def test_unreadable_ledgers_are_refused() -> None:
    with pytest.raises(ValueError, match="version"):
        CounterLedger.from_dict({"version": 99})
    with pytest.raises(ValueError):
        CounterLedger.from_dict({"version": 1, "processes": [{"labels": {}}]})
    with pytest.raises(ValueError):
        CounterLedger.from_dict({"version": 1, "totals": {"requests": [["champion", "v1", 3]]}})
    assert CounterLedger.from_dict(CounterLedger().to_dict()).forgotten_before == -math.inf


def test_paired_router_counts_follow_the_same_rules() -> None:
    router = {"namespace": "shop", "pod": "fraud-router-0", "deployment": "fraud"}

    def paired(both: float, started: float) -> Snapshot:
        name = "modelops_shadow_paired_feedback_total"
        outcome = {"champion": "correct", "challenger": "correct"}
        start = {"__name__": "modelops_process_start_time_seconds", **router}
        return Snapshot(
            series={"paired": [Sample({"__name__": name, **router, **outcome}, both, 0.0)]},
            starts=[Sample(start, started, 0.0)],
        )

    ledger = begin(paired(50, T0 - 100), at=T0)
    ledger = take_look(ledger, paired(80, T0 - 100), at=T0 + 60, challenge_start=T0).ledger
    ledger = take_look(ledger, paired(7, T0 + 100), at=T0 + 120, challenge_start=T0).ledger
    totals = ledger.totals_by_series()["paired"]
    assert totals == {(("challenger", "correct"), ("champion", "correct")): 37}


def test_a_pod_seen_at_the_start_without_counters_counts_those_it_creates_later() -> None:
    """Counters with labels appear at their first event (a first request, a first error)."""
    b = Pod("b", "challenger", T0 - 30)  # ready, scraped, not a single request yet
    ledger = begin(Snapshot(series={"requests": []}, starts=[b.start_sample()]), at=T0)
    assert len(ledger.processes) == 1
    ledger = look(ledger, [b.serve(600, 6)], T0 + 60).ledger
    assert (requests(ledger, CHALLENGER), errors(ledger, CHALLENGER)) == (600, 6)
    # Not scraped before the challenge began: what it counted until it was seen is unknown.
    late = Pod("c", "challenger", T0 - 30).serve(50)
    result = look(ledger, [b, late], T0 + 120)
    assert (result.stats.baseline_only, requests(result.ledger, CHALLENGER)) == (1, 600)


def test_a_pod_in_its_warm_up_counts_nothing_then_counts_from_where_it_stood() -> None:
    """A challenger's cold start (and a restarted pod's) stays out of the evidence."""
    a = Pod("a", "champion", T0 - 3600).serve(1000)
    b = Pod("b", "challenger", T0 + 10)

    def warm(ledger: CounterLedger, at: float) -> Look:
        return take_look(ledger, snapshot([a, b]), at=at, challenge_start=T0, warm_up=120)

    ledger = begin(snapshot([a]), at=T0)
    a.serve(900, 1)
    b.serve(100, 60)  # one minute of cold-start errors
    result = warm(ledger, T0 + 60)
    assert result.stats.warming == 1
    assert (requests(result.ledger, CHALLENGER), requests(result.ledger)) == (0, 900)
    b.serve(100, 30)
    result = warm(result.ledger, T0 + 120)  # 110 s after its start: still warming
    assert requests(result.ledger, CHALLENGER) == 0
    b.serve(100, 1)
    result = warm(result.ledger, T0 + 180)
    assert result.stats.warming == 0
    assert (requests(result.ledger, CHALLENGER), errors(result.ledger, CHALLENGER)) == (100, 1)
    b.restart(T0 + 200).serve(50, 20)  # a restart warms up again, and counts none of it
    result = warm(result.ledger, T0 + 240)
    assert (result.stats.restarted, result.stats.warming) == (1, 1)
    assert (requests(result.ledger, CHALLENGER), errors(result.ledger, CHALLENGER)) == (100, 1)
    b.serve(100, 0)
    result = warm(result.ledger, T0 + 330)
    assert (requests(result.ledger, CHALLENGER), errors(result.ledger, CHALLENGER)) == (200, 1)
