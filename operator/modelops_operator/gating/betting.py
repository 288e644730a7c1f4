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

**Mixture.** The e-value is the average of the wealth of :data:`LAMBDAS` (each a test
supermartingale), clipped per interval to :data:`SAFETY` of the largest bet that keeps every
factor positive. Running maxima and Ville's inequality give the anytime-valid decisions; the
confidence sequence comes from the same tests at the :data:`DISPLAY_OFFSETS` nulls.

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
#: Nulls (Δ values) at which the confidence sequence is read, beside the two decision nulls.
DISPLAY_OFFSETS = np.concatenate([-np.geomspace(0.3, 1e-4, 9), [0.0], np.geomspace(1e-4, 0.3, 9)])
#: Champion requests (decayed) the guess p′ needs before an interval is bet on.
MIN_REFERENCE_REQUESTS = 20.0
#: Weight of earlier intervals in the guess p′ (per interval); it follows bursts within a few.
REFERENCE_DECAY = 0.7


def nulls_for(promote: float, harm: float) -> np.ndarray:
    """The null grid: index 0 the promotion null, 1 the harm null, then the display nulls."""
    return np.concatenate([[promote, harm], DISPLAY_OFFSETS])


@dataclass
class Wealth:
    """Log wealth per null and bet, arrays shaped ``(..., nulls, bets)``, plus the guess p′.

    ``below`` bets against Δ ≥ θ (evidence the difference is below θ), ``above`` against
    Δ ≤ θ. ``ref_events``/``ref_requests`` are the champion's decayed counts (two-arm only).
    """

    nulls: np.ndarray
    below: np.ndarray
    above: np.ndarray
    ref_events: np.ndarray
    ref_requests: np.ndarray

    @classmethod
    def start(cls, nulls: np.ndarray, shape: tuple[int, ...] = ()) -> Wealth:
        zeros = np.zeros((*shape, nulls.size, LAMBDAS.size))
        return cls(nulls, zeros, zeros.copy(), np.zeros(shape), np.zeros(shape))

    def flat(self) -> np.ndarray:
        """One run's state as one vector (what status keeps)."""
        return np.concatenate(
            [
                self.below.ravel(),
                self.above.ravel(),
                [float(self.ref_events), float(self.ref_requests)],
            ]
        )

    @classmethod
    def from_flat(cls, nulls: np.ndarray, vector: np.ndarray) -> Wealth:
        size = nulls.size * LAMBDAS.size
        if vector.shape != (2 * size + 2,):
            raise ValueError(f"stored wealth has {vector.size} values, not {2 * size + 2}")
        shape = (nulls.size, LAMBDAS.size)
        return cls(
            nulls,
            vector[:size].reshape(shape).copy(),
            vector[size : 2 * size].reshape(shape).copy(),
            np.asarray(vector[-2]),
            np.asarray(vector[-1]),
        )

    @staticmethod
    def flat_size(nulls: np.ndarray) -> int:
        return 2 * nulls.size * LAMBDAS.size + 2

    def log_e(self) -> tuple[np.ndarray, np.ndarray]:
        """(log e-value against Δ ≥ θ, against Δ ≤ θ), each shaped ``(..., nulls)``."""
        return _log_mean_exp(self.below), _log_mean_exp(self.above)


def _log_mean_exp(log_wealth: np.ndarray) -> np.ndarray:
    top = np.max(log_wealth, axis=-1, keepdims=True)
    return np.log(np.mean(np.exp(log_wealth - top), axis=-1)) + top[..., 0]


def _clip(limit: np.ndarray) -> np.ndarray:
    """Bets per (…, null, bet) clipped to SAFETY × the positivity limit (…, null)."""
    return np.minimum(LAMBDAS, SAFETY * limit[..., None])


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
        lam = _clip(limit)
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
        lam = _clip(limit)
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


def update_paired(state: Wealth, champion_only, challenger_only, pairs) -> None:
    """Add one interval's labelled pairs: D = +1 champion only right, −1 challenger only."""
    c_a, c_b, n = (np.asarray(v, dtype=float) for v in (champion_only, challenger_only, pairs))
    c_a = np.clip(c_a, 0.0, n)
    c_b = np.clip(c_b, 0.0, n - c_a)
    active = (n > 0)[..., None, None]
    theta = np.broadcast_to(state.nulls, (*np.shape(n), state.nulls.size))
    plus, minus, zero = (v[..., None, None] for v in (c_a, c_b, n - c_a - c_b))
    # Against Δ ≥ θ: 1 + λ(θ − D).
    lam = _clip(np.minimum(_inverse_positive(1.0 - theta), _inverse_positive(-theta)))
    th = theta[..., None]
    gain = (
        plus * np.log1p(-lam * (1.0 - th))
        + minus * np.log1p(lam * (1.0 + th))
        + zero * np.log1p(lam * th)
    )
    state.below += np.where(active, gain, 0.0)
    # Against Δ ≤ θ: 1 + λ(D − θ).
    lam = _clip(np.minimum(_inverse_positive(1.0 + theta), _inverse_positive(theta)))
    gain = (
        plus * np.log1p(lam * (1.0 - th))
        + minus * np.log1p(-lam * (1.0 + th))
        + zero * np.log1p(-lam * th)
    )
    state.above += np.where(active, gain, 0.0)


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
