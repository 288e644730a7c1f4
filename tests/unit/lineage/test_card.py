"""The model card from records the real record builders make (pure: no API server)."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

from modelops_operator.challenge import Command, Phase, step
from modelops_operator.lineage.card import build_card, render_html, render_markdown, write_files
from modelops_operator.lineage.plots import evidence_svg
from modelops_operator.lineage.records import challenge_records

from .test_records import facts, progressing, seen

MDEP: dict[str, Any] = {
    "metadata": {"name": "fraud", "namespace": "team-a"},
    "spec": {"model": {"name": "fraud", "version": "1.1.0", "format": "sklearn"},
             "runtime": {"replicas": 2}},
    "status": {
        "champion": {"version": "1.0.0", "digest": "sha256:" + "1" * 64, "since": "2026-12-01"},
        "readyReplicas": 2,
        "endpoint": "http://fraud.team-a.svc",
        "conditions": [{"type": "Ready", "status": "True", "reason": "Serving",
                        "message": "1.0.0 serves <b>2</b> replicas"}],
    },
}  # fmt: skip
POLICY = {
    "metadata": {"name": "fraud-policy"},
    "spec": {
        "strategy": {"type": "canary"},
        "approval": {"required": True},
        "gates": [{"name": "accuracy", "type": "accuracy", "margin": 0.02}],
    },
}


def rolled_back_records() -> list[dict[str, Any]]:
    """A forced rollback walked through the real machine: the order and the outcome."""
    status, records = progressing(), []
    transition = step(status, seen(150, command=Command("rollback", "bob")))
    for now in (150, 160, 170, 180):
        records += challenge_records(status, transition, facts(now))
        status = transition.status
        if status.phase is Phase.ROLLED_BACK:
            break
        transition = step(status, seen(now + 10, route_applied=True,
                                       challenger_removed=status.traffic_withdrawn))
    return records


def test_the_card_tells_identity_lineage_challenges_and_escapes_what_users_wrote(
    tmp_path: Path,
) -> None:
    records = rolled_back_records()
    assert [r["spec"]["event"] for r in records] == ["RollbackForced", "RolledBack"]
    card = build_card(MDEP, [POLICY], records)
    markdown = render_markdown(card, ["fraud-challenge-1.svg"])
    assert "# Model card: team-a/fraud" in markdown
    assert "| Live version | 1.0.0 |" in markdown
    assert "RolledBack 1.1.0 (champion was 1.0.0)" in markdown
    assert "by bob: rollback requested by bob" in markdown
    assert "canary, alpha 0.05, accuracy (accuracy, margin 0.02), approval required" in markdown
    assert "![evidence of RolledBack 1.1.0" in markdown
    page = render_html(card)
    assert "<b>2</b>" not in page and "&lt;b&gt;2&lt;/b&gt;" in page  # a message is text
    markdown_path, html_path = write_files(card, tmp_path)
    assert (tmp_path / "fraud-challenge-1.svg").is_file()
    assert markdown_path.read_text() == markdown and html_path.read_text() == page


def test_a_card_without_history_says_so() -> None:
    markdown = render_markdown(build_card(MDEP, [], []))
    assert "No lineage record yet." in markdown and "No challenge has concluded yet." in markdown
    assert "roll out directly" in markdown


def test_the_evidence_plot_is_valid_svg_with_open_ends_drawn_as_arrows() -> None:
    evidence = [
        {"name": "accuracy", "verdict": "Pass", "estimate": 0.19, "lower": 0.05, "upper": 0.3},
        {"name": "errors", "verdict": "Pending", "estimate": None, "lower": 0.0, "upper": None},
        {"name": "<script>", "verdict": "Fail", "estimate": float("nan")},
    ]
    root = ElementTree.fromstring(evidence_svg(evidence))
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "accuracy (Pass)" in texts and "<script> (Fail)" in texts  # escaped, then parsed
    arrows = list(root.iter("{http://www.w3.org/2000/svg}path"))
    assert len(arrows) == 3  # errors' open upper end, and both ends of the unbounded gate
    ElementTree.fromstring(evidence_svg([]))
