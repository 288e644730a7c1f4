"""The ChampionChallenger's Argo CD health check on statuses the state machine produced."""

from __future__ import annotations

import pytest

from modelops_operator.api.championchallenger import PHASES
from tests.harness.argocd_lua import health
from tests.harness.gitops_documents import (
    V1,
    V2,
    V3,
    ChallengeRun,
    challenge_spec,
)


def health_of(run: ChallengeRun) -> tuple[str, str]:
    return health("ChampionChallenger", run.body())


def gated_run() -> ChallengeRun:
    return ChallengeRun(spec=challenge_spec(approval=True))


# Each phase of the machine, reached through its real transitions, and the health it shows.
PHASE_WALKS = {
    "Idle": (lambda: ChallengeRun().tick(), "Healthy"),
    "Progressing": (lambda: ChallengeRun().started(), "Progressing"),
    "AwaitingApproval": (lambda: gated_run().gates_passed(), "Suspended"),
    "Promoting": (lambda: gated_run().promoting(), "Progressing"),
    "Promoted": (lambda: ChallengeRun().promoted(), "Healthy"),
    "RollingBack": (lambda: ChallengeRun().rolling_back(), "Progressing"),
    "RolledBack": (lambda: ChallengeRun().rolled_back(), "Degraded"),  # Git still names V2
    "Failed": (lambda: ChallengeRun().tick().failed(), "Degraded"),
}


def test_every_phase_of_the_crd_is_covered() -> None:
    assert set(PHASE_WALKS) == set(PHASES)


@pytest.mark.parametrize("phase", sorted(PHASE_WALKS))
def test_each_phase_has_its_health(phase: str) -> None:
    walk, expected = PHASE_WALKS[phase]
    run = walk()
    assert run.body()["status"]["phase"] == phase
    assert health_of(run)[0] == expected


def test_no_status_yet_and_a_spec_not_yet_observed_are_progressing() -> None:
    run = ChallengeRun().rolled_back()
    body = run.body()
    assert health("ChampionChallenger", {**body, "status": None}) == (
        "Progressing",
        "waiting for the operator to observe generation 1",
    )
    del body["status"]
    assert health("ChampionChallenger", body)[0] == "Progressing"
    # Git changed the spec; the status still speaks of the generation before: not Degraded.
    lagging = run.edit_spec(challenge_spec(approval=True))
    assert health_of(lagging) == (
        "Progressing",
        "waiting for the operator to observe generation 2",
    )
    assert health_of(lagging.tick())[0] == "Degraded"  # once seen, the rejection still stands


def test_awaiting_approval_says_which_version_and_how_to_approve() -> None:
    status, message = health_of(gated_run().gates_passed())
    assert status == "Suspended"
    assert message.startswith(f"awaiting approval of {V2}: kubectl modelops approve")
    assert "fraud-canary -n fraud" in message


def test_rolled_back_is_degraded_only_while_git_names_the_rejected_version() -> None:
    run = ChallengeRun().rolled_back()
    status, message = health_of(run)
    assert status == "Degraded"
    assert f"{V2} was rolled back and ModelDeployment fraud still names it" in message
    assert f"{V1} keeps serving" in message

    run.desired = V1  # Git accepts the rollback: the champion's version again
    assert health_of(run.tick()) == ("Healthy", f"RolledBack: {V1} is serving")

    run.desired = V3  # Git names a fix: a new challenge starts
    assert health_of(run.tick())[0] == "Progressing"


def test_a_promotion_of_a_fix_clears_the_rejection() -> None:
    moving = ChallengeRun().rolled_back().promoting(V3)
    assert "rejected" not in moving.body()["status"]  # no rejection stands while one moves
    run = ChallengeRun().rolled_back().promoted(V3)
    assert "rejected" not in run.body()["status"]
    assert health_of(run) == ("Healthy", f"Promoted: {V3} promoted: gates passed")


def test_paused_is_suspended_except_halfway_through_a_swap() -> None:
    run = ChallengeRun().started()
    run.edit_spec(challenge_spec(paused=True)).tick(challenger_ready=True)
    status, message = health_of(run)
    assert status == "Suspended"
    assert message.startswith("paused (spec.paused is true) in phase Progressing")

    swapping = ChallengeRun().promoting()
    swapping.edit_spec(challenge_spec(paused=True)).tick(route_applied=True)
    assert swapping.body()["status"]["phase"] == "Promoting"
    assert health_of(swapping)[0] == "Progressing"  # a pause waits for the swap to finish

    resting = ChallengeRun().tick()
    resting.edit_spec(challenge_spec(paused=True)).tick()
    assert health_of(resting)[0] == "Suspended"


def test_a_rejected_version_outweighs_a_pause() -> None:
    run = ChallengeRun().rolled_back()
    run.edit_spec(challenge_spec(paused=True)).tick()
    assert health_of(run)[0] == "Degraded"


def test_a_policy_not_yet_in_force_is_progressing() -> None:
    # No champion rolled out yet: the challenge cannot hold a change back (Reconciling).
    run = ChallengeRun().tick(live_champion=None)
    assert run.body()["status"]["phase"] == "Idle"
    assert health_of(run) == (
        "Progressing",
        "WaitingForChampion: waiting for the target's first rollout",
    )


def test_failed_names_the_field() -> None:
    status, message = health_of(ChallengeRun().tick().failed())
    assert status == "Degraded"
    assert message.startswith("ConfigError: configuration error: spec.targetRef.name")
