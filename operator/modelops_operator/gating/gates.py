# ruff: noqa: RUF002, RUF003  (mathematical notation: α, θ, τ, Δ, ×, − are intended)
"""One gate at one look: counts + persisted gate state → report + new gate state.

Every statistical gate keeps, in :class:`GateState`, the running maximum of its two e-processes
(promotion side and rollback side). A verdict is *sticky*: once sup_s E_s ≥ 1/α the gate stays
decided, which is exactly what Ville's inequality bounds (P(sup E ≥ 1/α) ≤ α), so stickiness costs
no validity and keeps a gate that cleared before the minimum exposure from flickering. The reported
interval is the running intersection of the confidence sequence (also valid: all of its members
hold at once with the stated confidence).
"""

from __future__ import annotations

import math

import numpy as np

from . import betting, drift, mixture
from .config import GateConfig
from .counts import Counts, increment
from .planning import gate_tau, is_regression
from .rategate import evaluate_rate_gate, fmt_bound, rate_inputs
from .records import (
    FAIL,
    NODATA,
    PASS,
    PENDING,
    GateReport,
    GateState,
    Look,
    e_statistics,
    intersect_interval,
    json_float,
    sticky_verdict,
)

__all__ = [
    "FAIL",
    "NODATA",
    "PASS",
    "PENDING",
    "GateReport",
    "GateState",
    "Look",
    "consumed_inputs",
    "evaluate_rate_gate",
    "rate_inputs",
]


# ---------------------------------------------------------------------- accuracy / regression


def accuracy_inputs(counts: Counts) -> tuple[str, tuple[float, ...]]:
    """(kind, cumulative counts) of an accuracy gate: the increments of consecutive looks are
    its intervals. Kinds: ``split`` (labels, wrong answers per arm), ``paired`` (shadow pairs:
    both right, champion only, challenger only, neither) and ``regression`` (labels, Σ loss,
    Σ loss² per arm)."""
    a, b, p = counts.champion, counts.challenger, counts.paired
    bound = counts.loss_bound
    if is_regression(counts) and bound is not None and bound > 0:
        # Bounded losses as fractions of the bound: "wrong answers" worth between 0 and 1.
        return "bounded", (
            a.feedback_total, a.error_sum / bound, b.feedback_total, b.error_sum / bound
        )
    if is_regression(counts):
        return "regression", (
            a.feedback_total, a.error_sum, a.squared_error_sum,
            b.feedback_total, b.error_sum, b.squared_error_sum,
        )
    if p is not None and p.total > 0:
        return "paired", (p.both, p.champion_only, p.challenger_only, p.neither)
    return "split", (
        a.feedback_total, a.feedback_total - a.feedback_correct,
        b.feedback_total, b.feedback_total - b.feedback_correct,
    )


def accuracy_nulls(gate: GateConfig, scale: float = 1.0) -> np.ndarray:
    """Betting nulls on Δ = accuracy_A − accuracy_B (the challenger's shortfall), or, for
    bounded regression losses, on Δ = (loss_B − loss_A)/scale with scale the loss bound."""
    promote = 0.0 if gate.test == "superiority" else gate.margin
    return betting.nulls_for(promote / scale, gate.effective_harm_margin / scale)


def _stratify(strata: tuple[float, ...] | None, n_a: float, n_b: float, diff: float,
              ) -> tuple[float, ...]:
    """Add one interval to (Σw·d, Σw, Σw²/n_A, Σw²/n_B), w = n_A·n_B/(n_A+n_B) (the
    Mantel–Haenszel weight of a difference): estimates compare both arms interval by interval."""
    x, w_sum, u_a, u_b = strata or (0.0, 0.0, 0.0, 0.0)
    if n_a <= 0 or n_b <= 0 or not math.isfinite(diff):
        return (x, w_sum, u_a, u_b)
    w = n_a * n_b / (n_a + n_b)
    return (x + w * diff, w_sum + w, u_a + w * w / n_a, u_b + w * w / n_b)


