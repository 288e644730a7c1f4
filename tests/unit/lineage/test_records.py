"""Lineage records from the real state machine's transitions (pure: no API server)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from modelops_operator.api.lineagerecord import LineageRecordSpec
from modelops_operator.challenge import (
    Command,
    GateSignal,
    ModelRef,
    Observation,
    Phase,
    Status,
    StrategyView,
    step,
)
from modelops_operator.challenge.view import ChallengeView
from modelops_operator.lineage.records import (
    ChallengeTickFacts,
    Deployment,
    challenge_records,
    label_value,
    rolled_out,
)
from modelops_operator.lineage.source import change_source

V1 = ModelRef("1.0.0", "http://models/v1.skops", "sha256:" + "1" * 64)
V2 = ModelRef("1.1.0", "http://models/v2.skops", "sha256:" + "2" * 64)
CANARY = StrategyView("canary", steps=(50,))
PROMOTE = GateSignal("PROMOTE", "all gates pass", fresh=True)
GATES = (
    {"name": "accuracy", "type": "accuracy", "verdict": "Pass", "estimate": 0.19,
     "lower": 0.05, "upper": 0.3, "samples": {"champion": 839, "challenger": 407}},
)  # fmt: skip
METADATA: dict[str, Any] = {
    "labels": {"kustomize.toolkit.fluxcd.io/name": "models",
               "kustomize.toolkit.fluxcd.io/namespace": "flux-system"},
    "annotations": {"modelops.io/source-revision": "main@sha1:4f2a9c"},
    "managedFields": [
        {"manager": "kubectl-client-side-apply", "operation": "Update",
         "time": "2026-12-01T10:00:00Z", "fieldsV1": {"f:spec": {"f:model": {}}}},
        {"manager": "kustomize-controller", "operation": "Apply",
         "time": "2026-12-02T09:30:00Z", "fieldsV1": {"f:spec": {"f:model": {"f:version": {}}}}},
        {"manager": "modelops", "operation": "Update", "time": "2026-12-03T00:00:00Z",
         "fieldsV1": {"f:status": {}}, "subresource": "status"},
    ],
}  # fmt: skip
MODEL = {"name": "fraud", "version": "1.1.0", "uri": V2.uri, "digest": V2.digest,
         "format": "sklearn"}  # fmt: skip
DEPLOYMENT = Deployment("team-a", "fraud", METADATA, MODEL)


def seen(now: float, **kw: Any) -> Observation:
    base: dict[str, Any] = dict(strategy=CANARY, live_champion=V1, challenger_ready=True,
                                step_interval_seconds=10, feedback_grace_seconds=0)  # fmt: skip
    base.update(kw)
    return Observation(now=now, desired=V2, **base)


def facts(now: float, before: Any = None, after: Any = None) -> ChallengeTickFacts:
    return ChallengeTickFacts(
        challenge="fraud-policy",
        deployment=DEPLOYMENT,
        gates=GATES,
        margins={"accuracy": 0.02},
        approval_before=before,
        approval_after=after,
        now=now,
    )


def progressing() -> Status:
    return Status(phase=Phase.PROGRESSING, champion=V1, challenger=V2, challenger_percent=50,
                  started_at=100.0, step_started_at=100.0, challenge_id="1.1.0-100")  # fmt: skip


def specs(records: list[dict[str, Any]]) -> list[LineageRecordSpec]:
    # What the operator sends must be what the CRD's schema (the same model) accepts.
    return [LineageRecordSpec.model_validate(record["spec"]) for record in records]


def test_an_approved_promotion_leaves_an_approval_and_a_promotion_record() -> None:
    waiting = step(progressing(), seen(200, gates=PROMOTE, approval_required=True)).status
    assert waiting.phase is Phase.AWAITING_APPROVAL
    approval = {"approvedBy": "alice@example.com", "approvedAt": "2026-12-03T01:00:00Z",
                "version": "1.1.0"}  # fmt: skip
    approved = step(waiting, seen(210, gates=PROMOTE, approval_required=True,
                                  approved_version="1.1.0-100", approved_by="alice@example.com"))
    records = challenge_records(waiting, approved, facts(210, None, approval))
    (record,) = specs(records)
    assert (record.event, record.decided_by, record.model.version) == (
        "Approved", "alice@example.com", "1.1.0")  # fmt: skip
    assert record.approval is not None and record.approval.approved_by == "alice@example.com"
    # The same tick again (a retry): the same names, so the API server keeps one of each.
    again = challenge_records(waiting, approved, facts(210, None, approval))
    assert [r["metadata"]["name"] for r in again] == [r["metadata"]["name"] for r in records]
    # The approval is already recorded: later ticks write no second approval record.
    status = approved.status
    for now in (220, 230, 240, 250):
        transition = step(status, seen(now, route_applied=True, champion_ready_version="1.1.0",
                                       challenger_removed=status.traffic_withdrawn))
        added = challenge_records(status, transition, facts(now, approval, approval))
        status = transition.status
        if transition.history is not None:
            break
        assert added == []
    assert status.phase is Phase.PROMOTED
    (promoted,) = specs(added)
    assert (promoted.event, promoted.model.version, promoted.outcome) == (
        "Promoted", "1.1.0", "1.1.0")  # fmt: skip
    assert promoted.previous is not None and promoted.previous.version == "1.0.0"
    assert promoted.decided_by == "modelops"  # the gates decided, a person approved
    assert promoted.approval is not None and promoted.approval.approved_by == "alice@example.com"
    (gate,) = promoted.evidence
    assert (gate.verdict, gate.lower, gate.margin, gate.samples.challenger) == (  # type: ignore[union-attr]
        "Pass", 0.05, 0.02, 407)  # fmt: skip
    assert promoted.started_at is not None and promoted.started_at.timestamp() == 100.0
    assert promoted.model.digest == V2.digest and promoted.model.format == "sklearn"


def test_a_forced_rollback_names_who_ordered_it_in_both_records() -> None:
    before = progressing()
    ordered = step(before, seen(150, command=Command("rollback", "bob")))
    (order,) = specs(challenge_records(before, ordered, facts(150)))
    assert (order.event, order.decided_by) == ("RollbackForced", "bob")
    status = ordered.status
    for now in (160, 170, 180):
        transition = step(status, seen(now, route_applied=True,
                                       challenger_removed=status.traffic_withdrawn))
        records = challenge_records(status, transition, facts(now))
        status = transition.status
        if transition.history is not None:
            break
    assert status.phase is Phase.ROLLED_BACK
    (outcome,) = specs(records)
    assert (outcome.event, outcome.decided_by, outcome.outcome) == ("RolledBack", "bob", "1.0.0")
    assert outcome.reason == "rollback requested by bob"
    labels = records[0]["metadata"]["labels"]
    assert labels["modelops.io/event"] == "RolledBack"
    assert labels["modelops.io/deployment"] == "fraud"
    assert labels["modelops.io/challenge"] == "fraud-policy"


def test_the_source_names_the_gitops_tool_the_revision_and_the_last_manager_of_spec_model() -> None:
    source = change_source(METADATA)
    assert (source.tool, source.application) == ("flux", "Kustomization flux-system/models")
    assert source.revision == "main@sha1:4f2a9c"
    assert source.changed_by == "kustomize-controller"  # the status write does not count
    argo = change_source({"annotations": {
        "argocd.argoproj.io/tracking-id": "fraud-app:modelops.io/ModelDeployment:team-a/fraud"}})
    assert (argo.tool, argo.application) == ("argocd", "fraud-app")
    assert change_source({}).tool == ""


def test_a_version_live_without_a_challenge_is_a_rolled_out_record() -> None:
    body = {"metadata": {**METADATA, "generation": 3}, "spec": {"model": MODEL}}
    live_v1 = {"version": "1.0.0", "uri": V1.uri, "digest": V1.digest}
    live_v2 = {"version": "1.1.0", "uri": V2.uri, "digest": V2.digest, "since": "x"}
    first = rolled_out("team-a", "fraud", body, None, live_v1, None, 1000.0)
    assert first is not None
    (record,) = specs([first])
    assert (record.event, record.previous, record.reason) == (
        "RolledOut", None, "first version of the deployment")  # fmt: skip
    assert record.decided_by == "kustomize-controller"
    second = rolled_out("team-a", "fraud", body, live_v1, live_v2, None, 1001.0)
    assert second is not None and second["spec"]["previous"]["version"] == "1.0.0"
    assert rolled_out("team-a", "fraud", body, live_v2, dict(live_v2), None, 1002.0) is None
    promoted = ChallengeView(
        name="fraud-policy", champion=V1, challenger=None,
        history=({"action": "Promoted", "version": "1.1.0"},),
    )  # fmt: skip
    # A challenge's promotion has its own record: no second one for the same change.
    assert rolled_out("team-a", "fraud", body, live_v1, live_v2, promoted, 1003.0) is None


def test_label_values_are_made_valid_whatever_the_version_string() -> None:
    assert label_value("1.0.0+build/7") == "1.0.0_build_7"
    assert len(label_value("v" * 100)) == 63
    assert label_value("-x-") == "x"
    assert replace(progressing(), decided_by="x").decided_by == "x"
