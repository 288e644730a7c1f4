# ruff: noqa: RUF003  (mathematical notation: α, θ, τ, Δ, ×, − are intended)
"""The statistical cores: normal mixture, rate-ratio e-process, drift bands."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from modelops_operator.gating import drift, mixture, rateratio

# ----------------------------------------------------------------------------- mixture


def test_one_sided_radius_solves_the_threshold_equation() -> None:
    v = np.array([1e-6, 1e-4, 0.01, 1.0])
    for tau in (0.01, 0.5):
        x = mixture.one_sided_radius(v, tau, 0.05)
        np.testing.assert_allclose(
            mixture.log_e_one_sided(x, v, tau), math.log(20), rtol=0, atol=1e-9
        )
        # Tighter than the two-sided closed form at the same alpha, wider than at 2 alpha.
        assert np.all(x <= mixture.two_sided_radius(v, tau, 0.05))
        assert np.all(x >= mixture.two_sided_radius(v, tau, 0.10))


def test_tau_constants_match_the_methods_note() -> None:
    # τ² = c·V*: c(α)=7.94 two-sided, c(2α)=6.33 one-sided at α = 0.05.
    assert mixture.tau_for_variance(1.0, 0.05, one_sided=False) ** 2 == pytest.approx(
        7.94, abs=0.01
    )
    assert mixture.tau_for_variance(1.0, 0.05, one_sided=True) ** 2 == pytest.approx(6.33, abs=0.01)


@given(x=st.floats(-5, 5), v=st.floats(1e-6, 10), tau=st.floats(1e-3, 5), dx=st.floats(1e-3, 1))
def test_mixture_e_value_increases_with_the_estimate(x, v, tau, dx) -> None:
    assert mixture.log_e_one_sided(x + dx, v, tau) >= mixture.log_e_one_sided(x, v, tau) - 1e-9


def test_mixture_is_valid_for_exact_gaussian_data_at_every_look() -> None:
    # Gaussian increments at the null boundary, checked after every observation (2,000 looks).
    rng = np.random.default_rng(7)
    runs, looks, tau = 4000, 2000, 0.3
    s = np.cumsum(rng.normal(0.0, 1.0, (runs, looks)), axis=1)
    n = np.arange(1, looks + 1)
    log_e = mixture.log_e_one_sided(s / n, 1.0 / n, tau)
    crossed = np.mean(np.max(log_e, axis=1) >= math.log(20))
    assert crossed <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / runs)


def test_estimators() -> None:
    d, v = mixture.unpaired_proportions(90, 100, 80, 100)
    assert d == pytest.approx(-0.10)
    assert v == pytest.approx(0.9 * 0.1 / 100 + 0.8 * 0.2 / 100)
    d, v = mixture.paired_proportions(3, 7, 100)
    assert d == pytest.approx(-0.04)
    assert v == pytest.approx((0.10 - 0.0016) / 100)
    x = np.array([1.0, 2.0, 4.0])
    y = np.array([2.0, 2.0, 5.0, 7.0])
    d, v = mixture.two_means(x.sum(), (x**2).sum(), 3, y.sum(), (y**2).sum(), 4)
    assert d == pytest.approx(y.mean() - x.mean())
    assert v == pytest.approx(x.var(ddof=1) / 3 + y.var(ddof=1) / 4)


# --------------------------------------------------------------------------- rate ratio


def test_loglik_increment_is_the_conditional_binomial_likelihood() -> None:
    n_a, n_b, y_a, y_b = 900.0, 100.0, 7.0, 4.0
    inc = rateratio.loglik_increment(n_a, n_b, y_a, y_b)
    q = n_b * np.exp(rateratio.THETA) / (n_a + n_b * np.exp(rateratio.THETA))
    exact = stats.binom.logpmf(y_b, y_a + y_b, q)
    exact -= exact[rateratio.GRID_HALF_WIDTH]
    np.testing.assert_allclose(inc, exact, atol=1e-9)


def test_window_gives_identical_e_values() -> None:
    rng = np.random.default_rng(1)
    ll = sum(
        rateratio.loglik_increment(
            rng.poisson(900), rng.poisson(100), rng.poisson(5), rng.poisson(1)
        )
        for _ in range(20)
    )
    j = rateratio.grid_index(math.log(1.5), round_up=True)
    win = rateratio.window_for(j)
    for upper in (True, False):
        assert rateratio.log_e_value(ll[win], j, upper=upper, window=win) == pytest.approx(
            rateratio.log_e_value(ll, j, upper=upper)
        )
    with pytest.raises(ValueError):
        rateratio.log_e_value(ll[win], j + 5, upper=True, window=win)


def test_no_events_is_no_evidence() -> None:
    ll = rateratio.loglik_increment(1000, 100, 0, 0)
    assert not ll.any()
    assert rateratio.log_e_value(ll, 170, upper=True) == pytest.approx(0.0)
    assert rateratio.mle(ll) is None
    lo, hi = rateratio.confidence_bounds(ll, alpha_lower=0.05, alpha_upper=0.05)
    assert lo == -math.inf and hi == math.inf


def test_grid_rounding_is_conservative() -> None:
    theta = math.log(1.234)
    assert rateratio.THETA[rateratio.grid_index(theta, round_up=False)] <= theta
    assert rateratio.THETA[rateratio.grid_index(theta, round_up=True)] >= theta
    # Exact grid values are kept.
    assert rateratio.grid_index(0.0, round_up=True) == rateratio.GRID_HALF_WIDTH


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40)), min_size=1, max_size=12),
    st.integers(50, 5000),
    st.integers(10, 5000),
)
def test_constant_split_pools_exactly(events, n_a, n_b) -> None:
    """With the same split every look, per-look accumulation equals one pooled look."""
    per_look = sum(rateratio.loglik_increment(n_a, n_b, ya, yb) for ya, yb in events)
    ya, yb = (sum(e[i] for e in events) for i in (0, 1))
    pooled = rateratio.loglik_increment(n_a, n_b, ya, yb)
    np.testing.assert_allclose(per_look, pooled, atol=1e-8)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 60), st.integers(0, 60), st.floats(0.02, 0.9))
def test_confidence_bounds_bracket_the_mle(y_a, y_b, w) -> None:
    ll = rateratio.loglik_increment(1000 * (1 - w), 1000 * w, y_a, y_b)
    lo, hi = rateratio.confidence_bounds(ll, alpha_lower=0.05, alpha_upper=0.05)
    m = rateratio.mle(ll)
    assert lo <= hi
    if m is not None:
        assert lo <= m <= hi


# -------------------------------------------------------------------------------- drift


def _cum(probs: np.ndarray, edges: list[float], n: int, rng: np.random.Generator) -> dict:
    counts = np.cumsum(rng.multinomial(n, probs))
    out = {e: float(c) for e, c in zip(edges, counts[:-1], strict=False)}
    out[math.inf] = float(counts[-1])
    return out


def test_dkw_radius() -> None:
    # 0.85·sqrt((log log(e t) + 0.8 log(1612/α))/t)
    t = 1000
    expected = 0.85 * math.sqrt((math.log(math.log(math.e * t)) + 0.8 * math.log(1612 / 0.05)) / t)
    assert drift.dkw_radius(t, 0.05) == pytest.approx(expected)
    assert drift.dkw_radius(0, 0.05) == 1.0


def test_psi_fires_on_identical_models_at_n_100_but_the_test_does_not() -> None:
    rng = np.random.default_rng(3)
    probs = np.full(10, 0.1)
    edges = [0.1 * i for i in range(1, 10)]
    psi_alarm, gate_fail, chance = 0, 0, []
    for _ in range(300):
        a, b = _cum(probs, edges, 100, rng), _cum(probs, edges, 100, rng)
        s = drift.compare(a, b, alpha_upper=0.05, alpha_lower=0.05)
        psi_alarm += s.psi >= 0.1
        gate_fail += s.lower > 0.1
        chance.append(s.psi_null_expectation)
    assert psi_alarm / 300 > 0.5  # the classic rule cries wolf
    assert gate_fail == 0  # the sample-size-aware band does not
    assert np.mean(chance) == pytest.approx(9 * (1 / 100 + 1 / 100), rel=0.1)


def test_drift_detects_a_real_shift_and_passes_a_null_with_data() -> None:
    rng = np.random.default_rng(4)
    edges = [0.1 * i for i in range(1, 10)]
    same = drift.compare(
        _cum(np.full(10, 0.1), edges, 20000, rng),
        _cum(np.full(10, 0.1), edges, 20000, rng),
        alpha_upper=0.05,
        alpha_lower=0.05,
    )
    assert same.upper < 0.1
    shifted = np.array([0.05] * 5 + [0.15] * 5)
    moved = drift.compare(
        _cum(np.full(10, 0.1), edges, 20000, rng),
        _cum(shifted, edges, 20000, rng),
        alpha_upper=0.05,
        alpha_lower=0.05,
    )
    assert moved.lower > 0.2  # true edge-KS distance 0.25
    ref = drift.compare(
        None,
        _cum(shifted, edges, 20000, rng),
        alpha_upper=0.05,
        alpha_lower=0.05,
        reference={e: (i + 1) / 10 for i, e in enumerate(edges)} | {math.inf: 1.0},
    )
    assert ref.lower > 0.2
    assert ref.chi2_p_value is None  # one-sample: no two-sample chi-square


def test_the_drift_reports_chi2_p_value_is_pearsons_test_of_independence() -> None:
    from scipy import stats

    from modelops_operator.gating.drift import _independence_p_value

    rng = np.random.default_rng(0)
    for _ in range(20):
        table = rng.integers(1, 500, (2, int(rng.integers(2, 12)))).astype(float)
        expected = stats.chi2_contingency(table, correction=False)[1]
        assert _independence_p_value(table) == pytest.approx(expected, rel=1e-9, abs=1e-15)
