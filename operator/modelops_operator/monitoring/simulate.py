# ruff: noqa: RUF002, RUF003  (mathematical notation: α, σ, ×, − are intended)
"""Simulated live models: false alarms on a healthy one, detection delay after a shift.

The world is built the way a deployment sees it, not the way the detector assumes it:

* the training profile is estimated from ``reference_rows`` rows: its bins are the sample's
  deciles and its frequencies the sample's, so the live (true) bin probabilities differ from the
  profile's by sampling error, as they do in production;
* every feature is a standard normal; the counts a look sees in each bin are multinomial with
  the true probabilities (exactly what binning that many rows gives);
* traffic is not stationary: a diurnal cycle (± ``diurnal``), bursts (``burst_factor`` × for a
  few minutes, about ``bursts_per_day`` a day) and missed scrapes (a look with no data, whose
  requests arrive with the next look);
* a shift moves one feature's mean by ``shift_sd`` standard deviations at ``shift_at`` minutes.

Methods, on identical counts:

* ``modelops``: :class:`.detectors.BinnedDrift`, alarm threshold from ``alarm_every``;
* ``psi``: a fixed threshold (``psi > 0.1`` on any feature) over the last ``window`` minutes,
  checked every minute, as most drift dashboards do;
* ``chi2``: a two-sample χ² test (profile vs the window, what Alibi Detect's ChiSquareDrift
  computes) on every feature every minute, Bonferroni across features, at the p-value that
  gives the same expected time between false alarms as ours if looks were independent.

An alarm is counted when a method goes from quiet to alarmed; after an alarm, ``modelops``
restarts its detector (as the operator does once the condition is raised) and the window
methods count a new alarm only once they have been quiet again.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from scipy.special import chdtrc
from scipy.stats import norm

from .detectors import BinnedDrift, alarm_threshold

MINUTES_PER_DAY = 1440
METHODS = ("modelops", "psi", "chi2")
PSI_THRESHOLD = 0.1


@dataclass(frozen=True)
class DriftWorld:
    """One simulated deployment's inputs (one look a minute)."""

    features: int = 20
    bins: int = 10
    reference_rows: int = 5000
    requests_per_minute: float = 300.0
    diurnal: float = 0.5
    bursts_per_day: float = 4.0
    burst_factor: float = 5.0
    burst_minutes: int = 10
    missed_scrapes: float = 0.01
    shift_sd: float = 0.0
    shift_feature: int = 0
    shift_at: int = 0  # minutes from the start
    alarm_every_days: float = 90.0
    fleet: int = 1  # deployments sharing the false-alarm rate
    window: int = 60  # minutes, for the window methods


