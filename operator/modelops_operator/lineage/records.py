"""LineageRecords from what the controllers decided: pure functions, no API calls.

A record's name is a digest of what it records (deployment, event, challenge, version), so the
operator may retry a tick, or restart in the middle of one, and still write each record once:
the second create of the same name is refused by the API server and ignored.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel

from ..api.lineagerecord import (
    ChangeSource,
    LineageRecordSpec,
    PreviousModel,
    RecordedApproval,
    RecordedGate,
    RecordedModel,
    RecordedSamples,
    RecordEvent,
)
from ..challenge.model import GATES, HistoryEntry, ModelRef, Status, Transition
from ..constants import (
    API_VERSION,
    LABEL_CHALLENGE,
    LABEL_DEPLOYMENT,
    LABEL_EVENT,
    LABEL_MANAGED_BY,
    LABEL_MODEL_VERSION,
    MANAGED_BY,
    RECORD_KIND,
)
from .source import change_source

# The Events of the state machine that are decisions of a person, as record events.
ORDERS: dict[str, RecordEvent] = {
    "ForcedPromotion": "PromoteForced",
    "ManualRollback": "RollbackForced",
}
M = TypeVar("M", bound=BaseModel)
_NOT_LABEL = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class Deployment:
    """The ModelDeployment a record is about, as it was when the event happened."""

    namespace: str
    name: str
    metadata: Mapping[str, Any]  # labels, annotations, managedFields: the change's source
    model: Mapping[str, Any]  # spec.model

    def recorded(self, ref: ModelRef | None) -> RecordedModel:
        version = ref.version if ref else str(self.model.get("version", ""))
        same = ref is None or version == self.model.get("version")
        return _make(
            RecordedModel,
            name=str(self.model.get("name", "")),
            version=version,
            digest=ref.digest if ref else str(self.model.get("digest", "")),
            uri=(ref.uri if ref else "") or (str(self.model.get("uri", "")) if same else ""),
            format=str(self.model.get("format", "")),
        )

    def source(self) -> ChangeSource:
        return change_source(self.metadata)


def _make(part: type[M], /, **fields: Any) -> M:
    """A typed part of a record from snake_case fields (validated like any API object)."""
    return part.model_validate(fields)


def _time(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, tz=UTC)


def label_value(text: str) -> str:
    """A label value (63 characters of [A-Za-z0-9_.-], alphanumeric at both ends)."""
    return _NOT_LABEL.sub("_", text)[:63].strip("_.-")


def record_name(deployment: str, event: str, *identity: str) -> str:
    digest = hashlib.sha256("\0".join((deployment, event, *identity)).encode()).hexdigest()
    return f"{deployment[:200]}-{event.lower()}-{digest[:12]}"


def manifest(namespace: str, spec: LineageRecordSpec, *identity: str) -> dict[str, Any]:
    labels = {
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_DEPLOYMENT: label_value(spec.deployment),
        LABEL_EVENT: spec.event,
        LABEL_MODEL_VERSION: label_value(spec.model.version),
    }
    if spec.challenge:
        labels[LABEL_CHALLENGE] = label_value(spec.challenge)
    return {
        "apiVersion": API_VERSION,
        "kind": RECORD_KIND,
        "metadata": {
            "name": record_name(spec.deployment, spec.event, *identity),
            "namespace": namespace,
            "labels": {k: v for k, v in labels.items() if v},
        },
        "spec": spec.to_wire(),
    }


def recorded_gates(
    gates: Sequence[Mapping[str, Any]], margins: Mapping[str, float]
) -> list[RecordedGate]:
    """The gates' status entries (name, type, verdict, estimate, interval, samples)."""
    recorded = []
    for gate in gates[:16]:
        samples = gate.get("samples") or {}
        recorded.append(
            _make(
                RecordedGate,
                name=str(gate.get("name", ""))[:63],
                type=str(gate.get("type", ""))[:32],
                verdict=str(gate.get("verdict", "Pending"))[:16],
                estimate=gate.get("estimate"),
                lower=gate.get("lower"),
                upper=gate.get("upper"),
                margin=margins.get(str(gate.get("name", ""))),
                samples=_make(
                    RecordedSamples,
                    champion=int(samples.get("champion", 0)),
                    challenger=int(samples.get("challenger", 0)),
                ),
            )
        )
    return recorded


def _approval(approval: Mapping[str, Any] | None) -> RecordedApproval | None:
    if not approval or not approval.get("approvedBy"):
        return None
    return _make(
        RecordedApproval,
        approved_by=str(approval["approvedBy"])[:512],
        approved_at=approval.get("approvedAt"),
    )


