# ruff: noqa: RUF002, RUF003  (mathematical notation: α, θ, τ, Δ, ×, − are intended)
"""The decision: ``evaluate(gates, counts, elapsed, state) -> Decision``.

Rule (intersection–union for promotion, Berger 1982; Bonferroni for rollback):

* **ROLLBACK** when any gate fails: its harm e-process reached K/α_r (K = gates that can roll
  back), so P(false rollback) ≤ α_r overall.
* **PROMOTE** when every gate passes (its non-inferiority e-process reached 1/α) *and* the
  minimum exposure is met (``min_samples`` requests per arm, ``min_duration``), so
  P(false promotion) ≤ α with no multiplicity correction.
* **WAIT** otherwise — including missing or stale data (never a pass, never a failure), burn-in,
  and a sample-ratio-mismatch alarm — with an honest reason.
* At ``max_duration`` without a decision: ``on_timeout`` (rollback by default, or hold).
"""

from __future__ import annotations

import binascii
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

import numpy as np

from . import rateratio
from .config import DecisionPolicy, GateConfig, gates_from, parse_duration
from .counts import Counts, increment
from .gates import (
    FAIL,
    NODATA,
    PASS,
    PENDING,
    GateReport,
    GateState,
    Look,
    consumed_inputs,
    evaluate_gate,
    is_threshold_gate,
)
from .planning import plan_gate, traffic_from_counts

STATE_VERSION = 1


class Action(StrEnum):
    PROMOTE = "PROMOTE"
    ROLLBACK = "ROLLBACK"
    WAIT = "WAIT"

    def __str__(self) -> str:
        return self.value


@dataclass
class GatingState:
    """Everything :func:`evaluate` needs from the previous evaluation. Persist ``to_dict()``.

    * ``last_counts``: the cumulative counts consumed so far (increments and stale detection);
    * ``gates``: per gate name, a :class:`~.gates.GateState` (rate-gate log-likelihoods, running
      maxima of e-processes, running interval, time first passed/failed);
    * ``srm_loglik`` / ``srm_last`` / ``srm_tripped``: the sample-ratio-mismatch e-process;
    * ``looks``: evaluations that consumed new data.

    Size: about 3 kB per rate gate (a 301-point float64 vector, base64), 4 kB more for a
    betting e-process (absoluteMargin, accuracy: 410 values), plus the last counts.
    Restart-safe: resume by passing the stored dict back. A gate whose configuration changed
    (different fingerprint) starts its evidence afresh.
    """

    looks: int = 0
    last_counts: Counts | None = None
    last_timestamp: float | None = None
    gates: dict[str, GateState] = field(default_factory=dict)
    srm_loglik: np.ndarray | None = None
    srm_last: tuple[float, float] | None = None
    srm_tripped: bool = False
    srm_log_e: float = -math.inf

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"version": STATE_VERSION, "looks": self.looks}
        if self.last_counts is not None:
            out["lastCounts"] = self.last_counts.to_dict()
        if self.last_timestamp is not None:
            out["lastTimestamp"] = self.last_timestamp
        out["gates"] = {k: v.to_dict() for k, v in self.gates.items()}
        if self.srm_last is not None:
            srm = GateState(loglik=self.srm_loglik).to_dict()
            srm.pop("fingerprint")
            srm["last"] = list(self.srm_last)
            srm["tripped"] = self.srm_tripped
            if math.isfinite(self.srm_log_e):
                srm["logE"] = self.srm_log_e
            out["srm"] = srm
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | GatingState | None) -> GatingState:
        if isinstance(d, GatingState):
            return d
        if not d:
            return cls()
        if int(d.get("version", STATE_VERSION)) != STATE_VERSION:
            raise ValueError(f"unsupported gating state version {d.get('version')}")
        st = cls(
            looks=int(d.get("looks", 0)),
            last_counts=Counts.from_dict(d.get("lastCounts")),
            last_timestamp=d.get("lastTimestamp"),
            gates={k: GateState.from_dict(v) for k, v in (d.get("gates") or {}).items()},
        )
        srm = d.get("srm")
        if srm:
            st.srm_loglik = GateState.from_dict(srm).loglik
            last = srm.get("last") or None
            st.srm_last = (float(last[0]), float(last[1])) if last else None
            st.srm_tripped = bool(srm.get("tripped", False))
            st.srm_log_e = float(srm.get("logE", -math.inf))
        return st


