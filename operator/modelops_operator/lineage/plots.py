"""Evidence plots as self-contained SVG: one row per gate, its estimate and anytime-valid
interval against the gate's "no difference" (1 for the rate-ratio gates errorRate and latency,
0 for the difference gates), each row on its own scale since the gates measure different
things. An open end of an interval runs to the row's edge with an arrow. Hand-written SVG, so
the card needs no plotting library and stays one file."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

WIDTH, ROW, LEFT, RIGHT, TOP = 640, 44, 170, 60, 8
COLOURS = {"Pass": "#11692f", "Fail": "#a4262c"}
GREY = "#5c6670"
RATIO_GATES = ("errorRate", "latency")


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def no_difference(gate: Mapping[str, Any]) -> float | None:
    """Where challenger and champion are equal on this gate's scale (None: a plain value)."""
    if gate.get("type") in RATIO_GATES:
        return 1.0
    return None if gate.get("type") == "prometheus" else 0.0


def _scale(gate: Mapping[str, Any], reference: float | None) -> tuple[float, float]:
    values = [v for v in (_finite(gate.get(k)) for k in ("lower", "upper", "estimate"))
              if v is not None]  # fmt: skip
    if reference is not None:
        values.append(reference)
    if not values:
        return -1.0, 1.0
    low, high = min(values), max(values)
    pad = (high - low) * 0.15 or 0.5
    return low - pad, high + pad


def _row(gate: Mapping[str, Any], top: float) -> list[str]:
    reference = no_difference(gate)
    low, high = _scale(gate, reference)
    colour = COLOURS.get(str(gate.get("verdict")), GREY)

    def x(value: float) -> float:
        return LEFT + (value - low) / (high - low) * (WIDTH - LEFT - RIGHT)

    y = top + ROW / 2
    name = html.escape(f"{gate.get('name', '?')} ({gate.get('verdict', '-')})")
    parts = [f'<text x="8" y="{y + 4:.1f}" fill="{colour}">{name}</text>',
             f'<text x="{LEFT}" y="{top + ROW - 2:.1f}" fill="{GREY}">{low:.3g}</text>',
             f'<text x="{WIDTH - RIGHT}" y="{top + ROW - 2:.1f}" text-anchor="end" '
             f'fill="{GREY}">{high:.3g}</text>']  # fmt: skip
    if reference is not None:
        at = x(reference)
        dashed = f'stroke="{GREY}" stroke-dasharray="4 3"'
        parts.append(f'<line x1="{at:.1f}" y1="{top + 4:.1f}" x2="{at:.1f}" '
                     f'y2="{top + ROW - 12:.1f}" {dashed}/>')  # fmt: skip
    lower, upper = _finite(gate.get("lower")), _finite(gate.get("upper"))
    start = x(lower) if lower is not None else LEFT
    end = x(upper) if upper is not None else WIDTH - RIGHT
    parts.append(f'<line x1="{start:.1f}" y1="{y:.1f}" x2="{end:.1f}" y2="{y:.1f}" '
                 f'stroke="{colour}" stroke-width="3"/>')  # fmt: skip
    for edge, is_open, direction in ((start, lower is None, -1), (end, upper is None, 1)):
        if is_open:  # an arrow: the interval is open on this side
            tip = edge + 6 * direction
            parts.append(f'<path d="M{edge:.1f},{y - 5:.1f} L{tip:.1f},{y:.1f} '
                         f'L{edge:.1f},{y + 5:.1f}" fill="{colour}"/>')  # fmt: skip
        else:
            parts.append(f'<line x1="{edge:.1f}" y1="{y - 6:.1f}" x2="{edge:.1f}" '
                         f'y2="{y + 6:.1f}" stroke="{colour}" stroke-width="2"/>')  # fmt: skip
    estimate = _finite(gate.get("estimate"))
    if estimate is not None:
        parts.append(f'<circle cx="{x(estimate):.1f}" cy="{y:.1f}" r="5" fill="{colour}"/>')
    return parts


def evidence_svg(evidence: Sequence[Mapping[str, Any]]) -> str:
    """The SVG text (no XML declaration: it is inlined in HTML and written as a file)."""
    height = TOP + ROW * max(len(evidence), 1) + 8
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12" role="img">'
    ]
    if not evidence:
        parts.append(f'<text x="8" y="{TOP + 20}" fill="{GREY}">no gate evidence</text>')
    for index, gate in enumerate(evidence):
        parts += _row(gate, TOP + ROW * index)
    parts.append("</svg>")
    return "\n".join(parts)
