"""evaluate(): the decision rule, persistence, robustness, configuration parsing."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelops_operator.gating import (
    Action,
    Counts,
    DecisionPolicy,
    GateConfig,
    GatingConfig,
    GatingState,
    evaluate,
    parse_duration,
    rateratio,
)

ERRORS = {"name": "errors", "type": "errorRate", "margin": 0.5}
LOOSE = {"minSamples": 1, "maxDuration": "24h"}
STATUS_KEYS = {"name", "type", "verdict", "estimate", "lower", "upper", "samples", "message"}


def counts(n_a: float, e_a: float, n_b: float, e_b: float, ts: float | None = None) -> dict:
    out: dict[str, Any] = {
        "champion": {"requests": n_a, "errors": e_a},
        "challenger": {"requests": n_b, "errors": e_b},
    }
    if ts is not None:
        out["timestamp"] = ts
    return out


def run(gates, series, policy=LOOSE, state=None):
    """Evaluate a list of cumulative counts, persisting the state through JSON."""
    d = None
    for i, c in enumerate(series, start=1):
        d = evaluate(gates, c, 60 * i, state, policy)
        state = json.loads(json.dumps(d.state.to_dict()))
    assert d is not None
    return d, state


def test_no_data_is_wait_never_a_failure() -> None:
    d = evaluate([ERRORS], None, 600, None, LOOSE)
    assert d.action is Action.WAIT
    assert d.gates[0].verdict == "NoData"
    assert "no data" in d.reason
    d = evaluate([ERRORS], counts(0, 0, 0, 0), 600, None, LOOSE)
    assert d.action is Action.WAIT and "no data" in d.reason
    # Even past maxDuration, missing data waits (the timeout applies when data returns).
    d = evaluate([ERRORS], None, 10**6, None, {"maxDuration": "1h"})
    assert d.action is Action.WAIT and "maxDuration" in d.reason


def test_stale_data_waits_and_keeps_the_state() -> None:
    c = counts(10000, 50, 10000, 50, ts=100.0)
    d1 = evaluate([ERRORS], c, 60, None, LOOSE)
    state = d1.state.to_dict()
    d2 = evaluate([ERRORS], c, 120, state, LOOSE)  # same timestamp
    assert d2.action is Action.WAIT and "stale" in d2.reason
    assert d2.gates[0].verdict == "NoData" and d2.gates[0].estimate is not None
    assert d2.state.to_dict()["gates"] == state["gates"]
    # Same numbers with a newer timestamp: no new samples, still stale.
    d3 = evaluate([ERRORS], counts(10000, 50, 10000, 50, ts=160.0), 180, state, LOOSE)
    assert "stale" in d3.reason


def test_equal_challenger_is_promoted_and_report_fits_status() -> None:
    series = [counts(3000 * i, 15 * i, 3000 * i, 15 * i) for i in range(1, 60)]
    d, _ = run([ERRORS], series)
    assert d.action is Action.PROMOTE
    g = d.gates[0]
    assert g.verdict == "Pass" and g.upper is not None and g.upper < 1.5
    assert set(g.to_status()) == STATUS_KEYS
    assert d.to_status()["decision"] == "Promote"
    json.dumps(d.to_dict(), allow_nan=False)


def test_clearly_worse_challenger_is_rolled_back() -> None:
    series = [counts(3000 * i, 15 * i, 3000 * i, 60 * i) for i in range(1, 30)]
    d, _ = run([ERRORS], series)
    assert d.action is Action.ROLLBACK
    assert d.gates[0].verdict == "Fail" and d.gates[0].lower > 1.5
    assert d.status_decision == "RollBack"
    assert "errors" in d.reason


def test_promotion_waits_for_minimum_exposure() -> None:
    series = [counts(30000 * i, 150 * i, 30000 * i, 150 * i) for i in range(1, 4)]
    d, state = run([ERRORS], series, policy={"minSamples": 10**6})
    assert d.action is Action.WAIT
    assert d.gates[0].verdict == "Pass"  # the gate is sticky: it stays passed
    assert "minimum exposure" in d.reason
    d, _ = run([ERRORS], [counts(2 * 10**6, 10**4, 2 * 10**6, 10**4)], {"minSamples": 10**6}, state)
    assert d.action is Action.PROMOTE
    d, _ = run([ERRORS], series, policy={"minSamples": 1, "minDuration": "1h"})
    assert d.action is Action.WAIT and "min" in d.reason


def test_timeout_rolls_back_or_holds() -> None:
    c = counts(1000, 5, 1000, 7)
    d = evaluate([ERRORS], c, 7200, None, {"maxDuration": "1h"})
    assert d.action is Action.ROLLBACK and d.timed_out and "maxDuration" in d.reason
    d = evaluate([ERRORS], c, 7200, None, {"maxDuration": "1h", "onTimeout": "hold"})
    assert d.action is Action.WAIT and d.hold and d.status_decision == "Hold"


def test_wait_reason_is_honest_about_data_needed() -> None:
    d = evaluate([ERRORS], counts(900, 4, 140, 1), 60, None, {"minSamples": 1})
    assert d.action is Action.WAIT
    assert "not enough data: 140 of ≥" in d.reason
    assert "challenger requests needed at the current rate" in d.reason
    assert d.gates[0].plan is not None and d.gates[0].plan["samples"] > 140


def test_a_shrinking_aggregate_never_counts_data_twice() -> None:
    # The second read is lower (a pod's series vanished): nothing new is counted, and the
    # next increment starts from the lower value.
    gates = [ERRORS]
    d1 = evaluate(gates, counts(5000, 25, 5000, 25), 60, None, LOOSE)
    before = d1.state.gates["errors"].loglik.copy()
    d2 = evaluate(gates, counts(4000, 20, 4000, 30), 120, d1.state.to_dict(), LOOSE)
    assert d2.state.gates["errors"].last == (4000, 20, 4000, 30)
    assert (d2.state.gates["errors"].loglik == before).all()
    d3 = evaluate(gates, counts(5000, 25, 5000, 35), 180, d2.state.to_dict(), LOOSE)
    expected = before + rateratio.loglik_increment(1000, 1000, 5, 5)
    assert d3.state.gates["errors"].loglik == pytest.approx(expected)


def test_gate_change_restarts_its_evidence() -> None:
    series = [counts(3000 * i, 15 * i, 3000 * i, 15 * i) for i in range(1, 30)]
    _, state = run([ERRORS], series)
    assert state["gates"]["errors"].get("logEPromote", -1) > math.log(20)
    changed = dict(ERRORS, margin=0.3)
    d = evaluate([changed], counts(3000 * 30, 450, 3000 * 30, 450), 1800, state, LOOSE)
    assert d.gates[0].verdict == "Pending"  # the old evidence is not reused for a new null
    assert d.state.gates["errors"].last == (90000, 450, 90000, 450)


def test_srm_alarm_pauses() -> None:
    series = []
    for i in range(1, 20):
        c = counts(9000 * i, 45 * i, 3000 * i, 15 * i)  # 25% share, configured 10%
        c["challengerWeight"] = 0.1
        series.append(c)
    d, state = run([ERRORS], series)
    assert d.action is Action.WAIT and d.srm_alarm and "sample ratio mismatch" in d.reason
    # The alarm is sticky, but it never blocks the timeout rollback.
    late = counts(9000 * 30, 45 * 30, 3000 * 30, 15 * 30)
    late["challengerWeight"] = 0.1
    d = evaluate([ERRORS], late, 10**6, state, {"minSamples": 1, "maxDuration": "1h"})
    assert d.action is Action.ROLLBACK and d.srm_alarm and d.timed_out
    ok = []
    for i in range(1, 20):
        c = counts(9000 * i, 45 * i, 1000 * i, 5 * i)
        c["challengerWeight"] = 0.1
        ok.append(c)
    d, _ = run([ERRORS], ok)
    assert not d.srm_alarm


def test_all_gate_types_and_status_shape() -> None:
    gates = [
        ERRORS,
        {"name": "latency", "type": "latency", "latencyThreshold": "250ms", "margin": 0.2},
        {"name": "accuracy", "type": "accuracy", "test": "nonInferiority", "margin": 0.01},
        {"name": "drift", "type": "predictionDrift", "margin": 0.1},
        {"name": "p99", "type": "prometheus", "thresholdRange": {"max": 0.5}},
    ]
    arm = {
        "requests": 5000,
        "errors": 20,
        "latencyBuckets": {"0.1": 4000, "0.25": 4900, "+Inf": 5000},
        "feedbackCorrect": 4500,
        "feedbackTotal": 5000,
        "predictionBuckets": {"0.5": 2500, "+Inf": 5000},
        "custom": {"p99": {"value": 0.3}},
    }
    d = evaluate(gates, {"champion": arm, "challenger": arm}, 600, None, LOOSE)
    assert [g.name for g in d.gates] == ["errors", "latency", "accuracy", "drift", "p99"]
    assert all(set(g.to_status()) == STATUS_KEYS for g in d.gates)
    assert d.gates[4].verdict == "Pass"
    json.dumps(d.to_dict(), allow_nan=False)
    # A threshold gate out of range blocks promotion but never rolls back.
    arm2 = dict(arm, custom={"p99": {"value": 0.9}})
    d = evaluate(gates, {"champion": arm, "challenger": arm2}, 600, None, LOOSE)
    assert d.gates[4].verdict == "Pending" and d.action is Action.WAIT


def test_regression_and_paired_feedback() -> None:
    reg = {"name": "mae", "type": "accuracy", "margin": 0.05}
    arm_a = {
        "requests": 4000,
        "feedbackTotal": 4000,
        "errorSum": 4000 * 1.0,
        "squaredErrorSum": 4000 * 1.25,
    }
    arm_b = {
        "requests": 4000,
        "feedbackTotal": 4000,
        "errorSum": 4000 * 1.3,
        "squaredErrorSum": 4000 * 1.94,
    }
    d = evaluate([reg], {"champion": arm_a, "challenger": arm_b}, 600, None, LOOSE)
    g = d.gates[0]
    assert g.estimate == pytest.approx(0.3)
    assert g.verdict == "Fail" and d.action is Action.ROLLBACK
    acc = {"name": "acc", "type": "accuracy", "margin": 0.01}
    paired = {"both": 8500, "championOnly": 150, "challengerOnly": 160, "neither": 1190}
    d = evaluate(
        [acc],
        {"champion": {"requests": 10000}, "challenger": {"requests": 10000}, "paired": paired},
        600,
        None,
        LOOSE,
    )
    assert "paired" in d.gates[0].unit
    assert d.gates[0].estimate == pytest.approx(0.001)
    assert d.action is Action.PROMOTE


def test_bounded_regression_losses_are_bet_on_like_wrong_answers() -> None:
    """With the sidecars' loss bound, a regression gate is the betting test on losses in
    [0, bound]: no burn-in, bounds shown in the loss's units."""
    reg = {"name": "mae", "type": "accuracy", "margin": 0.05}
    champion = {"requests": 4000, "feedbackTotal": 4000, "errorSum": 4000 * 1.0,
                "squaredErrorSum": 4000 * 1.25}
    worse = {"requests": 4000, "feedbackTotal": 4000, "errorSum": 4000 * 1.3,
             "squaredErrorSum": 4000 * 1.94}
    state = None
    for look in range(1, 4):  # three intervals of the same traffic
        scale = {"requests": look, "feedbackTotal": look, "errorSum": look,
                 "squaredErrorSum": look}
        counts = {"lossBound": 5.0,
                  "champion": {k: v * scale[k] for k, v in champion.items()},
                  "challenger": {k: v * scale[k] for k, v in worse.items()}}
        d = evaluate([reg], counts, 600 * look, state, LOOSE)
        state = d.state
    g = d.gates[0]
    assert "bounded by 5" in g.statistic["method"]
    assert g.estimate == pytest.approx(0.3)
    assert g.lower is not None and 0.05 <= g.lower < 0.3
    assert g.verdict == "Fail" and d.action is Action.ROLLBACK
    first = {"requests": 150, "feedbackTotal": 150, "errorSum": 30.0, "squaredErrorSum": 12.0}
    d = evaluate([reg], {"lossBound": 5.0, "champion": first, "challenger": first}, 60, None,
                 LOOSE)
    assert d.gates[0].verdict == "Pending" and "burn-in" not in d.gates[0].message


