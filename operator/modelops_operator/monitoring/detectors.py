# ruff: noqa: RUF002, RUF003  (mathematical notation: α, λ, ε, ×, − are intended)
"""Change detectors for a live model, calibrated to an expected time between false alarms.

Each monitor is an **e-CUSUM** e-detector (Shin, Ramdas & Rinaldo, "E-detectors: a
nonparametric framework for sequential change detection", arXiv:2203.03532). At every look t the
detector multiplies in an e-value :math:`e_t` for the data that arrived since the last look —
a non-negative number with :math:`E[e_t \\mid \\text{past}] \\le 1` while the model is healthy —
and keeps

.. math::  M_t = \\max(M_{t-1}, 1)\\, e_t ,\\qquad \\text{alarm when } M_t \\ge c .

:math:`M_t` is at most the Shiryaev–Roberts sum :math:`R_t=(R_{t-1}+1)e_t`, and
:math:`R_t - t` is a martingale when healthy, so the expected number of looks to a false alarm
is at least c (optional stopping). Choosing c = ``alarmEvery / interval`` therefore gives an
expected time between false alarms of at least ``alarmEvery``, whatever the traffic does: a
look with no data multiplies in e = 1 and adds nothing. Averaging detectors keeps the
property, which is how several features (and several deployments) share one rate: the overall
alarm is ``mean_f M_f ≥ c``, so each feature alone needs F·c.

The e-values are likelihood ratios against an alternative learnt from the past only
("predictable plug-in"): exponentially weighted counts at three half-lives (minutes, hours, a
day), averaged, so a sudden jump and a slow creep are both followed. Nothing is assumed about
how traffic arrives: bursts, quiet nights and missed scrapes change how fast evidence comes,
never its validity.

**Input drift** (:class:`BinnedDrift`): per feature, counts in the training profile's bins.
The profile's frequencies are themselves estimated from n_ref rows, so a healthy model's live
frequencies differ from them by sampling error; a detector against the exact frequencies would
eventually alarm on that alone, and sooner the busier the model. The null hypothesis is
therefore a box: every bin's live probability within ε_k of the profile's, with ε_k four
standard errors of the profile's estimate (or ``tolerance``, whichever is larger). Per
observation x in bin k the e-value is :math:`r_k / S` with :math:`r_k = q_k/p_k` (the plug-in q
against the profile's p) and S the largest mean of r any distribution in the box can have (a
fractional knapsack, :func:`worst_case_mean`): then :math:`E[r/S] \\le 1` for every healthy
distribution at once, and a look's n observations multiply (``log e = Σ c_k log r_k − n log S``).

**Rate increase** (:class:`RateIncrease`): a mean in [0, 1] per request (error = 1 − correct
for accuracy, a normalised loss, a humility rule's hit) against a null "mean ≤ m0". From each
look's sum S and count n, :math:`e = \\exp(λS - n\\log(1-m_0+m_0e^{λ}))` with λ ≥ 0 is an e-value
for any such variables (Hoeffding's convexity bound; for 0/1 variables it is the likelihood
ratio of Bernoulli(q) against Bernoulli(m0), λ = logit q − logit m0).

Everything is vectorised over a leading axis of independent detectors (simulated runs or
deployments), so the simulation and the operator run the same code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

#: Half-lives of the plug-in estimates, in looks (at one look a minute: 5 min, 2 h, 1 day).
HALF_LIVES = (5.0, 120.0, 1440.0)
#: Prior weight (in observations) pulling each plug-in estimate towards the null.
PRIOR_WEIGHT = 50.0
#: Standard errors of the profile's own frequency estimate that still count as healthy.
REFERENCE_STANDARD_ERRORS = 4.0
#: Smallest probability a bin is given (a bin never seen in training still has some mass).
MIN_PROBABILITY = 1e-4


def alarm_threshold(
    alarm_every_seconds: float, interval_seconds: float, multiplicity: float = 1.0
) -> float:
    """The detector's threshold c: expected looks between false alarms, times ``multiplicity``
    (the number of detectors sharing the rate, e.g. deployments in a fleet)."""
    if alarm_every_seconds <= 0 or interval_seconds <= 0:
        raise ValueError("alarmEvery and the interval must be positive")
    return max(alarm_every_seconds / interval_seconds, 1.0) * max(multiplicity, 1.0)


def _forgetting() -> np.ndarray:
    return np.power(0.5, 1.0 / np.asarray(HALF_LIVES))


def _logmeanexp(values: np.ndarray, axis: int) -> np.ndarray:
    top = np.max(values, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    mean = np.mean(np.exp(values - top), axis=axis)
    return np.log(mean) + np.squeeze(top, axis=axis)


def reference_box(
    probabilities: np.ndarray, reference_rows: float, tolerance: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin bounds [lo, hi] of the live probabilities still called healthy."""
    p = np.asarray(probabilities, dtype=float)
    standard_error = np.sqrt(p * (1 - p) / max(reference_rows, 1.0))
    half_width = np.maximum(REFERENCE_STANDARD_ERRORS * standard_error, tolerance)
    return np.clip(p - half_width, 0.0, 1.0), np.clip(p + half_width, 0.0, 1.0)