@dataclass
class Decision:
    """The outcome of one evaluation. ``state`` must be persisted for the next one."""

    action: Action
    reason: str
    reasons: list[str]
    gates: list[GateReport]
    state: GatingState
    timed_out: bool = False
    hold: bool = False
    srm_alarm: bool = False
    exposure: dict[str, Any] = field(default_factory=dict)

    @property
    def status_decision(self) -> str:
        """The CRD's ``status.decision`` word: Promote, RollBack, Hold or Continue."""
        if self.action is Action.PROMOTE:
            return "Promote"
        if self.action is Action.ROLLBACK:
            return "RollBack"
        return "Hold" if self.hold else "Continue"

    def to_status(self) -> dict[str, Any]:
        """``decision``, ``message`` and ``gates`` for the ChampionChallenger status."""
        return {
            "decision": self.status_decision,
            "message": self.reason[:4096],
            "gates": [g.to_status() for g in self.gates],
        }

    def to_dict(self) -> dict[str, Any]:
        """Full JSON-serialisable dump (camelCase), including the state to persist."""
        return {
            "action": self.action.value,
            "decision": self.status_decision,
            "reason": self.reason,
            "reasons": list(self.reasons),
            "timedOut": self.timed_out,
            "hold": self.hold,
            "srmAlarm": self.srm_alarm,
            "exposure": self.exposure,
            "gates": [g.to_dict() for g in self.gates],
            "state": self.state.to_dict(),
        }


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "unknown"
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _srm_update(state: GatingState, counts: Counts, policy: DecisionPolicy, update: bool) -> str:
    """Binomial e-process on the realised split vs the configured weight (two-sided).

    Only intervals that carry ``challenger_weight`` (one split in force over all of it, every
    pod counted) add evidence; the others still move the baseline, so no interval's requests
    are ever judged against another interval's split."""
    n_a, n_b = counts.champion.requests, counts.challenger.requests
    w = counts.challenger_weight
    if update:
        la, lb = state.srm_last or (0.0, 0.0)
        da, db = increment(n_a, la), increment(n_b, lb)
        state.srm_last = (n_a, n_b)
        if w is not None and 0 < w < 1:
            # "Events" are requests, "exposure" the configured weights: θ = 0 when routing is
            # right.
            if state.srm_loglik is None:
                state.srm_loglik = np.zeros(rateratio.GRID_SIZE)
            state.srm_loglik = state.srm_loglik + rateratio.loglik_increment(1 - w, w, da, db)
    if state.srm_loglik is None:
        return ""
    j0 = rateratio.GRID_HALF_WIDTH
    up = rateratio.log_e_value(state.srm_loglik, j0, upper=True)
    down = rateratio.log_e_value(state.srm_loglik, j0, upper=False)
    log_e = float(np.logaddexp(up, down) - math.log(2.0))  # average of two e-values
    state.srm_log_e = max(state.srm_log_e, log_e)
    if state.srm_log_e >= math.log(1.0 / policy.srm_alpha):
        state.srm_tripped = True
    if state.srm_tripped:
        share = n_b / (n_a + n_b) if n_a + n_b else float("nan")
        shown = f"configured {w:.2%}" if w is not None else "not the configured split"
        return (
            f"sample ratio mismatch: the challenger answered {share:.2%} of requests, "
            f"{shown} (e-value ≥ {1 / policy.srm_alpha:g}); routing or metrics look "
            f"broken — paused until a person checks"
        )
    return ""