def evaluate_accuracy_gate(
    gate: GateConfig, counts: Counts, state: GateState, look: Look
) -> GateReport:
    kind, cum = accuracy_inputs(counts)
    burn = gate.burn_in if gate.burn_in is not None else mixture.BURN_IN_SAMPLES
    report = GateReport(gate.name, gate.type, NODATA)
    null_ni = 0.0 if gate.test == "superiority" else -gate.margin
    null_h = -gate.effective_harm_margin
    regression = kind in ("regression", "bounded")
    if regression:
        n_a, n_b = (cum[0], cum[3]) if kind == "regression" else (cum[0], cum[2])
        report.unit = "mean loss difference challenger-champion"
        report.promote_if = f"upper < {-null_ni:+g}"
        report.rollback_if = f"lower > {-null_h:+g}"
    else:
        n_a, n_b = (cum[0], cum[2]) if kind == "split" else (sum(cum), sum(cum))
        report.unit = "accuracy difference challenger-champion" + (
            " (paired)" if kind == "paired" else ""
        )
        report.promote_if = f"lower > {null_ni:+g}"
        report.rollback_if = f"upper < {null_h:+g}"
    report.samples_champion, report.samples_challenger = n_a, n_b
    if n_a <= 0 or n_b <= 0:
        report.message = "no paired feedback yet" if kind == "paired" else "no feedback yet"
        return report
    if look.update:
        prev = state.last if state.last is not None and len(state.last) == len(cum) else None
        inc = [increment(new, old) for new, old in zip(cum, prev or (None,) * len(cum),
                                                       strict=True)]
        state.last = tuple(cum)
        if kind == "regression":
            _regression_interval(state, inc)
        else:
            _betting_interval(gate, kind, state, inc, scale=counts.loss_bound or 1.0)
    if kind == "regression":
        return _regression_report(gate, report, cum, state, look, burn)
    bound = counts.loss_bound if kind == "bounded" else None
    return _betting_report(gate, kind, report, state, look, bound)


def _betting_interval(
    gate: GateConfig, kind: str, state: GateState, inc: list[float], scale: float = 1.0
) -> None:
    """Bet on one interval: labels by who was right (paired), or per arm with the wrong
    answers, or the bounded losses as fractions of ``scale`` (split, bounded)."""
    nulls = accuracy_nulls(gate, scale)
    wealth = betting.Wealth.resume(nulls, state.wealth)
    if kind == "paired":
        both, champion_only, challenger_only, neither = inc
        total = both + champion_only + challenger_only + neither
        betting.update_paired(wealth, champion_only, challenger_only, total)
    else:
        betting.update_two_arms(wealth, *inc)
    state.wealth = wealth.flat()
    below, above = wealth.log_e()
    # Promotion: reject "shortfall ≥ margin"; rollback: reject "shortfall ≤ harm margin".
    state.log_e_promote = max(state.log_e_promote, float(below[0]))
    state.log_e_rollback = max(state.log_e_rollback, float(above[1]))


def _betting_report(
    gate: GateConfig,
    kind: str,
    report: GateReport,
    state: GateState,
    look: Look,
    bound: float | None = None,
) -> GateReport:
    """The betting test's verdict and bounds. Accuracy: bounds on the shortfall Δ shown as the
    accuracy difference −Δ. Bounded losses (``bound``): a loss is a fraction of a wrong answer,
    and each request's bet is worth at most what it would be on a 0/1 outcome of the same mean
    (exp is convex), so the same e-process holds; Δ·bound is the loss difference shown."""
    nulls = accuracy_nulls(gate, bound or 1.0)
    wealth = betting.Wealth.resume(nulls, state.wealth)
    shortfall = wealth.observed_difference
    if bound is not None:
        method, what = f"mean loss bounded by {bound:g}", "loss difference"
    else:
        method = "paired shadow pairs" if kind == "paired" else "split traffic"
        what = "accuracy difference"
    report.statistic = e_statistics(state, look)
    report.statistic["method"] = f"per-interval betting e-process, {method}, stratified by interval"
    if shortfall is None:
        report.verdict = PENDING
        report.message = "waiting for an interval with labels from both models"
        return report
    below, above = wealth.log_e()
    lo, hi = betting.bounds(
        below, above, nulls, alpha_lower=look.alpha_rollback, alpha_upper=look.alpha_promote
    )
    if bound is not None:
        intersect_interval(state, lo * bound, hi * bound)
        report.estimate = shortfall * bound
    else:
        intersect_interval(state, -hi, -lo)
        report.estimate = -shortfall
    report.lower, report.upper = json_float(state.lower), json_float(state.upper)
    report.verdict = sticky_verdict(state, look)
    report.statistic = e_statistics(state, look)
    report.statistic["method"] = f"per-interval betting e-process, {method}, stratified by interval"
    report.message = (
        f"{what} {report.estimate:+.4g} (interval-stratified), bounds "
        f"[{fmt_bound(report.lower)}, {fmt_bound(report.upper)}]; "
        f"promote if {report.promote_if}, roll back if {report.rollback_if}"
    )
    return report