def test_accuracy_bets_from_the_first_labels_and_regression_waits_for_its_burn_in() -> None:
    acc = {"name": "acc", "type": "accuracy", "margin": 0.01}
    arm = {"requests": 150, "feedbackCorrect": 100, "feedbackTotal": 150}
    d = evaluate([acc], {"champion": arm, "challenger": arm}, 60, None, LOOSE)
    # Betting is exact at any sample size: no burn-in, just not enough evidence yet.
    assert d.gates[0].verdict == "Pending" and "betting" in d.gates[0].statistic["method"]
    loss = {"requests": 150, "feedbackTotal": 150, "errorSum": 30.0, "squaredErrorSum": 12.0}
    d = evaluate([acc], {"champion": loss, "challenger": loss}, 60, None, LOOSE)
    assert d.gates[0].verdict == "Pending" and "burn-in" in d.gates[0].message


def test_spec_parsing() -> None:
    cfg = GatingConfig.from_spec(
        {
            "targetRef": {"name": "fraud"},
            "strategy": {"type": "shadow"},
            "gates": [
                {
                    "name": "lat",
                    "type": "latency",
                    "latencyThreshold": "1s250ms",
                    "test": "superiority",
                    "margin": 0.2,
                }
            ],
            "decision": {
                "alpha": 0.01,
                "interval": "30s",
                "minSamples": 500,
                "maxDuration": "6h",
                "onTimeout": "hold",
            },
        }
    )
    g = cfg.gates[0]
    assert g.latency_threshold == 1.25 and g.test == "superiority"
    assert cfg.policy == DecisionPolicy(
        alpha=0.01, interval=30.0, min_samples=500, max_duration=6 * 3600.0, on_timeout="hold"
    )
    assert parse_duration("1h30m") == 5400 and parse_duration("250ms") == 0.25
    with pytest.raises(ValueError):
        parse_duration("soon")
    with pytest.raises(ValueError):
        GateConfig.from_dict({"name": "x", "type": "latency"})
    with pytest.raises(ValueError):
        GateConfig.from_dict({"name": "x", "type": "errorRate", "test": "better"})


