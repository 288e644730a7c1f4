"""Completion candidates without a cluster, and when a watched challenge counts as settled."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelops_operator.plugin import completion
from modelops_operator.plugin.connection import Target
from modelops_operator.plugin.watching import failed, settled

from .fakes import FakeClient, challenge, challenge_status, deployment


def offered(capsys: pytest.CaptureFixture[str], *words: str) -> list[str]:
    assert completion.complete(list(words)) == 0
    return capsys.readouterr().out.splitlines()


def test_verbs_flags_and_values(capsys: pytest.CaptureFixture[str]) -> None:
    verbs = offered(capsys, "")
    assert verbs[-1] == ":4" and "list" in verbs and "__complete" not in verbs
    assert offered(capsys, "pa") == ["pause", ":4"]
    assert offered(capsys, "-n", "risk", "re") == ["report", "resume", ":4"]
    assert "--namespace" in offered(capsys, "get", "x", "--na")
    assert offered(capsys, "list", "-o", "j") == ["json", "jsonl", ":4"]
    assert offered(capsys, "list", "d") == ["deployments", ":4"]
    assert offered(capsys, "completion", "") == ["bash", "zsh", ":4"]
    assert offered(capsys, "card", "x", "-d", "") == [":0"]  # the shell completes paths
    assert offered(capsys, "get", "x", "") == [":4"]  # one name only


def test_contexts_from_the_kubeconfig(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config"
    config.write_text(
        json.dumps(
            {
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "contexts": [
                    {"name": name, "context": {"cluster": "c"}} for name in ("prod", "dev")
                ],
            }
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(config))
    assert offered(capsys, "list", "--context", "") == ["dev", "prod", ":4"]
    assert offered(capsys, "--kubeconfig", str(config), "list", "--context", "p") == [
        "prod",
        ":4",
    ]


def test_names_come_from_the_namespace_on_the_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Target] = []

    def connect(target: Target):
        seen.append(target)
        return FakeClient(challenge(), deployment()), target.namespace

    monkeypatch.setattr(completion, "connect", connect)
    assert offered(capsys, "approve", "-n", "risk", "--context", "prod", "f") == [
        "fraud-canary",
        ":4",
    ]
    assert (seen[-1].namespace, seen[-1].context) == ("risk", "prod")
    assert offered(capsys, "history", "--namespace=risk", "") == ["fraud", "fraud-canary", ":4"]
    assert offered(capsys, "card", "") == ["fraud", ":4"]


def test_completion_swallows_failures(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable(target: Target):
        raise OSError("no route")

    monkeypatch.setattr(completion, "connect", unreachable)
    assert offered(capsys, "get", "") == [":4"]


@pytest.mark.parametrize(
    ("phase", "champion", "history_version", "desired", "done"),
    [
        ("Progressing", "1.1.0", None, "1.2.0", False),
        ("AwaitingApproval", "1.1.0", None, "1.2.0", False),
        ("Promoting", "1.1.0", None, "1.2.0", False),
        ("Promoted", "1.2.0", None, "1.2.0", True),
        # The previous challenge's phase, before the operator noticed the new version:
        ("Promoted", "1.1.0", None, "1.2.0", False),
        ("Idle", "1.1.0", None, "1.1.0", True),
        ("RolledBack", "1.1.0", "1.2.0", "1.2.0", True),
        ("RolledBack", "1.1.0", "1.2.0", "1.3.0", False),
        ("RolledBack", "1.1.0", "1.2.0", "1.1.0", True),  # reverted in Git
        ("Failed", "1.1.0", None, "1.2.0", True),
        ("Promoted", "1.2.0", None, None, True),  # the deployment cannot be read
    ],
)
def test_settled(
    phase: str, champion: str, history_version: str | None, desired: str | None, done: bool
) -> None:
    cc = challenge(phase=phase)
    history = [{"action": "RolledBack", "version": history_version}] if history_version else []
    cc["status"] = challenge_status(phase, champion={"version": champion}, history=history)
    assert settled(cc, desired) is done
    assert failed(cc) is (phase in ("RolledBack", "Failed"))
