"""The live drift watch: what it reads from counters, what it says, and what reaches status
(written only when it changes; kept across a restart; gone with the profile)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import numpy as np

from modelops_operator.api.modeldeployment import ModelDeploymentSpec
from modelops_operator.monitoring.live import (
    AccuracyWatch,
    DriftWatch,
    Reference,
    accuracy_view,
    drift_view,
    reference_from,
)
from modelops_operator.monitoring.reading import grown, outcome_growth, read_outcomes, read_totals
from modelops_operator.observe import DeploymentObservation
from modelops_operator.promsource.counts import Sample
from modelops_operator.status import ReconcileOutcome, compute_status, status_patch

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SHARES = [0.25, 0.25, 0.25, 0.25]


def _reference() -> Reference:
    samples = [
        ({"feature": name, "bin": str(b)}, share)
        for name in ("age", "income")
        for b, share in enumerate(SHARES)
    ]
    reference = reference_from(samples, rows=10_000)
    assert reference is not None
    return reference


def _watch() -> DriftWatch:
    # c = 1 day / 1 minute = 1,440 looks.
    return DriftWatch("1.0.0", _reference(), 86400.0, 60.0, since=T0.timestamp())


def _counts(rng: np.random.Generator, age: list[float]) -> np.ndarray:
    return np.stack([rng.multinomial(400, age), rng.multinomial(400, SHARES)]).astype(float)


def test_healthy_looks_write_nothing_new_and_drift_names_its_feature() -> None:
    rng = np.random.default_rng(0)
    watch = _watch()
    views = []
    for minute in range(30):
        assert not watch.look(_counts(rng, SHARES), T0.timestamp() + 60 * minute)
        views.append(drift_view(watch, "1.0.0"))
    assert all(view == views[0] for view in views), "a healthy look changed what status says"
    status, condition = views[0]
    assert (status["state"], condition.status, condition.reason) == ("Watching", "False", "NoDrift")
    found_at = None
    for minute in range(30, 90):
        if watch.look(_counts(rng, [0.1, 0.2, 0.3, 0.4]), T0.timestamp() + 60 * minute):
            found_at = minute
            break
    assert found_at is not None and found_at < 45
    status, condition = drift_view(watch, "1.0.0")
    assert (status["state"], condition.status) == ("Drifted", "True")
    assert status["features"][0]["name"] == "age"
    # Found stays found for this version, through more looks.
    watch.look(_counts(rng, SHARES), T0.timestamp() + 60 * 100)
    assert drift_view(watch, "1.0.0") == (status, condition)


def test_no_rows_is_no_data_and_a_failed_read_says_why() -> None:
    watch = _watch()
    status, condition = drift_view(None, "1.0.0")
    assert (status["state"], condition.status) == ("NoData", "Unknown")
    status, condition = drift_view(None, "1.0.0", problem="Prometheus unavailable: timeout")
    assert status["state"] == "Unavailable" and "timeout" in condition.message
    watch.look(np.zeros((2, 4)), T0.timestamp())
    assert drift_view(watch, "1.0.0")[1].reason == "NoData"


class Answers:
    """Prometheus's answers to the reading queries, as recorded samples."""

    def __init__(self, samples: list[tuple[dict[str, str], float]]) -> None:
        self.samples = [Sample(labels, value, 0.0) for labels, value in samples]

    async def instant(self, query: str, at: float | None = None) -> list[Sample]:
        return self.samples


def _bins(pod: str, counts: dict[int, float]) -> list[tuple[dict[str, str], float]]:
    return [({"pod": pod, "feature": "age", "bin": str(b)}, v) for b, v in counts.items()]


def test_counter_growth_handles_resets_and_new_pods() -> None:
    reference = _reference()
    first = asyncio.run(read_totals(Answers(_bins("a", {0: 100, 1: 50})), "{}", reference, 0))
    assert grown(None, first, reference).sum() == 0  # a baseline, not rows
    answers = Answers(_bins("a", {0: 130, 1: 5}) + _bins("b", {2: 7}))
    later = asyncio.run(read_totals(answers, "{}", reference, 0))
    counts = grown(first, later, reference)
    # a/0 grew 30; a/1 was reset (a restart) and counts 5 from zero; b is a new pod: 7.
    assert counts[0].tolist() == [30.0, 5.0, 7.0, 0.0]
    assert later["a/"].nbytes == reference.shares.nbytes  # one small array per pod


