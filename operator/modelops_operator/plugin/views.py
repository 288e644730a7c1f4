"""What people read: a challenge in detail, and the tables of `list`.

Pure functions of the objects as the API server returns them (camelCase dicts).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .durations import age
from .output import table


def short_number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def format_gates(gates: list[dict[str, Any]], indent: str = "  ") -> list[str]:
    if not gates:
        return []
    lines = [f"{indent}{'GATE':<18}{'VERDICT':<9}{'ESTIMATE':>10}  {'INTERVAL':<22}SAMPLES"]
    for gate in gates:
        interval = "-"
        if gate.get("lower") is not None or gate.get("upper") is not None:
            interval = f"[{short_number(gate.get('lower'))}, {short_number(gate.get('upper'))}]"
        samples = gate.get("samples") or {}
        lines.append(
            f"{indent}{gate.get('name', '-'):<18}{gate.get('verdict', '-'):<9}"
            f"{short_number(gate.get('estimate')):>10}  {interval:<22}"
            f"{samples.get('champion', 0)}/{samples.get('challenger', 0)}"
        )
    return lines


def format_status(cc: dict[str, Any]) -> str:
    """A person's view of one challenge: phase, models, traffic, each gate's evidence."""
    meta, status = cc["metadata"], cc.get("status") or {}
    spec = cc.get("spec") or {}
    champion = (status.get("champion") or {}).get("version", "-")
    challenger = (status.get("challenger") or {}).get("version", "-")
    paused = "   PAUSED" if spec.get("paused") else ""
    lines = [
        f"{meta['namespace']}/{meta['name']}: {status.get('phase', 'Idle')}{paused}",
        f"  champion {champion}   challenger {challenger}   "
        f"traffic {status.get('trafficPercent', 0)}%   decision {status.get('decision') or '-'}",
    ]
    if status.get("message"):
        lines.append(f"  {status['message']}")
    lines += format_gates(status.get("gates") or [])
    approval = status.get("approval")
    if approval:
        lines.append(
            f"  approved by {approval['approvedBy']} at {approval['approvedAt']} "
            f"for {approval['version']}"
        )
    return "\n".join(lines)


def format_report(cc: dict[str, Any]) -> str:
    """The audit trail kept in status: the current state, then every concluded challenge."""
    status = cc.get("status") or {}
    lines = [format_status(cc), "", "history (newest last):"]
    history = status.get("history") or []
    if not history:
        lines.append("  no challenge has concluded yet")
    for entry in history:
        lines.append(
            f"  {entry.get('time', '-')}  {entry.get('action', '-'):<10} "
            f"{entry.get('version', '-')} (champion was {entry.get('previous') or '-'})"
        )
        lines.append(f"    {entry.get('reason', '')}")
        for gate in entry.get("evidence") or []:
            lines.append(
                f"    {gate.get('name', '-'):<18}{gate.get('verdict', '-'):<9}"
                f"{short_number(gate.get('estimate')):>10}  "
                f"[{short_number(gate.get('lower'))}, {short_number(gate.get('upper'))}]"
            )
    return "\n".join(lines)


def _version(status: dict[str, Any], role: str) -> str:
    return str((status.get(role) or {}).get("version") or "-")


def _condition(obj: dict[str, Any], kind: str) -> str:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return str(condition.get("status", "Unknown"))
    return "Unknown"


def challenges_table(
    challenges: list[dict[str, Any]], all_namespaces: bool, now: datetime | None = None
) -> str:
    headers = ["NAME", "TARGET", "PHASE", "CHAMPION", "CHALLENGER", "TRAFFIC", "DECISION", "AGE"]
    rows = []
    for cc in challenges:
        meta, status, spec = cc["metadata"], cc.get("status") or {}, cc.get("spec") or {}
        phase = status.get("phase") or "Idle"
        rows.append(
            [
                meta["name"],
                (spec.get("targetRef") or {}).get("name", "-"),
                f"{phase} (paused)" if spec.get("paused") else phase,
                _version(status, "champion"),
                _version(status, "challenger"),
                f"{status.get('trafficPercent', 0)}%",
                status.get("decision") or "-",
                age(meta.get("creationTimestamp"), now),
            ]
        )
    return _with_namespace(headers, rows, challenges, all_namespaces, "challenges")


def _watched(status: dict[str, Any]) -> str:
    """The live-model monitors' states, drift/accuracy (docs/monitoring.md); - without any."""
    monitoring = status.get("monitoring") or {}
    states = [(monitoring.get(m) or {}).get("state") for m in ("drift", "accuracy")]
    if not any(states):
        return "-"
    return "/".join(state or "-" for state in states)


def deployments_table(
    deployments: list[dict[str, Any]], all_namespaces: bool, now: datetime | None = None
) -> str:
    headers = [
        "NAME", "MODEL", "LIVE", "DESIRED", "CHALLENGER", "PODS", "READY", "DRIFT/ACCURACY", "AGE"
    ]  # fmt: skip
    rows = []
    for mdep in deployments:
        meta, status, spec = mdep["metadata"], mdep.get("status") or {}, mdep.get("spec") or {}
        model = spec.get("model") or {}
        wanted = (spec.get("runtime") or {}).get("replicas", status.get("replicas", 0))
        rows.append(
            [
                meta["name"],
                model.get("name", "-"),
                _version(status, "champion"),
                model.get("version", "-"),
                _version(status, "challenger"),
                f"{status.get('readyReplicas', 0)}/{wanted}",
                _condition(mdep, "Ready"),
                _watched(status),
                age(meta.get("creationTimestamp"), now),
            ]
        )
    return _with_namespace(headers, rows, deployments, all_namespaces, "model deployments")


def _with_namespace(
    headers: list[str],
    rows: list[list[Any]],
    objects: list[dict[str, Any]],
    all_namespaces: bool,
    what: str,
) -> str:
    if not objects:
        return f"No {what} found."
    if all_namespaces:
        headers = ["NAMESPACE", *headers]
        namespaces = [o["metadata"].get("namespace", "") for o in objects]
        rows = [[ns, *row] for ns, row in zip(namespaces, rows, strict=True)]
    return table(headers, rows)
