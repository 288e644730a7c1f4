"""The rule behind VersionRejected: a rejected version stands while the machine rests."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from modelops_operator.challenge import ModelRef, Phase, Status
from modelops_operator.challenge.rejection import (
    Rejection,
    rejected_in_spec,
    rollback_reason,
    standing_rejection,
)
from modelops_operator.challenge.view import challenge_view
from modelops_operator.conditions import find_condition
from modelops_operator.status import ReconcileOutcome, compute_status
from tests.harness.gitops_documents import (
    START,
    V1,
    V2,
    V3,
    ChallengeRun,
    champion_deployment,
    model_spec,
)

ONE = ModelRef("1", "s3://m/1", "sha256:" + "1" * 64)
TWO = ModelRef("2", "s3://m/2", "sha256:" + "2" * 64)
REJECTED = Status(
    phase=Phase.ROLLED_BACK, champion=ONE, rejected=TWO, last_outcome=Phase.ROLLED_BACK
)
MOMENT = datetime.fromtimestamp(START, tz=UTC)


@pytest.mark.parametrize("phase", [Phase.IDLE, Phase.PROMOTED, Phase.ROLLED_BACK, Phase.FAILED])
def test_a_rejection_stands_at_rest(phase: Phase) -> None:
    assert standing_rejection(replace(REJECTED, phase=phase)) == TWO


@pytest.mark.parametrize(
    "phase", [Phase.PROGRESSING, Phase.AWAITING_APPROVAL, Phase.PROMOTING, Phase.ROLLING_BACK]
)
def test_no_rejection_stands_while_a_challenge_moves(phase: Phase) -> None:
    assert standing_rejection(replace(REJECTED, phase=phase, challenger=TWO)) is None


def test_only_the_same_model_in_spec_is_the_rejected_one() -> None:
    assert rejected_in_spec(REJECTED, TWO) == TWO
    assert rejected_in_spec(REJECTED, ONE) is None
    assert rejected_in_spec(REJECTED, replace(TWO, digest="sha256:" + "3" * 64)) is None
    assert rejected_in_spec(replace(REJECTED, rejected=None), TWO) is None


def test_the_reason_is_the_newest_rollback_of_that_version() -> None:
    history = [
        {"action": "RolledBack", "version": "2", "reason": "first"},
        {"action": "Promoted", "version": "2", "reason": "later"},
        {"action": "RolledBack", "version": "2", "reason": "newest"},
        {"action": "RolledBack", "version": "3", "reason": "other"},
    ]
    assert rollback_reason(history, "2") == "newest"
    assert rollback_reason(history, "4") == ""


def test_the_message_says_what_serves_and_how_to_fix_it() -> None:
    message = Rejection("2", "canary", "1", "gates failed").message()
    assert message.startswith("spec.model.version 2 was rolled back by ChampionChallenger "
                              "canary (gates failed); 1 keeps serving")  # fmt: skip
    assert "name another version" in message and "or 1 to accept the rollback" in message


def test_the_view_tells_the_deployment_from_the_challenge_status() -> None:
    view = challenge_view(ChallengeRun().rolled_back().body())
    rejection = view.rejection_of(ModelRef(V2, f"s3://models/fraud-{V2}.skops",
                                           "sha256:" + "2" * 64))  # fmt: skip
    assert rejection == Rejection(
        V2, "fraud-canary", V1, "gates failed: errors: challenger worse than the margin"
    )
    assert view.rejection_of(ModelRef(V3)) is None
    assert challenge_view(ChallengeRun().rolling_back().body()).rejected is None


def conditions_for(rejection: Rejection | None, **observed_kw: int) -> dict[str, dict]:
    status = compute_status(
        "fraud", "fraud", model_spec(V1), ReconcileOutcome(3),
        champion_deployment(V1, **observed_kw), None, MOMENT, rejection=rejection,
    )  # fmt: skip
    return {t: find_condition(status["conditions"], t) for t in ("Ready", "Reconciling", "Stalled")}


def test_a_rejected_version_in_spec_stalls_the_deployment_though_its_champion_serves() -> None:
    rejection = Rejection(V2, "fraud-canary", V1, "gates failed")
    found = conditions_for(rejection)
    assert {t: c["status"] for t, c in found.items()} == {
        "Ready": "False", "Reconciling": "False", "Stalled": "True",
    }  # fmt: skip
    assert found["Stalled"]["reason"] == "VersionRejected"
    assert found["Stalled"]["message"] == rejection.message()
    assert conditions_for(None)["Ready"]["status"] == "True"


def test_the_champion_is_still_recorded_as_live() -> None:
    status = compute_status(
        "fraud", "fraud", model_spec(V1), ReconcileOutcome(3), champion_deployment(V1), None,
        MOMENT, rejection=Rejection(V2, "fraud-canary", V1),
    )  # fmt: skip
    assert status["champion"]["version"] == V1


def test_the_machine_holds_exactly_while_the_rule_says_so() -> None:
    run = ChallengeRun().rolled_back()
    assert run.machine.rejected is not None and run.machine.rejected.version == V2
    held = run.tick()
    assert held.machine.phase is Phase.ROLLED_BACK and "was rolled back" in held.machine.message
    assert held.body()["status"]["rejected"]["namedByTarget"] is True
    run.desired = V1
    assert run.tick().body()["status"]["rejected"] == {
        "version": V2, "digest": "sha256:" + "2" * 64, "namedByTarget": False,
    }  # fmt: skip
