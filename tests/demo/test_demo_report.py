"""The timeline round-trips, the report renders both outcomes, the progress line copes."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest

from modelops_demo import report as report_module
from modelops_demo.progress import progress_line
from modelops_demo.report import summarize, write_report
from modelops_demo.timeline import Timeline


def gate(name: str, gate_type: str, verdict: str, estimate: float | None,
         lower: float | None, upper: float | None, n: int, margin: float = 0.01) -> dict:
    return {"name": name, "type": gate_type, "verdict": verdict, "estimate": estimate,
            "lower": lower, "upper": upper, "margin": margin,
            "samples": {"champion": 3 * n, "challenger": n}}


def challenge(timeline: Timeline, name: str, start: float, promote: bool) -> float:
    """Append a plausible challenge: 30 s of canary steps, then the outcome."""
    ok = timeline.samples[-1]["requests"]["ok"] if timeline.samples else 0
    timeline.add_event({"t": start, "type": "Normal", "reason": "ChallengeStarted",
                        "message": f"challenger {name}", "challenge": name})
    sign = 1 if promote else -1
    t = start
    for step in range(16):
        t = start + 2.0 * step + 0.5
        ok += 60
        n = 20 * step
        decided = step >= 12
        traffic = [5, 25, 50][min(step // 4, 2)]
        if step == 4 or step == 8:
            timeline.add_event({"t": t - 0.2, "reason": "TrafficShifted",
                                "message": f"challenger traffic {traffic}%"})
        gates: list[dict[str, Any]] = [
            gate("accuracy", "accuracy", ("Pass" if promote else "Fail") if decided else
                 "Pending", None if step < 2 else sign * 0.15,
                 None if step < 3 else sign * 0.15 - 1.0 / step,
                 None if step < 3 else sign * 0.15 + 1.0 / step, n),
            gate("errors", "errorRate", "Pending", None if step < 5 else 1.0,
                 None if step < 5 else 0.2, None if step < 5 else 4.0, n, margin=0.2),
            gate("custom", "prometheus", "NoData", None, None, None, 0),
        ]
        phase = "Progressing"
        if decided:
            phase = "Promoted" if promote else "RolledBack"
            traffic = 0 if not promote else 100
        timeline.add_sample({
            "t": t, "challenge": name, "phase": phase, "step": min(step // 4, 2),
            "trafficPercent": traffic, "decision": "Continue", "message": "",
            "gates": gates, "requests": {"ok": ok, "failed": 0},
            "feedback": {"sent": ok - 40, "failed": 0,
                         "unmatched": 0 if promote else 2 * step}})
    reason = "GatesPassed" if promote else "GatesFailed"
    timeline.add_event({"t": start + 23.5, "type": "Normal" if promote else "Warning",
                        "reason": reason, "message": "gates decided"})
    timeline.add_event({"t": start + 24.0, "reason": "Promoted" if promote else "RolledBack",
                        "message": "done"})
    return t


@pytest.fixture
def timeline() -> Timeline:
    timeline = Timeline(metadata={
        "models": [{"name": "champion", "version": "1.0.0", "accuracy": 0.74,
                    "digest": "sha256:" + "a" * 64}],
        "expected": {"better": "Promoted", "worse": "RolledBack"}})
    end = challenge(timeline, "better", 0.0, promote=True)
    challenge(timeline, "worse", end + 5.0, promote=False)
    return timeline


def test_timeline_round_trips_and_counts_repeated_events_once(timeline: Timeline):
    again = Timeline.from_json(timeline.to_json())
    assert again.to_json() == timeline.to_json()
    assert again.challenges() == ["better", "worse"]
    event = dict(timeline.events[0])
    assert not timeline.add_event(event)  # listed again at the next poll
    # Events without a challenge belong to the challenge whose samples surround them.
    assert [e["reason"] for e in timeline.events_for("worse")] == [
        "ChallengeStarted", "TrafficShifted", "TrafficShifted", "GatesFailed", "RolledBack"]
    with pytest.raises(ValueError):
        timeline.add_sample({"challenge": "better"})
    with pytest.raises(ValueError):
        Timeline.from_json(json.dumps({"samples": []}))


def test_summary_names_outcomes_and_times(timeline: Timeline):
    better, worse = summarize(timeline, "better"), summarize(timeline, "worse")
    assert (better.outcome, worse.outcome) == ("Promoted", "RolledBack")
    assert better.decided_after == pytest.approx(24.0)
    assert worse.gates_decided_after == pytest.approx(23.5)
    assert better.requests_ok == 15 * 60 and better.requests_failed == 0
    assert (better.feedback_failed, better.feedback_unmatched) == (0, 0)
    assert worse.feedback_unmatched == 30
    assert [g["verdict"] for g in worse.final_gates] == ["Fail", "Pending", "NoData"]


def test_report_is_self_contained_with_plots_and_summary(timeline: Timeline, tmp_path: Path):
    index = write_report(timeline, tmp_path / "report")
    assert index == tmp_path / "report" / "index.html"
    assert Timeline.load(tmp_path / "report" / "timeline.json").to_json() == timeline.to_json()
    page = index.read_text()
    images = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    assert len(images) == 2
    assert all(base64.b64decode(image).startswith(b"\x89PNG") for image in images)
    assert 'id="summary"' in page and "Promoted (as expected)" in page
    assert "RolledBack (as expected)" in page and "24 s" in page
    assert "<script" not in page  # nothing to fetch or run
    assert "<th>labels failed</th><th>labels unmatched</th>" in page
    # The worse challenge's 30 unmatched labels are marked, in its row and for the whole demo.
    assert page.count("<td class='bad'>30</td>") == 2


def test_the_previous_endings_status_is_not_this_challenges_evidence(timeline: Timeline):
    """Right after the patch the status still shows the last challenge's ending."""
    stale = dict(timeline.samples_for("better")[-1])
    ended = stale["t"]
    stale.update({"t": ended + 1.0, "challenge": "next", "decision": "Promote"})
    assert (stale["phase"], stale["gates"][0]["verdict"]) == ("Promoted", "Pass")
    timeline.add_sample(stale)
    timeline.add_event({"t": ended + 1.5, "reason": "ChallengeStarted", "message": "",
                        "challenge": "next"})
    for step in range(3):
        timeline.add_sample({**stale, "t": ended + 2.0 + step, "phase": "Progressing",
                             "decision": "Continue", "gates": []})
    summary = summarize(timeline, "next")
    assert summary.gates_decided_after is None and summary.decided_after is None
    assert summary.outcome == "Progressing" and summary.final_gates == []


