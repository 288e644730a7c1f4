"""`kubectl modelops status` and `report` render what a person needs from the status alone."""

from __future__ import annotations

from modelops_operator.kubectl_plugin import format_report, format_status

CC = {
    "metadata": {"name": "fraud-canary", "namespace": "risk"},
    "status": {
        "phase": "RolledBack",
        "champion": {"version": "1.1.0"},
        "decision": "RollBack",
        "message": "1.2.0 rolled back: gates failed",
        "gates": [
            {
                "name": "accuracy",
                "verdict": "Fail",
                "estimate": -0.335,
                "lower": -0.5,
                "upper": -0.17,
                "samples": {"champion": 453, "challenger": 207},
            }
        ],
        "history": [
            {
                "time": "2026-11-23T00:10:00Z",
                "action": "Promoted",
                "version": "1.1.0",
                "previous": "1.0.0",
                "reason": "gates passed",
                "evidence": [{"name": "accuracy", "verdict": "Pass", "estimate": 0.18,
                              "lower": 0.08, "upper": 0.27}],
            },
            {
                "time": "2026-11-23T00:12:00Z",
                "action": "RolledBack",
                "version": "1.2.0",
                "previous": "1.1.0",
                "reason": "gates failed: accuracy",
                "evidence": [{"name": "accuracy", "verdict": "Fail", "estimate": -0.335}],
            },
        ],
    },
}


def test_status_shows_phase_models_and_gate_interval() -> None:
    text = format_status(CC)
    assert "risk/fraud-canary: RolledBack" in text
    assert "champion 1.1.0" in text
    assert "[-0.5, -0.17]" in text and "453/207" in text


def test_report_lists_every_outcome_with_its_evidence_in_order() -> None:
    text = format_report(CC)
    promoted, rolled_back = text.index("Promoted"), text.index("RolledBack 1.2.0")
    assert promoted < rolled_back
    assert "champion was 1.0.0" in text
    assert "0.18" in text and "[0.08, 0.27]" in text
    assert "[-, -]" in text  # missing bounds print as dashes, never crash


def test_report_says_so_when_nothing_concluded() -> None:
    fresh = {"metadata": {"name": "x", "namespace": "y"}, "status": {"phase": "Idle"}}
    assert "no challenge has concluded yet" in format_report(fresh)
