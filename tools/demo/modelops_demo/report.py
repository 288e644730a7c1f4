"""The demo's report: one self-contained HTML page (plots embedded) and the timeline as JSON.

Per challenge it shows what a reviewer needs to trust the decision: how much traffic the
challenger got, each gate's estimate inside its anytime-valid interval against the threshold
that decides, and that clients saw no failures while it happened.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .progress import DIFFERENCE_GATES, format_gate, progress_line
from .timeline import Timeline

__all__ = ["ChallengeSummary", "progress_line", "summarize", "write_report"]

TERMINAL_PHASES = ("Promoted", "RolledBack")
GATE_DECIDED_REASONS = ("GatesPassed", "GatesFailed")
EVENT_COLOURS = {"Promoted": "tab:green", "GatesPassed": "tab:green", "RolledBack": "tab:red",
                 "GatesFailed": "tab:red", "AwaitingApproval": "tab:orange"}
# Values that decide a gate, by type: (line where the models are equal, where the margin is).
RATIO_GATES = frozenset({"errorRate", "latency"})


@dataclass(frozen=True)
class ChallengeSummary:
    challenge: str
    outcome: str  # Promoted, RolledBack, or the last phase seen
    expected: str | None
    started_at: float
    gates_decided_after: float | None  # seconds from start to GatesPassed / GatesFailed
    decided_after: float | None  # seconds from start to Promoted / RolledBack
    requests_ok: int
    requests_failed: int
    feedback_sent: int  # scored by a model
    feedback_failed: int
    feedback_unmatched: int  # reached a pod without a record of the prediction
    final_gates: list[dict[str, Any]]


def _number(value: Any) -> float:
    """A float for plotting; missing values become NaN, which matplotlib leaves as gaps."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return math.nan


def _count(sample: dict[str, Any] | None, group: str, key: str) -> int:
    if not sample:
        return 0
    value = (sample.get(group) or {}).get(key, 0)
    return int(value) if isinstance(value, int | float) else 0