def test_state_round_trip() -> None:
    series = [counts(3000 * i, 15 * i, 300 * i, 2 * i) for i in range(1, 6)]
    _, state = run([ERRORS], series)
    again = GatingState.from_dict(state).to_dict()
    assert again == state
    assert len(json.dumps(state)) < 10_000  # the ratio grid and the absolute route's wealth


def test_unreadable_state_restarts_instead_of_failing() -> None:
    for bad in ({"version": 99}, {"gates": {"errors": {"loglik": "%%%"}}}, {"looks": "x"}):
        d = evaluate([ERRORS], counts(1000, 5, 1000, 5), 60, bad, LOOSE)
        assert d.action is Action.WAIT
        assert any("unreadable" in r for r in d.reasons)


def test_counts_round_trip() -> None:
    c = Counts.from_dict(
        {
            "champion": {
                "requests": 10,
                "latencyBuckets": {"0.1": 5, "+Inf": 10},
                "custom": {"g": {"events": 1, "total": 10}},
            },
            "challenger": {"requests": 4},
            "paired": {"A_only": 1, "B_only": 2, "both": 3, "neither": 4},
            "timestamp": 5,
            "challengerWeight": 0.1,
        }
    )
    assert c is not None and c.paired is not None and c.paired.champion_only == 1
    assert Counts.from_dict(c.to_dict()) == c


