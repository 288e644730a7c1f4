"""What each view of the dashboard shows, built from the objects as the API server returns them.

Pure functions, dicts in and JSON-ready dicts out: the page only lays them out, so what it
shows is decided (and tested) here. Objects are read leniently, as `kubectl get` would show
them: a field an older operator never wrote is simply absent, never an error.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .gates import gate_view

# Phases in which a challenger runs beside the champion.
LIVE_PHASES = ("Progressing", "AwaitingApproval", "Promoting", "RollingBack")
# Conditions the monitors of a live model set (DESIGN.md, "Once live, the model is watched").
MONITOR_CONDITIONS = ("DataDrift", "AccuracyDegraded", "Uncertain")
MAX_TEXT = 300  # a monitoring value shown in one cell


def _meta(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _parts(obj: Mapping[str, Any]) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    return obj.get("spec") or {}, obj.get("status") or {}


def conditions_view(status: Mapping[str, Any]) -> list[dict[str, str]]:
    return [
        {
            "type": str(c.get("type", "")),
            "status": str(c.get("status", "Unknown")),
            "reason": str(c.get("reason", "")),
            "message": str(c.get("message", "")),
            "since": str(c.get("lastTransitionTime", "")),
        }
        for c in status.get("conditions") or ()
    ]


def _condition(status: Mapping[str, Any], kind: str) -> dict[str, str] | None:
    return next((c for c in conditions_view(status) if c["type"] == kind), None)


def target_of(cc: Mapping[str, Any]) -> str:
    return str(((cc.get("spec") or {}).get("targetRef") or {}).get("name") or "")


def challenges_of(
    mdep: Mapping[str, Any], challenges: Iterable[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """The ChampionChallengers that gate `mdep` (same namespace, targetRef naming it)."""
    namespace, name = _meta(mdep)
    return [cc for cc in challenges if _meta(cc)[0] == namespace and target_of(cc) == name]


def deployment_view(
    mdep: Mapping[str, Any], challenges: Iterable[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    """One row of the deployments view: what is live, how many pods serve it, where."""
    namespace, name = _meta(mdep)
    spec, status = _parts(mdep)
    model, champion = spec.get("model") or {}, status.get("champion") or {}
    ready = _condition(status, "Ready")
    gating = challenges_of(mdep, challenges)
    return {
        "namespace": namespace,
        "name": name,
        "model": str(champion.get("name") or model.get("name") or ""),
        "format": str(model.get("format") or ""),
        "specVersion": str(model.get("version") or ""),
        "champion": {
            "version": str(champion.get("version") or ""),
            "digest": str(champion.get("digest") or ""),
            "since": str(champion.get("since") or ""),
        },
        "challenger": str((status.get("challenger") or {}).get("version") or ""),
        "replicas": int((spec.get("runtime") or {}).get("replicas", 1) or 0),
        "readyReplicas": int(status.get("readyReplicas") or 0),
        "endpoint": str(status.get("endpoint") or ""),
        "ready": ready["status"] if ready else "Unknown",
        "readyReason": ready["reason"] if ready else "",
        "readyMessage": ready["message"] if ready else "",
        "conditions": conditions_view(status),
        "challenges": [
            {"name": _meta(cc)[1], "phase": str((cc.get("status") or {}).get("phase") or "Idle")}
            for cc in gating
        ],
    }


def _strategy_in_words(strategy: Mapping[str, Any]) -> str:
    kind = str(strategy.get("type") or "")
    if kind == "canary":
        return "canary " + " → ".join(f"{s}%" for s in strategy.get("steps") or ())
    if kind == "ab":
        sticky = strategy.get("stickyHeader")
        return f"A/B {strategy.get('weight', '?')}%" + (f", sticky by {sticky}" if sticky else "")
    if kind == "shadow":
        return f"shadow {strategy.get('mirrorPercent', 100)}% mirrored"
    return kind


def challenge_view(cc: Mapping[str, Any]) -> dict[str, Any]:
    """A challenge as the live view shows it: phase, split, each gate with its interval."""
    namespace, name = _meta(cc)
    spec, status = _parts(cc)
    specs = {str(g.get("name")): g for g in spec.get("gates") or ()}
    reported = status.get("gates") or ()
    phase = str(status.get("phase") or "Idle")
    if reported:
        gates = [gate_view(g, specs.get(str(g.get("name")))) for g in reported]
    else:  # nothing evaluated yet: the gates the policy will judge, without numbers
        gates = [gate_view({"name": n, "type": g.get("type"), "verdict": "NoData"}, g)
                 for n, g in specs.items()]  # fmt: skip
    decision = spec.get("decision") or {}
    return {
        "namespace": namespace,
        "name": name,
        "target": target_of(cc),
        "phase": phase,
        "live": phase in LIVE_PHASES,
        "strategy": _strategy_in_words(spec.get("strategy") or {}),
        "trafficPercent": int(status.get("trafficPercent") or 0),
        "currentStep": int(status.get("currentStep") or 0),
        "champion": str((status.get("champion") or {}).get("version") or ""),
        "challenger": str((status.get("challenger") or {}).get("version") or ""),
        "decision": str(status.get("decision") or ""),
        "message": str(status.get("message") or ""),
        "startedAt": str(status.get("startedAt") or ""),
        "lastEvaluationTime": str(status.get("lastEvaluationTime") or ""),
        "alpha": decision.get("alpha", 0.05),
        "interval": str(decision.get("interval") or "1m"),
        "minSamples": decision.get("minSamples", 200),
        "approvalRequired": bool((spec.get("approval") or {}).get("required")),
        "approval": status.get("approval"),
        "paused": bool(spec.get("paused")),
        "conditions": conditions_view(status),
        "gates": gates,
    }


def sort_challenges(views: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Live challenges first, then by namespace and name."""
    return sorted(views, key=lambda v: (not v["live"], v["namespace"], v["name"]))


