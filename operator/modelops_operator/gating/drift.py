# ruff: noqa: RUF002, RUF003  (mathematical notation: α, θ, τ, Δ, ×, − are intended)
"""Distribution shift between two arms from Prometheus histogram buckets.

Decision statistic: the largest CDF gap over the shared bucket edges,
:math:`D=\\max_k|F_A(\\ell_k)-F_B(\\ell_k)|` (a Kolmogorov–Smirnov distance on the edges; the
gate's parameter is this binned distance). Its anytime-valid interval comes from the time-uniform
Dvoretzky–Kiefer–Wolfowitz bound of Howard & Ramdas (2022, *Bernoulli* 28(3), "Sequential
estimation of quantiles with applications to A/B-testing and best-arm identification"):

.. math::

    P\\Big(\\exists t\\ge1: \\|\\hat F_t-F\\|_\\infty >
      0.85\\sqrt{(\\log\\log(et)+0.8\\log(1612/\\alpha))/t}\\Big) \\le\\alpha ,

valid for any F, i.i.d. samples, from the first observation, whatever the monitoring schedule.
With a band of radius :math:`r_A, r_B` per arm (each at α/2), the binned distance lies in
:math:`[\\hat D-r_A-r_B,\\ \\hat D+r_A+r_B]`. The test knows n: at n = 100 per arm the band is
wide, so identical models never "fail", unlike a raw PSI ≥ 0.1 rule.

PSI, its no-drift expectation :math:`(K-1)(1/n_A+1/n_B)`, Hellinger distance and a fixed-n χ²
homogeneity p-value are reported for humans; they do not decide (Yurdakul 2018; Potgieter et al.,
arXiv:2307.11878, on why raw PSI thresholds ignore sample size).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.special import chdtrc


def dkw_radius(n: float, alpha: float) -> float:
    """Time-uniform DKW radius for an empirical CDF of ``n`` samples (1.0 when n < 1)."""
    if n < 1:
        return 1.0
    r = 0.85 * math.sqrt((math.log(math.log(math.e * n)) + 0.8 * math.log(1612.0 / alpha)) / n)
    return min(r, 1.0)


def parse_buckets(buckets: Mapping[float, float] | None) -> tuple[np.ndarray, np.ndarray, float]:
    """Cumulative ``le`` buckets → (finite edges, cumulative counts at them, total count).

    The total is the ``+Inf`` bucket when present, else the largest cumulative count. Cumulative
    counts are made monotone (a scrape can be momentarily inconsistent across buckets).
    """
    if not buckets:
        return np.zeros(0), np.zeros(0), 0.0
    items = sorted((float(k), float(v)) for k, v in buckets.items())
    total = max(v for _, v in items)
    finite = [(k, v) for k, v in items if math.isfinite(k)]
    edges = np.array([k for k, _ in finite])
    cum = np.maximum.accumulate(np.array([v for _, v in finite])) if finite else np.zeros(0)
    return edges, np.minimum(cum, total), total


@dataclass(frozen=True)
class DriftSummary:
    """The drift statistics of one evaluation (edge-KS with its bounds, plus descriptive ones)."""

    distance: float | None
    lower: float
    upper: float
    n_champion: float
    n_challenger: float
    psi: float | None
    psi_null_expectation: float | None
    hellinger: float | None
    chi2_p_value: float | None
    edges: int


def _bucket_probs(cum: np.ndarray, total: float) -> np.ndarray:
    counts = np.diff(np.concatenate([[0.0], cum, [total]]))
    return np.maximum(counts, 0.0)


def compare(
    champion: Mapping[float, float] | None,
    challenger: Mapping[float, float] | None,
    *,
    alpha_upper: float,
    alpha_lower: float,
    reference: Mapping[float, float] | None = None,
) -> DriftSummary:
    """Edge-KS distance between the arms (or challenger vs a fixed ``reference``) with bounds.

    ``alpha_upper`` is spent on the upper bound (used to *pass* the gate), ``alpha_lower`` on the
    lower bound (used to *fail* it). With a reference (e.g. the challenger's offline validation
    distribution, given as cumulative bucket counts or probabilities) only the challenger's
    band counts.
    """
    eb, cb, nb = parse_buckets(challenger)
    one_sample = reference is not None
    ea, ca, na = parse_buckets(reference if one_sample else champion)
    common = np.intersect1d(np.round(ea, 12), np.round(eb, 12))
    if na <= 0 or nb <= 0 or common.size == 0:
        return DriftSummary(None, 0.0, 1.0, na, nb, None, None, None, None, int(common.size))
    ia = np.searchsorted(np.round(ea, 12), common)
    ib = np.searchsorted(np.round(eb, 12), common)
    fa, fb = ca[ia] / na, cb[ib] / nb
    d = float(np.max(np.abs(fa - fb)))
    ra_up = 0.0 if one_sample else dkw_radius(na, alpha_upper / 2)
    ra_lo = 0.0 if one_sample else dkw_radius(na, alpha_lower / 2)
    split = 1.0 if one_sample else 2.0
    upper = min(d + ra_up + dkw_radius(nb, alpha_upper / split), 1.0)
    lower = max(d - ra_lo - dkw_radius(nb, alpha_lower / split), 0.0)

    # Descriptive statistics on the common buckets.
    pa_counts = _bucket_probs(ca[ia], na)
    pb_counts = _bucket_probs(cb[ib], nb)
    k = pa_counts.size
    pa = (pa_counts + 0.5) / (na + 0.5 * k)
    pb = (pb_counts + 0.5) / (nb + 0.5 * k)
    psi = float(np.sum((pb - pa) * np.log(pb / pa)))
    psi_null = (k - 1) * (1.0 / nb + (0.0 if one_sample else 1.0 / na))
    hell = float(math.sqrt(max(0.0, 1.0 - np.sum(np.sqrt(pa * pb)))))
    chi2_p = None
    if not one_sample:
        table = np.vstack([pa_counts, pb_counts])
        table = table[:, table.sum(axis=0) > 0]
        if table.shape[1] >= 2:
            chi2_p = _independence_p_value(table)
    return DriftSummary(d, lower, upper, na, nb, psi, psi_null, hell, chi2_p, int(common.size))


def _independence_p_value(table: np.ndarray) -> float:
    """Pearson's χ² test of independence without continuity correction (what
    ``scipy.stats.chi2_contingency(table, correction=False)`` gives, at a twentieth of its cost
    on every look)."""
    total = table.sum()
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / total
    statistic = float(np.sum((table - expected) ** 2 / expected))
    dof = (table.shape[0] - 1) * (table.shape[1] - 1)
    return float(chdtrc(dof, statistic))