numbers = st.one_of(st.integers(-5, 10**7), st.floats(-1, 1e7, allow_nan=False))
arm_strategy = st.fixed_dictionaries(
    {},
    optional={
        "requests": numbers,
        "errors": numbers,
        "feedbackCorrect": numbers,
        "feedbackTotal": numbers,
        "errorSum": numbers,
        "squaredErrorSum": numbers,
        "latencyBuckets": st.dictionaries(st.sampled_from(["0.1", "0.25", "1", "+Inf"]), numbers),
        "predictionBuckets": st.dictionaries(st.sampled_from(["0.2", "0.5", "+Inf"]), numbers),
    },
)
counts_strategy = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {"champion": arm_strategy, "challenger": arm_strategy},
        optional={
            "paired": st.fixed_dictionaries(
                {
                    "both": numbers,
                    "championOnly": numbers,
                    "challengerOnly": numbers,
                    "neither": numbers,
                }
            ),
            "timestamp": st.floats(0, 1e9),
            "challengerWeight": st.floats(0.01, 0.99),
        },
    ),
)
ALL_GATES = [
    ERRORS,
    {"name": "latency", "type": "latency", "latencyThreshold": "250ms", "margin": 0.2},
    {"name": "accuracy", "type": "accuracy", "margin": 0.01},
    {"name": "drift", "type": "predictionDrift", "margin": 0.1},
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(counts_strategy, min_size=1, max_size=4), st.floats(0, 1e6))
def test_evaluate_never_raises_and_stays_serialisable(series, elapsed) -> None:
    state = None
    for c in series:
        d = evaluate(ALL_GATES, c, elapsed, state, {"minSamples": 1, "maxDuration": "1h"})
        assert d.action in (Action.PROMOTE, Action.ROLLBACK, Action.WAIT)
        if c is None:
            assert d.action is Action.WAIT
        state = json.loads(json.dumps(d.state.to_dict(), allow_nan=False))
        json.dumps(d.to_dict(), allow_nan=False)
        for g in d.gates:
            assert g.verdict in ("Pass", "Fail", "Pending", "NoData")