def evaluate(
    gates: Sequence[Mapping[str, Any] | GateConfig],
    counts: Counts | Mapping[str, Any] | None,
    elapsed: float | timedelta | str,
    state: GatingState | Mapping[str, Any] | None = None,
    policy: DecisionPolicy | Mapping[str, Any] | None = None,
) -> Decision:
    """Evaluate all gates on the cumulative ``counts`` and decide PROMOTE / ROLLBACK / WAIT.

    ``elapsed`` is the time since the challenge began (seconds, timedelta or "1h30m"). ``state``
    is the previous ``Decision.state`` (or its ``to_dict()``), None on the first call. Never
    raises on missing, partial, zero or stale counts: those give WAIT. Raises ``ValueError``
    only for an invalid configuration (unknown gate type, duplicate names, bad alpha...).
    """
    cfgs = gates_from(gates)
    if not cfgs:
        raise ValueError("no gates: a challenger needs at least one gate to be judged")
    pol = DecisionPolicy.from_dict(policy)
    cnt = Counts.from_dict(counts)
    secs = parse_duration(elapsed) or 0.0
    state_note = ""
    try:
        st = GatingState.from_dict(state)
    except (ValueError, TypeError, KeyError, IndexError, binascii.Error) as exc:
        st = GatingState()
        state_note = f"stored gating state unreadable ({exc}); evidence restarted from the counts"

    stale_reason = ""
    if cnt is None:
        stale_reason = "no data: the metrics query returned nothing"
    elif (
        st.last_timestamp is not None
        and cnt.timestamp is not None
        and (cnt.timestamp <= st.last_timestamp)
    ):
        stale_reason = "stale data: no scrape newer than the last evaluation"
    elif cnt.same_data_as(st.last_counts):
        stale_reason = "stale data: no new samples since the last evaluation"
    elif (
        cnt.challenger.requests <= 0
        and cnt.champion.requests <= 0
        and (cnt.paired is None or cnt.paired.total <= 0)
    ):
        stale_reason = "no data: neither model has answered a request yet"
    update = not stale_reason
    data = cnt if update else st.last_counts

    statistical = [g for g in cfgs if not is_threshold_gate(g, data)]
    k = max(len(statistical), 1)
    reports: list[GateReport] = []
    for g in cfgs:
        fp = g.fingerprint()
        gs = st.gates.get(g.name)
        if gs is None or gs.fingerprint != fp:
            gs = GateState(fingerprint=fp)
            if st.last_counts is not None:
                # A gate added or changed mid-challenge: its evidence starts from the counts
                # already consumed (its nulls were not chosen before those data).
                gs.last = consumed_inputs(g, st.last_counts)
            st.gates[g.name] = gs
        look = Look(
            alpha_promote=pol.alpha,
            alpha_rollback=pol.effective_rollback_alpha / k,
            elapsed=secs,
            update=update,
        )
        if data is None:
            reports.append(GateReport(g.name, g.type, NODATA, message=stale_reason))
            continue
        rep = evaluate_gate(g, data, gs, look)
        if not update:
            rep.verdict = NODATA
            rep.message = f"{stale_reason}; last values shown. {rep.message}"
        reports.append(rep)
    for name in list(st.gates):
        if name not in {g.name for g in cfgs}:
            del st.gates[name]

    exposure = _exposure(data, secs, pol)
    timed_out = pol.max_duration is not None and secs >= pol.max_duration
    if update:
        assert cnt is not None
        st.looks += 1
        st.last_counts = cnt
        if cnt.timestamp is not None:
            st.last_timestamp = cnt.timestamp

    def decision(action: Action, reason: str, reasons: list[str], **kw: Any) -> Decision:
        if state_note:
            reasons = [*reasons, state_note]
        return Decision(action, reason, reasons, reports, st, exposure=exposure, **kw)

    if not update:
        why = stale_reason
        if timed_out:
            why += f"; maxDuration passed — onTimeout ({pol.on_timeout}) applies when data returns"
        return decision(Action.WAIT, why, [why], timed_out=timed_out)

    assert data is not None
    failed = [r for r in reports if r.verdict == FAIL]
    if failed:
        reasons = [f"{r.name} ({r.type}) fails: {r.message}" for r in failed]
        return decision(Action.ROLLBACK, reasons[0], reasons, timed_out=timed_out)

    srm = _srm_update(st, data, pol, update)
    if srm:
        if timed_out and pol.on_timeout == "rollback":  # keeping the champion is always safe
            head = f"maxDuration ({_fmt_duration(pol.max_duration)}) reached: rolling back"
            return decision(Action.ROLLBACK, head, [head, srm], srm_alarm=True, timed_out=True)
        return decision(Action.WAIT, srm, [srm], srm_alarm=True, timed_out=timed_out)

    passed = all(r.verdict == PASS for r in reports)
    if passed and exposure["met"]:
        reasons = [f"{r.name} ({r.type}) passes: {r.message}" for r in reports]
        head = f"all {len(reports)} gates pass at alpha={pol.alpha:g} and exposure is met"
        return decision(Action.PROMOTE, head, [head, *reasons])

    reasons = _wait_reasons(cfgs, reports, data, secs, pol)
    if passed:
        reasons.insert(0, f"all gates pass; waiting for minimum exposure: {exposure['text']}")
    if timed_out:
        head = (
            f"maxDuration ({_fmt_duration(pol.max_duration)}) reached without a decision: "
            f"{'rolling back (keep the champion)' if pol.on_timeout == 'rollback' else 'hold'}"
        )
        if pol.on_timeout == "rollback":
            return decision(Action.ROLLBACK, head, [head, *reasons], timed_out=True)
        return decision(Action.WAIT, head, [head, *reasons], timed_out=True, hold=True)
    return decision(Action.WAIT, reasons[0], reasons)


