# ruff: noqa: RUF002, RUF003  (mathematical notation: α, θ, τ, Δ, ×, − are intended)
"""Anytime-valid bounds on one arm's event rate, and on the difference of two arms' rates.

Why: the rate-ratio e-process (:mod:`.rateratio`) learns only from events, so while neither model
errs it can never show "the challenger is not worse" — yet an absolute tolerance ("at most 0.1
percentage points more errors") is easy to establish from zero events. This module gives the
**absolute route** of a rate gate.

Per arm, requests are Bernoulli(p). For a null value p₀ the likelihood ratio of an alternative q
against p₀, mixed over a prior on q, is a test supermartingale (Robbins 1970; the conjugate
mixture of Howard, Ramdas, McAuliffe & Sekhon 2021). One-sided priors make it valid for the
composite null, because each factor's expectation is monotone in the true p:

* **upper bound** (H₀: p ≥ p₀), prior q = p₀·u, u ~ Beta(a, 1), a = :data:`PRIOR_A`. Closed form
  ``a p₀^{-a} B(y+a, n−y+1) I_{p₀}(y+a, n−y+1) / (p₀^y (1−p₀)^{n−y})``. Each u's likelihood ratio
  increases with p₀, so the e-value does and the bound is found by bisection. With y = 0 the
  e-value is ≈ 0.89·x^{-1/2}·e^x, x = n·p₀ (the best possible is e^x): zero events in n requests
  put the rate below ≈ 4.9/n at level 0.05·3/8 (see :data:`SPLIT_CHALLENGER`).
* **lower bound** (H₀: p ≤ p₀), prior q = p₀/u, u ~ Beta(a, 1), mass with q > 1 dropped (a
  sub-probability prior only makes the e-value smaller). Closed form
  ``a p₀^{a} B(y−a, n−y+1) Ī_{p₀}(y−a, n−y+1) / (p₀^y (1−p₀)^{n−y})`` for y > a; with no events
  the lower bound is 0. Each u's ratio decreases with p₀.

Both are exact (not asymptotic), valid at every look, for any request counts per look, and depend
only on the arm's cumulative (requests, events): nothing extra has to be persisted.

**Difference.** With independent arms, P(∃t: p_B > U_B,t) ≤ α_B and P(∃t: p_A < L_A,t) ≤ α_A, so
``U_B − L_A`` is an upper confidence sequence for p_B − p_A at level α_B + α_A (union bound), and
``L_B − U_A`` a lower one. The stated assumption: each arm's rate is constant over the challenge
(or, for the promotion null, the challenger is worse at every moment).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import betainc, betaincc, betaln

#: Beta(a, 1) prior on q/p₀ (upper) or p₀/q (lower): a < 1 puts mass near q = 0, which is what
#: decides quickly when an arm has no events; a = 0.5 costs ~10% against the oracle there.
PRIOR_A = 0.5
#: Share of a route's alpha spent on the challenger's bound; the rest goes to the champion's.
#: The challenger's bound decides whenever events are rare; the champion's bound only adds credit
#: for the champion's own events.
SPLIT_CHALLENGER = 0.75
_P_MIN, _P_MAX = 1e-12, 1.0 - 1e-12
_ITER = 32  # bracket [1e-12, 1] in log p₀: ~1e-8 relative precision, rounded conservatively


def _arrays(n, y):
    n = np.asarray(n, dtype=float)
    y = np.minimum(np.maximum(np.asarray(y, dtype=float), 0.0), n)
    return np.broadcast_arrays(n, y)


def log_e_below(n, y, p0) -> np.ndarray:
    """log e-value against H₀: p ≥ p₀ (evidence that the rate is below p₀). Vectorised."""
    n, y = _arrays(n, y)
    p0 = np.clip(np.asarray(p0, dtype=float), _P_MIN, _P_MAX)
    a = PRIOR_A
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (
            math.log(a)
            - a * np.log(p0)
            + betaln(y + a, n - y + 1.0)
            + np.log(betainc(y + a, n - y + 1.0, p0))
            - y * np.log(p0)
            - (n - y) * np.log1p(-p0)
        )
    return np.where(n > 0, np.nan_to_num(out, nan=-np.inf, posinf=np.inf), 0.0)


def log_e_above(n, y, p0) -> np.ndarray:
    """log e-value against H₀: p ≤ p₀ (evidence that the rate is above p₀). Vectorised."""
    n, y = _arrays(n, y)
    p0 = np.clip(np.asarray(p0, dtype=float), _P_MIN, _P_MAX)
    a = PRIOR_A
    ok = (n > 0) & (y > a)
    ys = np.where(ok, y, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (
            math.log(a)
            + a * np.log(p0)
            + betaln(ys - a, n - ys + 1.0)
            + np.log(betaincc(ys - a, n - ys + 1.0, p0))
            - ys * np.log(p0)
            - (n - ys) * np.log1p(-p0)
        )
    return np.where(ok, np.nan_to_num(out, nan=-np.inf, posinf=np.inf), -np.inf)


def upper_bound(n, y, alpha: float) -> np.ndarray:
    """Upper confidence sequence for the rate: smallest p₀ whose H₀: p ≥ p₀ is rejected at α.

    1.0 for an arm without requests. Bisection on log p₀ (the e-value is monotone in p₀).
    """
    n, y = _arrays(n, y)
    target = math.log(1.0 / alpha)
    lo = np.full(n.shape, math.log(_P_MIN))
    hi = np.full(n.shape, math.log(_P_MAX))
    for _ in range(_ITER):
        mid = 0.5 * (lo + hi)
        rej = log_e_below(n, y, np.exp(mid)) >= target
        hi = np.where(rej, mid, hi)
        lo = np.where(rej, lo, mid)
    return np.where(n > y, np.exp(hi), 1.0)


def lower_bound(n, y, alpha: float) -> np.ndarray:
    """Lower confidence sequence for the rate: largest p₀ whose H₀: p ≤ p₀ is rejected at α.

    0.0 when nothing is rejected (always so without events).
    """
    n, y = _arrays(n, y)
    target = math.log(1.0 / alpha)
    lo = np.full(n.shape, math.log(_P_MIN))
    hi = np.full(n.shape, math.log(_P_MAX))
    any_rej = log_e_above(n, y, _P_MIN) >= target
    for _ in range(_ITER):
        mid = 0.5 * (lo + hi)
        rej = log_e_above(n, y, np.exp(mid)) >= target
        lo = np.where(rej, mid, lo)
        hi = np.where(rej, hi, mid)
    return np.where(any_rej, np.exp(lo), 0.0)


def difference_upper(n_a, y_a, n_b, y_b, alpha: float) -> np.ndarray:
    """Upper confidence sequence for p_B − p_A at level α (union bound over the two arms)."""
    ub = upper_bound(n_b, y_b, SPLIT_CHALLENGER * alpha)
    la = lower_bound(n_a, y_a, (1.0 - SPLIT_CHALLENGER) * alpha)
    return ub - la


def difference_lower(n_a, y_a, n_b, y_b, alpha: float) -> np.ndarray:
    """Lower confidence sequence for p_B − p_A at level α (union bound over the two arms)."""
    lb = lower_bound(n_b, y_b, SPLIT_CHALLENGER * alpha)
    ua = upper_bound(n_a, y_a, (1.0 - SPLIT_CHALLENGER) * alpha)
    return lb - ua


def passes(n_a, y_a, n_b, y_b, margin: float, alpha: float) -> np.ndarray:
    """True where p_B − p_A < ``margin`` is shown at level α: U_B − L_A < margin.

    Written as "the challenger's H₀: p_B ≥ margin + L_A is rejected", the same event up to
    bisection precision. L_A never exceeds the champion's observed rate (above it every
    likelihood ratio of the mixture is ≤ 1), so runs that fail even with that bound skip the
    bisection: the simulator calls this for thousands of runs per look.
    """
    n_a, y_a, n_b, y_b = (np.atleast_1d(z) for z in (*_arrays(n_a, y_a), *_arrays(n_b, y_b)))
    n_a, y_a, n_b, y_b = (np.array(z) for z in np.broadcast_arrays(n_a, y_a, n_b, y_b))
    thr = math.log(1.0 / (SPLIT_CHALLENGER * alpha))
    with np.errstate(divide="ignore", invalid="ignore"):
        mle_a = np.where(n_a > 0, y_a / n_a, 0.0)
    out = log_e_below(n_b, y_b, margin + mle_a) >= thr
    ix = np.flatnonzero(out)
    if ix.size:
        c = margin + lower_bound(n_a[ix], y_a[ix], (1.0 - SPLIT_CHALLENGER) * alpha)
        out[ix] = log_e_below(n_b[ix], y_b[ix], c) >= thr
    return out


def fails(n_a, y_a, n_b, y_b, margin: float, alpha: float) -> np.ndarray:
    """True where p_B − p_A > ``margin`` is shown at level α: L_B − U_A > margin.

    Mirror of :func:`passes`; U_A is never below the champion's observed rate.
    """
    n_a, y_a, n_b, y_b = (np.atleast_1d(z) for z in (*_arrays(n_a, y_a), *_arrays(n_b, y_b)))
    n_a, y_a, n_b, y_b = (np.array(z) for z in np.broadcast_arrays(n_a, y_a, n_b, y_b))
    thr = math.log(1.0 / (SPLIT_CHALLENGER * alpha))
    with np.errstate(divide="ignore", invalid="ignore"):
        mle_a = np.where(n_a > 0, y_a / n_a, 1.0)
    out = (margin + mle_a < 1.0) & (log_e_above(n_b, y_b, margin + mle_a) >= thr)
    ix = np.flatnonzero(out)
    if ix.size:
        c = margin + upper_bound(n_a[ix], y_a[ix], (1.0 - SPLIT_CHALLENGER) * alpha)
        out[ix] = (c < 1.0) & (log_e_above(n_b[ix], y_b[ix], np.minimum(c, _P_MAX)) >= thr)
    return out
