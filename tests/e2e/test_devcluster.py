"""The dev cluster is a real control plane: workloads roll out, RBAC holds, teardown is clean."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from modelops_devcluster.cluster import DevCluster, cache_root, leftover_processes
from modelops_devcluster.processes import process_alive
from modelops_devcluster.realnode import image_archives

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def pinned_kubernetes_version() -> str:
    go_mod = (REPO / "tools" / "k8s" / "go.mod").read_text()
    match = re.search(r"^\s*(?:require\s+)?k8s\.io/kubernetes (v\S+)$", go_mod, re.MULTILINE)
    assert match, "tools/k8s/go.mod does not require k8s.io/kubernetes"
    return match.group(1)


DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: nginx:stable
        readinessProbe: {httpGet: {path: /, port: 80}}
"""


def test_plain_deployment_becomes_available_with_ready_pods(
    devcluster: DevCluster, namespace: str
) -> None:
    devcluster.kubectl("apply", "-n", namespace, "-f", "-", input=DEPLOYMENT)
    devcluster.kubectl(
        "wait", "-n", namespace, "--for=condition=Available", "deployment/web", "--timeout=90s"
    )
    pods = json.loads(devcluster.kubectl("get", "pods", "-n", namespace, "-o", "json").stdout)
    assert len(pods["items"]) == 2
    for pod in pods["items"]:
        ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
        assert ready["Ready"] == "True", pod["metadata"]["name"]
        assert pod["spec"]["nodeName"] == "kwok-node-0"


def test_server_reports_the_pinned_version(devcluster: DevCluster) -> None:
    version = json.loads(devcluster.kubectl("version", "-o", "json").stdout)
    pinned = pinned_kubernetes_version()
    assert version["serverVersion"]["gitVersion"] == pinned
    assert version["clientVersion"]["gitVersion"] == pinned


def test_rbac_is_enforced(devcluster: DevCluster, namespace: str) -> None:
    admin = devcluster.kubectl("auth", "can-i", "create", "deployments", "-n", namespace)
    assert admin.stdout.strip() == "yes"
    service_account = f"system:serviceaccount:{namespace}:default"
    denied = devcluster.kubectl(
        "auth",
        "can-i",
        "create",
        "deployments",
        "-n",
        namespace,
        f"--as={service_account}",
        check=False,
    )
    assert denied.stdout.strip() == "no"
    devcluster.kubectl(
        "create",
        "rolebinding",
        "edit",
        "-n",
        namespace,
        "--clusterrole=edit",
        f"--serviceaccount={namespace}:default",
    )
    allowed = devcluster.kubectl(
        "auth", "can-i", "create", "deployments", "-n", namespace, f"--as={service_account}"
    )
    assert allowed.stdout.strip() == "yes"


def test_gateway_api_crds_are_established(devcluster: DevCluster) -> None:
    crd = json.loads(
        devcluster.kubectl(
            "get", "crd", "httproutes.gateway.networking.k8s.io", "-o", "json"
        ).stdout
    )
    established = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert established["Established"] == "True"
    assert "v1" in [v["name"] for v in crd["spec"]["versions"] if v["served"]]


def test_cluster_up_and_down_commands_leave_no_process(
    devcluster: DevCluster, tmp_path: Path
) -> None:
    # A second cluster, driven through the same console script `make cluster-up/down` use, with
    # its own cache directory whose binaries are the real ones, and a real node running only
    # its own images (pause, CoreDNS) to stay quick.
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "bin").symlink_to(cache_root() / "bin")
    (cache / "data").symlink_to(cache_root() / "data")
    images = tmp_path / "images"
    images.mkdir()
    for archive in image_archives():
        if archive.name in ("pause.tar", "coredns.tar"):
            (images / archive.name).symlink_to(archive)
    env = dict(os.environ, MODELOPS_CACHE=str(cache), MODELOPS_IMAGES_DIR=str(images))
    command = [sys.executable, "-m", "modelops_devcluster"]
    up = subprocess.run([*command, "up"], env=env, text=True, capture_output=True, timeout=300)
    assert up.returncode == 0, up.stdout + up.stderr
    assert f"export KUBECONFIG={cache / 'kubeconfig'}" in up.stdout
    second = DevCluster.load(cache / "cluster")
    pids = dict(second.state.pids)
    assert set(pids) == {
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
    }
    assert all(process_alive(pid) for pid in pids.values())
    node = second.node
    assert node is not None and node.leftovers(), "the real node should be running"
    nodes = json.loads(second.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    assert [n["metadata"]["name"] for n in nodes] == [node.name]

    down = subprocess.run([*command, "down"], env=env, text=True, capture_output=True, timeout=120)
    # `down` exits non-zero and names whatever it finds left (processes, cgroups, namespaces).
    assert down.returncode == 0, down.stdout + down.stderr
    assert not [name for name, pid in pids.items() if process_alive(pid)]
    # No process of any control-plane binary is left that this cluster started (other clusters,
    # such as the session's own, may run on the machine at the same time).
    assert leftover_processes(cache_root() / "bin", workdir=cache / "cluster") == []
    assert node.leftovers() == []
