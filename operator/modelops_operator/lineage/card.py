"""The model card: a ModelDeployment's identity, lineage, monitoring, challenges and approvals,
as Markdown (for a repository or a wiki) and as one self-contained HTML page (plots inline).

`build_card` is pure (objects in, a `Card` out); `render_markdown` and `render_html` turn it into
text; `write_card` reads the objects through the user's kubeconfig and writes both files.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .plots import evidence_svg

NOT_RECORDED = "not recorded"


@dataclass(frozen=True)
class ChallengeSection:
    """One concluded challenge: its decision, why, who, and each gate's evidence."""

    title: str
    record: Mapping[str, Any]
    evidence: Sequence[Mapping[str, Any]]
    plot_svg: str


@dataclass(frozen=True)
class Card:
    name: str
    namespace: str
    identity: list[tuple[str, str]]
    conditions: list[tuple[str, str, str, str]]  # type, status, reason, message
    monitoring: list[tuple[str, str]]
    lineage: list[Mapping[str, Any]]  # every record, oldest first
    challenges: list[ChallengeSection] = field(default_factory=list)
    approvals: list[Mapping[str, Any]] = field(default_factory=list)
    policies: list[tuple[str, str]] = field(default_factory=list)  # cc name, gates in words


def _text(value: Any) -> str:
    return NOT_RECORDED if value in (None, "") else str(value)


def _identity(mdep: Mapping[str, Any]) -> list[tuple[str, str]]:
    spec, status = mdep.get("spec") or {}, mdep.get("status") or {}
    model, champion = spec.get("model") or {}, status.get("champion") or {}
    runtime = spec.get("runtime") or {}
    return [
        ("Model", _text(model.get("name"))),
        ("Live version", _text(champion.get("version"))),
        ("Live since", _text(champion.get("since"))),
        ("Digest", _text(champion.get("digest"))),
        ("Source", _text(champion.get("uri"))),
        ("Format", _text(model.get("format"))),
        ("Version in spec", _text(model.get("version"))),
        ("Server", _text(runtime.get("server") or "modelops")),
        ("Replicas", f"{status.get('readyReplicas', 0)} ready of {runtime.get('replicas', 1)}"),
        ("Endpoint", _text(status.get("endpoint"))),
        ("Training profile", _text(model.get("profile"))),
    ]


def _monitoring(status: Mapping[str, Any]) -> list[tuple[str, str]]:
    monitoring = status.get("monitoring") or {}
    if not isinstance(monitoring, Mapping) or not monitoring:
        return [("Monitoring", "no monitor reports yet (status.monitoring is empty)")]
    return [(str(key), _text(value)) for key, value in sorted(monitoring.items())]


def _gates_in_words(cc: Mapping[str, Any]) -> str:
    spec = cc.get("spec") or {}
    gates = [
        f"{g.get('name')} ({g.get('type')}, margin {g.get('margin', 'default')})"
        for g in spec.get("gates") or ()
    ]
    strategy = (spec.get("strategy") or {}).get("type", "canary")
    decision = spec.get("decision") or {}
    approval = "approval required" if (spec.get("approval") or {}).get("required") else ""
    parts = [f"{strategy}", f"alpha {decision.get('alpha', 0.05)}", *gates]
    return ", ".join(p for p in (*parts, approval) if p)


def build_card(
    mdep: Mapping[str, Any],
    challenges: Sequence[Mapping[str, Any]],
    records: Sequence[Mapping[str, Any]],
) -> Card:
    meta, status = mdep.get("metadata") or {}, mdep.get("status") or {}
    specs = [r.get("spec") or {} for r in records]
    sections = []
    for spec in specs:
        if spec.get("event") not in ("Promoted", "RolledBack"):
            continue
        evidence = list(spec.get("evidence") or ())
        title = (
            f"{spec.get('event')} {spec.get('model', {}).get('version', '?')} "
            f"(champion was {(spec.get('previous') or {}).get('version') or '-'})"
        )
        sections.append(ChallengeSection(title, spec, evidence, evidence_svg(evidence)))
    conditions = [
        (c.get("type", ""), c.get("status", ""), c.get("reason", ""), c.get("message", ""))
        for c in status.get("conditions") or ()
    ]
    return Card(
        name=str(meta.get("name", "")),
        namespace=str(meta.get("namespace", "")),
        identity=_identity(mdep),
        conditions=conditions,
        monitoring=_monitoring(status),
        lineage=specs,
        challenges=sections,
        approvals=[s for s in specs if s.get("event") == "Approved"],
        policies=[(str(cc["metadata"]["name"]), _gates_in_words(cc)) for cc in challenges],
    )


