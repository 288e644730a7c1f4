"""The ChampionChallenger's Argo CD actions: offered per phase, and what each one writes."""

from __future__ import annotations

from typing import Any

import pytest
from lupa.lua51 import LuaError

from modelops_operator.constants import (
    ANNOTATION_APPROVED_BY,
    ANNOTATION_APPROVED_VERSION,
    ANNOTATION_COMMAND,
    ANNOTATION_COMMAND_BY,
)
from modelops_operator.constants import ANNOTATION_COMMAND as COMMAND
from tests.harness.argocd_lua import ACTIONS, action, discovery
from tests.harness.gitops_documents import ChallengeRun, challenge_spec

ARGOCD = "system:serviceaccount:argocd:argocd-server"


def gated() -> ChallengeRun:
    return ChallengeRun(spec=challenge_spec(approval=True))


# Which actions each phase offers (pause/resume follow spec.paused, false here).
OFFERED = {
    "Idle": (lambda: ChallengeRun().tick(), {"pause"}),
    "Progressing": (lambda: ChallengeRun().started(), {"promote", "rollback", "pause"}),
    "AwaitingApproval": (
        lambda: gated().gates_passed(),
        {"approve", "promote", "rollback", "pause"},
    ),
    "Promoting": (lambda: gated().promoting(), {"pause"}),
    "Promoted": (lambda: ChallengeRun().promoted(), {"pause"}),
    "RollingBack": (lambda: ChallengeRun().rolling_back(), {"pause"}),
    "RolledBack": (lambda: ChallengeRun().rolled_back(), {"pause"}),
    "Failed": (lambda: ChallengeRun().tick().failed(), {"pause"}),
}


def enabled(body: dict[str, Any]) -> set[str]:
    offered = discovery(body)
    assert set(offered) == set(ACTIONS)  # every action is listed; the phase enables some
    return {name for name, on in offered.items() if on}


@pytest.mark.parametrize("phase", sorted(OFFERED))
def test_discovery_offers_what_the_phase_allows(phase: str) -> None:
    walk, expected = OFFERED[phase]
    body = walk().body()
    assert body["status"]["phase"] == phase
    assert enabled(body) == expected


def test_a_paused_challenge_offers_resume_not_pause() -> None:
    run = ChallengeRun().started()
    body = run.edit_spec(challenge_spec(paused=True)).tick(challenger_ready=True).body()
    assert enabled(body) == {"promote", "rollback", "resume"}


def changes(before: Any, after: Any, path: str = "") -> dict[str, Any]:
    """Every leaf that differs, by path: what Argo CD's patch would carry."""
    if isinstance(after, dict) and isinstance(before, dict | None):
        before = before or {}
        out: dict[str, Any] = {}
        for key in before.keys() | after.keys():
            out.update(changes(before.get(key), after.get(key), f"{path}.{key}"))
        return out
    return {} if before == after else {path: after}


def test_approve_names_this_challenge_and_argo_cds_account() -> None:
    body = gated().gates_passed().body()
    challenge = body["status"]["machine"]["challengeId"]
    assert changes(body, action("approve", body)) == {
        f".metadata.annotations.{ANNOTATION_APPROVED_VERSION}": challenge,
        f".metadata.annotations.{ANNOTATION_APPROVED_BY}": ARGOCD,
    }


@pytest.mark.parametrize("verb", ["promote", "rollback"])
def test_commands_name_this_challenge_like_kubectl_modelops(verb: str) -> None:
    body = gated().gates_passed().body()
    body["metadata"]["annotations"] = {"team": "fraud"}  # other annotations are kept
    challenge = body["status"]["machine"]["challengeId"]
    result = action(verb, body)
    assert changes(body, result) == {
        f".metadata.annotations.{ANNOTATION_COMMAND}": f"{verb}/{challenge}",
        f".metadata.annotations.{ANNOTATION_COMMAND_BY}": ARGOCD,
    }
    assert result["metadata"]["annotations"]["team"] == "fraud"
    assert ANNOTATION_COMMAND == COMMAND  # the annotation the plugin writes


def test_the_machine_obeys_what_the_actions_write() -> None:
    """The annotations the actions write are the ones the controller reads."""
    from modelops_operator.challenge.controller import command_from

    run = ChallengeRun().started()
    body = run.body()
    annotations = action("rollback", body)["metadata"]["annotations"]
    command = command_from(annotations, run.machine.challenge_id)
    assert command is not None and (command.action, command.user) == ("rollback", ARGOCD)
    rolled = run.tick(challenger_ready=True, command=command)
    assert rolled.body()["status"]["phase"] == "RollingBack"

    waiting = gated().gates_passed()
    approval = action("approve", waiting.body())["metadata"]["annotations"]
    promoting = waiting.tick(
        challenger_ready=True,
        approved_version=approval[ANNOTATION_APPROVED_VERSION],
        approved_by=approval[ANNOTATION_APPROVED_BY],
    )
    assert promoting.body()["status"]["phase"] == "Promoting"
    assert f"approved by {ARGOCD}" in promoting.body()["status"]["message"]


@pytest.mark.parametrize(
    ("verb", "walk"),
    [
        ("approve", lambda: ChallengeRun().started()),
        ("promote", lambda: ChallengeRun().rolled_back()),
        ("rollback", lambda: ChallengeRun().tick()),
    ],
)
def test_an_action_the_phase_does_not_allow_fails_and_writes_nothing(verb: str, walk) -> None:
    with pytest.raises(LuaError, match="fraud-canary is"):
        action(verb, walk().body())


def test_pause_and_resume_set_spec_paused() -> None:
    body = ChallengeRun().started().body()
    paused = action("pause", body)
    assert changes(body, paused) == {".spec.paused": True}
    assert changes(paused, action("resume", paused)) == {".spec.paused": False}
