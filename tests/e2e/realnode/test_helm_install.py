"""Helm is the way in: the chart with default values runs the operator as a real container.

The operator pod reconciles the ModelDeployment of examples/ as-is (two replicas); a pod calls
it by its Service name and reaches both replicas; `helm upgrade` to a chart whose CRD changed
updates the schema in the cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
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


def test_two_replicas_elect_one_worker_behind_a_disruption_budget(
    installed: DevCluster, tmp_path: Path
) -> None:
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
        ready_before = mdep_status(cluster, namespace, "iris")

        # Failover: the leader dies unannounced; the standby (or the leader's restarted
        # container) works again within 30 s, doing nothing twice and rewinding nothing.
        leader = max(peers().items(), key=lambda item: int(item[1]["priority"]))[0]
        kill_operator(cluster, leader)
        killed = time.monotonic()
        second = yaml.safe_load(EXAMPLE.read_text())
        second["metadata"]["name"] = "after-failover"
        manifest = tmp_path / "after-failover.yaml"
        manifest.write_text(yaml.safe_dump(second))
        cluster.kubectl("apply", "-n", namespace, "-f", str(manifest))
        wait_until(lambda: cluster.kubectl("get", "-n", namespace,
                                           "deployment/after-failover-champion",
                                           check=False).returncode == 0,
                   timeout=90, what="the new ModelDeployment's Deployment after the failover")
        took_over = time.monotonic() - killed
        print(f"[failover] the leader SIGKILLed; work resumed after {took_over:.1f} s")
        assert took_over <= 30, f"the work resumed {took_over:.0f} s after the leader died"
        cluster.kubectl("wait", "-n", namespace, "--for=condition=Ready",
                        "mdep/after-failover", "--timeout=240s", timeout=250)
        after = mdep_status(cluster, namespace, "iris")
        assert after["observedGeneration"] == ready_before["observedGeneration"]
        assert after["champion"] == ready_before["champion"]
        ready = [c for c in after["conditions"] if c["type"] == "Ready"]
        assert ready == [c for c in ready_before["conditions"] if c["type"] == "Ready"]
        events = json.loads(cluster.kubectl(
            "get", "events", "-n", namespace, "--field-selector",
            "involvedObject.name=iris,involvedObject.kind=ModelDeployment",  # not its Service's
            "-o", "json").stdout)["items"]  # fmt: skip
        # The new leader's first look at iris found nothing to do, so nothing to announce (and
        # a new object's first Ready is announced by no Event at all).
        assert [(e["reason"], e["message"]) for e in events] == []
    finally:
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        helm(cluster, "upgrade", RELEASE, str(CHART), "-n", RELEASE_NAMESPACE, "--wait")


def mdep_status(cluster: DevCluster, namespace: str, name: str) -> dict[str, Any]:
    found = cluster.kubectl("get", "-n", namespace, f"mdep/{name}", "-o", "json").stdout
    return json.loads(found)["status"]


def kill_operator(cluster: DevCluster, pod_name: str) -> None:
    """SIGKILL the operator process of a pod, from the host: containers of the real node are
    this machine's processes, found by the pod's UID in their cgroup path."""
    pod = json.loads(cluster.kubectl("get", "pod", "-n", RELEASE_NAMESPACE, pod_name,
                                     "-o", "json").stdout)  # fmt: skip
    uid = pod["metadata"]["uid"]
    marks = (uid, uid.replace("-", "_"))
    killed = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cgroup = (proc / "cgroup").read_text()
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if any(mark in cgroup for mark in marks) and "kopf" in command:
            os.kill(int(proc.name), signal.SIGKILL)
            killed.append(int(proc.name))
    assert killed, f"no operator process found for pod {pod_name}"
