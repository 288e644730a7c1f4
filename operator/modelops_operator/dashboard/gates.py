"""A gate's evidence as the dashboard draws it: the estimate and its anytime-valid interval on an
axis that also shows "no difference" and the line the interval must clear to pass.

What the numbers mean depends on the gate's type (gating/gates.py, gating/rategate.py):
accuracy reports the difference challenger minus champion (higher is better), errorRate and
latency the ratio challenger / champion (lower is better), predictionDrift a distance (lower is
better), prometheus the challenger's value against its thresholdRange. The positions are
fractions of the axis, so the page only scales them to its SVG's width.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..api.championchallenger import GATE_DEFAULTS

# Room left either side of the outermost value, as a share of the values' span.
AXIS_PADDING = 0.08


@dataclass(frozen=True)
class Line:
    value: float
    label: str
    kind: str  # "neutral" (no difference) or "margin" (what the interval must clear)


@dataclass(frozen=True)
class Reference:
    unit: str
    better: str  # "higher" or "lower": which way the challenger is better
    lines: tuple[Line, ...]


def finite(value: Any) -> float | None:
    """A float when `value` is a finite number; None for missing, infinite or not a number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _margin(gate: Mapping[str, Any]) -> float:
    margin = finite(gate.get("margin"))
    if margin is not None:
        return margin
    defaults = GATE_DEFAULTS.get(str(gate.get("type")))
    return defaults.margin if defaults else 0.0


def gate_reference(gate: Mapping[str, Any]) -> Reference:
    """The lines a gate of this spec (`spec.gates[]`) is judged against."""
    kind = gate.get("type")
    superiority = gate.get("test") == "superiority"
    margin = _margin(gate)
    if kind == "accuracy":
        bound = 0.0 if superiority else -margin
        return Reference("difference", "higher", (
            Line(0.0, "no difference", "neutral"),
            *([] if superiority else [Line(bound, f"margin {bound:+g}", "margin")]),
        ))  # fmt: skip
    if kind in ("errorRate", "latency"):
        bound = 1.0 if superiority else 1.0 + margin
        return Reference("ratio", "lower", (
            Line(1.0, "no difference", "neutral"),
            *([] if superiority else [Line(bound, f"margin x{bound:g}", "margin")]),
        ))  # fmt: skip
    if kind == "predictionDrift":
        return Reference("distance", "lower", (
            Line(0.0, "no difference", "neutral"), Line(margin, f"margin {margin:g}", "margin"),
        ))  # fmt: skip
    limits = gate.get("thresholdRange") or {}
    lines = tuple(
        Line(value, f"{end} {value:g}", "margin")
        for end in ("min", "max")
        if (value := finite(limits.get(end))) is not None
    )
    return Reference("value", "higher" if "min" in limits else "lower", lines)


def _position(value: float | None, low: float, span: float) -> float | None:
    return None if value is None else round((value - low) / span, 4)


def interval_bar(evidence: Mapping[str, Any], reference: Reference) -> dict[str, Any] | None:
    """Where the interval, the estimate and the reference lines sit on a shared axis, as
    fractions 0..1 of its width; None when there is nothing to draw yet. An interval with an
    open end (not bounded yet) runs to that edge of the axis, marked `open…`."""
    lower, upper = finite(evidence.get("lower")), finite(evidence.get("upper"))
    estimate = finite(evidence.get("estimate"))
    if lower is None and upper is None and estimate is None:
        return None
    values = [v for v in (lower, upper, estimate) if v is not None]
    values += [line.value for line in reference.lines]
    low, high = min(values), max(values)
    pad = (high - low) * AXIS_PADDING or max(abs(high) * 0.1, 0.01)
    low, high = low - pad, high + pad
    span = high - low
    return {
        "min": low,
        "max": high,
        "lower": 0.0 if lower is None else _position(lower, low, span),
        "upper": 1.0 if upper is None else _position(upper, low, span),
        "openLower": lower is None,
        "openUpper": upper is None,
        "estimate": _position(estimate, low, span),
        "lines": [
            {"at": _position(line.value, low, span), "value": line.value,
             "label": line.label, "kind": line.kind}
            for line in reference.lines
        ],
    }  # fmt: skip


def gate_view(evidence: Mapping[str, Any], spec: Mapping[str, Any] | None) -> dict[str, Any]:
    """One gate as the page shows it: a `status.gates[]` entry (or a history entry's evidence,
    whose name is under `gate` on a ModelDeployment) with the spec that explains its numbers."""
    spec = spec or {"type": evidence.get("type")}
    reference = gate_reference(spec)
    samples = evidence.get("samples") or {}
    return {
        "name": str(evidence.get("name") or evidence.get("gate") or ""),
        "type": str(evidence.get("type") or spec.get("type") or ""),
        "test": str(spec.get("test") or "nonInferiority"),
        "verdict": str(evidence.get("verdict") or "Pending"),
        "estimate": finite(evidence.get("estimate")),
        "lower": finite(evidence.get("lower")),
        "upper": finite(evidence.get("upper")),
        "unit": reference.unit,
        "better": reference.better,
        "samples": {
            "champion": int(samples.get("champion") or 0),
            "challenger": int(samples.get("challenger") or 0),
        },
        "message": str(evidence.get("message") or ""),
        "bar": interval_bar(evidence, reference),
    }