def test_report_shows_how_long_the_setup_took(timeline: Timeline, tmp_path: Path):
    timeline.metadata["setup"] = [["control plane and real node", 95.4],
                                  ["operator installed by Helm", 41.0]]
    page = write_report(timeline, tmp_path).read_text()
    assert "<td>control plane and real node</td><td>95 s</td>" in page
    assert "<td>operator installed by Helm</td><td>41 s</td>" in page


def test_report_of_an_undecided_challenge_without_data(tmp_path: Path):
    timeline = Timeline()
    timeline.add_sample({"t": 1.0, "challenge": "better", "phase": "Progressing", "step": 0,
                         "trafficPercent": None, "gates": [], "requests": {}})
    page = write_report(timeline, tmp_path).read_text()
    assert "undecided" in page and page.count("data:image/png") == 1


def test_progress_line_formats_missing_values():
    line = progress_line({"t": 3.25, "challenge": "better", "phase": "Progressing", "step": 1,
                          "trafficPercent": 25, "decision": "Continue",
                          "gates": [gate("accuracy", "accuracy", "Pending", None, None, None, 0),
                                    gate("errors", "errorRate", "Pass", 0.9, 0.5, 1.1, 40)],
                          "requests": {"ok": 1234, "failed": 2},
                          "feedback": {"sent": 1000, "failed": 0, "unmatched": 7}})
    assert "\n" not in line
    assert "Progressing" in line and "step 1" in line and " 25%" in line
    assert "accuracy Pending - [-, -]" in line
    assert "errors Pass 0.9 [0.5, 1.1] n=120/40" in line
    assert "requests 1234 ok 2 failed" in line
    assert "labels 1000 ok 0 failed 7 unmatched" in line
    assert "traffic   -%" in progress_line({"challenge": "x"})
    assert "+0.120 [+0.050, +0.200]" in progress_line(
        {"t": 1, "gates": [gate("accuracy", "accuracy", "Pending", 0.12, 0.05, 0.2, 9)]})


def test_the_live_model_section_plots_evidence_and_the_clients_accuracy(tmp_path: Path):
    """The drift act: samples carry the monitors' state, the findings are listed, and the
    clients' accuracy per version comes from the cumulative label counts."""
    findings = {"DataDrift": 12.0, "AccuracyDegraded": 30.0, "RetrainingTriggered": None}
    timeline = Timeline(metadata={"expected": {"better": "Promoted"}, "driftAt": 10.0,
                                  "liveFindings": findings})
    labelled = correct = 0
    for second in range(60):
        labelled += 30
        correct += 28 if second < 10 else 21  # 93 % before the drift, 70 % after
        drifted = second >= 22
        timeline.add_sample({
            "t": float(second), "challenge": "drift", "phase": "Promoted",
            "requests": {"ok": 30 * second, "failed": 0},
            "feedback": {"sent": labelled, "labelledByVersion": {"1.1.0": labelled},
                         "correctByVersion": {"1.1.0": correct}},
            "live": {"drift": {"state": "Drifted" if drifted else "Watching",
                               "evidence": 1.0 if drifted else 0.1},
                     "accuracy": {"evidence": min(1.0, second / 40)}}})
    timeline.add_event({"t": 22.0, "reason": "DataDrift", "type": "Warning",
                        "message": "inputs drifted", "challenge": "drift"})
    accuracy = report_module.client_accuracy(timeline.samples)
    first, last = accuracy["1.1.0"][0], accuracy["1.1.0"][-1]
    assert first[0] == 15.0 and 0.7 < first[1] < 0.93
    assert last[1] == pytest.approx(0.7)
    page = write_report(timeline, tmp_path).read_text()
    assert "The live model: drift, accuracy decay, retraining" in page
    assert re.search(r"<td>DataDrift</td><td class='good'>12 s</td>", page)
    assert re.search(r"<td>RetrainingTriggered</td><td class='bad'>not seen</td>", page)
    assert "Challenge: drift" not in page  # no challenge section for the drift act
    assert report_module.plot_live_model(Timeline()) is None
