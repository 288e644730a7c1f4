"""Helm is the way in: the chart with default values runs the operator as a real container.

The operator pod reconciles the ModelDeployment of examples/ as-is (two replicas); a pod calls
it by its Service name and reaches both replicas; `helm upgrade` to a chart whose CRD changed
updates the schema in the cluster.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelops_devcluster.cluster import DevCluster, wait_for_service_account

from ..operator_fixtures import wait_until
from .conftest import RealCluster
from .test_realnode import client_pod, replicas_reached_through

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "modelops"
EXAMPLE = ROOT / "examples" / "modeldeployment-sklearn.yaml"
RELEASE, RELEASE_NAMESPACE = "modelops", "modelops-system"
MDEP_CRD = "modeldeployments.modelops.io"


def helm(cluster: DevCluster, *args: str, timeout: float = 300) -> str:
    result = subprocess.run([str(cluster.bin_dir / "helm"), *args], env=cluster.env,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def operator_pods(cluster: DevCluster) -> list[dict[str, Any]]:
    listing = json.loads(cluster.kubectl("get", "pods", "-n", RELEASE_NAMESPACE, "-o",
                                         "json").stdout)
    return list(listing["items"])


@pytest.fixture(scope="module")
def installed(real_cluster: RealCluster) -> Iterator[DevCluster]:
    cluster = real_cluster.cluster
    # Default values. --take-ownership: earlier tests of the session applied the CRDs with
    # kubectl, as a user moving to the chart would have (docs/quickstart.md, Upgrading); the
    # chart adopts them instead of refusing to install. The demo installs on a fresh cluster.
    helm(cluster, "install", RELEASE, str(CHART), "-n", RELEASE_NAMESPACE, "--create-namespace",
         "--wait", "--timeout=4m", "--take-ownership")
    try:
        yield cluster
    finally:
        logs = cluster.kubectl("logs", "-n", RELEASE_NAMESPACE, "deployment/modelops",
                               "--tail=60", check=False)
        print(f"[operator pod log]\n{logs.stdout}{logs.stderr}")
        helm(cluster, "uninstall", RELEASE, "-n", RELEASE_NAMESPACE, "--wait")


def test_the_chart_with_default_values_runs_a_ready_operator_pod(installed: DevCluster) -> None:
    (pod,) = operator_pods(installed)
    statuses = pod["status"]["containerStatuses"]
    assert all(s["ready"] and s["containerID"].startswith("containerd://") for s in statuses)
    assert pod["spec"]["serviceAccountName"] == "modelops"
    assert statuses[0]["image"].endswith("modelops/modelops-operator:0.1.0")


def test_the_example_with_two_replicas_becomes_ready_and_its_service_reaches_both(
    installed: DevCluster,
) -> None:
    cluster = installed
    namespace = f"t-{uuid.uuid4().hex[:10]}"
    cluster.kubectl("create", "namespace", namespace)
    wait_for_service_account(cluster, namespace)
    try:
        cluster.kubectl("apply", "-n", namespace, "-f", str(EXAMPLE))
        cluster.kubectl("apply", "-f", "-", input=json.dumps(client_pod(namespace)))
        cluster.kubectl("wait", "-n", namespace, "--for=condition=Ready", "mdep/iris",
                        "--timeout=240s", timeout=250)
        cluster.kubectl("wait", "-n", namespace, "--for=condition=Ready", "pod/client",
                        "--timeout=60s", timeout=70)
        mdep = json.loads(cluster.kubectl("get", "-n", namespace, "mdep/iris", "-o",
                                          "json").stdout)
        assert mdep["spec"]["runtime"]["replicas"] == 2
        url = f"http://iris.{namespace}.svc/v2/models/iris/infer"
        replicas = replicas_reached_through(cluster, namespace, "iris", url, 2)
        assert len(replicas) == 2, replicas
    finally:
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_helm_upgrade_to_a_changed_crd_updates_the_schema(
    installed: DevCluster, tmp_path: Path
) -> None:
    changed = tmp_path / "modelops"
    shutil.copytree(CHART, changed)
    crd_file = changed / "files" / "crds" / f"modelops.io_{MDEP_CRD.split('.')[0]}.yaml"
    document = yaml.safe_load(crd_file.read_text())
    spec_props = document["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"][
        "spec"]["properties"]
    # A new optional field, as a newer release of the chart would add one.
    probe = "upgradeProbe"
    assert probe not in spec_props
    spec_props[probe] = {"type": "string", "description": "added by a newer chart"}
    crd_file.write_text(yaml.safe_dump(document))
    try:
        helm(installed, "upgrade", RELEASE, str(changed), "-n", RELEASE_NAMESPACE, "--wait")
        crd = json.loads(installed.kubectl("get", "crd", MDEP_CRD, "-o", "json").stdout)
        served = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        assert served["properties"][probe]["type"] == "string"
    finally:
        helm(installed, "upgrade", RELEASE, str(CHART), "-n", RELEASE_NAMESPACE, "--wait")
    crd = json.loads(installed.kubectl("get", "crd", MDEP_CRD, "-o", "json").stdout)
    served = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert probe not in served["properties"]


def test_two_replicas_elect_one_worker_behind_a_disruption_budget(installed: DevCluster) -> None:
    cluster = installed
    helm(cluster, "upgrade", RELEASE, str(CHART), "-n", RELEASE_NAMESPACE, "--wait",
         "--set", "replicaCount=2")
    namespace = f"t-{uuid.uuid4().hex[:10]}"
    try:
        ready = [p for p in operator_pods(cluster)
                 if not p["metadata"].get("deletionTimestamp")
                 and all(s["ready"] for s in p["status"].get("containerStatuses") or [])]
        assert len(ready) == 2, [p["metadata"]["name"] for p in ready]
        pdb = json.loads(cluster.kubectl("get", "pdb", "-n", RELEASE_NAMESPACE, "-o",
                                         "json").stdout)["items"]
        assert [b["spec"].get("minAvailable") for b in pdb] == [1]

        def peers() -> dict[str, Any]:
            found = cluster.kubectl("get", "clusterkopfpeering", RELEASE, "-o", "json",
                                    check=False)
            return json.loads(found.stdout).get("status") or {} if found.returncode == 0 else {}

        wait_until(lambda: len(peers()) == 2, timeout=60, what="both replicas in the peering")
        priorities = {peer["priority"] for peer in peers().values()}
        assert len(priorities) == 2  # distinct: exactly one works, the other stands by
        # The elected replica reconciles as one did.
        cluster.kubectl("create", "namespace", namespace)
        wait_for_service_account(cluster, namespace)
        cluster.kubectl("apply", "-n", namespace, "-f", str(EXAMPLE))
        cluster.kubectl("wait", "-n", namespace, "--for=condition=Ready", "mdep/iris",
                        "--timeout=240s", timeout=250)
    finally:
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        helm(cluster, "upgrade", RELEASE, str(CHART), "-n", RELEASE_NAMESPACE, "--wait")