def _regression_interval(state: GateState, inc: list[float]) -> None:
    n_a, s_a, _, n_b, s_b, _ = inc
    if n_a > 0 and n_b > 0:
        # m_A − m_B: positive when the challenger's loss is lower.
        state.strata = _stratify(state.strata, n_a, n_b, s_a / n_a - s_b / n_b)


def _plugin_variance(n: float, s: float, q: float) -> float:
    """Variance of the per-label loss from its count, sum and sum of squares; 0 without labels
    or when absurd counts (a label count of 1e-226) make it overflow: never an exception."""
    if n <= 0:
        return 0.0
    mean = s / n
    variance = q / n - mean * mean  # `mean ** 2` would raise OverflowError, `*` gives inf
    return variance if math.isfinite(variance) and variance > 0 else 0.0


def _regression_report(
    gate: GateConfig,
    report: GateReport,
    cum: tuple[float, ...],
    state: GateState,
    look: Look,
    burn: int,
) -> GateReport:
    """Stratified normal-mixture test on the mean loss (plug-in variances: asymptotic)."""
    n_a, s_a, q_a, n_b, s_b, q_b = cum
    null_ni = 0.0 if gate.test == "superiority" else -gate.margin
    null_h = -gate.effective_harm_margin
    if state.tau is None:
        state.tau = gate_tau(gate)
    tau = state.tau
    burned = min(n_a, n_b) >= burn
    x, w_sum, u_a, u_b = state.strata or (0.0, 0.0, 0.0, 0.0)
    var_a = _plugin_variance(n_a, s_a, q_a)
    var_b = _plugin_variance(n_b, s_b, q_b)
    delta = x / w_sum if w_sum > 0 else math.nan
    weight = w_sum * w_sum  # 0 also when a tiny weight underflows
    v = (var_a * u_a + var_b * u_b) / weight if weight > 0 else 0.0
    if burned and v > 0 and math.isfinite(delta):
        report.estimate = -delta
        if look.update:
            state.log_e_promote = max(
                state.log_e_promote, float(mixture.log_e_one_sided(delta - null_ni, v, tau))
            )
            state.log_e_rollback = max(
                state.log_e_rollback, float(mixture.log_e_one_sided(null_h - delta, v, tau))
            )
        lo = delta - float(mixture.one_sided_radius(v, tau, look.alpha_promote))
        hi = delta + float(mixture.one_sided_radius(v, tau, look.alpha_rollback))
        intersect_interval(state, -hi, -lo)
        report.lower, report.upper = json_float(state.lower), json_float(state.upper)
        report.verdict = sticky_verdict(state, look)
        report.message = (
            f"loss difference {report.estimate:+.4g} (interval-stratified), bounds "
            f"[{fmt_bound(report.lower)}, {fmt_bound(report.upper)}]; "
            f"promote if {report.promote_if}, roll back if {report.rollback_if}"
        )
    else:
        report.verdict = PENDING
        report.message = (
            f"burn-in: {min(n_a, n_b):g} of {burn} labelled samples per arm before the "
            f"plug-in test counts"
        )
    report.statistic = e_statistics(state, look)
    report.statistic["method"] = "normal-mixture mSPRT (plug-in variance), mean loss, stratified"
    report.statistic["tau"] = tau
    return report


# -------------------------------------------------------------------------------- drift


