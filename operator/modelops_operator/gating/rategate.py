# ruff: noqa: RUF003  (mathematical notation: α, θ, τ, Δ, ×, − are intended)
"""Rate gates (errorRate, latency, rate-style prometheus): ratio route and absolute route."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from . import betting, rateratio
from .config import GateConfig
from .counts import Counts, increment
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
)

# ----------------------------------------------------------------------------- rate gates


def rate_inputs(gate: GateConfig, counts: Counts) -> tuple[tuple[float, ...] | None, str]:
    """Cumulative (n_A, y_A, n_B, y_B) for a rate gate, or (None, why)."""
    a, b = counts.champion, counts.challenger
    if gate.type == "errorRate":
        return (a.requests, a.errors, b.requests, b.errors), ""
    if gate.type == "latency":
        assert gate.latency_threshold is not None
        ta, sa, note_a = a.slower_than(gate.latency_threshold)
        tb, sb, note_b = b.slower_than(gate.latency_threshold)
        if ta is None or tb is None or sa is None or sb is None:
            return None, note_a or note_b
        return (ta, sa, tb, sb), note_a or note_b
    ca, cb = a.custom.get(gate.name), b.custom.get(gate.name)
    if not ca or not cb or "events" not in ca or "events" not in cb:
        return None, f"no events/total counts for custom gate {gate.name!r}"
    return (ca.get("total", 0.0), ca["events"], cb.get("total", 0.0), cb["events"]), ""


def evaluate_rate_gate(
    gate: GateConfig, counts: Counts, state: GateState, look: Look
) -> GateReport:
    """Ratio route (:mod:`.rateratio`) plus, with ``absoluteMargin``, the absolute route.

    Pass when either route shows the challenger acceptable: the null "worse than both margins"
    is the intersection of the two routes' nulls, so a union bound with alpha/2 each keeps
    P(false promotion) ≤ alpha. Fail only when *both* show it worse: under "acceptable" one of
    the two harm nulls holds, so the conjunction needs no split and is never more trigger-happy
    than the ratio test alone.
    """
    cum, note = rate_inputs(gate, counts)
    report = GateReport(gate.name, gate.type, NODATA, unit="ratio challenger/champion")
    delta = gate.effective_absolute_margin
    abs_promote = delta > 0 and gate.test != "superiority"
    if abs_promote:
        look = replace(look, alpha_promote=look.alpha_promote / 2)
    r_ni = 1.0 if gate.test == "superiority" else 1.0 + gate.margin
    r_h = 1.0 + gate.effective_harm_margin
    report.promote_if = f"upper < {r_ni:g}"
    report.rollback_if = f"lower > {r_h:g}"
    if delta > 0:
        tol = f"difference {{}} {delta * 100:+.3g} pp (absoluteMargin {delta:g})"
        if abs_promote:
            report.promote_if = f"ratio upper < {r_ni:g} or {tol.format('upper <')}"
        report.rollback_if = f"ratio lower > {r_h:g} and {tol.format('lower >')}"
    if cum is None:
        report.message = note or "no data"
        return report
    if state.loglik is None:
        state.loglik = np.zeros(rateratio.GRID_SIZE)
    if look.update:
        prev = state.last or (None, None, None, None)
        inc = [increment(new, old) for new, old in zip(cum, prev, strict=True)]
        na, ya, nb, yb = inc
        ya, yb = min(ya, na), min(yb, nb)  # scrape skew: events cannot exceed requests
        state.loglik = state.loglik + rateratio.loglik_increment(na, nb, ya, yb)
        state.last = tuple(cum)
        if delta > 0:
            _absolute_route(gate, (na, ya, nb, yb), state, look, abs_promote)
    j_ni = rateratio.grid_index(math.log(r_ni), round_up=False)
    j_h = rateratio.grid_index(math.log(r_h), round_up=True)
    le_p = float(rateratio.log_e_value(state.loglik, j_ni, upper=False))
    le_h = float(rateratio.log_e_value(state.loglik, j_h, upper=True))
    state.log_e_promote = max(state.log_e_promote, le_p)
    state.log_e_rollback = max(state.log_e_rollback, le_h)
    lo, hi = rateratio.confidence_bounds(
        state.loglik, alpha_lower=look.alpha_rollback, alpha_upper=look.alpha_promote
    )
    intersect_interval(state, math.exp(lo), math.exp(hi))

    n_a, y_a, n_b, y_b = cum
    report.samples_champion, report.samples_challenger = n_a, n_b
    report.statistic = e_statistics(state, look)
    report.statistic["method"] = "conditional-binomial rate-ratio e-process"
    report.statistic["nullIndexPromote"] = float(math.exp(rateratio.THETA[j_ni]))
    report.statistic["nullIndexRollback"] = float(math.exp(rateratio.THETA[j_h]))
    report.details = {"championEvents": y_a, "challengerEvents": y_b}
    if delta > 0:
        report.statistic["method"] += " or per-interval betting e-process on the rate difference"
        report.statistic["absoluteMargin"] = delta
        report.statistic["absolutePassed"] = state.abs_passed
        report.statistic["absoluteFailed"] = state.abs_failed
        report.details["differenceLower"] = json_float(state.diff_lower)
        report.details["differenceUpper"] = json_float(state.diff_upper)
    if n_b <= 0:
        report.message = "no challenger requests yet"
        return report
    theta_hat = rateratio.mle(state.loglik)
    report.estimate = None if theta_hat is None else math.exp(theta_hat)
    report.lower, report.upper = json_float(state.lower), json_float(state.upper)
    report.verdict = _rate_verdict(state, look, abs_rollback=delta > 0)
    what = "errors" if gate.type == "errorRate" else "events"
    if gate.type == "latency":
        what = f"requests slower than {gate.latency_threshold:g}s{note}"
    rate_a = y_a / n_a if n_a else float("nan")
    rate_b = y_b / n_b
    ratio = "n/a" if report.estimate is None else f"{report.estimate:.3g}"
    bounds = f"[{fmt_bound(report.lower)}, {fmt_bound(report.upper)}]"
    diff = ""
    if delta > 0:
        d_hat = (rate_b - rate_a) * 100 if n_a else float("nan")
        diff = (
            f"; difference {d_hat:+.3g} pp, bounds [{_pp(state.diff_lower)}, "
            f"{_pp(state.diff_upper)}]"
        )
    report.message = (
        f"{what}: challenger {rate_b:.3%} ({y_b:g}/{n_b:g}) vs champion {rate_a:.3%} "
        f"({y_a:g}/{n_a:g}); ratio {ratio}, bounds {bounds}{diff}; "
        f"promote if {report.promote_if}, roll back if {report.rollback_if}"
    )
    return report


def absolute_nulls(gate: GateConfig) -> np.ndarray:
    delta = gate.effective_absolute_margin
    return betting.nulls_for(delta, delta)


def _absolute_route(
    gate: GateConfig,
    interval: tuple[float, float, float, float],
    state: GateState,
    look: Look,
    abs_promote: bool,
) -> None:
    """Bet on one interval's rate difference (:mod:`.betting`); update the sticky flags and the
    displayed difference bounds. ``look.alpha_promote`` is already the route's half of alpha."""
    nulls = absolute_nulls(gate)
    wealth = betting.Wealth.resume(nulls, state.wealth)
    na, ya, nb, yb = interval
    betting.update_two_arms(wealth, na, ya, nb, yb)
    state.wealth = wealth.flat()
    below, above = wealth.log_e()
    if abs_promote and below[0] >= math.log(1.0 / look.alpha_promote):
        state.abs_passed = True
    if above[1] >= math.log(1.0 / look.alpha_rollback):
        state.abs_failed = True
    lo, up = betting.bounds(
        below, above, nulls, alpha_lower=look.alpha_rollback, alpha_upper=look.alpha_promote
    )
    new_lo, new_hi = max(state.diff_lower, lo), min(state.diff_upper, up)
    if new_lo <= new_hi:
        state.diff_lower, state.diff_upper = new_lo, new_hi
    else:  # only a misspecified model gets here: show the current one
        state.diff_lower, state.diff_upper = lo, up


def _rate_verdict(state: GateState, look: Look, *, abs_rollback: bool) -> str:
    """Sticky verdict of a rate gate: fail needs both routes, pass either (see above)."""
    if state.log_e_rollback >= math.log(1.0 / look.alpha_rollback) and (
        state.abs_failed or not abs_rollback
    ):
        if state.failed_at is None:
            state.failed_at = look.elapsed
        return FAIL
    if state.log_e_promote >= math.log(1.0 / look.alpha_promote) or state.abs_passed:
        if state.passed_at is None:
            state.passed_at = look.elapsed
        return PASS
    return PENDING


def _pp(x: float) -> str:
    """A rate difference in percentage points."""
    return "-" if not math.isfinite(x) else f"{x * 100:+.3g} pp"


def fmt_bound(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.3g}"