@dataclass(frozen=True)
class ChallengeTickFacts:
    """What one tick of a ChampionChallenger knew besides the transition."""

    challenge: str  # the ChampionChallenger's name
    deployment: Deployment
    gates: Sequence[Mapping[str, Any]]  # status.gates at this tick (the decision's evidence)
    margins: Mapping[str, float]  # gate name -> margin in force
    approval_before: Mapping[str, Any] | None  # status.approval before the tick
    approval_after: Mapping[str, Any] | None  # status.approval the tick writes
    now: float


def _previous(ref: ModelRef | None) -> PreviousModel | None:
    return None if ref is None else _make(PreviousModel, version=ref.version, digest=ref.digest)


def challenge_records(
    before: Status, transition: Transition, facts: ChallengeTickFacts
) -> list[dict[str, Any]]:
    """The records this tick of the challenge machine leaves: an approval given, an order
    obeyed, a challenge concluded."""
    records = []
    after = transition.status
    deployment = facts.deployment
    challenger = after.challenger or before.challenger
    common = {
        "deployment": deployment.name,
        "challenge": facts.challenge,
        "challenge_id": before.challenge_id,
        "model": deployment.recorded(challenger),
        "previous": _previous(before.champion),
        "evidence": recorded_gates(facts.gates, facts.margins),
        "started_at": _time(before.started_at),
        "decided_at": _time(facts.now),
    }
    approval = _approval(facts.approval_after)
    if approval is not None and facts.approval_after != facts.approval_before:
        spec = _make(
            LineageRecordSpec,
            event="Approved",
            outcome=before.champion.version if before.champion else "",
            reason=f"{approval.approved_by} approved {challenger.version if challenger else ''}",
            decided_by=approval.approved_by,
            approval=approval,
            source=deployment.source(),
            **common,
        )
        records.append(manifest(deployment.namespace, spec, before.challenge_id))
    for event in transition.events:
        order = ORDERS.get(event.reason)
        if order is None:
            continue
        spec = _make(
            LineageRecordSpec,
            event=order,
            outcome=before.champion.version if before.champion else "",
            reason=event.message[:4096],
            decided_by=after.decided_by[:512],
            source=deployment.source(),
            **common,
        )
        records.append(manifest(deployment.namespace, spec, before.challenge_id))
    if transition.history is not None:
        records.append(_concluded(transition.history, after, facts, common))
    return records


def _concluded(
    entry: HistoryEntry, after: Status, facts: ChallengeTickFacts, common: dict[str, Any]
) -> dict[str, Any]:
    deployment = facts.deployment
    spec = _make(
        LineageRecordSpec,
        event=entry.kind,
        outcome=after.champion.version if after.champion else "",
        reason=entry.reason[:4096],
        decided_by=(entry.decided_by or GATES)[:512],
        approval=_approval(facts.approval_after),
        source=deployment.source(),
        **{**common, "started_at": _time(entry.started_at), "decided_at": _time(entry.at)},
    )
    identity = str(common["challenge_id"]) or f"{entry.version}@{entry.at}"
    return manifest(deployment.namespace, spec, identity)


def rollout_record(
    deployment: Deployment,
    previous: Mapping[str, Any] | None,
    live: Mapping[str, Any],
    generation: int,
    now: float,
) -> dict[str, Any]:
    """A version went live without a challenge (none gates the deployment, or it is the
    first version): a RolledOut record."""
    model = deployment.recorded(ModelRef.reported(live))
    first = not previous or not previous.get("version")
    reason = (
        "first version of the deployment"
        if first
        else "spec.model changed and no ChampionChallenger gates this deployment"
    )
    spec = _make(
        LineageRecordSpec,
        event="RolledOut",
        deployment=deployment.name,
        model=model,
        previous=None if first else _previous(ModelRef.reported(previous or {})),
        outcome=model.version,
        reason=reason,
        decided_by=deployment.source().changed_by,
        source=deployment.source(),
        decided_at=_time(now),
    )
    return manifest(
        deployment.namespace, spec, model.version, model.digest, model.uri, str(generation)
    )


def rolled_out(
    namespace: str,
    name: str,
    body: Mapping[str, Any],
    champion_before: Mapping[str, Any] | None,
    champion_after: Mapping[str, Any] | None,
    challenge: Any,
    now: float,
) -> dict[str, Any] | None:
    """The RolledOut record when the status is about to report another live version that no
    challenge promoted (a challenge's promotion has its own record), else None."""
    if not champion_after or not champion_after.get("version"):
        return None
    before = champion_before or {}
    if all(before.get(k) == champion_after.get(k) for k in ("version", "digest", "uri")):
        return None
    if challenge is not None and challenge.promotion_of(champion_after["version"]) is not None:
        return None
    metadata = body.get("metadata") or {}
    deployment = Deployment(namespace, name, metadata, (body.get("spec") or {}).get("model") or {})
    return rollout_record(
        deployment, before, champion_after, int(metadata.get("generation") or 0), now
    )
