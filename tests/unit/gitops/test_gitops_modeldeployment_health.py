"""The ModelDeployment's Argo CD health check on statuses `compute_status` produced."""

from __future__ import annotations

from modelops_operator.observe import PodFailure
from modelops_operator.status import Blocker
from tests.harness.argocd_lua import health
from tests.harness.gitops_documents import (
    V1,
    V2,
    V3,
    ChallengeRun,
    champion_deployment,
    deployment_object,
)


def health_of(body: dict) -> tuple[str, str]:
    return health("ModelDeployment", body)


def test_a_rolled_out_deployment_is_healthy() -> None:
    body = deployment_object(V1, observed=champion_deployment(V1))
    assert health_of(body) == ("Healthy", f"2/2 replicas ready, serving fraud {V1}")


def test_rolling_out_and_waiting_for_the_deployment_are_progressing() -> None:
    rolling = deployment_object(V1, observed=champion_deployment(V1, available=1))
    status, message = health_of(rolling)
    assert (status, message.split(":")[0]) == ("Progressing", "RollingOut")
    status, message = health_of(deployment_object(V1))
    assert (status, message.split(":")[0]) == ("Progressing", "Creating")


def test_stalled_is_degraded_with_the_reason() -> None:
    blocked = deployment_object(
        V1, blocker=Blocker("InvalidSpec", "spec.model.uri", "spec.model.uri: bad scheme")
    )
    assert health_of(blocked) == ("Degraded", "InvalidSpec: spec.model.uri: bad scheme")
    failure = PodFailure("fraud-champion-x", V1, "model-fetch", "Error", "digest mismatch")
    failing = deployment_object(
        V1, observed=champion_deployment(V1, available=0), failures=(failure,)
    )
    status, message = health_of(failing)
    assert (status, message.split(":")[0]) == ("Degraded", "ModelFetchFailed")


def test_no_status_yet_and_a_spec_not_yet_observed_are_progressing() -> None:
    body = deployment_object(V1, observed=champion_deployment(V1))
    del body["status"]
    assert health_of(body) == ("Progressing", "waiting for the operator to observe generation 3")
    lagging = deployment_object(V1, observed=champion_deployment(V1))
    lagging["metadata"]["generation"] = 4  # Git changed the spec; the operator has not seen it
    assert health_of(lagging) == (
        "Progressing",
        "waiting for the operator to observe generation 4",
    )


def test_a_version_git_names_after_its_rollback_is_degraded_naming_version_and_challenge() -> None:
    challenge = ChallengeRun().rolled_back()
    body = deployment_object(V2, challenge=challenge, observed=champion_deployment(V1))
    status, message = health_of(body)
    assert status == "Degraded"
    assert message.startswith(
        f"VersionRejected: spec.model.version {V2} was rolled back by ChampionChallenger "
        "fraud-canary (gates failed: errors: challenger worse than the margin)"
    )
    assert f"{V1} keeps serving" in message and "Fix it in Git" in message
    # The same champion, while Git names the champion or a fix, is healthy.
    for version in (V1, V3):
        fixed = deployment_object(version, challenge=challenge, observed=champion_deployment(V1))
        assert health_of(fixed)[0] == "Healthy"


def test_during_a_challenge_the_deployment_reports_its_live_champion() -> None:
    # The challenge carries the change (its own health is Progressing); the endpoint serves.
    challenge = ChallengeRun().started()
    body = deployment_object(V2, challenge=challenge, observed=champion_deployment(V1))
    assert health_of(body) == ("Healthy", f"2/2 replicas ready, serving fraud {V1}")
