# ruff: noqa: RUF003  (mathematical notation: α, θ, τ, Δ, ×, − are intended)
"""What a gate carries between evaluations (:class:`GateState`) and what it reports
(:class:`GateReport`), plus the sticky-verdict rule shared by the statistical gates."""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PASS, FAIL, PENDING, NODATA = "Pass", "Fail", "Pending", "NoData"


def _enc(a: np.ndarray) -> str:
    return base64.b64encode(np.asarray(a, dtype="<f8").tobytes()).decode("ascii")


def _dec(s: str, size: int | None = None) -> np.ndarray:
    """Inverse of :func:`_enc`; ValueError unless it holds ``size`` finite values (default: a
    full rate-ratio grid vector)."""
    from .rateratio import GRID_SIZE

    size = GRID_SIZE if size is None else size
    raw = base64.b64decode(s, validate=True)
    if len(raw) != 8 * size:
        raise ValueError(f"stored vector has {len(raw) // 8} values, not {size}")
    out = np.frombuffer(raw, dtype="<f8").copy()
    if not np.all(np.isfinite(out)):
        raise ValueError("stored log-likelihood is not finite")
    return out


def json_float(x: float) -> float | None:
    """JSON-safe float (None for ±inf/nan)."""
    return float(x) if x is not None and math.isfinite(x) else None


