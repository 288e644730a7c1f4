"""Approvals cannot be forged: the API server checks who sets the approval annotations."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from modelops_devcluster.cluster import DevCluster
from tests.harness.chart import render_template

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
POLICY = "approval-policy.yaml"
CC_EXAMPLE = REPO / "examples" / "championchallenger-canary.yaml"


@pytest.fixture(scope="module")
def approval_policy(devcluster: DevCluster) -> None:
    devcluster.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    devcluster.kubectl("wait", "--for=condition=Established", "-f", str(REPO / "crds"))
    devcluster.kubectl(
        "apply", "--server-side", "-f", "-",
        input=render_template(Path(devcluster.bin_dir) / "helm", POLICY),
    )


def grant(devcluster: DevCluster, namespace: str, user: str, resources: list[str]) -> None:
    name = f"{user}-cc"
    devcluster.kubectl(
        "create",
        "role",
        name,
        "-n",
        namespace,
        "--verb=get,list,update,patch",
        *[f"--resource={r}" for r in resources],
    )
    devcluster.kubectl(
        "create", "rolebinding", name, "-n", namespace, f"--role={name}", f"--user={user}"
    )


def annotate(devcluster: DevCluster, namespace: str, user: str, *pairs: str):
    return devcluster.kubectl(
        "annotate",
        "--overwrite",
        "-n",
        namespace,
        "cc/iris-canary",
        *pairs,
        f"--as={user}",
        check=False,
    )


def test_only_permitted_users_approve_and_only_in_their_own_name(
    devcluster: DevCluster, namespace: str, approval_policy: None
) -> None:
    devcluster.kubectl("apply", "-n", namespace, "-f", str(CC_EXAMPLE))
    grant(devcluster, namespace, "alice", ["championchallengers.modelops.io"])
    grant(
        devcluster,
        namespace,
        "bob",
        [
            "championchallengers.modelops.io",
            "championchallengers.modelops.io/approval",
        ],
    )

    editor = annotate(
        devcluster,
        namespace,
        "alice",
        "modelops.io/approved-version=v2",
        "modelops.io/approved-by=alice",
    )
    assert editor.returncode != 0
    assert "may not approve" in editor.stderr
    assert "championchallengers/approval" in editor.stderr

    forged = annotate(
        devcluster,
        namespace,
        "bob",
        "modelops.io/approved-version=v2",
        "modelops.io/approved-by=carol",
    )
    assert forged.returncode != 0
    assert "must be the requesting user ('bob')" in forged.stderr

    approved = annotate(
        devcluster,
        namespace,
        "bob",
        "modelops.io/approved-version=v2",
        "modelops.io/approved-by=bob",
    )
    assert approved.returncode == 0, approved.stderr

    # Once approved, an editor may still edit other things, but not rewrite the approver.
    unrelated = annotate(devcluster, namespace, "alice", "team=fraud")
    assert unrelated.returncode == 0, unrelated.stderr
    rewrite = annotate(devcluster, namespace, "alice", "modelops.io/approved-by=alice")
    assert rewrite.returncode != 0

    stored = json.loads(
        devcluster.kubectl("get", "-n", namespace, "cc/iris-canary", "-o", "json").stdout
    )
    annotations = stored["metadata"]["annotations"]
    assert annotations["modelops.io/approved-by"] == "bob"
    assert annotations["modelops.io/approved-version"] == "v2"


def test_commands_are_checked_the_same_way(
    devcluster: DevCluster, namespace: str, approval_policy: None
) -> None:
    devcluster.kubectl("apply", "-n", namespace, "-f", str(CC_EXAMPLE))
    grant(
        devcluster,
        namespace,
        "dave",
        [
            "championchallengers.modelops.io",
            "championchallengers.modelops.io/command",
        ],
    )
    forged = annotate(
        devcluster,
        namespace,
        "dave",
        "modelops.io/command=rollback/1.1.0",
        "modelops.io/command-by=erin",
    )
    assert "must be the requesting user ('dave')" in forged.stderr
    unknown = annotate(
        devcluster, namespace, "dave", "modelops.io/command=delete", "modelops.io/command-by=dave"
    )
    assert "must be 'promote/<challenge id>'" in unknown.stderr
    ok = annotate(
        devcluster,
        namespace,
        "dave",
        "modelops.io/command=rollback/1.1.0",
        "modelops.io/command-by=dave",
    )
    assert ok.returncode == 0, ok.stderr


def test_kubectl_plugin_approves_in_the_callers_name(
    devcluster: DevCluster, namespace: str, approval_policy: None, tmp_path: Path
) -> None:
    devcluster.kubectl("apply", "-n", namespace, "-f", str(CC_EXAMPLE))
    devcluster.kubectl("create", "serviceaccount", "approver", "-n", namespace)
    account = f"system:serviceaccount:{namespace}:approver"
    grant(
        devcluster,
        namespace,
        account,
        [
            "championchallengers.modelops.io",
            "championchallengers.modelops.io/approval",
        ],
    )
    token = devcluster.kubectl("create", "token", "approver", "-n", namespace).stdout.strip()
    kubeconfig = tmp_path / "approver.kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "c",
                "clusters": [
                    {
                        "name": "c",
                        "cluster": {
                            "server": devcluster.api_url,
                            "certificate-authority": str(devcluster.ca_file),
                        },
                    }
                ],
                "users": [{"name": "u", "user": {"token": token}}],
                "contexts": [
                    {"name": "c", "context": {"cluster": "c", "user": "u", "namespace": namespace}}
                ],
            }
        )
    )
    env = dict(devcluster.env, KUBECONFIG=str(kubeconfig))
    plugin = [sys.executable, "-m", "modelops_operator.kubectl_plugin"]

    early = subprocess.run(
        [*plugin, "approve", "iris-canary"], env=env, text=True, capture_output=True, timeout=60
    )
    assert early.returncode == 1
    assert "not AwaitingApproval" in early.stderr

    devcluster.kubectl(
        "patch",
        "-n",
        namespace,
        "cc/iris-canary",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(
            {
                "status": {
                    "phase": "AwaitingApproval",
                    "challenger": {"version": "1.1.0"},
                    "machine": {"challengeId": "1.1.0-1795392000"},
                }
            }
        ),
    )
    done = subprocess.run(
        [*plugin, "approve", "iris-canary"], env=env, text=True, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert f"approved 1.1.0 (1.1.0-1795392000) of {namespace}/iris-canary as {account}" in (
        done.stdout
    )
    annotations = json.loads(
        devcluster.kubectl("get", "-n", namespace, "cc/iris-canary", "-o", "json").stdout
    )["metadata"]["annotations"]
    assert annotations["modelops.io/approved-by"] == account
    # The challenge id, not the bare version: it cannot approve a later challenge of 1.1.0.
    assert annotations["modelops.io/approved-version"] == "1.1.0-1795392000"

    status = subprocess.run(
        [*plugin, "status", "iris-canary"], env=env, text=True, capture_output=True, timeout=60
    )
    assert status.returncode == 0, status.stderr
    assert "AwaitingApproval" in status.stdout and "challenger 1.1.0" in status.stdout