def evaluate_drift_gate(
    gate: GateConfig, counts: Counts, state: GateState, look: Look
) -> GateReport:
    s = drift.compare(
        counts.champion.prediction_buckets,
        counts.challenger.prediction_buckets,
        alpha_upper=look.alpha_promote,
        alpha_lower=look.alpha_rollback,
        reference=gate.reference,
    )
    report = GateReport(gate.name, gate.type, NODATA, unit="edge-KS distance")
    report.promote_if = f"upper < {gate.margin:g}"
    report.rollback_if = f"lower > {gate.effective_harm_margin:g}"
    report.samples_champion, report.samples_challenger = s.n_champion, s.n_challenger
    if s.distance is None:
        report.message = "no prediction histogram (or no shared bucket edges) yet"
        return report
    intersect_interval(state, s.lower, s.upper)
    report.estimate = s.distance
    report.lower, report.upper = state.lower, state.upper
    if state.lower > gate.effective_harm_margin:
        state.failed_at = state.failed_at if state.failed_at is not None else look.elapsed
        report.verdict = FAIL
    elif state.upper < gate.margin:
        state.passed_at = state.passed_at if state.passed_at is not None else look.elapsed
        report.verdict = PASS
    else:
        report.verdict = PENDING
    report.statistic = {
        "method": "time-uniform DKW bands on bucket edges (Howard & Ramdas 2022)",
        "distance": s.distance,
    }
    report.details = {
        "psi": s.psi,
        "psiNullExpectation": s.psi_null_expectation,
        "hellinger": s.hellinger,
        "chi2PValueFixedN": s.chi2_p_value,
        "edges": s.edges,
        "against": "reference" if gate.reference is not None else "champion",
    }
    psi = (
        "n/a"
        if s.psi is None
        else f"{s.psi:.3f} (≈{s.psi_null_expectation:.3f} expected by chance)"
    )
    report.message = (
        f"edge-KS distance {s.distance:.3f}, bounds [{state.lower:.3f}, {state.upper:.3f}]; "
        f"PSI {psi}; promote if upper < {gate.margin:g}, roll back if lower > "
        f"{gate.effective_harm_margin:g}"
    )
    return report


# --------------------------------------------------------------------- prometheus threshold


def evaluate_threshold_gate(
    gate: GateConfig, counts: Counts, state: GateState, look: Look
) -> GateReport:
    """Flagger-compatible check of the challenger's value; never rolls back on its own."""
    report = GateReport(gate.name, gate.type, NODATA, unit="value")
    lo, hi = gate.threshold_range or (None, None)
    report.promote_if = f"value within [{lo}, {hi}]"
    report.rollback_if = "never (no statistical evidence; maxDuration applies)"
    cb = counts.challenger.custom.get(gate.name) or {}
    ca = counts.champion.custom.get(gate.name) or {}
    if "value" not in cb:
        report.message = f"no value for custom gate {gate.name!r}"
        return report
    value = float(cb["value"])
    inside = (lo is None or value >= lo) and (hi is None or value <= hi)
    if look.update and not inside:
        state.failed_checks += 1
    report.estimate = value
    report.verdict = PASS if inside else PENDING
    report.details = {"championValue": ca.get("value"), "failedChecks": state.failed_checks}
    report.statistic = {"method": "threshold (no statistical guarantee)"}
    report.message = (
        f"challenger value {value:g} {'within' if inside else 'outside'} [{lo}, {hi}]; "
        f"{state.failed_checks} out-of-range looks so far; a threshold carries no error "
        f"guarantee and blocks promotion only"
    )
    return report


def is_threshold_gate(gate: GateConfig, counts: Counts | None) -> bool:
    if gate.type != "prometheus":
        return False
    if counts is not None:
        cb = counts.challenger.custom.get(gate.name) or {}
        if "events" in cb:
            return False
    return gate.threshold_range is not None or counts is None


def consumed_inputs(gate: GateConfig, counts: Counts) -> tuple[float, ...] | None:
    """The cumulative counts a gate's intervals start from when it appears mid-challenge."""
    if gate.type == "accuracy":
        return accuracy_inputs(counts)[1]
    if gate.type in ("errorRate", "latency") or not is_threshold_gate(gate, counts):
        if gate.type == "predictionDrift":
            return None
        cum, _ = rate_inputs(gate, counts)
        return None if cum is None else tuple(cum)
    return None


def evaluate_gate(gate: GateConfig, counts: Counts, state: GateState, look: Look) -> GateReport:
    """Dispatch on the gate type."""
    if gate.type in ("errorRate", "latency"):
        return evaluate_rate_gate(gate, counts, state, look)
    if gate.type == "accuracy":
        return evaluate_accuracy_gate(gate, counts, state, look)
    if gate.type == "predictionDrift":
        return evaluate_drift_gate(gate, counts, state, look)
    if is_threshold_gate(gate, counts):
        return evaluate_threshold_gate(gate, counts, state, look)
    return evaluate_rate_gate(gate, counts, state, look)