def worst_case_mean(
    ratio: np.ndarray, lo: np.ndarray, hi: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    """max of Σ p_k ratio_k over {p: lo ≤ p ≤ hi, Σp = 1} along the last axis.

    A fractional knapsack: every bin gets its lower bound, and the mass left over goes to the
    bins with the largest ratio first, each up to its upper bound. Padded bins (mask False)
    take nothing.
    """
    lo = np.broadcast_to(np.where(mask, lo, 0.0), ratio.shape)
    room = np.broadcast_to(np.where(mask, hi - lo, 0.0), ratio.shape)
    spare = 1.0 - lo.sum(axis=-1, keepdims=True)
    order = np.argsort(-np.where(mask, ratio, -np.inf), axis=-1)
    sorted_ratio = np.take_along_axis(ratio, order, axis=-1)
    sorted_room = np.take_along_axis(room, order, axis=-1)
    before = np.cumsum(sorted_room, axis=-1) - sorted_room
    given = np.clip(spare - before, 0.0, sorted_room)
    return np.sum(lo * ratio, axis=-1) + np.sum(
        np.where(given > 0, given * sorted_ratio, 0.0), axis=-1
    )


@dataclass
class BinnedDrift:
    """Input drift of F features against the profile's bins, for R independent detectors.

    ``reference`` is (F, K) bin probabilities, or (R, F, K) when each detector has a profile of
    its own (rows padded with zeros where a feature has fewer than K bins, ``mask`` (F, K) marks
    the real bins); ``reference_rows`` how many rows the profile was
    built from. ``update`` takes counts of shape (R, F, K) for one look.
    """

    reference: np.ndarray
    mask: np.ndarray
    reference_rows: float
    threshold: float
    runs: int = 1
    tolerance: float = 0.0
    log_m: np.ndarray = field(init=False)  # (R, F): log of each feature's e-CUSUM statistic
    weighted_counts: np.ndarray = field(init=False)  # (H, R, F, K) plug-in estimates' counts

    def __post_init__(self) -> None:
        mask = np.asarray(self.mask, dtype=bool)
        p = np.where(
            mask, np.maximum(np.asarray(self.reference, dtype=float), MIN_PROBABILITY), 0.0
        )
        self.mask = mask
        self.reference = p / p.sum(axis=-1, keepdims=True)
        self.lo, self.hi = reference_box(self.reference, self.reference_rows, self.tolerance)
        features, bins = self.reference.shape[-2:]
        self.log_m = np.zeros((self.runs, features))
        self.weighted_counts = np.zeros((len(HALF_LIVES), self.runs, features, bins))

    @property
    def features(self) -> int:
        return int(self.reference.shape[-2])

    def alternatives(self) -> np.ndarray:
        """(H, R, F, K) plug-in alternatives: the weighted counts shrunk towards the profile."""
        totals = self.weighted_counts.sum(axis=-1, keepdims=True)
        q = (self.weighted_counts + PRIOR_WEIGHT * self.reference) / (totals + PRIOR_WEIGHT)
        return np.where(self.mask, q, 0.0)

    def log_e_values(self, counts: np.ndarray) -> np.ndarray:
        """(R, F) log e-values of one look's counts, before they update the plug-ins."""
        ratio = np.where(self.mask, self.alternatives() / self.reference, 0.0)
        normaliser = worst_case_mean(ratio, self.lo, self.hi, self.mask)  # (H, R, F)
        log_ratio = np.log(np.where(self.mask, ratio, 1.0))
        per_half_life = np.sum(counts[None] * log_ratio, axis=-1) - counts.sum(axis=-1)[
            None
        ] * np.log(normaliser)
        return _logmeanexp(per_half_life, axis=0)

    def update(self, counts: np.ndarray) -> np.ndarray:
        """Take one look's counts (R, F, K); returns the (R,) overall statistic log(mean_f M_f)."""
        counts = np.where(self.mask, np.maximum(np.asarray(counts, dtype=float), 0.0), 0.0)
        self.log_m = np.maximum(self.log_m, 0.0) + self.log_e_values(counts)
        decay = _forgetting()[:, None, None, None]
        self.weighted_counts = self.weighted_counts * decay + counts[None]
        return self.overall()

    def overall(self) -> np.ndarray:
        """log(mean over features of M_f): the alarm statistic, compared with log c."""
        return _logmeanexp(self.log_m, axis=-1)

    def alarmed(self) -> np.ndarray:
        return self.overall() >= math.log(self.threshold)

    def reset(self, which: np.ndarray) -> None:
        """Start afresh where ``which`` (R,) is true (after an alarm has been raised)."""
        self.log_m[which] = 0.0
        self.weighted_counts[:, which] = 0.0

    def feature_shares(self) -> np.ndarray:
        """(R, F) each feature's share of the alarm statistic (which features drifted)."""
        top = self.log_m.max(axis=-1, keepdims=True)
        weights = np.exp(self.log_m - top)
        return weights / weights.sum(axis=-1, keepdims=True)


@dataclass
class RateIncrease:
    """A mean in [0, 1] (error, normalised loss, humility hits) rising above ``null_mean``."""

    null_mean: float
    threshold: float
    runs: int = 1
    log_m: np.ndarray = field(init=False)
    weighted: np.ndarray = field(init=False)  # (H, R, 2): weighted sums and counts

    def __post_init__(self) -> None:
        if not 0.0 < self.null_mean < 1.0:
            raise ValueError("the null mean must be in (0, 1)")
        self.log_m = np.zeros(self.runs)
        self.weighted = np.zeros((len(HALF_LIVES), self.runs, 2))

    def estimates(self) -> np.ndarray:
        """(H, R) plug-in means, shrunk towards the null mean."""
        sums, counts = self.weighted[..., 0], self.weighted[..., 1]
        return (sums + PRIOR_WEIGHT * self.null_mean) / (counts + PRIOR_WEIGHT)

    def log_e_values(self, sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
        m0 = self.null_mean
        q = np.clip(self.estimates(), m0, 1.0 - 1e-9)
        lam = np.log(q / (1 - q)) - math.log(m0 / (1 - m0))  # 0 when q ≤ m0
        log_mgf = np.log1p(m0 * np.expm1(lam))
        return _logmeanexp(lam * sums[None] - counts[None] * log_mgf, axis=0)

    def update(self, sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Take one look's (R,) sums and counts; returns the (R,) log statistic."""
        counts = np.maximum(np.asarray(counts, dtype=float), 0.0)
        sums = np.clip(np.asarray(sums, dtype=float), 0.0, counts)
        self.log_m = np.maximum(self.log_m, 0.0) + self.log_e_values(sums, counts)
        decay = _forgetting()[:, None, None]
        self.weighted = self.weighted * decay + np.stack([sums, counts], axis=-1)[None]
        return self.log_m

    def alarmed(self) -> np.ndarray:
        return self.log_m >= math.log(self.threshold)

    def reset(self, which: np.ndarray) -> None:
        self.log_m[which] = 0.0
        self.weighted[:, which] = 0.0


def error_rate_null(holdout_error: float, holdout_rows: float, margin: float) -> float:
    """The error rate still called healthy: the holdout's, plus the user's margin, plus four
    standard errors of the holdout's own estimate (it was measured on finitely many rows)."""
    standard_error = math.sqrt(
        max(holdout_error * (1 - holdout_error), 1e-6) / max(holdout_rows, 1.0)
    )
    return min(
        max(holdout_error + margin + REFERENCE_STANDARD_ERRORS * standard_error, 1e-4), 1 - 1e-4
    )