def _exposure(data: Counts | None, secs: float, pol: DecisionPolicy) -> dict[str, Any]:
    if data is None:
        return {"met": False, "text": "no data"}
    na = max(data.champion.requests, data.champion.latency_total())
    nb = max(data.challenger.requests, data.challenger.latency_total())
    if data.paired is not None:
        na, nb = max(na, data.paired.total), max(nb, data.paired.total)
    met = min(na, nb) >= pol.min_samples and secs >= pol.min_duration
    text = f"{min(na, nb):g} of {pol.min_samples} requests per arm"
    if pol.min_duration:
        text += f", {_fmt_duration(secs)} of {_fmt_duration(pol.min_duration)}"
    return {
        "met": bool(met),
        "champion": na,
        "challenger": nb,
        "minSamples": pol.min_samples,
        "elapsedSeconds": secs,
        "minDurationSeconds": pol.min_duration,
        "text": text,
    }


def _wait_reasons(
    cfgs: Sequence[GateConfig],
    reports: list[GateReport],
    data: Counts,
    secs: float,
    pol: DecisionPolicy,
) -> list[str]:
    """One honest line per undecided gate, with the data still needed at the current rate."""
    out: list[str] = []
    k = max(sum(1 for g in cfgs if not is_threshold_gate(g, data)), 1)
    for g, r in zip(cfgs, reports, strict=True):
        if r.verdict == PASS:
            continue
        if r.verdict == NODATA:
            out.append(f"{g.name}: no data ({r.message})")
            continue
        traffic = traffic_from_counts(data, secs, g)
        line = f"{g.name}: undecided"
        if traffic is not None and r.verdict == PENDING and not is_threshold_gate(g, data):
            plan = plan_gate(
                g,
                traffic,
                alpha=pol.alpha,
                rollback_alpha=pol.effective_rollback_alpha / k,
            )
            r.plan = plan.to_dict()
            have = r.samples_challenger
            if plan.samples is not None and have < plan.samples:
                rate = plan.samples / plan.seconds if plan.seconds else None
                more = (plan.samples - have) / rate if rate else None
                line = (
                    f"{g.name}: not enough data: {have:,.0f} of ≥ {math.ceil(plan.samples):,} "
                    f"challenger {plan.unit} needed at the current rate "
                    f"(≈ {_fmt_duration(more)} more, if the models are equal)"
                )
            elif plan.samples is None:
                line = f"{g.name}: undecided; {plan.note or 'no decision is likely'}"
            else:
                line = f"{g.name}: undecided so far (the estimate sits near the margin)"
        out.append(f"{line} — {r.message}" if r.message else line)
    return out or ["waiting"]