# ----------------------------------------------------------------------------- Markdown
def _md_cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return lines


def _lineage_rows(specs: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    rows = []
    for spec in specs:
        source = spec.get("source") or {}
        origin = " ".join(
            p for p in (source.get("tool"), source.get("application"), source.get("revision")) if p
        )
        rows.append([
            spec.get("decidedAt", ""),
            spec.get("event", ""),
            (spec.get("model") or {}).get("version", ""),
            (spec.get("previous") or {}).get("version", "") or "-",
            spec.get("decidedBy", "") or "-",
            origin or "-",
            spec.get("reason", ""),
        ])  # fmt: skip
    return rows


LINEAGE_HEADER = ("When", "Event", "Version", "Previous", "By", "Source", "Reason")
APPROVAL_HEADER = ("When", "Approver", "Version", "Challenge")
EVIDENCE_HEADER = ("Gate", "Verdict", "Estimate", "Interval", "Margin", "Samples")


def _approval_rows(approvals: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    return [
        [
            a.get("decidedAt", ""),
            (a.get("approval") or {}).get("approvedBy", ""),
            (a.get("model") or {}).get("version", ""),
            a.get("challengeId", ""),
        ]
        for a in approvals
    ]


def _num(value: Any, open_end: str = "-") -> str:
    return open_end if value is None else f"{float(value):+.4g}"


def _evidence_rows(evidence: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    rows = []
    for gate in evidence:
        samples = gate.get("samples") or {}
        rows.append([
            f"{gate.get('name')} ({gate.get('type', '')})",
            gate.get("verdict", ""),
            _num(gate.get("estimate")),
            f"[{_num(gate.get('lower'), '-∞')}, {_num(gate.get('upper'), '+∞')}]",
            _num(gate.get("margin")),
            f"{samples.get('champion', 0)} / {samples.get('challenger', 0)}",
        ])  # fmt: skip
    return rows


def render_markdown(card: Card, plot_files: Sequence[str] = ()) -> str:
    lines = [f"# Model card: {card.namespace}/{card.name}", ""]
    lines += ["## Identity", "", *_md_table(("", ""), card.identity), ""]
    lines += ["## Live state", ""]
    lines += _md_table(("Condition", "Status", "Reason", "Message"), card.conditions) or []
    lines += ["", "## Monitoring", "", *_md_table(("Monitor", "State"), card.monitoring), ""]
    lines += ["## Policies", ""]
    lines += (
        _md_table(("ChampionChallenger", "How a new version is gated"), card.policies)
        if card.policies
        else ["No ChampionChallenger gates this deployment: new versions roll out directly."]
    )
    lines += ["", "## Lineage", ""]
    lines += (
        _md_table(LINEAGE_HEADER, _lineage_rows(card.lineage))
        if card.lineage
        else ["No lineage record yet."]
    )
    lines += ["", "## Challenges", ""]
    if not card.challenges:
        lines.append("No challenge has concluded yet.")
    for index, section in enumerate(card.challenges):
        record = section.record
        lines += [f"### {section.title}", ""]
        lines.append(f"Decided {record.get('decidedAt', '')} by {record.get('decidedBy') or '-'}: "
                     f"{record.get('reason', '')}")  # fmt: skip
        approval = record.get("approval") or {}
        if approval:
            when = approval.get("approvedAt")
            lines.append(f"Approved by {approval.get('approvedBy')} at {when}.")
        lines += ["", *_md_table(EVIDENCE_HEADER, _evidence_rows(section.evidence)), ""]
        if index < len(plot_files):
            lines += [f"![evidence of {section.title}]({plot_files[index]})", ""]
    lines += ["## Approvals", ""]
    lines += (
        _md_table(APPROVAL_HEADER, _approval_rows(card.approvals))
        if card.approvals
        else ["No approval recorded."]
    )
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- HTML
STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:72rem;color:#1d2733;
padding:0 1rem}
h1{font-size:1.6rem}h2{margin-top:2rem;border-bottom:1px solid #d8dee6;padding-bottom:.2rem}
table{border-collapse:collapse;margin:.5rem 0;width:100%}
th,td{border:1px solid #d8dee6;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f2f5f8}.Promoted{color:#11692f}.RolledBack{color:#a4262c}
.verdict-Pass{color:#11692f}.verdict-Fail{color:#a4262c}
section.challenge{border:1px solid #d8dee6;border-radius:6px;padding:.2rem 1rem;margin:1rem 0}
"""


def _html_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(card: Card) -> str:
    esc = html.escape
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>Model card: {esc(card.namespace)}/{esc(card.name)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>Model card: {esc(card.namespace)}/{esc(card.name)}</h1>",
        "<h2>Identity</h2>",
        _html_table(("Field", "Value"), card.identity),
        "<h2>Live state</h2>",
        _html_table(("Condition", "Status", "Reason", "Message"), card.conditions),
        "<h2>Monitoring</h2>",
        _html_table(("Monitor", "State"), card.monitoring),
        "<h2>Policies</h2>",
        _html_table(("ChampionChallenger", "How a new version is gated"), card.policies)
        if card.policies
        else "<p>No ChampionChallenger gates this deployment.</p>",
        "<h2>Lineage</h2>",
        _html_table(LINEAGE_HEADER, _lineage_rows(card.lineage))
        if card.lineage
        else "<p>No lineage record yet.</p>",
        "<h2>Challenges</h2>",
    ]
    if not card.challenges:
        parts.append("<p>No challenge has concluded yet.</p>")
    for section in card.challenges:
        record = section.record
        approval = record.get("approval") or {}
        approved = (
            f"<p>Approved by <b>{esc(str(approval.get('approvedBy')))}</b> at "
            f"{esc(str(approval.get('approvedAt')))}.</p>"
            if approval
            else ""
        )
        parts += [
            f"<section class=challenge><h3 class='{esc(str(record.get('event')))}'>"
            f"{esc(section.title)}</h3>",
            f"<p>Decided {esc(str(record.get('decidedAt', '')))} by "
            f"<b>{esc(str(record.get('decidedBy') or '-'))}</b>: "
            f"{esc(str(record.get('reason', '')))}</p>{approved}",
            _html_table(EVIDENCE_HEADER, _evidence_rows(section.evidence)),
            f"<figure>{section.plot_svg}<figcaption>Each gate's estimate and anytime-valid "
            "interval, each on its own scale; the dashed line is no difference (1 for a rate "
            "ratio, 0 for a difference).</figcaption>"
            "</figure></section>",
        ]
    parts.append("<h2>Approvals</h2>")
    parts.append(
        _html_table(APPROVAL_HEADER, _approval_rows(card.approvals))
        if card.approvals
        else "<p>No approval recorded.</p>"
    )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# ----------------------------------------------------------------------------- files
def write_files(card: Card, directory: Path) -> tuple[Path, Path]:
    """`<name>.md` with its plots beside it, and `<name>.html` with them inline."""
    directory.mkdir(parents=True, exist_ok=True)
    plot_files = []
    for index, section in enumerate(card.challenges):
        plot = directory / f"{card.name}-challenge-{index + 1}.svg"
        plot.write_text(section.plot_svg)
        plot_files.append(plot.name)
    markdown = directory / f"{card.name}.md"
    markdown.write_text(render_markdown(card, plot_files))
    page = directory / f"{card.name}.html"
    page.write_text(render_html(card))
    return markdown, page


def write_card(client: Any, namespace: str, deployment: str, directory: Path) -> tuple[Path, Path]:
    """Read the ModelDeployment, the ChampionChallengers that gate it and its lineage records
    with `client` (a lightkube Client), and write the card into `directory`."""
    from ..resources import ChampionChallengerResource, ModelDeploymentResource
    from .store import list_records

    mdep = client.get(ModelDeploymentResource, deployment, namespace=namespace).to_dict()
    challenges = [
        cc.to_dict()
        for cc in client.list(ChampionChallengerResource, namespace=namespace)
        if ((cc.get("spec") or {}).get("targetRef") or {}).get("name") == deployment
    ]
    records = list_records(client, namespace, deployment)
    return write_files(build_card(mdep, challenges, records), Path(directory))
