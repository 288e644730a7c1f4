"""Summing per-series counts per arm, into the gating engine's shape (ledger.py makes them)."""

from __future__ import annotations

from modelops_operator.promsource.counts import (
    ArmSelector,
    Sample,
    arm_counts,
    paired_counts,
    tracked,
)

CHAMPION = ArmSelector(role="champion", version="v1")
CHALLENGER = ArmSelector(role="challenger", version="v2")


def sample(value: float, **labels: str) -> Sample:
    return Sample(labels=labels, value=value, timestamp=0.0)


def per_series(samples: list[Sample]) -> dict[tuple[tuple[str, str], ...], float]:
    return {s.key: s.value for s in samples}


def test_series_are_summed_per_arm_and_server_errors_told_apart() -> None:
    grown = per_series(
        [
            sample(30, pod="a", role="champion", version="v1", code="200"),
            sample(7, pod="b", role="champion", version="v1", code="200"),
            sample(12, pod="c", role="champion", version="v1", code="500"),
            sample(9, pod="d", role="challenger", version="v2", code="200"),
        ]
    )
    counts = arm_counts({"requests": grown}, CHAMPION)
    assert counts["requests"] == 30 + 7 + 12
    assert counts["errors"] == 12
    assert arm_counts({"requests": grown}, CHALLENGER)["requests"] == 9


def test_an_older_challenger_version_is_never_mixed_in() -> None:
    now = [
        sample(500, pod="x", role="challenger", version="v2", code="500"),
        sample(20, pod="y", role="challenger", version="v3", code="200"),
    ]
    counts = arm_counts({"requests": per_series(now)}, ArmSelector("challenger", "v3"))
    assert [s.value for s in tracked("requests", now, [ArmSelector("challenger", "v3")])] == [20]
    assert counts == {
        "requests": 20,
        "errors": 0,
        "latencyBuckets": {},
        "predictionBuckets": {},
        "feedbackCorrect": 0.0,
        "feedbackTotal": 0.0,
    }


def test_buckets_feedback_and_regression_sums_are_grouped() -> None:
    labels = {"role": "champion", "version": "v1"}
    metrics = {
        "latency": per_series([sample(8, le="0.1", **labels), sample(10, le="+Inf", **labels)]),
        "feedback": per_series(
            [
                sample(6, outcome="correct", **labels),
                sample(2, outcome="incorrect", **labels),
            ]
        ),
    }
    counts = arm_counts(metrics, CHAMPION)
    assert counts["latencyBuckets"] == {"0.1": 8, "+Inf": 10}
    assert (counts["feedbackCorrect"], counts["feedbackTotal"]) == (6, 8)
    assert "errorSum" not in counts
    # A regression model's labels are scored rows: they are its labelled total.
    metrics["feedback"] = per_series([sample(3, outcome="scored", **labels)])
    metrics["absoluteError"] = per_series([sample(1.5, **labels)])
    metrics["squaredError"] = per_series([sample(0.75, **labels)])
    counts = arm_counts(metrics, CHAMPION)
    assert (counts["feedbackCorrect"], counts["feedbackTotal"]) == (0, 3)
    assert (counts["errorSum"], counts["squaredErrorSum"]) == (1.5, 0.75)


def test_paired_shadow_outcomes() -> None:
    grown = per_series(
        [
            sample(40, champion="correct", challenger="correct"),
            sample(4, champion="correct", challenger="incorrect"),
            sample(9, champion="incorrect", challenger="correct"),
            sample(2, champion="incorrect", challenger="incorrect"),
        ]
    )
    assert paired_counts(grown) == {
        "both": 40,
        "championOnly": 4,
        "challengerOnly": 9,
        "neither": 2,
    }
