"""Objects as the operator's own models write them, and a client that serves them from memory."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import Status, StatusDetails

from modelops_operator.api.base import Condition
from modelops_operator.api.championchallenger import (
    ApprovalRecord,
    ChallengeHistoryEntry,
    ChallengeModel,
    ChampionChallengerStatus,
    GateEvidence,
    GateStatus,
    Samples,
)
from modelops_operator.api.lineagerecord import (
    LineageRecordSpec,
    PreviousModel,
    RecordedGate,
    RecordedModel,
    RecordedSamples,
)
from modelops_operator.api.modeldeployment import LiveModel, ModelDeploymentStatus

NAMESPACE = "risk"
CREATED = "2026-11-20T00:00:00Z"
NOW = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)


def challenge_status(phase: str = "Progressing", **changes: Any) -> dict[str, Any]:
    status = ChampionChallengerStatus(
        phase=phase,  # type: ignore[arg-type]
        champion=ChallengeModel(version="1.1.0", digest="sha256:" + "1" * 64),
        challenger=ChallengeModel(version="1.2.0", digest="sha256:" + "2" * 64),
        traffic_percent=25,
        decision="Continue",
        message="collecting evidence",
        gates=[
            GateStatus(
                name="accuracy",
                type="accuracy",
                verdict="Pending",
                estimate=-0.004,
                lower=-0.03,
                upper=0.02,
                samples=Samples(champion=453, challenger=207),
            )
        ],
        approval=ApprovalRecord(approved_by="alice", approved_at=NOW, version="1.2.0")
        if phase == "Promoted"
        else None,
        history=[
            ChallengeHistoryEntry(
                time=NOW,
                action="Promoted",
                version="1.1.0",
                previous="1.0.0",
                reason="gates passed",
                evidence=[GateEvidence(name="accuracy", verdict="Pass", estimate=0.02)],
            )
        ],
        machine={"challengeId": "1.2.0-1795392000"},
    ).to_wire()
    status.update(changes)
    return status


def challenge(name: str = "fraud-canary", phase: str = "Progressing", **meta: Any) -> dict:
    return {
        "apiVersion": "modelops.io/v1alpha1",
        "kind": "ChampionChallenger",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "creationTimestamp": CREATED,
            "resourceVersion": "7",
            **meta,
        },
        "spec": {"targetRef": {"name": "fraud"}, "strategy": {"type": "canary"}},
        "status": challenge_status(phase),
    }


def deployment(name: str = "fraud", version: str = "1.2.0") -> dict[str, Any]:
    status = ModelDeploymentStatus(
        champion=LiveModel(name="fraud", version="1.1.0", digest="sha256:" + "1" * 64),
        replicas=2,
        ready_replicas=2,
        conditions=[
            Condition(type="Ready", status="True", last_transition_time=NOW, reason="Serving")
        ],
    ).to_wire()
    return {
        "apiVersion": "modelops.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": NAMESPACE, "creationTimestamp": CREATED},
        "spec": {"model": {"name": "fraud", "version": version}, "runtime": {"replicas": 2}},
        "status": status,
    }


def record(name: str, event: str, version: str, decided_at: datetime) -> dict[str, Any]:
    spec = LineageRecordSpec(
        event=event,  # type: ignore[arg-type]
        deployment="fraud",
        challenge="fraud-canary",
        model=RecordedModel(name="fraud", version=version),
        previous=PreviousModel(version="1.0.0"),
        reason=f"{event} on evidence",
        decided_by="modelops",
        evidence=[
            RecordedGate(
                name="accuracy",
                verdict="Pass",
                estimate=0.02,
                lower=0.01,
                upper=0.03,
                samples=RecordedSamples(champion=900, challenger=880),
            )
        ],
        decided_at=decided_at,
    )
    return {
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": {"modelops.io/deployment": "fraud"},
        },
        "spec": spec.to_wire(),
    }


def not_found(name: str = "") -> ApiError:
    details = StatusDetails(name=name) if name else None
    message = f'"{name}" not found' if name else "the server could not find the requested resource"
    return ApiError(status=Status(code=404, message=message, details=details, reason="NotFound"))


class FakeClient:
    """lightkube.Client's get, list, patch and create over a dict of objects."""

    def __init__(self, *objects: dict[str, Any], user: str = "alice") -> None:
        self.objects = {(o["kind"], o["metadata"]["name"]): copy.deepcopy(o) for o in objects}
        self.user = user
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self.unserved: set[str] = set()

    def _kind(self, res: Any) -> str:
        return res._api_info.resource.kind

    def get(self, res: Any, name: str, namespace: str | None = None) -> dict[str, Any]:
        try:
            return copy.deepcopy(self.objects[(self._kind(res), name)])
        except KeyError:
            raise not_found(name) from None

    def list(self, res: Any, namespace: str | None = None, labels=None):
        kind = self._kind(res)
        if kind in self.unserved:
            raise not_found()
        for (k, _), obj in self.objects.items():
            wanted = labels or {}
            have = obj["metadata"].get("labels") or {}
            if k == kind and all(have.get(key) == value for key, value in wanted.items()):
                # A list's items, as the API server sends them, carry no apiVersion or kind.
                yield {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}

    def patch(self, res: Any, name: str, patch: dict[str, Any], namespace=None, patch_type=None):
        self.patches.append((name, patch))
        obj = self.objects[(self._kind(res), name)]
        for section, values in patch.items():
            if section == "metadata":
                obj["metadata"].setdefault("annotations", {}).update(values["annotations"])
            else:
                obj.setdefault(section, {}).update(values)
        return copy.deepcopy(obj)

    def create(self, obj: Any) -> Any:
        from lightkube.models.authentication_v1 import SelfSubjectReviewStatus, UserInfo

        obj.status = SelfSubjectReviewStatus(userInfo=UserInfo(username=self.user))
        return obj
