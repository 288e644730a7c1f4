"""The challenges benchmark's pure parts: manifests, the exporter's pages, looks, gaps, lag and
its trend, the ratio and summary lines."""

from __future__ import annotations

import random
from typing import Any

import pytest

from benchmarks.bench_challenges import (
    LAG_ALLOWANCE,
    ROLES,
    Gap,
    LookLog,
    SyntheticPods,
    championchallenger,
    core_challenge,
    cpu_ratio,
    gaps_in_window,
    lag_trend,
    log_problems,
    look_figures,
    look_time,
    metrics_path,
    modeldeployment,
    ratio_line,
    scrape_targets,
    split_requests,
    summary_lines,
)
from modelops_operator.api.modeldeployment import ModelDeploymentSpec
from modelops_operator.challenge.controller import ChallengePolicy, parse_policy
from modelops_operator.promsource.counts import COUNTER_FAMILIES, START_TIME_GAUGE


def challenge(name: str, at: float | None = None, **status: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"metadata": {"name": name, "namespace": "bench"}, "status": status}
    if at is not None:
        body["status"]["evidence"] = {"at": at}
    return body


# ----------------------------------------------------------------------------- manifests
def test_the_challenge_is_a_valid_policy_that_waits_for_approval() -> None:
    policy = parse_policy(championchallenger("model-007", "10s")["spec"])
    assert isinstance(policy, ChallengePolicy), policy
    assert policy.spec.target_ref.name == "model-007"
    assert policy.spec.approval.required
    assert policy.gating.policy.interval == 10
    assert {g.type for g in policy.spec.gates} == {"errorRate", "latency", "accuracy"}


def test_the_target_takes_labels_so_an_accuracy_gate_is_allowed() -> None:
    spec = ModelDeploymentSpec.model_validate(modeldeployment("model-007")["spec"])
    assert spec.monitoring.feedback.enabled


def test_each_arm_is_a_target_labelled_like_a_pod() -> None:
    targets = scrape_targets("127.0.0.1:9999", ["a", "b"], "bench")
    assert len(targets) == 4
    first = targets[0]
    assert first.address == "127.0.0.1:9999"
    assert first.labels == {
        "__metrics_path__": "/metrics/a/champion",
        "namespace": "bench",
        "pod": "a-champion-0",
        "container": "metrics-sidecar",
    }
    assert len({t.labels["pod"] for t in targets}) == 4


# ----------------------------------------------------------------------------- the exporter
def test_a_split_sends_every_request_somewhere() -> None:
    split = split_requests(random.Random(1), 1000, 0.5)
    assert split["champion"] + split["challenger"] == 1000
    assert 400 < split["challenger"] < 600
    assert split_requests(random.Random(1), 0, 0.5) == {"champion": 0, "challenger": 0}


def test_each_arm_page_carries_its_identity_and_the_gates_families() -> None:
    pods = SyntheticPods(["model-000"])
    pods.one_second()
    for role in ROLES:
        page = pods.exposition(metrics_path("model-000", role))
        assert page is not None
        text = page.decode()
        assert f'role="{role}"' in text and 'deployment="model-000"' in text
        assert START_TIME_GAUGE in text
        for family in ("requests", "latency", "feedback"):
            assert COUNTER_FAMILIES[family][0] in text
    assert pods.exposition("/metrics/model-001/champion") is None
    assert pods.exposition("/metrics") is None


def test_the_challenger_runs_the_new_version() -> None:
    pods = SyntheticPods(["m"])
    page = pods.exposition(metrics_path("m", "challenger"))
    assert page is not None and b'version="1.1.0"' in page


# ----------------------------------------------------------------------------- looks
def test_a_look_time_is_the_kept_evaluation_else_the_shown_time() -> None:
    assert look_time(challenge("a", at=1700000000.25)) == 1700000000.25
    shown = challenge("a", lastEvaluationTime="2023-11-14T22:13:20Z")
    assert look_time(shown) == 1700000000.0
    assert look_time(challenge("a")) is None
    assert look_time({"metadata": {"name": "a"}}) is None


