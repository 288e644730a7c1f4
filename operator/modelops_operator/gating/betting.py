# ruff: noqa: RUF002, RUF003  (mathematical notation: α, θ, λ, μ, Δ, ×, − are intended)
"""Betting e-processes, one look-interval at a time, for the difference of two arms' rates.

Used for the absolute route of rate gates (errors, slow requests: Δ = p_B − p_A) and for
accuracy (the share of wrong answers: Δ = accuracy_A − accuracy_B), split or paired.

**Why per interval.** A statistic recomputed from cumulative per-arm counts compares the
challenger's traffic with the champion's over *different* mixes of time: when the split moves
from 5 % to 50 % while the base rate or the mix of hard requests moves too, the two cumulative
rates differ although the models are equal at every moment (Simpson's paradox). Here each
interval is a stratum: both arms are compared on that interval's traffic only, under the split
in force then, and the evidence of the intervals multiplies.

**Two arms (split traffic).** In interval t arm A answers n_A requests with y_A events, arm B
n_B with y_B, each event independent given the interval's rates p_A, p_B (whatever they are:
base rates, bursts and mixes may change from interval to interval). For a null value θ and a
*predictable* guess p′ of the champion's rate (from earlier intervals), bet λ ≥ 0 per request:

* against H₀: Δ ≥ θ (promotion side), every B request pays 1 + λ(a − x), every A request
  1 + μ(x − p′), with a = p′ + θ and μ = λ·n_B/n_A;
* against H₀: Δ ≤ θ (harm side), the signs flip: 1 + λ(x − a) and 1 + μ(p′ − x).

Under H₀ the expected product over the interval is at most
(1 − λd)^{n_B}(1 + μd)^{n_A} with d = p_A − p′, a concave function of d in the log whose
derivative vanishes at d = 0 when μ = λ·n_B/n_A: it never exceeds 1, whatever p_A is. So the
product over intervals is a test supermartingale, and a guess p′ far from p_A only costs power.
Each factor depends on the counts only (x ∈ {0, 1}), so an interval's bet needs no request log.

**Paired (shadow).** Each labelled pair gives D = +1 (only the champion right), −1 (only the
challenger right) or 0, E[D] = Δ; the factors 1 + λ(θ − D) and 1 + λ(D − θ) need no guess.

**Mixture.** Half the e-value is an adaptive bettor, λ = (θ − Δ̂)/(v(1 + n_B/n_A)) from the
estimate Δ̂ and variance v of *earlier* intervals (predictable, so still a test supermartingale;
Waudby-Smith & Ramdas 2024), the other half the average over the fixed bets :data:`LAMBDAS`
(a guard when the estimate misleads); on the promotion side it aims at equal models unless the
estimate is better. Every bet is clipped per interval to :data:`SAFETY` of the largest bet that
keeps every factor positive. Running maxima and Ville's inequality give the anytime-valid
decisions; the confidence sequence comes from the same tests at the :data:`DISPLAY_OFFSETS` nulls.

**What the user must ensure**: within an interval, which arm answers a request does not depend
on the request's outcome (random routing; sticky sessions assign users before outcomes), and
requests are independent given the interval's rates; retried requests and duplicate labels break
the second and are removed before counting (docs/gating.md).

Everything is vectorised over leading axes (runs in the simulator, none in the operator): the
engine and ``modelops gating simulate`` run this same code.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce

import numpy as np

#: Bets per request mixed with equal weights (absolute, before the per-interval clip).
LAMBDAS = np.geomspace(2e-3, 50.0, 10)
#: Share of the largest positivity-keeping bet a clipped bet may use.
SAFETY = 0.9
#: Nulls (Δ values) at which the confidence sequence is read, beside the two decision nulls:
#: rates differ by 1e-4..1e-2, accuracies by 1e-3..0.3.
_DISPLAY_SIDE = np.concatenate([np.geomspace(1e-4, 0.05, 8), [0.1, 0.2, 0.3]])
DISPLAY_OFFSETS = np.concatenate([-_DISPLAY_SIDE[::-1], [0.0], _DISPLAY_SIDE])
#: Champion requests (decayed) the guess p′ needs before an interval is bet on.
MIN_REFERENCE_REQUESTS = 20.0
#: Weight of earlier intervals in the guess p′ (per interval); it follows bursts within a few.
REFERENCE_DECAY = 0.7
#: Pseudo-weight at Δ = 0 in the adaptive bettor's estimate (a few hundred requests' worth).
ESTIMATE_PRIOR_WEIGHT = 100.0
#: Floor of the per-request variance the adaptive bet divides by.
MIN_VARIANCE = 1e-4
#: The adaptive bettor stakes this share of its Kelly bet: half-Kelly keeps three quarters of the
#: growth when the estimates are right and loses little when they are not.
KELLY_FRACTION = 0.5
BETS = LAMBDAS.size + 1  # the fixed bets, then the adaptive one


def nulls_for(promote: float, harm: float) -> np.ndarray:
    """The null grid: index 0 the promotion null, 1 the harm null, then the display nulls."""
    return np.concatenate([[promote, harm], DISPLAY_OFFSETS])


@dataclass
class Wealth:
    """Log wealth per null and bet, arrays shaped ``(..., nulls, BETS)``, plus what the bets
    are sized from.

    ``below`` bets against Δ ≥ θ (evidence the difference is below θ), ``above`` against
    Δ ≤ θ; the last column is the adaptive bettor. ``ref_events``/``ref_requests``: decayed
    counts for the guess p′ (two arms: the champion's events; paired: discordant pairs).
    ``est_sum``/``est_weight``: the interval-weighted estimate of Δ so far.
    """

    nulls: np.ndarray
    below: np.ndarray
    above: np.ndarray
    ref_events: np.ndarray
    ref_requests: np.ndarray
    est_sum: np.ndarray
    est_weight: np.ndarray

    @classmethod
    def start(cls, nulls: np.ndarray, shape: tuple[int, ...] = ()) -> Wealth:
        zeros = np.zeros((*shape, nulls.size, BETS))
        scalars = [np.zeros(shape) for _ in range(4)]
        return cls(nulls, zeros, zeros.copy(), *scalars)

    def flat(self) -> np.ndarray:
        """One run's state as one vector (what status keeps)."""
        scalars = (self.ref_events, self.ref_requests, self.est_sum, self.est_weight)
        return np.concatenate(
            [self.below.ravel(), self.above.ravel(), [float(x) for x in scalars]]
        )

    @classmethod
    def from_flat(cls, nulls: np.ndarray, vector: np.ndarray) -> Wealth:
        size = nulls.size * BETS
        if vector.shape != (cls.flat_size(nulls),):
            raise ValueError(f"stored wealth has {vector.size} values, not {cls.flat_size(nulls)}")
        shape = (nulls.size, BETS)
        return cls(
            nulls,
            vector[:size].reshape(shape).copy(),
            vector[size : 2 * size].reshape(shape).copy(),
            *(np.asarray(x) for x in vector[2 * size :]),
        )

    @classmethod
    def resume(cls, nulls: np.ndarray, stored: np.ndarray | None) -> Wealth:
        """The stored state, or a fresh one when there is none or it has another layout (a
        state kept by an older operator): new evidence starts from 1, which is always valid."""
        if stored is None or stored.shape != (cls.flat_size(nulls),):
            return cls.start(nulls)
        return cls.from_flat(nulls, stored)

    @staticmethod
    def flat_size(nulls: np.ndarray) -> int:
        return 2 * nulls.size * BETS + 4

    @property
    def estimate(self) -> np.ndarray:
        """Δ̂ from earlier intervals, shrunk towards 0 (what the adaptive bettor aims at)."""
        return self.est_sum / (self.est_weight + ESTIMATE_PRIOR_WEIGHT)

    @property
    def observed_difference(self) -> float | None:
        """Δ̂ as observed, interval by interval (Mantel–Haenszel weights; one run), for display:
        None before an interval with both arms."""
        weight = float(self.est_weight)
        return float(self.est_sum) / weight if weight > 0 else None

    def log_e(self) -> tuple[np.ndarray, np.ndarray]:
        """(log e-value against Δ ≥ θ, against Δ ≤ θ), each shaped ``(..., nulls)``."""
        return _mixture(self.below), _mixture(self.above)

    def add_estimate(self, diff: np.ndarray, weight: np.ndarray) -> None:
        ok = weight > 0
        self.est_sum = self.est_sum + np.where(ok, weight * np.where(ok, diff, 0.0), 0.0)
        self.est_weight = self.est_weight + np.where(ok, weight, 0.0)


def _mixture(log_wealth: np.ndarray) -> np.ndarray:
    """log(½·adaptive + ½·mean of the fixed bets), each column a test supermartingale."""
    top = np.max(log_wealth, axis=-1, keepdims=True)
    scaled = np.exp(log_wealth - top)
    mixed = 0.5 * scaled[..., -1] + 0.5 * np.mean(scaled[..., :-1], axis=-1)
    return np.log(mixed) + top[..., 0]


def _bets(limit: np.ndarray, adaptive: np.ndarray) -> np.ndarray:
    """Bets per (…, null, BETS): the fixed ones and the adaptive one (…, null), each clipped to
    SAFETY × the positivity limit (…, null)."""
    cap = SAFETY * limit[..., None]
    grid = np.broadcast_to(LAMBDAS, (*np.shape(adaptive), LAMBDAS.size))
    kelly = KELLY_FRACTION * np.maximum(adaptive, 0.0)[..., None]
    return np.minimum(np.concatenate([grid, kelly], axis=-1), cap)


def _inverse_positive(x: np.ndarray) -> np.ndarray:
    """1/x where x > 0, else +inf: the largest λ with 1 − λx > 0."""
    with np.errstate(divide="ignore"):
        return np.where(x > 0, 1.0 / np.where(x > 0, x, 1.0), np.inf)


def update_two_arms(state: Wealth, n_a, y_a, n_b, y_b) -> None:
    """Add one interval's increments (arrays shaped like the leading axes) in place."""
    n_a, y_a, n_b, y_b = (np.asarray(v, dtype=float) for v in (n_a, y_a, n_b, y_b))
    y_a, y_b = np.clip(y_a, 0.0, n_a), np.clip(y_b, 0.0, n_b)
    guess = (state.ref_events + 0.5) / (state.ref_requests + 1.0)
    active = (state.ref_requests >= MIN_REFERENCE_REQUESTS) & (n_a > 0) & (n_b > 0)
    if np.any(active):
        ratio = np.where(active, n_b / np.where(n_a > 0, n_a, 1.0), 0.0)[..., None]
        p = guess[..., None]
        a = p + state.nulls  # (..., nulls)
        ex = [v[..., None, None] for v in (y_b, n_b - y_b, y_a, n_a - y_a)]
        act = active[..., None, None]
        # Against Δ ≥ θ: B pays 1 − λ(1 − a) on an event, 1 + λa without; A pays 1 + μ(1 − p′)
        # on an event, 1 − μp′ without (μ = λ·ratio).
        limit = reduce(
            np.minimum,
            [_inverse_positive(1.0 - a), _inverse_positive(-a), _inverse_positive(ratio * p)],
        )
        variance = np.maximum(p * (1.0 - p), MIN_VARIANCE) * (1.0 + ratio)
        aim = state.estimate[..., None]
        # Promotion side: aim at the estimate, or at equal models when it looks worse (a noisy
        # estimate near the null would otherwise stop the bet that non-inferiority needs).
        lam = _bets(limit, (state.nulls - np.minimum(aim, 0.0)) / variance)
        mu = lam * ratio[..., None]
        gain = (
            ex[0] * np.log1p(-lam * (1.0 - a)[..., None])
            + ex[1] * np.log1p(lam * a[..., None])
            + ex[2] * np.log1p(mu * (1.0 - p)[..., None])
            + ex[3] * np.log1p(-mu * p[..., None])
        )
        state.below += np.where(act, gain, 0.0)
        # Against Δ ≤ θ: the mirror image.
        limit = reduce(
            np.minimum,
            [_inverse_positive(a), _inverse_positive(a - 1.0), _inverse_positive(ratio * (1 - p))],
        )
        lam = _bets(limit, (aim - state.nulls) / variance)
        mu = lam * ratio[..., None]
        gain = (
            ex[0] * np.log1p(lam * (1.0 - a)[..., None])
            + ex[1] * np.log1p(-lam * a[..., None])
            + ex[2] * np.log1p(-mu * (1.0 - p)[..., None])
            + ex[3] * np.log1p(mu * p[..., None])
        )
        state.above += np.where(act, gain, 0.0)
    state.ref_events = REFERENCE_DECAY * state.ref_events + y_a
    state.ref_requests = REFERENCE_DECAY * state.ref_requests + n_a
    both = (n_a > 0) & (n_b > 0)
    safe_a, safe_b = np.where(both, n_a, 1.0), np.where(both, n_b, 1.0)
    weight = np.where(both, safe_a * safe_b / (safe_a + safe_b), 0.0)
    state.add_estimate(y_b / safe_b - y_a / safe_a, weight)


def update_paired(state: Wealth, champion_only, challenger_only, pairs) -> None:
    """Add one interval's labelled pairs: D = +1 champion only right, −1 challenger only."""
    c_a, c_b, n = (np.asarray(v, dtype=float) for v in (champion_only, challenger_only, pairs))
    c_a = np.clip(c_a, 0.0, n)
    c_b = np.clip(c_b, 0.0, n - c_a)
    active = (n > 0)[..., None, None]
    theta = np.broadcast_to(state.nulls, (*np.shape(n), state.nulls.size))
    plus, minus, zero = (v[..., None, None] for v in (c_a, c_b, n - c_a - c_b))
    # The adaptive bet divides by E[(D − θ)²] ≈ the share of discordant pairs (+ θ²).
    discordant = ((state.ref_events + 1.0) / (state.ref_requests + 2.0))[..., None]
    variance = np.maximum(discordant + theta * theta, MIN_VARIANCE)
    aim = state.estimate[..., None]
    # Against Δ ≥ θ: 1 + λ(θ − D).
    limit = np.minimum(_inverse_positive(1.0 - theta), _inverse_positive(-theta))
    lam = _bets(limit, (theta - np.minimum(aim, 0.0)) / variance)
    th = theta[..., None]
    gain = (
        plus * np.log1p(-lam * (1.0 - th))
        + minus * np.log1p(lam * (1.0 + th))
        + zero * np.log1p(lam * th)
    )
    state.below += np.where(active, gain, 0.0)
    # Against Δ ≤ θ: 1 + λ(D − θ).
    limit = np.minimum(_inverse_positive(1.0 + theta), _inverse_positive(theta))
    lam = _bets(limit, (aim - theta) / variance)
    gain = (
        plus * np.log1p(lam * (1.0 - th))
        + minus * np.log1p(-lam * (1.0 + th))
        + zero * np.log1p(-lam * th)
    )
    state.above += np.where(active, gain, 0.0)
    state.ref_events = REFERENCE_DECAY * state.ref_events + c_a + c_b
    state.ref_requests = REFERENCE_DECAY * state.ref_requests + n
    safe = np.where(n > 0, n, 1.0)
    state.add_estimate((c_a - c_b) / safe, n)


def bounds(
    log_e_below: np.ndarray, log_e_above: np.ndarray, nulls: np.ndarray,
    *, alpha_lower: float, alpha_upper: float,
) -> tuple[float, float]:
    """Confidence-sequence bounds on Δ read at every null of the grid (one run).

    Lower: the largest θ such that "Δ ≤ θ'" is rejected at ``alpha_lower`` for it and every
    null θ' below it; upper mirrors it with "Δ ≥ θ'" at ``alpha_upper``.
    """
    order = np.argsort(nulls, kind="stable")
    grid = nulls[order]
    rejected_low = log_e_above[order] >= np.log(1.0 / alpha_lower)
    rejected_high = log_e_below[order] >= np.log(1.0 / alpha_upper)
    lower, upper = -np.inf, np.inf
    for theta, rejected in zip(grid, rejected_low, strict=True):
        if not rejected:
            break
        lower = float(theta)
    for theta, rejected in zip(grid[::-1], rejected_high[::-1], strict=True):
        if not rejected:
            break
        upper = float(theta)
    return lower, upper
