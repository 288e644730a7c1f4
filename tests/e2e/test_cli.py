"""`kubectl modelops` against a real API server: every verb through the console program, with
`-o json` and with the global flags after the verb.

No operator runs here: the CLI only talks to the API server. Where a verb needs a phase (approve
needs AwaitingApproval, orders need a running challenge), the test writes that status itself
with a status patch; how the operator reacts to the annotations is covered by the real-node
tests (tests/e2e/realnode/test_challenge.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelops_devcluster.cluster import DevCluster
from tests.harness.chart import render_template

from .operator_fixtures import get_json

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
POLICY = "approval-policy.yaml"
MDEP_EXAMPLE = REPO / "examples" / "modeldeployment-sklearn.yaml"
CC_EXAMPLE = REPO / "examples" / "championchallenger-canary.yaml"
CC = "iris-canary"
CHALLENGE_ID = "1.1.0-1795392000"


@pytest.fixture(scope="module")
def cluster(devcluster: DevCluster) -> DevCluster:
    """CRDs (LineageRecord included) and the approval policy the annotations go through."""
    devcluster.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    devcluster.kubectl("wait", "--for=condition=Established", "-f", str(REPO / "crds"))
    devcluster.kubectl(
        "apply", "--server-side", "-f", "-",
        input=render_template(Path(devcluster.bin_dir) / "helm", POLICY),
    )
    return devcluster


@pytest.fixture
def challenge(cluster: DevCluster, namespace: str) -> str:
    cluster.kubectl("apply", "-n", namespace, "-f", str(MDEP_EXAMPLE))
    cluster.kubectl("apply", "-n", namespace, "-f", str(CC_EXAMPLE))
    return namespace


def cli(
    cluster: DevCluster, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelops_operator.plugin", *args],
        env=env or cluster.env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def ok(cluster: DevCluster, *args: str) -> str:
    result = cli(cluster, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def one_error_line(result: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def set_status(cluster: DevCluster, namespace: str, status: dict[str, Any]) -> None:
    # The operator's job, written by the test: see the module docstring.
    cluster.kubectl(
        "patch", "-n", namespace, f"cc/{CC}", "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )  # fmt: skip


def annotations(cluster: DevCluster, namespace: str) -> dict[str, str]:
    return get_json(cluster, "-n", namespace, f"cc/{CC}")["metadata"].get("annotations") or {}


def test_reads_with_every_output_and_flags_after_the_verb(
    cluster: DevCluster, challenge: str
) -> None:
    namespace = challenge
    listed = json.loads(ok(cluster, "list", "-n", namespace, "-o", "json"))
    assert listed["kind"] == "List"
    assert [i["metadata"]["name"] for i in listed["items"]] == [CC]
    assert listed["items"][0]["kind"] == "ChampionChallenger"

    table = ok(cluster, "list", "--namespace", namespace)
    assert table.split()[:8] == [
        "NAME", "TARGET", "PHASE", "CHAMPION", "CHALLENGER", "TRAFFIC", "DECISION", "AGE"
    ]  # fmt: skip
    assert f"{CC}   iris" in table

    everywhere = ok(cluster, "-A", "list", "-o", "name")
    assert f"championchallenger.modelops.io/{CC}" in everywhere.splitlines()
    deployments = yaml.safe_load(ok(cluster, "list", "deployments", "-o", "yaml", "-n", namespace))
    assert [i["metadata"]["name"] for i in deployments["items"]] == ["iris"]

    got = json.loads(ok(cluster, "get", CC, "-o", "json", "-n", namespace))
    assert got["kind"] == "ChampionChallenger" and got["spec"]["targetRef"]["name"] == "iris"
    assert json.loads(ok(cluster, "-n", namespace, "status", CC, "-o", "jsonl"))["metadata"]
    shown = ok(cluster, "status", CC, "-n", namespace)
    assert shown.startswith(f"{namespace}/{CC}: Idle")
    assert ok(cluster, "report", CC, "-n", namespace, "-o", "name").strip() == (
        f"championchallenger.modelops.io/{CC}"
    )


def test_watch_exits_when_the_challenge_settles(cluster: DevCluster, challenge: str) -> None:
    namespace = challenge
    set_status(
        cluster,
        namespace,
        {"phase": "Progressing", "champion": {"version": "1.0.0"},
         "challenger": {"version": "1.1.0"}, "trafficPercent": 5},
    )  # fmt: skip
    cluster.kubectl(
        "patch", "-n", namespace, "mdep/iris", "--type=merge",
        "-p", json.dumps({"spec": {"model": {"version": "1.1.0"}}}),
    )  # fmt: skip
    watcher = subprocess.Popen(
        [sys.executable, "-m", "modelops_operator.plugin", "get", CC, "--watch",
         "--timeout", "60s", "-n", namespace, "-o", "jsonl"],
        env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(3)
    assert watcher.poll() is None, watcher.communicate()
    set_status(
        cluster,
        namespace,
        {"phase": "Promoted", "champion": {"version": "1.1.0"}, "challenger": None,
         "trafficPercent": 100},
    )  # fmt: skip
    out, err = watcher.communicate(timeout=30)
    assert watcher.returncode == 0, err
    phases = [json.loads(line)["status"]["phase"] for line in out.splitlines()]
    assert phases[0] == "Progressing" and phases[-1] == "Promoted"

    # `status --watch` gates a pipeline like `kubectl argo rollouts status`: a rollback fails it.
    set_status(
        cluster,
        namespace,
        {"phase": "RolledBack", "champion": {"version": "1.0.0"}, "message": "gates failed",
         "history": [{"time": "2026-12-01T00:00:00Z", "action": "RolledBack",
                      "version": "1.1.0", "previous": "1.0.0"}]},
    )  # fmt: skip
    rolled_back = cli(cluster, "status", CC, "-n", namespace, "--watch", "--timeout", "20s")
    line = one_error_line(rolled_back)
    assert "RolledBack: gates failed" in line
    assert f"{namespace}/{CC}: RolledBack" in rolled_back.stdout

    cluster.kubectl(
        "patch", "-n", namespace, "mdep/iris", "--type=merge",
        "-p", json.dumps({"spec": {"model": {"version": "1.2.0"}}}),
    )  # fmt: skip
    waiting = cli(cluster, "status", CC, "-w", "--timeout", "2s", "-n", namespace)
    assert "timed out after 2s" in one_error_line(waiting)


def test_pause_and_resume_set_spec_paused(cluster: DevCluster, challenge: str) -> None:
    namespace = challenge
    paused = cli(cluster, "pause", CC, "-n", namespace, "-o", "json")
    assert paused.returncode == 0, paused.stderr
    result = json.loads(paused.stdout)
    assert result["kind"] == "ActionResult" and result["action"] == "pause"
    assert result["changed"] is True and result["by"]
    assert paused.stderr.startswith("warning: spec.paused is part of spec")
    assert get_json(cluster, "-n", namespace, f"cc/{CC}")["spec"]["paused"] is True
    assert "(paused)" in ok(cluster, "list", "-n", namespace)

    again = json.loads(ok(cluster, "-n", namespace, "pause", CC, "-o", "json"))
    assert again["changed"] is False
    assert "resumed" in ok(cluster, "resume", CC, "-n", namespace)
    assert get_json(cluster, "-n", namespace, f"cc/{CC}")["spec"]["paused"] is False


def test_approve_promote_and_rollback_write_the_annotations(
    cluster: DevCluster, challenge: str
) -> None:
    namespace = challenge
    early = cli(cluster, "approve", CC, "-n", namespace, "-o", "json")
    assert "not AwaitingApproval" in one_error_line(early)

    set_status(
        cluster,
        namespace,
        {"phase": "AwaitingApproval", "challenger": {"version": "1.1.0"},
         "machine": {"challengeId": CHALLENGE_ID}},
    )  # fmt: skip
    approved = json.loads(ok(cluster, "approve", CC, "-n", namespace, "-o", "json"))
    assert approved["action"] == "approve" and approved["challengeId"] == CHALLENGE_ID
    assert approved["namespace"] == namespace and approved["name"] == CC
    stored = annotations(cluster, namespace)
    assert stored["modelops.io/approved-version"] == CHALLENGE_ID
    assert stored["modelops.io/approved-by"] == approved["by"]

    set_status(cluster, namespace, {"phase": "Progressing"})
    promoted = json.loads(ok(cluster, "promote", CC, "--force", "-n", namespace, "-o", "json"))
    assert promoted["action"] == "promote"
    stored = annotations(cluster, namespace)
    assert stored["modelops.io/command"] == f"promote/{CHALLENGE_ID}"
    assert stored["modelops.io/command-by"] == promoted["by"]

    said = ok(cluster, "rollback", CC, "-n", namespace)
    assert said.startswith(f"rollback of 1.1.0 requested for {namespace}/{CC} as ")
    assert annotations(cluster, namespace)["modelops.io/command"] == f"rollback/{CHALLENGE_ID}"

    set_status(cluster, namespace, {"phase": "Promoted"})
    late = cli(cluster, "rollback", CC, "-n", namespace)
    assert "Promoted: no challenge to rollback" in one_error_line(late)


def lineage_record(name: str, event: str, version: str, previous: str, when: datetime):
    return {
        "apiVersion": "modelops.io/v1alpha1",
        "kind": "LineageRecord",
        "metadata": {
            "name": name,
            "labels": {
                "modelops.io/deployment": "iris",
                "modelops.io/challenge": CC,
                "modelops.io/event": event,
                "modelops.io/model-version": version,
            },
        },
        "spec": {
            "event": event,
            "deployment": "iris",
            "challenge": CC,
            "model": {"name": "iris", "version": version, "digest": "sha256:" + "a" * 64},
            "previous": {"version": previous},
            "outcome": version if event == "Promoted" else previous,
            "reason": f"{event.lower()} by the gates",
            "decidedBy": "modelops",
            "evidence": [
                {"name": "errors", "type": "errorRate", "verdict": "Pass", "estimate": -0.01,
                 "lower": -0.05, "upper": 0.02, "samples": {"champion": 900, "challenger": 850}}
            ],
            "decidedAt": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    }  # fmt: skip


def test_history_and_export_read_lineage_records(cluster: DevCluster, challenge: str) -> None:
    namespace = challenge
    now = datetime.now(UTC)
    records = [
        lineage_record("iris-old", "Promoted", "1.0.0", "0.9.0", now - timedelta(days=3)),
        lineage_record("iris-new", "RolledBack", "1.1.0", "1.0.0", now - timedelta(minutes=5)),
    ]
    cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(records)
    )  # fmt: skip

    history = json.loads(ok(cluster, "history", "iris", "-n", namespace, "-o", "json"))
    assert [r["metadata"]["name"] for r in history["items"]] == ["iris-old", "iris-new"]
    by_challenge = json.loads(ok(cluster, "history", CC, "-o", "json", "-n", namespace))
    assert len(by_challenge["items"]) == 2  # a challenge's name stands for its deployment
    table = ok(cluster, "history", "iris", "-n", namespace)
    header, first, evidence, *_ = table.splitlines()
    assert header.split() == ["TIME", "EVENT", "VERSION", "PREVIOUS", "BY", "REASON"]
    assert "Promoted" in first and "0.9.0" in first
    assert evidence.split()[:2] == ["errors", "Pass"] and "n=900/850" in evidence

    exported = ok(cluster, "export", "-A", "--since", "24h")
    lines = [json.loads(line) for line in exported.splitlines()]
    assert [r["metadata"]["name"] for r in lines if r["metadata"]["namespace"] == namespace] == [
        "iris-new"
    ]
    whole = json.loads(ok(cluster, "export", "-n", namespace, "-o", "json"))
    assert [r["metadata"]["name"] for r in whole["items"]] == ["iris-old", "iris-new"]


def test_a_lineage_record_cannot_be_rewritten(cluster: DevCluster, namespace: str) -> None:
    record = lineage_record("iris-fixed", "Promoted", "1.0.0", "0.9.0", datetime.now(UTC))
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(record))
    edit = cluster.kubectl(
        "patch", "-n", namespace, "lineagerecord/iris-fixed", "--type=merge",
        "-p", json.dumps({"spec": {"reason": "rewritten later"}}), check=False,
    )  # fmt: skip
    assert edit.returncode != 0
    assert "spec is immutable" in edit.stderr
    spec = get_json(cluster, "-n", namespace, "lineagerecord/iris-fixed")["spec"]
    assert spec["reason"] == "promoted by the gates"


def write_kubeconfig(path: Path, server: str, token: str, ca_file: Path | None) -> Path:
    cluster_entry: dict[str, Any] = {"server": server}
    if ca_file:
        cluster_entry["certificate-authority"] = str(ca_file)
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "c",
                "clusters": [{"name": "c", "cluster": cluster_entry}],
                "users": [{"name": "u", "user": {"token": token}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
            }
        )
    )
    return path


def test_failures_are_one_line_with_the_fix(
    cluster: DevCluster, challenge: str, tmp_path: Path
) -> None:
    namespace = challenge
    missing = one_error_line(cli(cluster, "get", "nope", "-n", namespace, "-o", "json"))
    assert f'ChampionChallenger "nope" not found in namespace "{namespace}"' in missing
    assert "kubectl modelops list -A" in missing

    context = one_error_line(cli(cluster, "list", "--context", "elsewhere"))
    assert "context 'elsewhere' not found" in context and "get-contexts" in context

    cluster.kubectl("create", "serviceaccount", "nobody", "-n", namespace)
    token = cluster.kubectl("create", "token", "nobody", "-n", namespace).stdout.strip()
    stranger = write_kubeconfig(tmp_path / "nobody", cluster.api_url, token, cluster.ca_file)
    forbidden = one_error_line(cli(cluster, "list", "-n", namespace, "--kubeconfig", str(stranger)))
    assert "you may not list championchallengers.modelops.io" in forbidden
    assert f"kubectl auth can-i list championchallengers.modelops.io -n {namespace}" in forbidden

    closed = write_kubeconfig(tmp_path / "closed", "https://127.0.0.1:9", token, None)
    unreachable = one_error_line(
        cli(cluster, "get", CC, "--kubeconfig", str(closed), "--request-timeout", "3s")
    )
    assert "cannot reach the API server at https://127.0.0.1:9/" in unreachable


def test_completion_offers_names_from_the_cluster(cluster: DevCluster, challenge: str) -> None:
    namespace = challenge
    words = ok(cluster, "__complete", "-n", namespace, "approve", "iris").splitlines()
    assert words == [CC, ":4"]
    histories = ok(cluster, "__complete", "history", "-n", namespace, "").splitlines()
    assert "iris" in histories and CC in histories
    verbs = ok(cluster, "__complete", "").splitlines()
    assert "list" in verbs and "__complete" not in verbs


KREW_ARCHIVE = REPO / "dist" / "krew"


@pytest.mark.skipif(
    not list(KREW_ARCHIVE.glob("*.tar.gz")),
    reason="no krew archive (scripts/build-krew-archive.sh)",
)
def test_the_krew_archive_runs_on_its_own(
    cluster: DevCluster, challenge: str, tmp_path: Path
) -> None:
    """The archive's launcher with its own libraries: no PYTHONPATH, no installed package."""
    archive = sorted(KREW_ARCHIVE.glob("*.tar.gz"))[-1]
    subprocess.run(["tar", "-xzf", str(archive), "-C", str(tmp_path)], check=True)
    launcher = tmp_path / "kubectl-modelops" / "kubectl-modelops"
    env = {k: v for k, v in cluster.env.items() if k != "PYTHONPATH"}
    env["MODELOPS_PYTHON"] = sys.executable
    listed = subprocess.run(
        [str(launcher), "list", "-n", challenge, "-o", "json"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert [i["metadata"]["name"] for i in json.loads(listed.stdout)["items"]] == [CC]
    completer = tmp_path / "kubectl-modelops" / "kubectl_complete-modelops"
    words = subprocess.run(
        [str(completer), "get", "-n", challenge, ""],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert words.stdout.splitlines() == [CC, ":4"], words.stderr


def test_kubectl_runs_the_plugin_and_completes_it(
    cluster: DevCluster, challenge: str, tmp_path: Path
) -> None:
    """Through kubectl itself: `kubectl modelops …`, and kubectl's own completion of it
    (kubectl ≥ 1.26 asks `kubectl_complete-modelops`)."""
    calls = {
        "kubectl-modelops": "-m modelops_operator.plugin",
        "kubectl_complete-modelops": (
            "-c 'import sys; from modelops_operator.plugin.completion import "
            "kubectl_complete_main; sys.exit(kubectl_complete_main())'"
        ),
    }
    for name, call in calls.items():
        program = tmp_path / name
        program.write_text(f'#!/bin/sh\nexec {sys.executable} {call} "$@"\n')
        program.chmod(0o755)
    env = dict(cluster.env, PATH=f"{tmp_path}:{cluster.env['PATH']}")
    kubectl = str(cluster.bin_dir / "kubectl")
    shown = subprocess.run(
        [kubectl, "modelops", "get", CC, "-n", challenge, "-o", "json"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["metadata"]["name"] == CC
    completed = subprocess.run(
        [kubectl, "__complete", "modelops", "approve", "-n", challenge, ""],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert completed.stdout.splitlines()[:2] == [CC, ":4"], completed