@dataclass
class GateState:
    """What one gate must carry from one evaluation to the next (persist it in status).

    * ``loglik`` (rate gates only): the conditional-binomial log-likelihood on the ratio grid,
      the sum of per-look increments. It cannot be rebuilt from cumulative counts when the split
      changes between looks, so it must be persisted; ``last`` holds the cumulative
      (requests, events) per arm it has consumed, to form the next increment.
    * ``log_e_promote`` / ``log_e_rollback``: running maxima of the two e-processes.
    * ``lower`` / ``upper``: running intersection of the confidence sequence (display units).
    * ``passed_at`` / ``failed_at``: elapsed seconds when the verdict was first reached.
    * ``tau``: the normal-mixture scale fixed at the first look (normal-mixture gates).
    * ``failed_checks``: threshold gates only, Flagger-style count of out-of-range looks.
    * ``wealth``: the betting e-processes of :mod:`.betting` (the absolute route of rate gates,
      accuracy), one flat vector; ``last`` then holds the cumulative counts it has consumed.
    * ``strata`` (regression loss): the interval-stratified sums of :func:`.gates._stratify`.
    * ``abs_passed`` / ``abs_failed``: the absolute route once showed the difference below / above
      ``absoluteMargin`` (sticky, like the e-processes); ``diff_lower`` / ``diff_upper``: running
      intersection of the difference's confidence sequence, for display.
    """

    fingerprint: str = ""
    loglik: np.ndarray | None = None
    last: tuple[float, ...] | None = None
    log_e_promote: float = -math.inf
    log_e_rollback: float = -math.inf
    lower: float = -math.inf
    upper: float = math.inf
    passed_at: float | None = None
    failed_at: float | None = None
    tau: float | None = None
    failed_checks: int = 0
    wealth: np.ndarray | None = None
    strata: tuple[float, ...] | None = None
    abs_passed: bool = False
    abs_failed: bool = False
    diff_lower: float = -math.inf
    diff_upper: float = math.inf

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"fingerprint": self.fingerprint}
        if self.loglik is not None:
            out["loglik"] = _enc(self.loglik)
        if self.last is not None:
            out["last"] = list(self.last)
        for key, v in (
            ("logEPromote", self.log_e_promote),
            ("logERollback", self.log_e_rollback),
            ("lower", self.lower),
            ("upper", self.upper),
            ("diffLower", self.diff_lower),
            ("diffUpper", self.diff_upper),
        ):
            if math.isfinite(v):
                out[key] = v
        for key, v2 in (("passedAt", self.passed_at), ("failedAt", self.failed_at)):
            if v2 is not None:
                out[key] = v2
        if self.tau is not None:
            out["tau"] = self.tau
        if self.failed_checks:
            out["failedChecks"] = self.failed_checks
        if self.wealth is not None:
            out["wealth"] = _enc(self.wealth)
        if self.strata is not None:
            out["strata"] = list(self.strata)
        if self.abs_passed:
            out["absPassed"] = True
        if self.abs_failed:
            out["absFailed"] = True
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GateState:
        last = d.get("last")
        wealth = d.get("wealth")
        strata = d.get("strata")
        return cls(
            fingerprint=str(d.get("fingerprint", "")),
            loglik=_dec(d["loglik"]) if d.get("loglik") else None,
            last=tuple(float(x) for x in last) if last else None,
            log_e_promote=float(d.get("logEPromote", -math.inf)),
            log_e_rollback=float(d.get("logERollback", -math.inf)),
            lower=float(d.get("lower", -math.inf)),
            upper=float(d.get("upper", math.inf)),
            passed_at=d.get("passedAt"),
            failed_at=d.get("failedAt"),
            tau=d.get("tau"),
            failed_checks=int(d.get("failedChecks", 0)),
            wealth=_dec(wealth, len(base64.b64decode(wealth)) // 8) if wealth else None,
            strata=tuple(float(x) for x in strata) if strata else None,
            abs_passed=bool(d.get("absPassed", False)),
            abs_failed=bool(d.get("absFailed", False)),
            diff_lower=float(d.get("diffLower", -math.inf)),
            diff_upper=float(d.get("diffUpper", math.inf)),
        )


@dataclass
class GateReport:
    """One gate's result, ready for ``status.gates[]`` (:meth:`to_status`) or a full dump."""

    name: str
    type: str
    verdict: str
    estimate: float | None = None
    lower: float | None = None
    upper: float | None = None
    unit: str = ""
    samples_champion: float = 0.0
    samples_challenger: float = 0.0
    message: str = ""
    promote_if: str = ""  # the condition in words, e.g. "upper < 1.2"
    rollback_if: str = ""
    statistic: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    plan: dict[str, Any] | None = None

    def to_status(self) -> dict[str, Any]:
        """Exactly the keys of the CRD's ``status.gates[]`` entries."""
        return {
            "name": self.name,
            "type": self.type,
            "verdict": self.verdict,
            "estimate": json_float(self.estimate) if self.estimate is not None else None,
            "lower": json_float(self.lower) if self.lower is not None else None,
            "upper": json_float(self.upper) if self.upper is not None else None,
            "samples": {
                "champion": int(self.samples_champion),
                "challenger": int(self.samples_challenger),
            },
            "message": self.message[:4096],
        }

    def to_dict(self) -> dict[str, Any]:
        out = self.to_status()
        out.update(
            unit=self.unit,
            promoteIf=self.promote_if,
            rollbackIf=self.rollback_if,
            statistic=self.statistic,
            details=self.details,
        )
        if self.plan is not None:
            out["plan"] = self.plan
        return out


@dataclass(frozen=True)
class Look:
    """Context of one evaluation for one gate."""

    alpha_promote: float
    alpha_rollback: float
    elapsed: float
    update: bool  # False when the data are stale: report from state, accumulate nothing


def _p_value(log_e: float) -> float:
    """Always-valid p-value min(1, 1/sup E) from the running maximum of log E."""
    return 1.0 if not log_e > 0 else math.exp(-log_e)


def e_statistics(state: GateState, look: Look) -> dict[str, Any]:
    def cap(le: float) -> float | None:
        return None if not math.isfinite(le) else float(min(math.exp(min(le, 700.0)), 1e12))

    return {
        "method": "",
        "eValuePromote": cap(state.log_e_promote),
        "eValueRollback": cap(state.log_e_rollback),
        "pValuePromote": _p_value(state.log_e_promote),
        "pValueRollback": _p_value(state.log_e_rollback),
        "thresholdPromote": 1.0 / look.alpha_promote,
        "thresholdRollback": 1.0 / look.alpha_rollback,
    }


def sticky_verdict(state: GateState, look: Look) -> str:
    if state.log_e_rollback >= math.log(1.0 / look.alpha_rollback):
        if state.failed_at is None:
            state.failed_at = look.elapsed
        return FAIL
    if state.log_e_promote >= math.log(1.0 / look.alpha_promote):
        if state.passed_at is None:
            state.passed_at = look.elapsed
        return PASS
    return PENDING


def intersect_interval(state: GateState, lower: float, upper: float) -> None:
    new_lo, new_hi = max(state.lower, lower), min(state.upper, upper)
    if new_lo <= new_hi:
        state.lower, state.upper = new_lo, new_hi
    else:  # the model is misspecified (e.g. a drifting ratio): fall back to the current CS
        state.lower, state.upper = lower, upper
