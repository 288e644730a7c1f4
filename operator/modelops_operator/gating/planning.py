# ruff: noqa: RUF002, RUF003  (mathematical notation: α, θ, τ, Δ, ×, − are intended)
"""Planning: how many samples, and how long at the current traffic, until a decision is likely.

For a gate whose true effect is ``effect`` (default: the models are equal), the planned decision
is the one the truth favours: *promote* when the effect is inside the margin, *rollback* when it
is beyond the harm margin. The distance d between the truth and the null of that test must beat
the sequential boundary plus a power allowance:

.. math:: d \\ge b_\\alpha(V_n) + z_{\\text{power}}\\sqrt{V_n},\\qquad V_n = v_1/n ,

where :math:`b_\\alpha` is the one-sided normal-mixture radius (:func:`.mixture.one_sided_radius`)
with the gate's mixing scale and :math:`v_1` the variance of one sample's contribution. For rate
gates the variance is that of the conditional-binomial log-ratio,
:math:`V=(\\rho+r)/(n_B\\,p_A\\,r\\,\\rho)` with :math:`\\rho=n_A/n_B` (events are the information),
and the half-normal prior scale 0.5 stands in for the discrete prior. This is the median-crossing
approximation with a normal allowance for power; the simulations in ``docs/gating.md`` compare it
with measured times. The drift gate needs the two DKW radii below the margin (no power term).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

# ndtri is norm.ppf without importing scipy.stats, which alone adds ~45 MiB to the operator.
from scipy.special import ndtri

from . import betting, mixture, rateratio
from .config import GateConfig
from .counts import Counts
from .drift import dkw_radius


@dataclass(frozen=True)
class Traffic:
    """Current (or expected) traffic and base metrics, per second."""

    challenger_per_second: float
    champion_per_second: float
    champion_rate: float = 0.005  # errorRate: champion's error rate; latency: its slow share
    champion_accuracy: float = 0.9
    discordance: float | None = None  # shadow: share of labelled pairs where exactly one is right
    label_fraction: float = 1.0  # share of requests that get a (matured) label
    loss_sd: float = 1.0  # regression: standard deviation of the per-request loss
    paired: bool = False  # shadow mode with paired counts
    regression: bool = False  # accuracy gate fed by error sums (loss, lower is better)


@dataclass(frozen=True)
class Plan:
    """When a decision becomes likely (``power``) at the given traffic."""

    decision: str | None  # "promote", "rollback" or None (no decision is likely)
    samples: float | None  # challenger samples needed, in ``unit``
    seconds: float | None  # at the traffic given
    unit: str
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "samples": None if self.samples is None else math.ceil(self.samples),
            "seconds": None if self.seconds is None else round(self.seconds, 1),
            "unit": self.unit,
            "note": self.note,
        }


@lru_cache(maxsize=64)
def _boundary_table(alpha: float, power: float) -> tuple[np.ndarray, np.ndarray]:
    """(G(u), log u) with G(u) = b_α(u)/τ + z_power·√u and u = V/τ², increasing in u.

    The normal-mixture radius scales with τ (it is τ times a function of V/τ²), so one table per
    (α, power) answers every plan by interpolation instead of a bisection per request count.
    """
    u = np.logspace(-14, 8, 881)
    z = float(ndtri(power))
    g = mixture.one_sided_radius(u, 1.0, alpha) + z * np.sqrt(u)
    return np.maximum.accumulate(g), np.log(u)


def _solve_n(v1: float, d: float, tau: float, alpha: float, power: float) -> float | None:
    """Smallest n with d ≥ b_α(v1/n) + z_power √(v1/n) (table inversion, ~0.1 %)."""
    if not (d > 0 and v1 > 0 and math.isfinite(v1) and tau > 0):
        return None
    g, log_u = _boundary_table(alpha, power)
    target = d / tau
    if target < g[0]:
        return None  # more than ~1e14 samples
    u = math.exp(float(np.interp(target, g, log_u)))
    return max(v1 / (u * tau * tau), 1.0)


def _solve_n_absolute(
    p_a: float, p_b: float, rho: float, delta: float, alpha: float, power: float, *, promote: bool
) -> float | None:
    """Challenger requests until the absolute route likely decides (None: never).

    The betting e-process of :mod:`.betting` is planned like a normal-mixture test on the rate
    difference (variance p_B(1−p_B) + p_A(1−p_A)/ρ per challenger request, τ = absoluteMargin),
    and never below what a clean record needs: with no events each challenger request gains
    about absoluteMargin in log wealth, against log(bets/α) to decide.
    """
    distance = delta - (p_b - p_a) if promote else (p_b - p_a) - delta
    if distance <= 0:
        return None
    floor = math.log(betting.LAMBDAS.size / alpha) / distance
    v1 = p_b * (1 - p_b) + p_a * (1 - p_a) / max(rho, 1e-9)
    n = _solve_n(v1, distance, delta, alpha, power) if v1 > 0 else None
    return max(n or 0.0, floor)


def gate_tau(gate: GateConfig) -> float:
    """Mixing scale of a normal-mixture gate: ``gate.tau``, else the margin (≥ a floor)."""
    if gate.tau:
        return gate.tau
    m = max(gate.margin, gate.effective_harm_margin)
    return m if m > 0 else 0.01


def plan_gate(
    gate: GateConfig,
    traffic: Traffic,
    *,
    alpha: float = 0.05,
    rollback_alpha: float = 0.05,
    power: float = 0.8,
    effect: float | None = None,
) -> Plan:
    """Plan for one gate. ``effect``: true ratio (rate gates), difference challenger − champion
    (accuracy points as a fraction, or loss units), or distance (drift). Default: equal models."""
    rates = (traffic.challenger_per_second, traffic.champion_per_second)
    if not all(math.isfinite(x) and x > 0 for x in rates):
        return Plan(None, None, None, "requests", "no usable traffic estimate")
    rho = 1.0 if traffic.paired else traffic.champion_per_second / traffic.challenger_per_second
    if not (math.isfinite(rho) and rho > 0):
        return Plan(None, None, None, "requests", "no usable traffic estimate")
    if gate.type in ("errorRate", "latency") or (
        gate.type == "prometheus" and not gate.threshold_range
    ):
        r = 1.0 if effect is None else effect
        null_ni = 0.0 if gate.test == "superiority" else math.log1p(gate.margin)
        null_h = math.log1p(gate.effective_harm_margin)
        theta = math.log(r)
        pa = traffic.champion_rate
        v1 = (rho + r) / (pa * r * rho) if pa > 0 else math.inf
        rate, unit = traffic.challenger_per_second, "requests"
        tau = rateratio.PRIOR_SCALE
        if theta < null_ni:
            decision, d, a = "promote", null_ni - theta, alpha
        elif theta > null_h:
            decision, d, a = "rollback", theta - null_h, rollback_alpha
        else:
            return Plan(None, None, None, unit, "effect at or inside the margins: no decision")
        delta = gate.effective_absolute_margin
        if delta > 0 and decision == "promote":  # either route passes; the ratio one at alpha/2
            n = _solve_n(v1, d, tau, alpha / 2, power)
            n_abs = _solve_n_absolute(pa, pa * r, rho, delta, alpha / 2, power, promote=True)
            n = n_abs if n is None else n if n_abs is None else min(n, n_abs)
        else:
            n = _solve_n(v1, d, tau, a, power)
            if n is not None and delta > 0:  # rollback needs both routes
                n = _solve_n_absolute(pa, pa * r, rho, delta, a, power, promote=False)
                n = None if n is None else max(n, _solve_n(v1, d, tau, a, power) or n)
    elif gate.type == "accuracy":
        # Oriented so that larger is better; for regression ``effect`` is a loss difference.
        delta = 0.0 if effect is None else (-effect if traffic.regression else effect)
        null_ni = 0.0 if gate.test == "superiority" else -gate.margin
        null_h = -gate.effective_harm_margin
        lam = traffic.label_fraction
        rate = traffic.challenger_per_second * lam
        if traffic.regression:
            v1, unit = traffic.loss_sd**2 * (1 + 1 / rho), "labels"
        elif traffic.paired:
            disc = traffic.discordance if traffic.discordance is not None else 0.1
            v1, unit = max(disc - delta * delta, 1e-12), "pairs"
        else:
            pa = traffic.champion_accuracy
            pb = min(max(pa + delta, 0.0), 1.0)
            v1, unit = pa * (1 - pa) / rho + pb * (1 - pb), "labels"
        tau = gate_tau(gate)
        if delta > null_ni:
            decision, d, a = "promote", delta - null_ni, alpha
        elif delta < null_h:
            decision, d, a = "rollback", null_h - delta, rollback_alpha
        else:
            return Plan(None, None, None, unit, "effect at or inside the margins: no decision")
        n = _solve_n(v1, d, tau, a, power)
    elif gate.type == "predictionDrift":
        unit, rate = "requests", traffic.challenger_per_second
        one = gate.reference is not None
        split = 1 if one else 2

        def width(n: float) -> float:
            rb = dkw_radius(n, alpha / split)
            return rb if one else rb + dkw_radius(rho * n, alpha / 2)

        if width(1e12) >= gate.margin:
            n = None
        else:
            lo, hi = 0.0, math.log(1e12)
            for _ in range(60):
                mid = 0.5 * (lo + hi)
                lo, hi = (lo, mid) if width(math.exp(mid)) < gate.margin else (mid, hi)
            n = math.exp(hi)
        decision = "promote"
    else:
        return Plan(None, None, None, "looks", "threshold gate: no statistical plan")
    if n is None:
        return Plan(decision, None, None, unit, "not reachable at any sample size")
    seconds = n / rate if rate > 0 else None
    return Plan(decision, n, seconds, unit)


def is_regression(counts: Counts) -> bool:
    """Feedback is regression when error sums are present and no correct counts are."""
    arms = (counts.champion, counts.challenger)
    has_sums = any(x.error_sum > 0 or x.squared_error_sum > 0 for x in arms)
    return has_sums and not any(x.feedback_correct > 0 for x in arms)


def traffic_from_counts(counts: Counts, elapsed: float, gate: GateConfig) -> Traffic | None:
    """Estimate the current traffic and base metrics from cumulative counts (None if no data)."""
    a, b = counts.champion, counts.challenger
    if elapsed < 1.0 or b.requests <= 0 or a.requests <= 0:
        return None
    paired = counts.paired is not None and counts.paired.total > 0
    kw: dict[str, Any] = {
        "challenger_per_second": b.requests / elapsed,
        "champion_per_second": max(a.requests, 1.0) / elapsed,
        "paired": paired,
    }
    if gate.type == "errorRate":
        kw["champion_rate"] = max(a.errors, 0.5) / max(a.requests, 1.0)
    elif gate.type == "latency" and gate.latency_threshold is not None:
        total, slow, _ = a.slower_than(gate.latency_threshold)
        if total:
            kw["champion_rate"] = max(slow or 0.0, 0.5) / total
    elif gate.type == "accuracy":
        if is_regression(counts):
            n = max(a.feedback_total, 1.0)
            mean = a.error_sum / n
            kw["regression"] = True
            kw["loss_sd"] = math.sqrt(max(a.squared_error_sum / n - mean * mean, 1e-12))
            kw["label_fraction"] = min(b.feedback_total / b.requests, 1.0)
        elif paired:
            p = counts.paired
            assert p is not None
            kw["discordance"] = max(p.champion_only + p.challenger_only, 1.0) / p.total
            kw["label_fraction"] = min(p.total / b.requests, 1.0)
        elif a.feedback_total > 0:
            kw["champion_accuracy"] = a.feedback_correct / a.feedback_total
            kw["label_fraction"] = min(b.feedback_total / b.requests, 1.0)
    return Traffic(**kw)