def test_the_log_keeps_each_look_once_in_order() -> None:
    log = LookLog()
    log.record([challenge("a", at=10.0, phase="Progressing"), challenge("b")])
    log.record([challenge("a", at=10.0), challenge("b", at=12.0)])
    log.record([challenge("a", at=21.0, phase="AwaitingApproval"), challenge("b", at=12.0)])
    assert log.looks == {"a": [10.0, 21.0], "b": [12.0]}
    assert log.evaluating() == 2
    assert log.looks_between(11.0, 30.0) == 2
    assert log.phases["a"] == "AwaitingApproval"


def test_a_challenge_without_metrics_is_noted() -> None:
    missing = challenge("a", conditions=[{"type": "MetricsAvailable", "status": "False"}])
    fine = challenge("b", conditions=[{"type": "MetricsAvailable", "status": "True"}])
    log = LookLog()
    log.record([missing, fine])
    assert log.metrics_missing == {"a"}


def test_gaps_count_when_their_second_look_is_in_the_window() -> None:
    looks = {"a": [95.0, 106.0, 118.0, 131.0], "b": [100.0]}
    assert gaps_in_window(looks, 100.0, 120.0) == [Gap("a", 106.0, 11.0), Gap("a", 118.0, 12.0)]
    assert gaps_in_window({"a": [1.0]}, 0.0, 10.0) == []


def test_a_steady_lag_is_no_backlog() -> None:
    gaps = [Gap("a", t, 11.5) for t in range(0, 90, 3)]
    trend = lag_trend(gaps, 10.0, 0.0, 90.0)
    assert trend["first_third"]["p50"] == trend["last_third"]["p50"] == 1.5
    assert not trend["growing"]


def test_a_lag_that_grows_over_the_window_is_a_backlog() -> None:
    gaps = [Gap("a", t, 10.0 + t / 10) for t in range(0, 90, 3)]
    trend = lag_trend(gaps, 10.0, 0.0, 90.0)
    assert trend["last_third"]["p50"] > trend["first_third"]["p50"]
    assert trend["growing"]


def test_no_gaps_give_no_trend() -> None:
    trend = lag_trend([], 10.0, 0.0, 90.0)
    assert trend["first_third"] == {"p50": None, "p95": None, "max": None}
    assert not trend["growing"]


def test_look_figures_count_challenges_never_looked_at() -> None:
    log = LookLog(looks={"a": [0.0, 11.0, 22.0, 33.0], "b": [5.0, 16.5]})
    figures = look_figures(log, 10.0, 10.0, 40.0, challenges=3)
    assert figures["looks"] == 4  # a: 11, 22, 33; b: 16.5
    assert figures["looks_per_challenge"] == {"min": 0, "p50": 1, "max": 3}
    assert figures["challenges_looked_at"] == 2
    assert figures["gap_seconds"] == {"p50": 11.0, "p95": 11.5, "max": 11.5}
    assert figures["lag_seconds"] == {"p50": 1.0, "p95": 1.5, "max": 1.5}
    assert figures["keeps_interval"]


def test_a_lag_beyond_a_tick_does_not_keep_the_interval() -> None:
    late = 10.0 + LAG_ALLOWANCE + 5
    log = LookLog(looks={"a": [0.0, late, 2 * late]})
    assert not look_figures(log, 10.0, 0.0, 100.0, challenges=1)["keeps_interval"]
    assert not look_figures(LookLog(), 10.0, 0.0, 100.0, challenges=1)["keeps_interval"]


def test_a_challenge_not_started_has_nothing_for_the_core() -> None:
    cc = championchallenger("m")
    cc["status"] = {"machine": {"phase": "Idle"}}
    assert core_challenge(cc, modeldeployment("m")) is None


