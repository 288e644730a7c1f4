"""One terminal line per timeline sample, for the live output of ``make demo``.

Kept apart from the report so the live loop does not import matplotlib.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Gates whose estimate is a difference of shares (signed, in points); the rest are ratios,
# distances or raw values.
DIFFERENCE_GATES = frozenset({"accuracy"})


def format_number(value: Any, gate_type: str = "") -> str:
    """A compact number; "-" for a missing value (a gate with no data yet)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "-"
    if value != value:  # NaN
        return "-"
    if gate_type in DIFFERENCE_GATES:
        return f"{value:+.3f}"
    return f"{value:.3g}"


def format_gate(gate: Mapping[str, Any]) -> str:
    """``name verdict est [lo, hi] n=champion/challenger``."""
    gate_type = str(gate.get("type") or "")
    samples = gate.get("samples") or {}
    counts = ""
    if isinstance(samples, Mapping) and samples:
        counts = f" n={samples.get('champion', 0)}/{samples.get('challenger', 0)}"
    return (
        f"{gate.get('name', '?')} {gate.get('verdict') or 'Pending'} "
        f"{format_number(gate.get('estimate'), gate_type)} "
        f"[{format_number(gate.get('lower'), gate_type)}, "
        f"{format_number(gate.get('upper'), gate_type)}]{counts}"
    )


def progress_line(sample: Mapping[str, Any]) -> str:
    """Phase, step, traffic, every gate and the client's request counts on one line."""
    t = sample.get("t")
    clock = f"{t:6.1f}s" if isinstance(t, int | float) else "     ?s"
    traffic = sample.get("trafficPercent")
    traffic_text = f"{traffic:>3}%" if isinstance(traffic, int | float) else "  -%"
    step = sample.get("step")
    parts = [
        f"{clock} {sample.get('challenge') or '-'!s:<8} "
        f"{sample.get('phase') or '-'!s:<16} step {step if step is not None else '-'} "
        f"traffic {traffic_text}"
    ]
    decision = sample.get("decision")
    if decision:
        parts[0] += f" {decision}"
    gates = sample.get("gates") or []
    parts.extend(format_gate(gate) for gate in gates)
    if not gates:
        parts.append("no gate results yet")
    requests = sample.get("requests") or {}
    parts.append(f"requests {requests.get('ok', 0)} ok {requests.get('failed', 0)} failed")
    feedback = sample.get("feedback")
    if feedback:
        parts.append(f"labels {feedback.get('sent', 0)} ok {feedback.get('failed', 0)} failed "
                     f"{feedback.get('unmatched', 0)} unmatched")
    return " | ".join(parts)