def build_profile(world: DriftWorld, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(edges (F, K−1), profile frequencies (F, K)) from a training sample of the world."""
    sample = rng.standard_normal((world.features, world.reference_rows))
    quantiles = np.linspace(0, 1, world.bins + 1)[1:-1]
    edges = np.quantile(sample, quantiles, axis=1).T
    counts = np.stack(
        [
            np.bincount(np.searchsorted(edges[f], sample[f], side="right"), minlength=world.bins)
            for f in range(world.features)
        ]
    )
    return edges, counts / world.reference_rows


def bin_probabilities(edges: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """(F, K) probabilities of each bin for standard normals whose means are ``shift`` (F,)."""
    cdf = norm.cdf(edges - shift[:, None])
    return np.diff(
        np.concatenate([np.zeros((len(edges), 1)), cdf, np.ones((len(edges), 1))], axis=1), axis=1
    )


def traffic(
    world: DriftWorld, minutes: int, runs: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(minutes, runs) request rates per look, and (minutes, runs) whether that look's scrape
    was missed (its requests then arrive with the next look)."""
    t = np.arange(minutes)[:, None]
    rate = world.requests_per_minute * (
        1 + world.diurnal * np.sin(2 * math.pi * t / MINUTES_PER_DAY)
    )
    rate = np.broadcast_to(rate, (minutes, runs)).copy()
    starts = rng.random((minutes, runs)) < world.bursts_per_day / MINUTES_PER_DAY
    bursting = np.zeros_like(starts)
    for lag in range(world.burst_minutes):
        bursting[lag:] |= starts[: minutes - lag]
    rate = np.where(bursting, rate * world.burst_factor, rate)
    missed = rng.random((minutes, runs)) < world.missed_scrapes
    missed[-1] = False
    return rate, missed


def _psi(window: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """PSI of each feature's window counts (R, F, K) against the profile (F, K)."""
    k = reference.shape[-1]
    n = window.sum(axis=-1, keepdims=True)
    live = (window + 0.5) / (n + 0.5 * k)
    return np.sum((live - reference) * np.log(live / reference), axis=-1)


def _chi2_p_values(window: np.ndarray, reference: np.ndarray, reference_rows: int) -> np.ndarray:
    """Two-sample χ² homogeneity p-values, profile counts vs window counts, per feature."""
    ref = np.broadcast_to(reference * reference_rows, window.shape)
    n_live = window.sum(axis=-1, keepdims=True)
    total = ref + window
    grand = reference_rows + n_live
    expected_ref = total * reference_rows / grand
    expected_live = total * n_live / grand
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(
            total > 0,
            (ref - expected_ref) ** 2 / expected_ref
            + (window - expected_live) ** 2 / expected_live,
            0.0,
        )
    dof = np.maximum((total > 0).sum(axis=-1) - 1, 1)
    return np.where(n_live[..., 0] > 0, chdtrc(dof, terms.sum(axis=-1)), 1.0)


@dataclass(frozen=True)
class MethodOutcome:
    alarms: list[int]  # per run
    first_alarm_minute: list[float]  # per run, minutes after the shift (nan: none)


def run(
    world: DriftWorld, minutes: int, runs: int, seed: int = 0, progress: Any = None
) -> dict[str, MethodOutcome]:
    """Simulate ``runs`` deployments for ``minutes`` looks; every method sees the same counts."""
    rng = np.random.default_rng(seed)
    profiles = [build_profile(world, rng) for _ in range(runs)]
    reference = np.stack([p for _, p in profiles])  # (R, F, K)
    healthy = np.stack([bin_probabilities(e, np.zeros(world.features)) for e, _ in profiles])
    moved = np.zeros(world.features)
    moved[world.shift_feature] = world.shift_sd
    shifted = np.stack([bin_probabilities(e, moved) for e, _ in profiles])
    rates, missed = traffic(world, minutes, runs, rng)

    interval = 60.0
    threshold = alarm_threshold(world.alarm_every_days * 86400, interval, world.fleet)
    mask = np.ones((world.features, world.bins), dtype=bool)
    detector = BinnedDrift(reference, mask, world.reference_rows, threshold, runs=runs)
    # Same expected time between false alarms for the χ² test if its looks were independent.
    chi2_level = 1.0 / threshold / world.features
    window = np.zeros((world.window, runs, world.features, world.bins))
    carried = np.zeros((runs, world.features, world.bins))
    totals = np.zeros((runs, world.features, world.bins))  # the window's counts, kept running
    state = {m: np.zeros(runs, dtype=bool) for m in METHODS}
    alarms = {m: np.zeros(runs, dtype=int) for m in METHODS}
    first = {m: np.full(runs, np.nan) for m in METHODS}
    for minute in range(minutes):
        probabilities = shifted if world.shift_sd and minute >= world.shift_at else healthy
        # Poisson arrivals thinned into bins: each bin's count is Poisson, exactly as binning
        # a Poisson number of rows gives.
        arrived = rng.poisson(rates[minute][:, None, None] * probabilities).astype(float)
        counts = np.where(missed[minute][:, None, None], 0.0, arrived + carried)
        carried = np.where(missed[minute][:, None, None], arrived + carried, 0.0)
        totals += counts - window[minute % world.window]
        window[minute % world.window] = counts
        fired = {}
        detector.update(counts)
        fired["modelops"] = detector.alarmed()
        detector.reset(fired["modelops"])
        full = minute + 1 >= world.window
        fired["psi"] = full & (_psi(totals, reference).max(axis=-1) > PSI_THRESHOLD)
        fired["chi2"] = full & (
            _chi2_p_values(totals, reference, world.reference_rows).min(axis=-1) < chi2_level
        )
        for method in METHODS:
            rising = fired[method] & ~state[method]
            alarms[method] += rising
            after = minute - world.shift_at if world.shift_sd else minute
            if after >= 0:
                newly = rising & np.isnan(first[method])
                first[method][newly] = after
            # Ours restarts after an alarm; the window methods must be quiet again first.
            state[method] = fired[method] & (method != "modelops")
        if progress is not None and minute % MINUTES_PER_DAY == MINUTES_PER_DAY - 1:
            progress(minute + 1, minutes, {m: int(alarms[m].sum()) for m in METHODS})
    return {m: MethodOutcome(alarms[m].tolist(), first[m].tolist()) for m in METHODS}


def summary(world: DriftWorld, minutes: int, outcomes: dict[str, MethodOutcome]) -> dict[str, Any]:
    """False alarms per day and per run-year, and detection delays, per method."""
    runs = len(outcomes["modelops"].alarms)
    days = minutes / MINUTES_PER_DAY
    out: dict[str, Any] = {"world": asdict(world), "minutes": minutes, "runs": runs, "methods": {}}
    for method, outcome in outcomes.items():
        delays = np.array(outcome.first_alarm_minute, dtype=float)
        entry: dict[str, Any] = {
            "alarms": int(sum(outcome.alarms)),
            "alarms_per_day": sum(outcome.alarms) / (days * runs),
        }
        if world.shift_sd:
            detected = delays[~np.isnan(delays)]
            entry["detected_share"] = float(detected.size / runs)
            entry["detected_within_hour"] = float(np.mean(delays <= 60)) if runs else 0.0
            entry["median_delay_minutes"] = float(np.median(detected)) if detected.size else None
        out["methods"][method] = entry
    out["configured_alarms_per_day"] = 1.0 / world.alarm_every_days
    return out


def healthy(world: DriftWorld) -> DriftWorld:
    return replace(world, shift_sd=0.0)
