"""The Helm chart: lint, render, server-side dry-run, and least-privilege RBAC."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelops_operator.testing import CHART, helm_template

pytestmark = pytest.mark.e2e


def _helm(devcluster: Any) -> Path:
    return Path(devcluster.bin_dir) / "helm"


def test_helm_lint_passes(devcluster: Any) -> None:
    result = subprocess.run(
        [str(_helm(devcluster)), "lint", "--strict", str(CHART)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


def test_rendered_chart_passes_server_side_dry_run(devcluster: Any, namespace: str) -> None:
    docs = helm_template(_helm(devcluster), namespace, "--include-crds")
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == [
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "CustomResourceDefinition",
        "Deployment",
        "ServiceAccount",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ]
    result = devcluster.kubectl(
        # --force-conflicts: other tests may have applied the same CRDs or policy before.
        "apply", "--dry-run=server", "--server-side", "--force-conflicts",
        "--field-manager=helm-dry-run", "-f", "-", input=yaml.safe_dump_all(docs), check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("(server dry run)") == len(docs)


def test_operator_deployment_is_one_recreated_locked_down_replica(devcluster: Any) -> None:
    docs = helm_template(_helm(devcluster), "modelops-system")
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert "--standalone" in container["args"] and "modelops_operator.main" in container["args"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_rbac_has_no_wildcards_and_never_lists_secrets(devcluster: Any) -> None:
    docs = helm_template(_helm(devcluster), "modelops-system")
    (role,) = [d for d in docs if d["kind"] == "ClusterRole"]
    for rule in role["rules"]:
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[key], rule
        assert "deletecollection" not in rule["verbs"]
        # Deleting is for one thing only: a challenger Deployment once traffic has left it.
        if "delete" in rule["verbs"]:
            assert rule["resources"] == ["deployments"], rule
        if "secrets" in rule["resources"]:
            assert rule["verbs"] == ["get"]
