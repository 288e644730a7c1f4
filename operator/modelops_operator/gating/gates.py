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

from . import drift, mixture
from .config import GateConfig
from .counts import Counts
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
    "evaluate_rate_gate",
    "rate_inputs",
]


# ---------------------------------------------------------------------- accuracy / regression


def evaluate_accuracy_gate(
    gate: GateConfig, counts: Counts, state: GateState, look: Look
) -> GateReport:
    a, b, p = counts.champion, counts.challenger, counts.paired
    regression = is_regression(counts)
    paired = not regression and p is not None and p.total > 0
    burn = gate.burn_in if gate.burn_in is not None else mixture.BURN_IN_SAMPLES
    report = GateReport(gate.name, gate.type, NODATA)
    if regression:
        report.unit = "mean loss difference challenger-champion"
        n_a, n_b = a.feedback_total, b.feedback_total
        d_raw, v_raw = mixture.two_means(
            b.error_sum, b.squared_error_sum, n_b, a.error_sum, a.squared_error_sum, n_a
        )
        # two_means(b..., a...) gives m_A − m_B: larger is better for the challenger.
        delta, sign = float(d_raw), -1.0
        burned = min(n_a, n_b) >= burn
        method = "normal-mixture mSPRT (plug-in variance), mean loss"
    elif paired:
        assert p is not None
        report.unit = "accuracy difference challenger-champion (paired)"
        n_a = n_b = p.total
        d_raw, v_raw = mixture.paired_proportions(p.challenger_only, p.champion_only, p.total)
        delta, sign = float(d_raw), 1.0
        burned = p.total >= burn and p.challenger_only + p.champion_only >= mixture.BURN_IN_EVENTS
        method = "normal-mixture mSPRT (plug-in variance), paired shadow pairs"
    else:
        report.unit = "accuracy difference challenger-champion"
        n_a, n_b = a.feedback_total, b.feedback_total
        d_raw, v_raw = mixture.unpaired_proportions(
            a.feedback_correct, n_a, b.feedback_correct, n_b
        )
        delta, sign = float(d_raw), 1.0
        ev = mixture.BURN_IN_EVENTS
        burned = (
            min(n_a, n_b) >= burn
            and min(
                a.feedback_correct,
                n_a - a.feedback_correct,
                b.feedback_correct,
                n_b - b.feedback_correct,
            )
            >= ev
        )
        method = "normal-mixture mSPRT (plug-in variance), split traffic"
    v = float(v_raw)
    null_ni = 0.0 if gate.test == "superiority" else -gate.margin
    null_h = -gate.effective_harm_margin
    # Conditions in display units (display = sign · delta).
    if sign > 0:
        report.promote_if = f"lower > {null_ni:+g}"
        report.rollback_if = f"upper < {null_h:+g}"
    else:
        report.promote_if = f"upper < {-null_ni:+g}"
        report.rollback_if = f"lower > {-null_h:+g}"
    report.samples_champion, report.samples_challenger = n_a, n_b
    if n_a <= 0 or n_b <= 0:
        report.message = "no feedback yet" if not paired else "no paired feedback yet"
        return report
    report.estimate = sign * delta
    if state.tau is None:
        state.tau = gate_tau(gate)
    tau = state.tau
    if burned and v > 0 and math.isfinite(delta):
        if look.update:
            state.log_e_promote = max(
                state.log_e_promote, float(mixture.log_e_one_sided(delta - null_ni, v, tau))
            )
            state.log_e_rollback = max(
                state.log_e_rollback, float(mixture.log_e_one_sided(null_h - delta, v, tau))
            )
        lo = delta - float(mixture.one_sided_radius(v, tau, look.alpha_promote))
        hi = delta + float(mixture.one_sided_radius(v, tau, look.alpha_rollback))
        if sign > 0:
            intersect_interval(state, lo, hi)
        else:
            intersect_interval(state, -hi, -lo)
        report.lower, report.upper = json_float(state.lower), json_float(state.upper)
        report.verdict = sticky_verdict(state, look)
    else:
        report.verdict = PENDING
    report.statistic = e_statistics(state, look)
    report.statistic["method"] = method
    report.statistic["tau"] = tau
    unit = "loss" if regression else "accuracy"
    if not burned:
        report.message = (
            f"burn-in: {min(n_a, n_b):g} of {burn} labelled samples per arm "
            f"(and {mixture.BURN_IN_EVENTS} of each outcome) before the plug-in test counts"
        )
    else:
        report.message = (
            f"{unit} difference {report.estimate:+.4g}, bounds "
            f"[{fmt_bound(report.lower)}, {fmt_bound(report.upper)}]; "
            f"promote if {report.promote_if}, roll back if {report.rollback_if}"
        )
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