def live_samples(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The samples from the challenge's own status on: right after the patch the status still
    shows the previous challenge's ending (its phase, decision and gates) for a moment."""
    return list(itertools.dropwhile(lambda s: s.get("phase") in TERMINAL_PHASES, samples))


def summarize(timeline: Timeline, challenge: str) -> ChallengeSummary:
    samples = timeline.samples_for(challenge)
    live = live_samples(samples)
    events = timeline.events_for(challenge)
    started = [e["t"] for e in events if e["reason"] == "ChallengeStarted"]
    times = [s["t"] for s in samples] + [e["t"] for e in events]
    start = min(started) if started else min(times, default=0.0)
    terminal = [e for e in events if e["reason"] in TERMINAL_PHASES]
    if terminal:
        outcome, decided_at = terminal[0]["reason"], terminal[0]["t"]
    else:
        reached = [s for s in live if s.get("phase") in TERMINAL_PHASES]
        decided_at = reached[0]["t"] if reached else None
        outcome = (reached[0] if reached else live[-1] if live else {}).get("phase") or "-"
    gate_events = [e["t"] for e in events if e["reason"] in GATE_DECIDED_REASONS]
    gate_decisions = [s["t"] for s in live if s.get("decision") in ("Promote", "RollBack")]
    gates_decided = min(gate_events + gate_decisions, default=None)
    first, last = (samples[0], samples[-1]) if samples else (None, None)
    expected = (timeline.metadata.get("expected") or {}).get(challenge)
    return ChallengeSummary(
        challenge=challenge, outcome=outcome, expected=expected, started_at=start,
        gates_decided_after=None if gates_decided is None else gates_decided - start,
        decided_after=None if decided_at is None else decided_at - start,
        requests_ok=_count(last, "requests", "ok") - _count(first, "requests", "ok"),
        requests_failed=_count(last, "requests", "failed") - _count(first, "requests", "failed"),
        feedback_sent=_count(last, "feedback", "sent") - _count(first, "feedback", "sent"),
        feedback_failed=_count(last, "feedback", "failed") - _count(first, "feedback", "failed"),
        feedback_unmatched=(_count(last, "feedback", "unmatched")
                            - _count(first, "feedback", "unmatched")),
        final_gates=_final_gates(live),
    )


def _final_gates(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last reported state of every gate (a gate may drop out of a late sample)."""
    latest: dict[str, dict[str, Any]] = {}
    for sample in samples:
        for gate in sample.get("gates") or []:
            latest[str(gate.get("name"))] = gate
    return list(latest.values())


# ------------------------------------------------------------------------------ plots


def _gate_series(samples: list[dict[str, Any]]) -> dict[str, list[tuple[float, dict]]]:
    series: dict[str, list[tuple[float, dict]]] = {}
    for sample in samples:
        for gate in sample.get("gates") or []:
            series.setdefault(str(gate.get("name")), []).append((sample["t"], gate))
    return series


def _reference_lines(gate_type: str, margin: float | None) -> list[tuple[float, str]]:
    if gate_type in DIFFERENCE_GATES:
        lines = [(0.0, "equal")]
        if margin is not None:
            lines.append((-margin, f"-margin ({-margin:+g})"))
        return lines
    if gate_type in RATIO_GATES:
        lines = [(1.0, "equal (ratio 1)")]
        if margin is not None:
            lines.append((1.0 + margin, f"1 + margin ({1 + margin:g})"))
        return lines
    if gate_type == "predictionDrift" and margin is not None:
        return [(margin, f"margin ({margin:g})")]
    return []


def _plot_gate(axes: Any, name: str, points: list[tuple[float, dict]], start: float) -> None:
    gate_type = str(points[-1][1].get("type") or "")
    times = [t - start for t, _ in points]
    estimate = [_number(g.get("estimate")) for _, g in points]
    lower = [_number(g.get("lower")) for _, g in points]
    upper = [_number(g.get("upper")) for _, g in points]
    final = points[-1][1]
    axes.set_title(f"gate {name} ({gate_type}): {final.get('verdict') or 'Pending'}",
                   fontsize=9, loc="left")
    if all(math.isnan(v) for v in estimate + lower + upper):
        axes.text(0.5, 0.5, "no data yet", transform=axes.transAxes, ha="center",
                  va="center", color="grey")
        return
    axes.fill_between(times, lower, upper, color="tab:blue", alpha=0.2, step="post",
                      label="anytime-valid interval")
    axes.step(times, estimate, where="post", color="tab:blue", label="estimate")
    margins = [_number(g.get("margin")) for _, g in points]
    margin = None if math.isnan(margins[-1]) else margins[-1]
    for value, label in _reference_lines(gate_type, margin):
        axes.axhline(value, color="black" if "equal" in label else "tab:red",
                     linestyle="--", linewidth=0.8, label=label)
    positive = [v for v in lower + estimate + upper if not math.isnan(v)]
    if gate_type in RATIO_GATES and positive and min(positive) > 0:
        axes.set_yscale("log")  # a ratio of 0.5 is as far from 1 as a ratio of 2
    axes.legend(fontsize=7, loc="upper left")


def _rate(before: dict[str, Any], after: dict[str, Any], group: str, key: str) -> float:
    return (_count(after, group, key) - _count(before, group, key)) / (after["t"] - before["t"])


def _plot_requests(axes: Any, samples: list[dict[str, Any]], start: float) -> None:
    pairs = [(b, a) for b, a in itertools.pairwise(samples) if a["t"] > b["t"]]
    times = [after["t"] - start for _, after in pairs]

    def total(group: str, key: str) -> int:
        return _count(samples[-1], group, key) - _count(samples[0], group, key)

    axes.set_title(f"client requests: {total('requests', 'failed')} failed; labels: "
                   f"{total('feedback', 'failed')} failed, {total('feedback', 'unmatched')} "
                   "unmatched", fontsize=9, loc="left")
    if not times:
        axes.text(0.5, 0.5, "not enough samples", transform=axes.transAxes, ha="center")
        return
    for group, key, colour, label in (("requests", "ok", "tab:green", "requests ok / s"),
                                      ("requests", "failed", "tab:red", "requests failed / s"),
                                      ("feedback", "failed", "tab:brown", "labels failed / s"),
                                      ("feedback", "unmatched", "tab:orange",
                                       "labels unmatched / s")):
        axes.step(times, [_rate(b, a, group, key) for b, a in pairs], where="pre",
                  color=colour, label=label)
    axes.set_ylabel("per second")
    axes.set_ylim(bottom=0)
    # Between the request rate on top and the failure lines at zero.
    axes.legend(fontsize=7, loc="center left", ncols=2)


def _mark_changes(all_axes: list[Any], samples: list[dict[str, Any]],
                  events: list[dict[str, Any]], start: float) -> None:
    marks: list[tuple[float, str, str]] = []
    for event in events:
        marks.append((event["t"] - start, event["reason"],
                      EVENT_COLOURS.get(event["reason"], "grey")))
    previous = None
    for sample in samples:
        phase = sample.get("phase")
        if phase != previous and previous is not None:
            at = sample["t"] - start
            # The Event usually says the same thing; label the phase only when none does.
            if not any(abs(at - t) < 2.0 for t, _, _ in marks):
                marks.append((at, f"phase {phase}", "grey"))
        previous = phase
    for at, label, colour in marks:
        for axes in all_axes:
            axes.axvline(at, color=colour, linestyle=":", linewidth=1)
        all_axes[0].text(at, 1.02, label, transform=all_axes[0].get_xaxis_transform(),
                         rotation=60, fontsize=7, color=colour, ha="left", va="bottom")


def plot_challenge(timeline: Timeline, challenge: str) -> bytes:
    """A PNG: traffic, one panel per gate, and client requests, over the challenge's time."""
    from matplotlib.figure import Figure  # the Agg canvas, no pyplot global state

    samples = timeline.samples_for(challenge)
    events = timeline.events_for(challenge)
    start = summarize(timeline, challenge).started_at
    gates = _gate_series(live_samples(samples))
    rows = 2 + len(gates)
    figure = Figure(figsize=(10, 1.2 + 2.0 * rows), layout="constrained")
    all_axes = list(figure.subplots(rows, 1, sharex=True, squeeze=False)[:, 0])
    traffic = all_axes[0]
    traffic.step([s["t"] - start for s in samples],
                 [_number(s.get("trafficPercent")) for s in samples], where="post",
                 color="tab:purple")
    traffic.set_ylim(-5, 105)
    traffic.set_ylabel("challenger %")
    traffic.set_title(f"challenge '{challenge}': challenger traffic", fontsize=9, loc="left",
                      pad=60)
    for axes, (name, points) in zip(all_axes[1:-1], gates.items(), strict=True):
        _plot_gate(axes, name, points, start)
    if samples:
        _plot_requests(all_axes[-1], samples, start)
    all_axes[-1].set_xlabel("seconds since the challenge started")
    _mark_changes(all_axes, samples, events, start)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


# ------------------------------------------------------------------------------ the live model

LIVE_EVENT_COLOURS = {"DataDrift": "tab:orange", "AccuracyDegraded": "tab:red",
                      "RetrainingTriggered": "tab:purple", "Promoted": "tab:green"}
ACCURACY_WINDOW_SECONDS = 15.0


def client_accuracy(samples: list[dict[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    """Per answering version: the accuracy the clients' labels showed over successive
    windows of ACCURACY_WINDOW_SECONDS, as (window end, accuracy); from the cumulative
    correct and labelled counts in the samples."""
    series: dict[str, list[tuple[float, float]]] = {}
    start = samples[0] if samples else None
    for sample in samples[1:]:
        assert start is not None
        if sample["t"] - start["t"] < ACCURACY_WINDOW_SECONDS:
            continue
        before, after = start.get("feedback") or {}, sample.get("feedback") or {}
        for version, labelled in (after.get("labelledByVersion") or {}).items():
            count = labelled - (before.get("labelledByVersion") or {}).get(version, 0)
            correct = ((after.get("correctByVersion") or {}).get(version, 0)
                       - (before.get("correctByVersion") or {}).get(version, 0))
            if count >= 20:  # fewer labels say little
                series.setdefault(version, []).append((sample["t"], correct / count))
        start = sample
    return series


def _evidence(samples: list[dict[str, Any]], monitor: str) -> tuple[list[float], list[float]]:
    times, values = [], []
    for sample in samples:
        found = ((sample.get("live") or {}).get(monitor) or {})
        times.append(sample["t"])
        values.append(_number(found.get("evidence")))
    return times, values


def plot_live_model(timeline: Timeline) -> bytes | None:
    """A PNG of the whole demo: the monitors' evidence (an alarm at 1) and the accuracy the
    clients saw per version, with the drift, the findings and the promotions marked."""
    from matplotlib.figure import Figure

    samples = [s for s in timeline.samples if s.get("live")]
    if not samples:
        return None
    figure = Figure(figsize=(10, 7), layout="constrained")
    drift, accuracy, clients = figure.subplots(3, 1, sharex=True)
    for axes, monitor, colour in ((drift, "drift", "tab:orange"),
                                  (accuracy, "accuracy", "tab:red")):
        axes.step(*_evidence(samples, monitor), where="post", color=colour)
        axes.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
        axes.set_ylim(-0.05, 1.1)
        axes.set_ylabel(f"{monitor}\nevidence")
    drift.set_title("the champion's monitors (alarm at evidence 1, false alarms at most once "
                    "in alarmEvery) and the accuracy its clients saw", fontsize=9, loc="left",
                    pad=60)
    for version, points in sorted(client_accuracy(samples).items()):
        clients.plot([t for t, _ in points], [a for _, a in points], marker=".",
                     label=f"answered by {version}")
    for model in timeline.metadata.get("models") or []:
        clients.axhline(_number(model.get("accuracy")), linewidth=0.5, color="grey")
    clients.set_ylabel(f"accuracy, {ACCURACY_WINDOW_SECONDS:.0f} s windows")
    clients.set_xlabel("seconds since the demo started")
    clients.legend(fontsize=7, loc="lower left")
    marks = [(e["t"], e["reason"], LIVE_EVENT_COLOURS[e["reason"]]) for e in timeline.events
             if e["reason"] in LIVE_EVENT_COLOURS]
    if isinstance(timeline.metadata.get("driftAt"), int | float):
        marks.append((timeline.metadata["driftAt"], "inputs drift", "black"))
    for at, label, colour in _merged(sorted(marks)):
        for axes in (drift, accuracy, clients):
            axes.axvline(at, color=colour, linestyle=":", linewidth=1)
        drift.text(at, 1.02, label, transform=drift.get_xaxis_transform(), rotation=60,
                   fontsize=7, color=colour, ha="left", va="bottom")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


def _merged(marks: list[tuple[float, str, str]]) -> list[tuple[float, str, str]]:
    """Marks less than 3 s apart as one, their labels joined (they would overprint)."""
    merged: list[tuple[float, str, str]] = []
    for at, label, colour in marks:
        if merged and at - merged[-1][0] < 3.0:
            merged[-1] = (merged[-1][0], f"{merged[-1][1]}, {label}", merged[-1][2])
        else:
            merged.append((at, label, colour))
    return merged


def _live_section(timeline: Timeline) -> str:
    image = plot_live_model(timeline)
    if image is None:
        return ""
    findings = timeline.metadata.get("liveFindings") or {}
    rows = "".join(
        f"<tr><td>{html.escape(what)}</td><td class='{'bad' if at is None else 'good'}'>"
        f"{'not seen' if at is None else f'{at:.0f} s'}</td></tr>"
        for what, at in findings.items())
    table = (f"<table><tr><th>after the inputs drifted</th><th>seen after</th></tr>{rows}"
             "</table>") if rows else ""
    return ("<h2>The live model: drift, accuracy decay, retraining</h2>"
            f"{table}<img alt='live model' src='data:image/png;base64,"
            f"{base64.b64encode(image).decode()}'>")


# ------------------------------------------------------------------------------ HTML


def _seconds(value: float | None) -> str:
    return "undecided" if value is None else f"{value:.0f} s"


def _summary_rows(summaries: list[ChallengeSummary]) -> str:
    rows = []
    for s in summaries:
        verdict = ""
        if s.expected:
            verdict = " (as expected)" if s.outcome == s.expected else f" (expected {s.expected})"
        gates = "<br>".join(html.escape(format_gate(g)) for g in s.final_gates) or "-"
        rows.append(
            f"<tr><td>{html.escape(s.challenge)}</td>"
            f"<td class='{'good' if s.outcome == (s.expected or s.outcome) else 'bad'}'>"
            f"{html.escape(s.outcome + verdict)}</td>"
            f"<td>{_seconds(s.gates_decided_after)}</td><td>{_seconds(s.decided_after)}</td>"
            f"<td>{s.requests_ok + s.requests_failed}</td>"
            f"<td class='{'bad' if s.requests_failed else 'good'}'>{s.requests_failed}</td>"
            f"{_label_cells(s.feedback_sent, s.feedback_failed, s.feedback_unmatched)}"
            f"<td>{gates}</td></tr>")
    return "\n".join(rows)


def _label_cells(ok: int, failed: int, unmatched: int) -> str:
    """Labels ok, failed and unmatched: three cells, any failed or unmatched one marked."""
    return (f"<td>{ok}</td><td class='{'bad' if failed else 'good'}'>{failed}</td>"
            f"<td class='{'bad' if unmatched else 'good'}'>{unmatched}</td>")


def _setup_table(metadata: dict[str, Any]) -> str:
    """How long each part of the setup took (``metadata["setup"]``: [[what, seconds], ...])."""
    steps = metadata.get("setup") or []
    if not steps:
        return ""
    rows = "".join(f"<tr><td>{html.escape(str(what))}</td><td>{_number(seconds):.0f} s</td></tr>"
                   for what, seconds in steps)
    return f"<h2>Setup</h2><table><tr><th>step</th><th>took</th></tr>{rows}</table>"


def _models_table(metadata: dict[str, Any]) -> str:
    models = metadata.get("models") or []
    if not models:
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(str(m.get('name', '')))}</td>"
        f"<td>{html.escape(str(m.get('version', '')))}</td>"
        f"<td>{_number(m.get('accuracy')):.3f}</td>"
        f"<td><code>{html.escape(str(m.get('digest', ''))[:19])}…</code></td></tr>"
        for m in models)
    return ("<h2>Models</h2><table><tr><th>model</th><th>version</th>"
            f"<th>holdout accuracy</th><th>digest</th></tr>{rows}</table>")


def _events_table(events: list[dict[str, Any]], start: float) -> str:
    rows = "".join(
        f"<tr><td>{e['t'] - start:+.1f} s</td><td>{html.escape(str(e.get('type', '')))}</td>"
        f"<td>{html.escape(str(e['reason']))}</td>"
        f"<td>{html.escape(str(e.get('message', '')))}</td></tr>" for e in events)
    return ("<table><tr><th>t</th><th>type</th><th>reason</th><th>message</th></tr>"
            f"{rows}</table>") if events else "<p>No events recorded.</p>"


STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 1100px; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
td.good { color: #1a7f37; font-weight: bold; } td.bad { color: #cf222e; font-weight: bold; }
img { max-width: 100%; }
"""


def write_report(timeline: Timeline, directory: Path) -> Path:
    """Write ``index.html`` (plots embedded as base64 PNG) and ``timeline.json``; return the
    path of ``index.html``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "timeline.json").write_text(timeline.to_json())
    # Samples of the drift act belong to no challenge: the live-model section shows them.
    expected = timeline.metadata.get("expected") or {}
    challenges = [name for name in timeline.challenges() if not expected or name in expected]
    summaries = [summarize(timeline, name) for name in challenges]
    sections = []
    for summary in summaries:
        image = base64.b64encode(plot_challenge(timeline, summary.challenge)).decode()
        events = timeline.events_for(summary.challenge)
        sections.append(
            f"<h2>Challenge: {html.escape(summary.challenge)} → "
            f"{html.escape(summary.outcome)}</h2>"
            f"<img alt='{html.escape(summary.challenge)} timeline' "
            f"src='data:image/png;base64,{image}'>"
            f"<h3>Events</h3>{_events_table(events, summary.started_at)}")
    last = max(timeline.samples, key=lambda s: s["t"], default=None)
    total_failed = _count(last, "requests", "failed")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>modelops demo report</title>
<style>{STYLE}</style></head><body>
<h1>modelops demo: model changes go live only through evidence</h1>
<table id="summary"><tr><th>challenge</th><th>outcome</th><th>gates decided after</th>
<th>outcome after</th><th>requests</th><th>failed requests</th><th>labels ok</th>
<th>labels failed</th><th>labels unmatched</th><th>final gates (estimate [lower, upper])</th></tr>
{_summary_rows(summaries)}
<tr><td>whole demo</td><td></td><td></td><td></td>
<td>{_count(last, "requests", "ok") + total_failed}</td>
<td class='{'bad' if total_failed else 'good'}'>{total_failed}</td>
{_label_cells(_count(last, "feedback", "sent"), _count(last, "feedback", "failed"),
              _count(last, "feedback", "unmatched"))}<td></td></tr>
</table>
{_models_table(timeline.metadata)}
{_setup_table(timeline.metadata)}
{"".join(sections)}
{_live_section(timeline)}
</body></html>
"""
    index = directory / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