def test_a_betting_state_of_another_layout_restarts_its_evidence_instead_of_failing() -> None:
    import base64

    import numpy as np

    acc = {"name": "acc", "type": "accuracy", "margin": 0.01}
    arm = {"requests": 1000, "feedbackCorrect": 900, "feedbackTotal": 1000}
    first = evaluate([acc], {"champion": arm, "challenger": arm}, 60, None, LOOSE)
    state = first.state.to_dict()
    older = base64.b64encode(np.zeros(10, dtype="<f8").tobytes()).decode()
    state["gates"]["acc"]["wealth"] = older  # kept by an operator with another bet grid
    more = {"requests": 2000, "feedbackCorrect": 1800, "feedbackTotal": 2000}
    again = evaluate([acc], {"champion": more, "challenger": more}, 120, state, LOOSE)
    assert again.gates[0].verdict == "Pending"
    assert len(base64.b64decode(again.state.to_dict()["gates"]["acc"]["wealth"])) > 80


def test_absurd_label_counts_neither_overflow_nor_divide_by_zero() -> None:
    # Found by the property test above: a label count of 1e-226 (Prometheus' extrapolated
    # increase of a hostile or broken counter) squared an overflowing mean.
    counts = {
        "champion": {"requests": 0, "predictionBuckets": {}, "feedbackTotal": 1.0},
        "challenger": {"requests": 1, "feedbackTotal": 7.777892286668186e-226, "errorSum": 1},
    }
    decision = evaluate(ALL_GATES, counts, 0.0, None, {"minSamples": 1, "maxDuration": "1h"})
    assert decision.action is Action.WAIT
    json.dumps(decision.to_dict(), allow_nan=False)
