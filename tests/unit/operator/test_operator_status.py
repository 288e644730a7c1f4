"""Conditions and the status as a pure function of what the operator observed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from modelops_operator.api.modeldeployment import ModelDeploymentSpec
from modelops_operator.conditions import find_condition, merge_conditions, progressing, ready
from modelops_operator.observe import DeploymentObservation, observe_deployment, observe_pod
from modelops_operator.status import Blocker, ReconcileOutcome, compute_status, status_patch

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
DIGEST = "sha256:" + "cd" * 32


def spec(version: str = "1.0.0", replicas: int = 2) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate(
        {
            "model": {
                "name": "fraud",
                "version": version,
                "uri": "s3://b/m.skops",
                "format": "sklearn",
                "digest": DIGEST,
            },
            "runtime": {"replicas": replicas},
        }
    )


def observed(
    version: str = "1.0.0",
    replicas: int = 2,
    available: int = 2,
    updated: int = 2,
    total: int | None = None,
    deadline: bool = False,
) -> DeploymentObservation:
    return DeploymentObservation(
        generation=3,
        observed_generation=3,
        wanted_replicas=replicas,
        replicas=replicas if total is None else total,
        updated_replicas=updated,
        ready_replicas=available,
        available_replicas=available,
        template_version=version,
        deadline_exceeded=deadline,
        progress_message="ReplicaSet has timed out progressing.",
    )


def statuses(status: dict) -> dict[str, str]:
    return {c["type"]: c["status"] for c in status["conditions"]}


def test_transition_time_moves_only_when_status_changes() -> None:
    first = merge_conditions(None, progressing("RollingOut", "1/2"), 1, T0)
    again = merge_conditions(
        first, progressing("RollingOut", "2/2 updated"), 2, T0 + timedelta(minutes=1)
    )
    assert [c["lastTransitionTime"] for c in again] == [c["lastTransitionTime"] for c in first]
    assert all(c["observedGeneration"] == 2 for c in again)
    done = merge_conditions(again, ready("RolloutComplete", "ok"), 2, T0 + timedelta(minutes=2))
    assert find_condition(done, "Ready")["lastTransitionTime"] == "2025-01-01T12:02:00Z"
    assert find_condition(done, "Stalled")["lastTransitionTime"] == "2025-01-01T12:00:00Z"
    assert [c["type"] for c in done] == ["Ready", "Reconciling", "Stalled"]


def test_complete_rollout_is_ready_with_champion_and_endpoint() -> None:
    status = compute_status("fraud", "ns", spec(), ReconcileOutcome(4), observed(), None, T0)
    assert statuses(status) == {"Ready": "True", "Reconciling": "False", "Stalled": "False"}
    assert status["observedGeneration"] == 4
    assert all(c["observedGeneration"] == 4 for c in status["conditions"])
    assert status["champion"] == {
        "name": "fraud",
        "version": "1.0.0",
        "uri": "s3://b/m.skops",
        "digest": DIGEST,
        "serving": '{"format":"sklearn","runtime":{}}',
        "since": "2025-01-01T12:00:00Z",
    }
    assert status["endpoint"] == "http://fraud.ns.svc.cluster.local"
    assert status["selector"] == "modelops.io/deployment=fraud,modelops.io/role=champion"
    assert status["history"] == []


def test_rollout_in_progress_keeps_the_old_champion() -> None:
    before = compute_status("fraud", "ns", spec(), ReconcileOutcome(1), observed(), None, T0)
    rolling = compute_status(
        "fraud",
        "ns",
        spec("2.0.0"),
        ReconcileOutcome(2),
        observed("2.0.0", updated=1, total=3),
        before,
        T0 + timedelta(minutes=1),
    )
    assert statuses(rolling) == {"Ready": "False", "Reconciling": "True", "Stalled": "False"}
    assert rolling["champion"]["version"] == "1.0.0"
    assert "1/2 updated" in find_condition(rolling["conditions"], "Ready")["message"]
    done = compute_status(
        "fraud",
        "ns",
        spec("2.0.0"),
        ReconcileOutcome(2),
        observed("2.0.0"),
        rolling,
        T0 + timedelta(minutes=2),
    )
    assert done["champion"]["version"] == "2.0.0"
    (entry,) = done["history"]
    assert (entry["action"], entry["fromVersion"], entry["toVersion"]) == (
        "RolledOut",
        "1.0.0",
        "2.0.0",
    )


def test_old_pods_still_running_is_not_ready() -> None:
    status = compute_status("fraud", "ns", spec(), ReconcileOutcome(1), observed(total=3), None, T0)
    assert statuses(status)["Ready"] == "False"


def test_blocker_stalls_with_the_field_in_the_message() -> None:
    blocker = Blocker(
        "SecretNotFound",
        "spec.model.credentialsSecret",
        "spec.model.credentialsSecret: Secret 'x' not found in namespace 'ns'",
    )
    status = compute_status("fraud", "ns", spec(), ReconcileOutcome(1, blocker), None, None, T0)
    stalled = find_condition(status["conditions"], "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "SecretNotFound")
    assert "spec.model.credentialsSecret" in stalled["message"]
    assert statuses(status) == {"Ready": "False", "Reconciling": "False", "Stalled": "True"}


def test_progress_deadline_stalls() -> None:
    status = compute_status(
        "fraud", "ns", spec(), ReconcileOutcome(1), observed(available=0, deadline=True), None, T0
    )
    assert find_condition(status["conditions"], "Stalled")["reason"] == "RolloutStalled"


def test_scaled_to_zero_is_ready() -> None:
    status = compute_status(
        "fraud",
        "ns",
        spec(replicas=0),
        ReconcileOutcome(1),
        observed(replicas=0, available=0, updated=0),
        None,
        T0,
    )
    assert statuses(status)["Ready"] == "True"


def test_nothing_new_means_no_patch() -> None:
    first = compute_status("fraud", "ns", spec(), ReconcileOutcome(1), observed(), None, T0)
    as_stored = {k: v for k, v in first.items() if v not in ([], 0, None)}  # API drops empties
    second = compute_status(
        "fraud", "ns", spec(), ReconcileOutcome(1), observed(), as_stored, T0 + timedelta(hours=1)
    )
    assert status_patch(as_stored, second) == {}
    third = compute_status(
        "fraud",
        "ns",
        spec(replicas=3),
        ReconcileOutcome(2),
        observed(),
        as_stored,
        T0 + timedelta(hours=1),
    )
    assert status_patch(as_stored, third)["observedGeneration"] == 2


def test_history_is_bounded() -> None:
    status = None
    for minor in range(30):
        version = f"1.{minor}.0"
        status = compute_status(
            "fraud",
            "ns",
            spec(version),
            ReconcileOutcome(minor + 1),
            observed(version),
            status,
            T0 + timedelta(minutes=minor),
        )
    assert len(status["history"]) == 20
    assert status["history"][-1]["toVersion"] == "1.29.0"


def test_observe_deployment_reads_the_rollout() -> None:
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "fraud-champion",
            "namespace": "ns",
            "generation": 5,
            "labels": {"modelops.io/deployment": "fraud"},
            "managedFields": [{"x": 1}],
        },
        "spec": {
            "replicas": 2,
            "template": {"metadata": {"labels": {"modelops.io/model-version": "2"}}},
        },
        "status": {
            "observedGeneration": 5,
            "replicas": 2,
            "updatedReplicas": 2,
            "readyReplicas": 2,
            "availableReplicas": 2,
            "conditions": [{"type": "Progressing", "reason": "NewReplicaSetAvailable"}],
        },
    }
    seen = observe_deployment(body)
    assert (seen.generation, seen.observed_generation, seen.template_version) == (5, 5, "2")
    assert not seen.deadline_exceeded
    assert "managedFields" not in seen.manifest["metadata"]


def _pod(init_state: dict, version: str = "1.0.0") -> dict:
    return {
        "metadata": {
            "name": "fraud-champion-abc",
            "labels": {"modelops.io/model-version": version},
        },
        "status": {"initContainerStatuses": [{"name": "model-fetch", "state": init_state}]},
    }


def test_observe_pod_reads_the_termination_message() -> None:
    health = observe_pod(
        _pod({"terminated": {"exitCode": 1, "reason": "Error", "message": "digest mismatch\n"}})
    )
    assert health.failure is not None
    assert (health.failure.container, health.failure.message) == ("model-fetch", "digest mismatch")
    assert observe_pod(_pod({"terminated": {"exitCode": 0, "reason": "Completed"}})).failure is None
    assert observe_pod(_pod({"running": {}})).failure is None
    pulling = observe_pod(_pod({"waiting": {"reason": "ImagePullBackOff", "message": "no such"}}))
    assert pulling.failure is not None and pulling.failure.reason == "ImagePullBackOff"


def test_failed_fetch_of_the_wanted_version_stalls_naming_the_fields() -> None:
    failure = observe_pod(
        _pod({"terminated": {"exitCode": 1, "reason": "Error", "message": "digest mismatch"}})
    ).failure
    status = compute_status("fraud", "ns", spec(), ReconcileOutcome(1),
                            observed(available=0), None, T0, [failure])  # fmt: skip
    stalled = find_condition(status["conditions"], "Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "ModelFetchFailed")
    assert "digest mismatch" in stalled["message"] and "spec.model.digest" in stalled["message"]
    # A failing pod of another (older) version does not stall the wanted one.
    other = compute_status("fraud", "ns", spec("2.0.0"), ReconcileOutcome(2),
                           observed("2.0.0", available=1), None, T0, [failure])  # fmt: skip
    assert find_condition(other["conditions"], "Stalled")["status"] == "False"
    # Once the rollout is complete, an old failure is history.
    done = compute_status(
        "fraud", "ns", spec(), ReconcileOutcome(1), observed(), None, T0, [failure]
    )
    assert find_condition(done["conditions"], "Ready")["status"] == "True"


def test_a_first_rollout_is_reported_once_it_serves_or_stops_and_later_ones_throughout() -> None:
    from modelops_operator.conditions import PENDING_STATUS
    from modelops_operator.status import reportable

    pending = PENDING_STATUS  # what the API server shows before the operator's first report

    def status_of(observation: DeploymentObservation | None, outcome: ReconcileOutcome,
                  previous: dict | None = pending, version: str = "1.0.0") -> dict:
        return compute_status("fraud", "ns", spec(version), outcome, observation, previous, T0)

    creating = status_of(None, ReconcileOutcome(1))
    rolling = status_of(observed(available=0, updated=0), ReconcileOutcome(1))
    assert statuses(creating)["Reconciling"] == statuses(rolling)["Reconciling"] == "True"
    # The default already says "in progress" (kstatus: Reconciling=True is InProgress).
    assert status_patch(pending, rolling) and not reportable(pending, rolling)
    assert not reportable(pending, creating) and not reportable(None, creating)
    # Serving, or stopped (a pod failing, a blocker, the progress deadline): reported.
    assert reportable(pending, status_of(observed(), ReconcileOutcome(1)))
    blocker = Blocker("SecretNotFound", "spec.model.credentialsSecret", "missing")
    assert reportable(pending, status_of(None, ReconcileOutcome(1, blocker)))
    assert reportable(pending, status_of(observed(available=0, deadline=True), ReconcileOutcome(1)))
    # Once reported, a new generation's rollout is news from its start (observedGeneration).
    live = {k: v for k, v in status_of(observed(), ReconcileOutcome(1)).items() if v}
    next_rollout = status_of(observed(available=0, updated=0), ReconcileOutcome(2), live, "2.0.0")
    assert statuses(next_rollout)["Reconciling"] == "True" and reportable(live, next_rollout)
    # The written status replaces the default's conditions, Ready and Reconciling moving now.
    ready_now = status_of(observed(), ReconcileOutcome(1))
    assert {c["type"]: c["lastTransitionTime"] for c in ready_now["conditions"]} == {
        "Ready": "2025-01-01T12:00:00Z", "Reconciling": "2025-01-01T12:00:00Z",
        "Stalled": "2025-01-01T12:00:00Z"}