def _challenge_outcomes(challenges: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    outcomes = []
    for cc in challenges:
        spec, status = _parts(cc)
        specs = {str(g.get("name")): g for g in spec.get("gates") or ()}
        for entry in status.get("history") or ():
            outcomes.append({
                "challenge": _meta(cc)[1],
                "time": str(entry.get("time") or ""),
                "action": str(entry.get("action") or ""),
                "version": str(entry.get("version") or ""),
                "previous": str(entry.get("previous") or ""),
                "reason": str(entry.get("reason") or ""),
                "evidence": [gate_view(g, specs.get(str(g.get("name"))))
                             for g in entry.get("evidence") or ()],
            })  # fmt: skip
    return sorted(outcomes, key=lambda o: o["time"], reverse=True)


def record_view(record: Mapping[str, Any]) -> dict[str, Any]:
    """One LineageRecord, flattened for a table row."""
    spec = record.get("spec") or {}
    model, previous = spec.get("model") or {}, spec.get("previous") or {}
    source, approval = spec.get("source") or {}, spec.get("approval") or {}
    return {
        "name": _meta(record)[1],
        "event": str(spec.get("event") or ""),
        "version": str(model.get("version") or ""),
        "digest": str(model.get("digest") or ""),
        "previous": str(previous.get("version") or ""),
        "outcome": str(spec.get("outcome") or ""),
        "decidedBy": str(spec.get("decidedBy") or ""),
        "decidedAt": str(spec.get("decidedAt") or ""),
        "approvedBy": str(approval.get("approvedBy") or ""),
        "source": " ".join(
            str(source[k]) for k in ("tool", "application", "revision", "changedBy")
            if source.get(k)
        ),
        "reason": str(spec.get("reason") or ""),
        "challenge": str(spec.get("challenge") or ""),
    }


def history_view(
    mdep: Mapping[str, Any],
    challenges: Iterable[Mapping[str, Any]],
    records: Iterable[Mapping[str, Any]] | None,
) -> dict[str, Any]:
    """Newest first: the changes of the live model, each concluded challenge with its evidence,
    and the lineage records (None: they could not be read, see the notice beside it)."""
    _, status = _parts(mdep)
    changes = [
        {
            "time": str(h.get("time") or ""),
            "action": str(h.get("action") or ""),
            "from": str(h.get("fromVersion") or ""),
            "to": str(h.get("toVersion") or ""),
            "reason": str(h.get("reason") or ""),
            "message": str(h.get("message") or ""),
        }
        for h in status.get("history") or ()
    ]
    shown = None if records is None else [record_view(r) for r in records]
    return {
        "changes": sorted(changes, key=lambda c: c["time"], reverse=True),
        "challenges": _challenge_outcomes(challenges),
        "records": None if shown is None else sorted(
            shown, key=lambda r: (r["decidedAt"], r["name"]), reverse=True
        ),
    }  # fmt: skip


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def _flatten(value: Any, path: str, rows: list[dict[str, str]], depth: int) -> None:
    if isinstance(value, Mapping) and value and depth < 3:
        for key in sorted(value):
            _flatten(value[key], f"{path}.{key}" if path else str(key), rows, depth + 1)
    else:
        rows.append({"field": path, "value": _text(value)})


def monitoring_view(mdep: Mapping[str, Any]) -> dict[str, Any]:
    """What the monitors report (status.monitoring, shown as it is: its schema is the
    monitoring controller's), their conditions, and what the spec asks to be recorded."""
    spec, status = _parts(mdep)
    monitoring, wanted = status.get("monitoring"), spec.get("monitoring") or {}
    rows: list[dict[str, str]] = []
    if monitoring:
        _flatten(monitoring, "", rows, 0)
    feedback = wanted.get("feedback") or {}
    return {
        "conditions": [c for c in conditions_view(status) if c["type"] in MONITOR_CONDITIONS],
        "reported": rows,
        "recording": {
            "feedback": bool(feedback.get("enabled")),
            "sampleRate": wanted.get("sampleRate", 1.0),
            "predictionBuckets": wanted.get("predictionBuckets") or [],
            "profile": _text((spec.get("model") or {}).get("profile") or ""),
        },
    }


def deployment_detail(
    mdep: Mapping[str, Any],
    challenges: Sequence[Mapping[str, Any]],
    records: Sequence[Mapping[str, Any]] | None,
) -> dict[str, Any]:
    """Everything the page of one deployment shows."""
    gating = challenges_of(mdep, challenges)
    return {
        "deployment": deployment_view(mdep, gating),
        "challenges": sort_challenges([challenge_view(cc) for cc in gating]),
        "monitoring": monitoring_view(mdep),
        "history": history_view(mdep, gating, records),
    }
