"""The Helm chart against a real API server: every rendered object passes a server-side dry run.

What needs no cluster (lint, values schema, leader election, monitors, CRDs, RBAC rules) is
tested with `helm template` alone in tests/unit/chart/test_chart_render.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.chart import helm_template

pytestmark = pytest.mark.e2e


def _helm(devcluster: Any) -> Path:
    return Path(devcluster.bin_dir) / "helm"


def _dry_run(devcluster: Any, docs: list[dict[str, Any]]) -> None:
    result = devcluster.kubectl(
        # --force-conflicts: other tests may have applied the same CRDs or policy before.
        "apply", "--dry-run=server", "--server-side", "--force-conflicts",
        "--field-manager=helm-dry-run", "-f", "-", input=yaml.safe_dump_all(docs), check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("(server dry run)") == len(docs)


def test_rendered_chart_passes_server_side_dry_run(devcluster: Any, namespace: str) -> None:
    docs = helm_template(_helm(devcluster), namespace)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == [
        "ClusterRole",  # the operator's
        "ClusterRole",  # modelops-view, -edit, -approver
        "ClusterRole",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "CustomResourceDefinition",
        "CustomResourceDefinition",
        "Deployment",
        "Service",
        "ServiceAccount",
        "ValidatingAdmissionPolicy",  # modelops-approvals, -dataplane-keys, -lineage
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "ValidatingAdmissionPolicyBinding",
        "ValidatingAdmissionPolicyBinding",
    ]
    _dry_run(devcluster, docs)


def test_two_replica_chart_passes_server_side_dry_run(devcluster: Any, namespace: str) -> None:
    # Leader election adds kopf's peering CRD, its RBAC rules and a PodDisruptionBudget.
    docs = helm_template(_helm(devcluster), namespace, "--set", "replicaCount=2")
    kinds = {d["kind"] for d in docs}
    assert "PodDisruptionBudget" in kinds
    assert any(d["metadata"]["name"] == "clusterkopfpeerings.kopf.dev" for d in docs)
    _dry_run(devcluster, docs)
