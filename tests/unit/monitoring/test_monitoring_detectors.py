"""The live-model detectors: e-values valid over the whole healthy box, false alarms no more
often than configured (also when the world is exactly the null's edge), no data no alarm, and a
real shift found."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from modelops_operator.monitoring import detectors
from modelops_operator.monitoring.detectors import (
    BinnedDrift,
    RateIncrease,
    alarm_threshold,
    error_rate_null,
    reference_box,
    worst_case_mean,
)
from modelops_operator.monitoring.simulate import DriftWorld, run, summary


def _box_vertices(lo: np.ndarray, hi: np.ndarray) -> list[np.ndarray]:
    """The vertices of {lo ≤ p ≤ hi, Σp = 1}: all bins but one at a bound, that one free."""
    k = lo.size
    vertices = []
    for free in range(k):
        others = [i for i in range(k) if i != free]
        for bounds in itertools.product((0, 1), repeat=k - 1):
            p = np.empty(k)
            for i, b in zip(others, bounds, strict=True):
                p[i] = hi[i] if b else lo[i]
            p[free] = 1 - p[others].sum()
            if lo[free] - 1e-12 <= p[free] <= hi[free] + 1e-12:
                vertices.append(p)
    return vertices


def test_worst_case_mean_is_the_largest_mean_over_the_box() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        p0 = rng.dirichlet(np.ones(5))
        lo, hi = reference_box(p0, reference_rows=200)
        ratio = rng.gamma(2.0, size=5)
        best = max(float(v @ ratio) for v in _box_vertices(lo, hi))
        assert worst_case_mean(ratio, lo, hi, np.ones(5, dtype=bool)) == pytest.approx(
            best, rel=1e-9
        )


def test_a_look_is_an_e_value_for_every_healthy_distribution() -> None:
    """E_p[e] ≤ 1 at every vertex of the box (hence everywhere in it), whatever the plug-in has
    learnt, computed exactly for one observation."""
    rng = np.random.default_rng(1)
    p0 = np.array([0.1, 0.2, 0.3, 0.25, 0.15])
    detector = BinnedDrift(p0[None], np.ones((1, 5), dtype=bool), reference_rows=500, threshold=100)
    for _ in range(30):
        detector.update(rng.poisson(300 * rng.dirichlet(np.ones(5)))[None, None].astype(float))
        for vertex in _box_vertices(detector.lo[0], detector.hi[0]):
            expected = sum(
                vertex[k] * math.exp(detector.log_e_values(np.eye(5)[k][None, None])[0, 0])
                for k in range(5)
            )
            assert expected <= 1 + 1e-9


def test_no_data_is_no_evidence() -> None:
    detector = BinnedDrift(np.full((3, 4), 0.25), np.ones((3, 4), dtype=bool), 1000, threshold=2.0)
    for _ in range(10_000):
        statistic = detector.update(np.zeros((1, 3, 4)))
    assert statistic[0] == pytest.approx(0.0)
    assert not detector.alarmed()[0]
    rate = RateIncrease(0.1, threshold=2.0)
    for _ in range(10_000):
        rate.update(np.zeros(1), np.zeros(1))
    assert rate.log_m[0] == 0.0


def test_false_alarms_no_more_often_than_configured_at_the_edge_of_the_null() -> None:
    """The world sits exactly on the null (the profile is the truth, its box has no width), and
    traffic bursts; with a threshold of 200 looks the alarms come at most once per 200 looks."""
    rng = np.random.default_rng(2)
    runs, looks, threshold = 200, 2000, 200.0
    p0 = np.array([0.4, 0.3, 0.2, 0.1])
    detector = BinnedDrift(
        np.tile(p0, (2, 1)),
        np.ones((2, 4), dtype=bool),
        reference_rows=1e12,
        threshold=threshold,
        runs=runs,
    )
    alarms = 0
    for look in range(looks):
        n = 50.0 * (5.0 if look % 97 < 5 else 1.0)
        detector.update(rng.poisson(n * np.broadcast_to(p0, (runs, 2, 4))).astype(float))
        fired = detector.alarmed()
        alarms += int(fired.sum())
        detector.reset(fired)
    assert alarms / (runs * looks) <= 1 / threshold


def test_rate_increase_false_alarms_within_rate_at_the_null_mean() -> None:
    rng = np.random.default_rng(3)
    runs, looks, threshold = 300, 2000, 100.0
    rate = RateIncrease(0.2, threshold=threshold, runs=runs)
    alarms = 0
    for look in range(looks):
        n = rng.poisson(30.0 if look % 50 else 300.0, runs).astype(float)
        rate.update(rng.binomial(n.astype(int), 0.2).astype(float), n)
        fired = rate.alarmed()
        alarms += int(fired.sum())
        rate.reset(fired)
    assert alarms / (runs * looks) <= 1 / threshold


def test_rate_increase_finds_a_doubled_error_rate() -> None:
    rng = np.random.default_rng(4)
    rate = RateIncrease(
        error_rate_null(0.05, 5000, 0.01), threshold=alarm_threshold(90 * 86400, 60), runs=50
    )
    first = np.full(50, -1)
    for look in range(240):
        n = rng.poisson(100, 50).astype(float)
        rate.update(rng.binomial(n.astype(int), 0.10).astype(float), n)
        first = np.where((first < 0) & rate.alarmed(), look, first)
    assert (first >= 0).all()
    assert np.median(first) < 60


def test_threshold_is_looks_between_false_alarms_times_multiplicity() -> None:
    assert alarm_threshold(90 * 86400, 60) == 129_600
    assert alarm_threshold(90 * 86400, 60, multiplicity=20) == 2_592_000
    with pytest.raises(ValueError):
        alarm_threshold(0, 60)


def test_simulated_shift_is_found_and_healthy_days_stay_quiet() -> None:
    """The acceptance scenario, shortened: 20 features, 300 requests a minute with bursts and
    missed scrapes, a profile from 5,000 rows; a shift of one feature by 0.3 standard deviations."""
    shifted = DriftWorld(shift_sd=0.3, shift_at=720)
    outcome = summary(shifted, 720 + 120, run(shifted, 720 + 120, runs=10, seed=5))["methods"]
    assert outcome["modelops"]["detected_within_hour"] >= 0.9
    calm = DriftWorld(alarm_every_days=1.0)
    quiet = summary(calm, 1440, run(calm, 1440, runs=10, seed=6))["methods"]
    assert quiet["modelops"]["alarms"] == 0


def test_an_exact_profile_would_cry_wolf(monkeypatch: pytest.MonkeyPatch) -> None:
    """Why the null is a box: against the profile's frequencies taken as exact, the profile's
    own sampling error (5,000 rows) is found within a day at 300 requests a minute."""
    monkeypatch.setattr(detectors, "REFERENCE_STANDARD_ERRORS", 0.0)
    calm = DriftWorld(alarm_every_days=1.0)
    noisy = summary(calm, 1440, run(calm, 1440, runs=5, seed=6))["methods"]
    assert noisy["modelops"]["alarms"] > 5
