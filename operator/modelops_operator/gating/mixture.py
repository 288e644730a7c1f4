# ruff: noqa: RUF002, RUF003  (mathematical notation: α, θ, τ, Δ, ×, − are intended)
"""Normal-mixture sequential tests and confidence sequences for a difference of means.

Method: the mixture sequential probability ratio test (mSPRT) of Robbins (1970), in the form used
for always-valid A/B inference by Johari, Pekelis & Walsh (2022, *Oper. Res.* 70(3),
arXiv:1512.04922). The estimator :math:`\\hat\\Delta_t` with variance :math:`V_t` is treated as
Gaussian; the likelihood ratio against the null value :math:`\\theta_0` is mixed over a
**half-normal** prior of scale :math:`\\tau` on the alternative side only, which gives a test
supermartingale for the *composite* one-sided null :math:`\\Delta \\le \\theta_0` (the likelihood
ratio is monotone in the true value):

.. math::

    \\Lambda^+_t = 2\\sqrt{\\tfrac{V}{V+\\tau^2}}
      \\exp\\Big(\\tfrac{\\tau^2 x^2}{2V(V+\\tau^2)}\\Big)\\,
      \\Phi\\Big(\\tfrac{\\tau x}{\\sqrt{V(V+\\tau^2)}}\\Big),\\qquad x=\\hat\\Delta_t-\\theta_0 .

Ville's inequality gives :math:`P(\\exists t:\\Lambda^+_t\\ge 1/\\alpha)\\le\\alpha` under the null,
whatever the monitoring schedule. Inverting the test over :math:`\\theta_0` gives a one-sided
confidence sequence (Howard, Ramdas, McAuliffe & Sekhon 2021, *Ann. Statist.* 49(2)).

The variance is a plug-in estimate, so the guarantee is asymptotic (Waudby-Smith, Arbour, Sinha,
Kennedy & Ramdas 2024, arXiv:2103.06476); callers apply a burn-in (:data:`BURN_IN_SAMPLES`)
before the first look counts. The simulations in ``tests/unit/gating`` check the resulting
false-decision rates.

Everything here is vectorised: arguments broadcast like numpy arrays.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import log_ndtr

#: Observations per arm before a plug-in variance is trusted (see the module docstring).
BURN_IN_SAMPLES = 200

_LOG2 = math.log(2.0)


def log_e_one_sided(x: np.ndarray | float, v: np.ndarray | float, tau: float) -> np.ndarray:
    """log of the half-normal mixture e-value :math:`\\Lambda^+` for H0: Δ ≤ θ0, x = Δ̂ − θ0.

    ``v`` is the variance of Δ̂. Increasing in ``x``; equals log(2Φ(0)·…) ≈ a small negative number
    at x = 0. Entries with ``v <= 0`` or non-finite inputs give 0 (an e-value of 1: no evidence).
    """
    x = np.asarray(x, dtype=float)
    v = np.asarray(v, dtype=float)
    t2 = float(tau) ** 2
    ok = np.isfinite(x) & np.isfinite(v) & (v > 0)
    vs = np.where(ok, v, 1.0)
    xs = np.where(ok, x, 0.0)
    s = vs + t2
    out = (
        _LOG2
        + 0.5 * np.log(vs / s)
        + t2 * xs * xs / (2.0 * vs * s)
        + log_ndtr(math.sqrt(t2) * xs / np.sqrt(vs * s))
    )
    return np.where(ok, out, 0.0)


def two_sided_radius(v: np.ndarray | float, tau: float, alpha: float) -> np.ndarray:
    """Closed-form radius of the two-sided normal-mixture confidence sequence at level 1 − α."""
    v = np.asarray(v, dtype=float)
    t2 = float(tau) ** 2
    s = v + t2
    return np.sqrt(v * s / t2 * (np.log(s / v) + 2.0 * math.log(1.0 / alpha)))


def one_sided_radius(v: np.ndarray | float, tau: float, alpha: float) -> np.ndarray:
    """The x* with :func:`log_e_one_sided` (x*, v, τ) = log(1/α): the one-sided CS radius.

    The one-sided bound is ``Δ̂ − x*`` (lower) or ``Δ̂ + x*`` (upper). No closed form exists; it is
    bracketed by the two-sided radii at 2α and α (Λ⁺ ≤ 2Λ, and Λ⁺ ≥ Λ for x ≥ 0) and found by
    vectorised bisection to ~1e-12 relative precision. ``v <= 0`` gives ``inf``.
    """
    v = np.asarray(v, dtype=float)
    ok = np.isfinite(v) & (v > 0)
    vs = np.where(ok, v, 1.0)
    lo = two_sided_radius(vs, tau, min(2.0 * alpha, 0.999))
    hi = two_sided_radius(vs, tau, alpha)
    target = math.log(1.0 / alpha)
    for _ in range(64):
        mid = 0.5 * (lo + hi)
        above = log_e_one_sided(mid, vs, tau) >= target
        hi = np.where(above, mid, hi)
        lo = np.where(above, lo, mid)
    return np.where(ok, hi, np.inf)


def tau_for_variance(v_star: float, alpha: float, one_sided: bool = True) -> float:
    """Mixture scale tuned to decide near variance ``v_star`` (Howard et al., confseq ``best_rho``).

    τ² = c·V*, c(a) = 2 log(1/a) + log(1 + 2 log(1/a)), with a = 2α for a one-sided test.
    """
    a = 2.0 * alpha if one_sided else alpha
    c = 2.0 * math.log(1.0 / a) + math.log(1.0 + 2.0 * math.log(1.0 / a))
    return math.sqrt(c * v_star)


# --------------------------------------------------------------------------- estimators
# Each returns (estimate, variance) of "challenger minus champion", vectorised.


def unpaired_proportions(
    successes_a: np.ndarray | float,
    n_a: np.ndarray | float,
    successes_b: np.ndarray | float,
    n_b: np.ndarray | float,
) -> tuple[np.ndarray, np.ndarray]:
    """p̂_B − p̂_A and p̂_A(1−p̂_A)/n_A + p̂_B(1−p̂_B)/n_B (split traffic, independent arms)."""
    xa, na = np.asarray(successes_a, float), np.asarray(n_a, float)
    xb, nb = np.asarray(successes_b, float), np.asarray(n_b, float)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        pa = xa / na
        pb = xb / nb
        var = pa * (1 - pa) / na + pb * (1 - pb) / nb
        diff = pb - pa
    return diff, var


def paired_proportions(
    challenger_only: np.ndarray | float, champion_only: np.ndarray | float, n: np.ndarray | float
) -> tuple[np.ndarray, np.ndarray]:
    """Paired (shadow) difference: Δ̂ = (n01 − n10)/n, V = [(n01 + n10)/n − Δ̂²]/n.

    n01 = pairs only the challenger got right, n10 = only the champion. The variance comes from
    the discordance rate, not from 2p(1−p): that is why shadow mode decides faster.
    """
    b, a, n = (np.asarray(z, float) for z in (challenger_only, champion_only, n))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        d = (b - a) / n
        var = ((a + b) / n - d * d) / n
    return d, var


def two_means(
    sum_a: np.ndarray | float,
    sumsq_a: np.ndarray | float,
    n_a: np.ndarray | float,
    sum_b: np.ndarray | float,
    sumsq_b: np.ndarray | float,
    n_b: np.ndarray | float,
) -> tuple[np.ndarray, np.ndarray]:
    """m̂_B − m̂_A with the plug-in variance s_A²/n_A + s_B²/n_B from sums and sums of squares."""
    sa, qa, na = (np.asarray(z, float) for z in (sum_a, sumsq_a, n_a))
    sb, qb, nb = (np.asarray(z, float) for z in (sum_b, sumsq_b, n_b))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ma, mb = sa / na, sb / nb
        va = np.maximum(qa / na - ma * ma, 0.0) * na / np.maximum(na - 1, 1)
        vb = np.maximum(qb / nb - mb * mb, 0.0) * nb / np.maximum(nb - 1, 1)
        var = va / na + vb / nb
        diff = mb - ma
    return diff, var
