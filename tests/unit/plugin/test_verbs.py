"""Every verb's output in every format, from objects the operator's own models produce, through
`main()` with an in-memory client in place of the cluster."""

from __future__ import annotations

import json
import sys
import types
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelops_operator.plugin import main as main_module
from modelops_operator.plugin.views import format_report, format_status

from .fakes import NAMESPACE, NOW, FakeClient, challenge, deployment, record


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> FakeClient:
    fake = FakeClient(challenge(), deployment())
    monkeypatch.setattr(main_module, "connect", lambda target: (fake, NAMESPACE))
    return fake


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main_module.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def document(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = run(capsys, *argv, "-o", "json")
    assert code == 0, err
    as_yaml = run(capsys, *argv, "-o", "yaml")[1]
    assert yaml.safe_load(as_yaml) == json.loads(out)  # the same document in both formats
    return json.loads(out)


def test_list_challenges(cluster: FakeClient, capsys: pytest.CaptureFixture[str]) -> None:
    listed = document(capsys, "list")
    assert listed["kind"] == "List" and listed["apiVersion"] == "v1"
    assert [(i["kind"], i["metadata"]["name"]) for i in listed["items"]] == [
        ("ChampionChallenger", "fraud-canary")
    ]
    table = run(capsys, "list")[1]
    header, row = table.splitlines()
    assert header.split() == [
        "NAME", "TARGET", "PHASE", "CHAMPION", "CHALLENGER", "TRAFFIC", "DECISION", "AGE"
    ]  # fmt: skip
    assert row.split()[:7] == [
        "fraud-canary", "fraud", "Progressing", "1.1.0", "1.2.0", "25%", "Continue"
    ]  # fmt: skip
    assert run(capsys, "-A", "list")[1].split()[:2] == ["NAMESPACE", "NAME"]
    assert run(capsys, "list", "-o", "name")[1] == ("championchallenger.modelops.io/fraud-canary\n")
    line = json.loads(run(capsys, "list", "-o", "jsonl")[1])
    assert line["metadata"]["name"] == "fraud-canary"


def test_list_deployments(cluster: FakeClient, capsys: pytest.CaptureFixture[str]) -> None:
    listed = document(capsys, "list", "deployments")
    assert listed["items"][0]["kind"] == "ModelDeployment"
    header, row = run(capsys, "list", "mdep")[1].splitlines()
    assert header.split() == [
        "NAME", "MODEL", "LIVE", "DESIRED", "CHALLENGER", "PODS", "READY", "DRIFT/ACCURACY", "AGE"
    ]  # fmt: skip
    assert row.split()[:8] == ["fraud", "fraud", "1.1.0", "1.2.0", "-", "2/2", "True", "-"]


def test_the_monitors_states_show_in_the_deployments_table() -> None:
    from modelops_operator.plugin.views import deployments_table

    watched = {
        "metadata": {"name": "fraud", "namespace": "ml"},
        "spec": {"model": {"name": "fraud", "version": "1.0.0"}},
        "status": {
            "monitoring": {"drift": {"state": "Drifted"}, "accuracy": {"state": "Watching"}}
        },
    }
    row = deployments_table([watched], all_namespaces=False).splitlines()[1]
    assert "Drifted/Watching" in row.split()


def test_list_nothing(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    monkeypatch.setattr(main_module, "connect", lambda target: (FakeClient(), NAMESPACE))
    assert run(capsys, "list")[1] == "No challenges found.\n"
    assert json.loads(run(capsys, "list", "-o", "json")[1])["items"] == []


@pytest.mark.parametrize("verb", ["get", "status", "report"])
def test_get(verb: str, cluster: FakeClient, capsys: pytest.CaptureFixture[str]) -> None:
    shown = document(capsys, verb, "fraud-canary")
    assert shown["kind"] == "ChampionChallenger"
    assert shown["status"]["gates"][0]["samples"] == {"champion": 453, "challenger": 207}
    table = run(capsys, verb, "fraud-canary")[1]
    cc = challenge()
    assert table == (format_report(cc) if verb == "report" else format_status(cc)) + "\n"
    assert table.startswith(f"{NAMESPACE}/fraud-canary: Progressing")
    assert "accuracy          Pending" in table
    assert run(capsys, verb, "fraud-canary", "-o", "name")[1] == (
        "championchallenger.modelops.io/fraud-canary\n"
    )


def test_approve(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeClient(challenge(phase="AwaitingApproval"), user="bob")
    monkeypatch.setattr(main_module, "connect", lambda target: (fake, NAMESPACE))
    result = json.loads(run(capsys, "approve", "fraud-canary", "-o", "json")[1])
    assert result == {
        "apiVersion": "modelops.io/v1alpha1",
        "kind": "ActionResult",
        "action": "approve",
        "name": "fraud-canary",
        "namespace": NAMESPACE,
        "by": "bob",
        "version": "1.2.0",
        "challengeId": "1.2.0-1795392000",
        "message": f"approved 1.2.0 (1.2.0-1795392000) of {NAMESPACE}/fraud-canary as bob",
    }
    assert fake.patches[-1] == (
        "fraud-canary",
        {
            "metadata": {
                "annotations": {
                    "modelops.io/approved-version": "1.2.0-1795392000",
                    "modelops.io/approved-by": "bob",
                }
            }
        },
    )
    assert run(capsys, "approve", "fraud-canary")[1] == result["message"] + "\n"
    assert yaml.safe_load(run(capsys, "approve", "fraud-canary", "-o", "yaml")[1]) == result


@pytest.mark.parametrize("action", ["promote", "rollback"])
def test_orders(action: str, cluster: FakeClient, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [action, "fraud-canary"] + (["--force"] if action == "promote" else [])
    result = document(capsys, *argv)
    assert (result["action"], result["by"]) == (action, "alice")
    annotations = cluster.objects[("ChampionChallenger", "fraud-canary")]["metadata"]["annotations"]
    assert annotations == {
        "modelops.io/command": f"{action}/1.2.0-1795392000",
        "modelops.io/command-by": "alice",
    }
    said = run(capsys, *argv)[1]
    assert said == f"{action} of 1.2.0 requested for {NAMESPACE}/fraud-canary as alice\n"
    assert run(capsys, *argv, "-o", "name")[1] == "championchallenger.modelops.io/fraud-canary\n"


@pytest.mark.parametrize(
    ("argv", "phase", "says"),
    [
        (["approve"], "Progressing", "is Progressing, not AwaitingApproval: nothing to approve"),
        (["rollback"], "Promoted", "is Promoted: no challenge to rollback"),
        (["promote", "--force"], "Idle", "is Idle: no challenge to promote"),
    ],
)
def test_actions_refused_by_phase(
    argv: list[str],
    phase: str,
    says: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake = FakeClient(challenge(phase=phase))
    monkeypatch.setattr(main_module, "connect", lambda target: (fake, NAMESPACE))
    code, out, err = run(capsys, argv[0], "fraud-canary", *argv[1:], "-o", "json")
    assert (code, out) == (1, "")
    assert err.count("\n") == 1 and says in err and err.startswith("error: ")
    assert fake.patches == []


def test_pause_and_resume(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    fake = FakeClient(challenge(labels={"argocd.argoproj.io/instance": "risk-models"}))
    monkeypatch.setattr(main_module, "connect", lambda target: (fake, NAMESPACE))
    code, out, err = run(capsys, "pause", "fraud-canary", "-o", "json")
    assert code == 0
    result = json.loads(out)
    assert (result["action"], result["paused"], result["changed"], result["by"]) == (
        "pause",
        True,
        True,
        "alice",
    )
    assert fake.patches == [("fraud-canary", {"spec": {"paused": True}})]
    assert err.count("\n") == 1 and "Argo CD applies this object" in err
    assert "(paused)" in run(capsys, "list")[1]
    assert "PAUSED" in run(capsys, "get", "fraud-canary")[1]

    again = run(capsys, "pause", "fraud-canary")
    assert again[1] == f"{NAMESPACE}/fraud-canary is already paused\n" and again[2] == ""
    _, out, err = run(capsys, "resume", "fraud-canary")
    assert out == f"resumed {NAMESPACE}/fraud-canary (Progressing)\n"
    assert "a GitOps tool" not in err and "Argo CD" in err
    assert fake.patches[-1] == ("fraud-canary", {"spec": {"paused": False}})


def lineage_cluster() -> FakeClient:
    return FakeClient(
        challenge(),
        {"kind": "LineageRecord", **record("b", "RolledBack", "1.2.0", NOW)},
        {"kind": "LineageRecord", **record("a", "Promoted", "1.1.0", NOW - timedelta(days=2))},
    )


def test_history(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    fake = lineage_cluster()
    monkeypatch.setattr(main_module, "connect", lambda target: (fake, NAMESPACE))
    for name in ("fraud", "fraud-canary"):  # the deployment, or the challenge that gates it
        listed = document(capsys, "history", name)
        assert [r["metadata"]["name"] for r in listed["items"]] == ["a", "b"]  # oldest first
        assert listed["items"][0]["kind"] == "LineageRecord"
    lines = run(capsys, "history", "fraud")[1].splitlines()
    assert lines[0].split() == ["TIME", "EVENT", "VERSION", "PREVIOUS", "BY", "REASON"]
    assert lines[1].split()[1:5] == ["Promoted", "1.1.0", "1.0.0", "modelops"]
    assert lines[2].split() == ["accuracy", "Pass", "0.02", "[0.01,", "0.03]", "n=900/880"]
    assert lines[3].split()[1] == "RolledBack"
    assert run(capsys, "history", "-o", "name")[1].splitlines() == [
        "lineagerecord.modelops.io/a",
        "lineagerecord.modelops.io/b",
    ]
    assert "DEPLOYMENT" in run(capsys, "history")[1].splitlines()[0]


def test_history_without_the_crd_reads_status(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeClient(challenge())
    fake.unserved.add("LineageRecord")
    monkeypatch.setattr(main_module, "connect", lambda target: (fake, NAMESPACE))
    code, out, err = run(capsys, "history", "fraud")
    assert code == 0
    assert out.splitlines()[1].split()[1:4] == ["Promoted", "1.1.0", "1.0.0"]
    assert err.startswith("note: no LineageRecord CRD") and err.count("\n") == 1
    entries = json.loads(run(capsys, "history", "fraud-canary", "-o", "json")[1])["items"]
    assert entries[0]["challenge"] == "fraud-canary" and entries[0]["action"] == "Promoted"


def test_export(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    fake = lineage_cluster()
    monkeypatch.setattr(main_module, "connect", lambda target: (fake, NAMESPACE))
    lines = run(capsys, "export")[1].splitlines()  # JSON lines unless told otherwise
    assert [json.loads(line)["metadata"]["name"] for line in lines] == ["a", "b"]
    recent = run(capsys, "export", "--since", NOW.isoformat())[1].splitlines()
    assert [json.loads(line)["spec"]["event"] for line in recent] == ["RolledBack"]
    assert document(capsys, "export", "-A")["items"][1]["spec"]["model"]["version"] == "1.2.0"
    assert "DEPLOYMENT" in run(capsys, "export", "-o", "table")[1]
    fake.unserved.add("LineageRecord")
    code, _, err = run(capsys, "export")
    assert code == 1 and "no LineageRecord CRD" in err and err.count("\n") == 1
    code, _, err = run(capsys, "export", "--since", "yesterday")
    assert code == 2 and "invalid --since 'yesterday'" in err


def test_card(
    cluster: FakeClient,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    calls = []

    def write_card(client: Any, namespace: str, name: str, directory: Path):
        calls.append((client, namespace, name, directory))
        return directory / f"{name}.md", directory / f"{name}.html"

    module = types.ModuleType("modelops_operator.lineage.card")
    module.write_card = write_card  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "modelops_operator.lineage.card", module)
    monkeypatch.setitem(
        sys.modules, "modelops_operator.lineage", types.ModuleType("modelops_operator.lineage")
    )
    card = document(capsys, "card", "fraud", "-d", str(tmp_path))
    assert card["kind"] == "ModelCard" and card["markdown"] == str(tmp_path / "fraud.md")
    assert calls[0] == (cluster, NAMESPACE, "fraud", tmp_path)
    table = run(capsys, "card", "fraud", "-d", str(tmp_path))[1]
    assert table == f"markdown: {tmp_path / 'fraud.md'}\nhtml:     {tmp_path / 'fraud.html'}\n"

    monkeypatch.setitem(sys.modules, "modelops_operator.lineage.card", None)  # not built in
    code, _, err = run(capsys, "card", "fraud")
    assert code == 1 and "cannot write model cards" in err and err.count("\n") == 1


def test_dashboard(
    cluster: FakeClient, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls = []

    def serve(client: Any, namespace: str, address: str, port: int, browse: bool,
              announce: Any) -> None:  # fmt: skip
        # The real server tells the URL once bound; the plugin shows it in the chosen format.
        calls.append((client, namespace, address, port, browse))
        announce(f"http://{address}:{port}/")

    module = types.ModuleType("modelops_operator.dashboard")
    module.serve = serve  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "modelops_operator.dashboard", module)
    code, out, _ = run(capsys, "dashboard", "--port", "3200", "--no-browser", "-o", "json")
    assert code == 0
    assert json.loads(out) == {
        "kind": "Dashboard",
        "url": "http://127.0.0.1:3200/",
        "namespace": NAMESPACE,
    }
    assert calls == [(cluster, NAMESPACE, "127.0.0.1", 3200, False)]
    assert "dashboard on http://127.0.0.1:3100/" in run(capsys, "dashboard")[1]
    assert calls[-1][-1] is True


def test_version_and_completion(capsys: pytest.CaptureFixture[str]) -> None:
    version = document(capsys, "version")
    assert version["kind"] == "Version" and version["clientVersion"]
    assert run(capsys, "version")[1].startswith("kubectl-modelops ")
    assert "complete -F _kubectl_modelops kubectl-modelops" in run(capsys, "completion", "bash")[1]
    assert "compdef _kubectl_modelops kubectl-modelops" in run(capsys, "completion", "zsh")[1]


def test_get_of_a_deployment_names_its_challenges(
    cluster: FakeClient, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "get", "fraud", "-o", "json")
    assert (code, out) == (1, "")
    assert err == (
        f'error: "fraud" in namespace "{NAMESPACE}" is a ModelDeployment, not a '
        "ChampionChallenger; the challenges gating it: fraud-canary\n"
    )
    code, _, err = run(capsys, "status", "nothing")
    assert code == 1 and 'ChampionChallenger "nothing" not found' in err
