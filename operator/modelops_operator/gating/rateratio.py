# ruff: noqa: RUF002, RUF003  (mathematical notation: α, θ, τ, Δ, ×, − are intended)
"""Conditional-binomial rate-ratio e-process for rare events (errors, slow requests).

Method: Lindon & Malek (2022), *Anytime-valid inference for multinomial count data*, NeurIPS
(arXiv:2011.03567), as used for Netflix's canary testing (Lindon, Sanden & Shirikian, KDD 2022,
arXiv:2205.14762). Under Poisson (or rare-Bernoulli) arrivals with any common, time-varying
intensity, condition on the :math:`N_t = y_{A,t}+y_{B,t}` events seen in look-interval t:

.. math::

    y_{B,t}\\sim\\mathrm{Bin}(N_t, q_t(\\theta)),\\quad
    q_t(\\theta)=\\frac{n_{B,t}e^\\theta}{n_{A,t}+n_{B,t}e^\\theta},\\quad
    \\theta=\\log\\frac{p_B}{p_A}.

The base rate, diurnal load and traffic ramps cancel; only the *realised* split of each interval
enters, so the canary weight may change between steps (5% → 25% → 50%). For Bernoulli requests
with larger rates the conditional law is less dispersed than this binomial, which makes the test
conservative (checked by simulation at 10% error rates).

The log-likelihood :math:`\\ell(\\theta)` is accumulated on a fixed grid :data:`THETA`
(step 0.02 in log-ratio, ratios 0.05–20). The e-value against :math:`H_0:\\theta\\le\\theta_0` is
the likelihood ratio mixed over a half-normal prior of scale 0.5 on :math:`\\theta>\\theta_0`,
discretised on the grid (a discrete prior is itself exact); the non-inferiority test is its mirror
image. Because :math:`q_t` is increasing in :math:`\\theta`, each is a test supermartingale for the
composite null. Inverting over grid nulls gives the confidence sequence for the ratio.

**What a caller must persist**: the grid log-likelihood vector (:func:`loglik_increment` summed
over looks). It depends on the data only, not on margins or alpha.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import logsumexp

GRID_STEP = 0.02
GRID_HALF_WIDTH = 150  # points each side of zero: θ ∈ [-3, 3], ratios 0.05 .. 20
THETA = np.arange(-GRID_HALF_WIDTH, GRID_HALF_WIDTH + 1) * GRID_STEP
GRID_SIZE = THETA.size
#: Scale of the half-normal prior on log(ratio) beyond the null (Lindon & Malek use similar).
PRIOR_SCALE = 0.5
#: The prior is truncated at 4 scales (100 grid points) beyond the null; a truncated prior is
#: still a prior, so this costs nothing in validity and bounds the work per evaluation.
PRIOR_POINTS = round(4 * PRIOR_SCALE / GRID_STEP)
_EXPM1_THETA = np.expm1(THETA)


def grid_index(theta0: float, *, round_up: bool) -> int:
    """Grid index of a null value, rounded in the conservative direction.

    A non-inferiority null "ratio ≥ r0" is rounded *down* (a stricter bar to pass) and a harm
    null "ratio ≤ r0" is rounded *up* (a stricter bar to roll back), so rounding never makes a
    test anti-conservative.
    """
    k = theta0 / GRID_STEP
    k = math.ceil(k - 1e-9) if round_up else math.floor(k + 1e-9)
    return int(min(max(k + GRID_HALF_WIDTH, 0), GRID_SIZE - 1))


def window_for(*null_indices: int) -> slice:
    """The grid indices that the tests at these nulls read (nulls plus their prior supports)."""
    return slice(
        max(min(null_indices) - PRIOR_POINTS, 0),
        min(max(null_indices) + PRIOR_POINTS + 1, GRID_SIZE),
    )


def loglik_increment(n_a, n_b, y_a, y_b, window: slice | None = None) -> np.ndarray:
    """Grid log-likelihood of one interval's counts, shape ``broadcast(inputs) + (grid,)``.

    Inputs are the *increments* of one look-interval: requests (or exposure) per arm and events
    per arm. Terms constant in θ are dropped (ℓ(0) = 0). Intervals with no events, or with one
    arm absent, carry no information about θ and contribute zero. ``window`` restricts the grid
    (see :func:`window_for`); the values on it are identical to the full-grid ones.
    """
    n_a, n_b, y_a, y_b = (np.asarray(z, dtype=float) for z in (n_a, n_b, y_a, y_b))
    n_a, n_b, y_a, y_b = np.broadcast_arrays(n_a, n_b, y_a, y_b)
    win = window if window is not None else slice(0, GRID_SIZE)
    ok = (y_a + y_b > 0) & (n_a > 0) & (n_b > 0)
    # Rows without information get w = 0 and no events, which makes their increment exactly 0.
    y_b = np.where(ok, y_b, 0.0)
    total_events = np.where(ok, y_a, 0.0) + y_b
    w = np.where(ok, n_b / np.where(ok, n_a + n_b, 1.0), 0.0)
    # log P(events split as seen | θ) - log P(... | 0) = y_B θ - N log(1 - w + w e^θ).
    inc = np.multiply.outer(w, _EXPM1_THETA[win])
    np.log1p(inc, out=inc)
    inc *= -total_events[..., None]
    inc += np.multiply.outer(y_b, THETA[win])
    return inc


def _prior_log_weights(null_index: int, upper: bool, scale: float = PRIOR_SCALE) -> np.ndarray:
    """log prior weights over grid points strictly beyond the null (above if ``upper``).

    Half-normal on the distance from the null, truncated at :data:`PRIOR_POINTS` grid steps and
    at the grid edge, normalised to one.
    """
    k = np.arange(GRID_SIZE) - null_index
    side = (k > 0) & (k <= PRIOR_POINTS) if upper else (k < 0) & (k >= -PRIOR_POINTS)
    logw = np.where(side, -0.5 * (k * GRID_STEP / scale) ** 2, -np.inf)
    if not np.any(side):
        return logw  # null at the grid edge: no alternative left; the e-value stays 0
    return logw - logsumexp(logw[side])


def _logsumexp_last(x: np.ndarray) -> np.ndarray:
    m = np.max(x, axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return np.log(np.sum(np.exp(x - m), axis=-1)) + m[..., 0]


def log_e_value(
    loglik: np.ndarray, null_index: int, *, upper: bool, window: slice | None = None
) -> np.ndarray:
    """log e-value against ``θ ≤ θ[null]`` (``upper=True``: harm) or ``θ ≥ θ[null]`` (promotion).

    ``loglik`` has shape ``(..., grid)``, on the full grid or on ``window`` (which must contain
    the null's prior support, see :func:`window_for`); the result has shape ``(...)``.
    """
    win = window if window is not None else slice(0, GRID_SIZE)
    lo, hi, logw = _support(null_index, upper)
    if hi <= lo:
        return np.full(np.shape(loglik)[:-1], -np.inf)
    start = win.start or 0
    if lo < start or hi > (win.stop if win.stop is not None else GRID_SIZE):
        raise ValueError("window does not cover the prior support of this null")
    ll = np.asarray(loglik)
    return _logsumexp_last(ll[..., lo - start : hi - start] + logw) - ll[..., null_index - start]


_SUPPORT_CACHE: dict[tuple[int, bool], tuple[int, int, np.ndarray]] = {}


def _support(null_index: int, upper: bool) -> tuple[int, int, np.ndarray]:
    """(first, end, log weights) of the contiguous prior support of a grid null."""
    key = (null_index, upper)
    if key not in _SUPPORT_CACHE:
        logw = _prior_log_weights(null_index, upper)
        sel = np.flatnonzero(np.isfinite(logw))
        if sel.size == 0:
            _SUPPORT_CACHE[key] = (0, 0, logw[:0])
        else:
            _SUPPORT_CACHE[key] = (int(sel[0]), int(sel[-1]) + 1, logw[sel[0] : sel[-1] + 1])
    return _SUPPORT_CACHE[key]


def _first_not_rejected(loglik: np.ndarray, log_threshold: float, *, upper: bool) -> int:
    """Index of the first grid null the test does not reject (GRID_SIZE if all are).

    The log-likelihood is concave in θ, so ℓ(θ₀ + kΔ) − ℓ(θ₀) falls as θ₀ rises: the harm-side
    e-value falls with its null (rejections form a prefix of the grid) and the promotion-side
    one rises (a suffix). A bisection reads about 9 nulls instead of all 301.
    """
    def rejected(j: int) -> bool:
        return float(log_e_value(loglik, j, upper=upper)) >= log_threshold

    lo, hi = 0, GRID_SIZE  # upper: rejected on [0, lo), not at hi; promotion: the mirror
    while lo < hi:
        mid = (lo + hi) // 2
        if rejected(mid) == upper:
            lo = mid + 1
        else:
            hi = mid
    return lo


def confidence_bounds(
    loglik: np.ndarray, *, alpha_lower: float, alpha_upper: float
) -> tuple[float, float]:
    """One-sided confidence-sequence bounds on θ = log(ratio) from a grid log-likelihood.

    The lower bound is the largest grid θ0 still rejected by the harm-side test at
    ``alpha_lower`` (so θ > lower with that confidence); the upper bound mirrors it with the
    promotion-side test at ``alpha_upper``. ``-inf``/``inf`` when nothing is rejected.
    """
    first_kept = _first_not_rejected(loglik, math.log(1.0 / alpha_lower), upper=True)
    lower = -math.inf if first_kept == 0 else float(THETA[first_kept - 1])
    # Promotion side: nulls below `first_rejected` are kept, from it on rejected.
    first_rejected = _first_not_rejected(loglik, math.log(1.0 / alpha_upper), upper=False)
    upper = math.inf if first_rejected >= GRID_SIZE else float(THETA[first_rejected])
    return lower, upper


def mle(loglik: np.ndarray) -> float | None:
    """Grid maximiser of the log-likelihood, or None when it is flat (no events yet)."""
    if float(np.ptp(loglik)) < 1e-12:
        return None
    return float(THETA[int(np.argmax(loglik))])