def _spec(profile: bool = True) -> ModelDeploymentSpec:
    model: dict[str, Any] = {
        "name": "fraud",
        "version": "1.0.0",
        "uri": "s3://b/m.skops",
        "format": "sklearn",
        "digest": "sha256:" + "cd" * 32,
    }
    if profile:
        model["profile"] = {"uri": "s3://b/profile.json", "digest": "sha256:" + "ef" * 32}
    return ModelDeploymentSpec.model_validate({"model": model})


def _observed() -> DeploymentObservation:
    return DeploymentObservation(3, 3, 1, 1, 1, 1, 1, "1.0.0", False, "")


def _status(spec: ModelDeploymentSpec, previous: Any, view: Any) -> dict[str, Any]:
    return compute_status(
        "fraud", "ml", spec, ReconcileOutcome(1), _observed(), previous, T0, monitoring=view
    )


def test_status_carries_the_view_keeps_it_until_the_first_look_and_drops_it_with_the_profile() -> (
    None
):
    rng = np.random.default_rng(1)
    watch = _watch()
    for minute in range(60):
        watch.look(_counts(rng, [0.1, 0.2, 0.3, 0.4]), T0.timestamp() + 60 * minute)
    drifted = _status(_spec(), None, {"drift": drift_view(watch, "1.0.0")})
    assert drifted["monitoring"]["drift"]["state"] == "Drifted"
    assert {c["type"]: c["status"] for c in drifted["conditions"]}["DataDrift"] == "True"
    # After an operator restart, before the monitor's first look: nothing to write.
    assert status_patch(drifted, _status(_spec(), drifted, None)) == {}
    # The restarted monitor keeps the drift found for this version, not for another.
    restarted = _watch()
    restarted.resume(drifted)
    assert restarted.drifted_at == watch.drifted_at // 1
    assert drift_view(restarted, "1.0.0")[1].status == "True"
    other = DriftWatch("2.0.0", _reference(), 86400.0, 60.0, since=T0.timestamp())
    other.resume(drifted)
    assert other.drifted_at is None
    gone = _status(_spec(profile=False), drifted, None)
    assert "monitoring" not in gone
    assert "DataDrift" not in {c["type"] for c in gone["conditions"]}


def test_accuracy_decay_is_found_against_the_holdout_and_a_healthy_model_is_left_alone() -> None:
    rng = np.random.default_rng(2)
    # Holdout accuracy 0.90 on 2,000 rows, margin 2 points: errors up to about 0.147 are fine.
    watch = AccuracyWatch("1.0.0", 0.90, 2000, 2.0, 86400.0, 60.0, since=T0.timestamp())
    assert 0.12 < watch.allowed_error < 0.16
    for minute in range(120):
        labelled = float(rng.poisson(50))
        wrong = float(rng.binomial(int(labelled), 0.10))
        assert not watch.look(wrong, labelled, T0.timestamp() + 60 * minute)
    status, condition = accuracy_view(watch, "1.0.0")
    assert (status["state"], condition.status) == ("Watching", "False")
    found = None
    for minute in range(120, 240):
        labelled = float(rng.poisson(50))
        if watch.look(
            float(rng.binomial(int(labelled), 0.25)), labelled, T0.timestamp() + 60 * minute
        ):
            found = minute
            break
    assert found is not None and found < 150
    status, condition = accuracy_view(watch, "1.0.0")
    assert (status["state"], condition.type, condition.status) == (
        "Degraded",
        "AccuracyDegraded",
        "True",
    )
    assert "holdout accuracy 0.900" in status["message"]


def test_labels_are_counted_from_the_feedback_counters_growth() -> None:
    def outcomes(pods: dict[str, dict[str, float]]) -> Any:
        samples = [
            ({"pod": p, "outcome": o}, v) for p, found in pods.items() for o, v in found.items()
        ]
        return asyncio.run(read_outcomes(Answers(samples), '{a="b"}', 0))

    before = outcomes({"a": {"correct": 10, "incorrect": 2}})
    after = outcomes({"a": {"correct": 18, "incorrect": 5}, "b": {"incorrect": 1, "late": 9}})
    assert outcome_growth(None, after) == (0.0, 0.0)
    assert outcome_growth(before, after) == (4.0, 12.0)