# ----------------------------------------------------------------------------- report
def test_the_operator_log_problems_by_kind() -> None:
    text = "\n".join([
        "[2026-01-01 00:00:00,000] kopf [WARNING ] challenge tick failed, retrying: boom",
        "[2026-01-01 00:00:01,000] kopf [ERROR   ] something",
        "Traceback (most recent call last):",
        "[2026-01-01 00:00:02,000] kopf [WARNING ] slow",
        "[2026-01-01 00:00:03,000] kopf [INFO    ] fine",
    ])  # fmt: skip
    assert log_problems(text) == {
        "challenge tick failed": 1,
        "errors": 1,
        "tracebacks": 1,
        "warnings": 1,
    }
    assert log_problems("") == {}


def test_ratio_and_its_line() -> None:
    assert cpu_ratio(30.0, 10.0) == 3.0
    assert cpu_ratio(None, 10.0) is None
    assert cpu_ratio(30.0, 0.0) is None
    line = ratio_line(30.0, 10.0)
    assert line.startswith(
        "operator CPU per look / core-alone CPU per look = 3\N{MULTIPLICATION SIGN}"
    )
    assert "30 ms / 10 ms" in line
    assert ratio_line(None, 10.0).endswith("n/a (no looks measured)")


def results(**changes: Any) -> dict[str, Any]:
    spread = {"p50": 1.0, "p95": 2.0, "max": 3.0}
    base: dict[str, Any] = {
        "challenges": 2,
        "kwok_nodes": 2,
        "interval_seconds": 10.0,
        "window_seconds": 60.0,
        "scrape_interval": "2s",
        "setup": {
            "deploy": {"all_done_seconds": 20.0},
            "challenges": {"all_done_seconds": 30.0},
            "all_evaluating_seconds": 40.0,
        },
        "looks": 10,
        "looks_per_challenge": {"min": 5, "p50": 5, "max": 5},
        "challenges_looked_at": 2,
        "gap_seconds": {"p50": 11.0, "p95": 12.0, "max": 13.0},
        "lag_seconds": spread,
        "lag_trend": {"first_third": spread, "last_third": spread, "growing": False},
        "keeps_interval": True,
        "operator": {
            "cpu_seconds": 6.0,
            "cpu_ms_per_look": 600.0,
            "peak_rss_mib": 100.0,
            "writes": {"PATCH championchallengers/status": 10.0},
            "writes_total": 10.0,
            "log_problems": {},
        },
        "core_alone": {
            "looks": 10,
            "decided_on_data": 10,
            "cpu_seconds": 0.1,
            "cpu_ms_per_look": 10.0,
        },
        "phases_at_end": {"AwaitingApproval": 2},
        "metrics_missing_seen": 0,
    }
    base.update(changes)
    return base


def test_summary_lines_say_ratio_interval_backlog_cpu_and_writes() -> None:
    lines = summary_lines(results())
    assert lines[0].startswith(
        "operator CPU per look / core-alone CPU per look = 60\N{MULTIPLICATION SIGN}"
    )
    text = "\n".join(lines)
    assert "keeps its interval" in text and "no backlog" in text
    assert "10% of a core" in text and "600.0 ms per look" in text
    assert "writes in the window 10 (1.00 per look): PATCH championchallengers/status 10" in text
    assert "AwaitingApproval 2" in text and "no warnings or errors" in text
    assert "all evaluating 40.0 s after the new versions" in text


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"keeps_interval": False}, "falls behind its interval"),
        ({"lag_trend": {"first_third": {"p50": 1, "p95": 1, "max": 1},
                        "last_third": {"p50": 5, "p95": 5, "max": 5}, "growing": True}},
         "lag growing: a backlog"),
    ],
)  # fmt: skip
def test_summary_lines_say_when_it_falls_behind(changes: dict[str, Any], words: str) -> None:
    assert words in "\n".join(summary_lines(results(**changes)))


def test_summary_lines_without_looks() -> None:
    lines = summary_lines(results(looks=0, core_alone={"looks": 0, "decided_on_data": 0,
                                                       "cpu_seconds": 0.0,
                                                       "cpu_ms_per_look": None}))  # fmt: skip
    assert lines[0].endswith("n/a (no looks measured)")
    assert not any("per look)" in line for line in lines if line.startswith("writes"))
