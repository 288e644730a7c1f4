"""`history` and `export`: the LineageRecords the operator writes, read back.

`history` shows one deployment's trail, oldest first, each record with the gate evidence it
was decided on. On a cluster without the LineageRecord CRD (an operator older than the
records) it falls back to the bounded `status.history` of the deployment's challenges.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lightkube import Client

from ..constants import CC_KIND, LABEL_DEPLOYMENT, RECORD_KIND
from .durations import parse_timestamp
from .errors import CliError
from .output import Result, object_name, table
from .resources import find, list_if_served, list_objects, with_kind
from .views import short_number

HISTORY_HEADERS = ["TIME", "EVENT", "VERSION", "PREVIOUS", "BY", "REASON"]
CRD_MISSING_FIX = "install this release's CRDs (`kubectl apply --server-side -f crds/`)"


def decided_at(record: dict[str, Any]) -> str:
    return str((record.get("spec") or {}).get("decidedAt") or "")


def oldest_first(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(records, key=lambda r: (decided_at(r), r["metadata"]["name"]))


def evidence_lines(gates: list[dict[str, Any]]) -> list[str]:
    lines = []
    for gate in gates:
        samples = gate.get("samples") or {}
        counted = ""
        if samples:
            counted = f"  n={samples.get('champion', 0)}/{samples.get('challenger', 0)}"
        lines.append(
            f"    {gate.get('name', '-'):<18}{gate.get('verdict', '-'):<9}"
            f"{short_number(gate.get('estimate')):>10}  "
            f"[{short_number(gate.get('lower'))}, {short_number(gate.get('upper'))}]{counted}"
        )
    return lines


def records_table(records: list[dict[str, Any]], all_namespaces: bool, by_deployment: bool) -> str:
    """One row per record, its gate evidence indented beneath it."""
    if not records:
        return "No lineage records found."
    headers = list(HISTORY_HEADERS)
    if by_deployment:
        headers.insert(1, "DEPLOYMENT")
    if all_namespaces:
        headers.insert(0, "NAMESPACE")
    rows = []
    for record in records:
        spec = record.get("spec") or {}
        row = [
            spec.get("decidedAt", "-"),
            spec.get("event", "-"),
            (spec.get("model") or {}).get("version") or "-",
            (spec.get("previous") or {}).get("version") or "-",
            spec.get("decidedBy") or "-",
            spec.get("reason") or "",
        ]
        if by_deployment:
            row.insert(1, spec.get("deployment", "-"))
        if all_namespaces:
            row.insert(0, record["metadata"].get("namespace", ""))
        rows.append(row)
    header, *lines = table(headers, rows).splitlines()
    out = [header]
    for line, record in zip(lines, records, strict=True):
        out.append(line)
        out += evidence_lines((record.get("spec") or {}).get("evidence") or [])
    return "\n".join(out)


def _status_history_table(challenges: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    entries = []
    for cc in challenges:
        for entry in (cc.get("status") or {}).get("history") or []:
            entries.append({"challenge": cc["metadata"]["name"], **entry})
    entries.sort(key=lambda e: str(e.get("time", "")))
    if not entries:
        return entries, "No history found (no challenge has concluded yet)."
    header, *lines = table(
        HISTORY_HEADERS,
        [
            [
                e.get("time", "-"),
                e.get("action", "-"),
                e.get("version", "-"),
                e.get("previous") or "-",
                "-",
                e.get("reason", ""),
            ]
            for e in entries
        ],
    ).splitlines()
    out = [header]
    for line, entry in zip(lines, entries, strict=True):
        out.append(line)
        out += evidence_lines(entry.get("evidence") or [])
    return entries, "\n".join(out)


def history(
    client: Client, name: str | None, namespace: str, all_namespaces: bool
) -> tuple[Result, str]:
    """(the result, a note for stderr when it comes from status instead of records)."""
    scope = None if all_namespaces else namespace
    deployment, challenge = name, None
    if name and not all_namespaces:
        # A challenge's name stands for the deployment it gates; anything else is taken as a
        # deployment's, which need not exist any more: records outlive it.
        challenge = find(client, CC_KIND, name, namespace)
        if challenge is not None:
            deployment = (challenge.get("spec") or {}).get("targetRef", {}).get("name", name)
    labels = {LABEL_DEPLOYMENT: deployment} if deployment else None
    records = list_if_served(client, RECORD_KIND, scope, labels)
    if records is not None:
        records = oldest_first([with_kind(r, RECORD_KIND) for r in records])
        text = records_table(records, all_namespaces, by_deployment=deployment is None)
        return Result(records, text, [object_name(r) for r in records]), ""
    return _history_from_status(client, deployment, challenge, scope)


def _history_from_status(
    client: Client, deployment: str | None, challenge: dict[str, Any] | None, scope: str | None
) -> tuple[Result, str]:
    if challenge is not None:
        challenges = [challenge]
    else:
        challenges = [
            cc
            for cc in list_objects(client, CC_KIND, scope)
            if deployment is None
            or ((cc.get("spec") or {}).get("targetRef") or {}).get("name") == deployment
        ]
    if not challenges:
        raise CliError(
            f"this cluster has no LineageRecord CRD, and no ChampionChallenger gates {deployment}",
            CRD_MISSING_FIX,
        )
    entries, text = _status_history_table(challenges)
    note = (
        "note: no LineageRecord CRD on this cluster: showing the challenges' status.history "
        f"(the last few only); {CRD_MISSING_FIX}"
    )
    names = [f"championchallenger.modelops.io/{cc['metadata']['name']}" for cc in challenges]
    return Result(entries, text, names), note


def export(client: Client, namespace: str, all_namespaces: bool, since: datetime | None) -> Result:
    """Every record (of a namespace, or all), oldest first, optionally only the recent ones."""
    records = list_if_served(client, RECORD_KIND, None if all_namespaces else namespace)
    if records is None:
        raise CliError("this cluster has no LineageRecord CRD: nothing to export", CRD_MISSING_FIX)
    chosen = []
    for record in oldest_first(records):
        moment = parse_timestamp(decided_at(record))
        if since is None or (moment is not None and moment >= since):
            chosen.append(with_kind(record, RECORD_KIND))
    text = records_table(chosen, all_namespaces, by_deployment=True)
    return Result(chosen, text, [object_name(r) for r in chosen])
