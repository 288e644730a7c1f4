"""The local kubelet runs the operator's model pod and the router pod as real, serving processes.

One namespace for the module: a champion model Deployment (built by the operator's pure
builders, fetching iris from a local HTTP server) and a router in front of it.
"""

from __future__ import annotations

import json
import os
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelops_devcluster.cluster import DevCluster, wait_for_service_account
from modelops_devcluster.localkubelet import LocalKubelet, pod_processes
from modelops_operator.api.modeldeployment import ModelDeploymentSpec
from modelops_operator.builders.workload import build_model_deployment

from ..operator_fixtures import wait_until
from .conftest import LocalCluster, ModelFiles

pytestmark = pytest.mark.e2e

MD = "iris"
MODEL_FILE = "iris-1.0.0.skops"
IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


def get(cluster: DevCluster, path: str) -> dict[str, Any]:
    with cluster.api() as api:
        response = api.get(path)
    return response.json() if response.status_code == 200 else {}


def apply(cluster: DevCluster, *objects: dict[str, Any]) -> None:
    for obj in objects:
        cluster.kubectl("apply", "-f", "-", input=json.dumps(obj))


def model_spec(model_files: ModelFiles, digest: str | None = None) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate({"model": {
        "name": "iris", "version": "1.0.0", "uri": model_files.url(MODEL_FILE),
        "format": "sklearn", "digest": digest or model_files.digest(MODEL_FILE),
    }})


def arm_service(namespace: str, role: str) -> dict[str, Any]:
    """`<md>-<role>`: port 8000 to the sidecars of one role (what the router's URLs name)."""
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": f"{MD}-{role}", "namespace": namespace},
        "spec": {"selector": {"modelops.io/deployment": MD, "modelops.io/role": role},
                 "ports": [{"name": "http", "port": 8000, "targetPort": "http"}]},
    }


def router_objects(namespace: str) -> list[dict[str, Any]]:
    """The router contract: ConfigMap `<md>-router` and Deployment `<md>-router`."""
    config = {
        "apiVersion": "router.modelops.io/v1alpha1", "kind": "RouterConfig", "mode": "split",
        "champion": {"url": f"http://{MD}-champion.{namespace}.svc:8000"},
        "challenger": {"url": f"http://{MD}-challenger.{namespace}.svc:8000"},
        "challengerWeight": 0,
    }
    labels = {"modelops.io/deployment": MD, "app.kubernetes.io/name": "modelops-router"}
    container = {
        "name": "router", "image": "modelops/serving", "command": ["modelops-router"],
        "args": ["--config", "/etc/modelops/router/router.json", "--port", "8000",
                 "--metrics-port", "9090", "--deployment", MD, "--reload-interval", "0.5"],
        "ports": [{"name": "http", "containerPort": 8000},
                  {"name": "metrics", "containerPort": 9090}],
        "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 5},
        "volumeMounts": [{"name": "router-config", "mountPath": "/etc/modelops/router",
                          "readOnly": True}],
    }
    return [
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": f"{MD}-router", "namespace": namespace},
         "data": {"router.json": json.dumps(config)}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": f"{MD}-router", "namespace": namespace},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels}, "spec": {
                      "containers": [container],
                      "volumes": [{"name": "router-config",
                                   "configMap": {"name": f"{MD}-router"}}]}}}},
    ]


@dataclass
class Served:
    local: LocalCluster
    namespace: str

    @property
    def cluster(self) -> DevCluster:
        return self.local.cluster

    @property
    def kubelet(self) -> LocalKubelet:
        return self.local.kubelet

    def wait_available(self, deployment: str, timeout: float = 90) -> None:
        path = f"/apis/apps/v1/namespaces/{self.namespace}/deployments/{deployment}"

        def available() -> bool:
            status = get(self.cluster, path).get("status", {})
            return status.get("readyReplicas") == status.get("replicas") == 1 and any(
                c["type"] == "Available" and c["status"] == "True"
                for c in status.get("conditions") or []
            ) and status.get("updatedReplicas") == 1

        wait_until(available, timeout=timeout, what=f"Deployment {deployment} Available")

    def pods(self, **labels: str) -> list[dict[str, Any]]:
        selector = ",".join(f"{k}={v}" for k, v in labels.items())
        with self.cluster.api() as api:
            listing = api.get(f"/api/v1/namespaces/{self.namespace}/pods",
                              params={"labelSelector": selector}).json()
        return [p for p in listing["items"] if not p["metadata"].get("deletionTimestamp")]

    def local_ip(self, pod: dict[str, Any]) -> str:
        """Where the pod listens (the API shows the same host bits in 10.245.0.0/16)."""
        return self.kubelet.addresses.to_local(pod["status"]["podIP"])

    def ready_pod(self, **labels: str) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            for pod in self.pods(**labels):
                conditions = pod.get("status", {}).get("conditions") or []
                if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
                    return pod
            return None

        return wait_until(ready, what=f"a Ready pod {labels}")


def infer(base_url: str) -> httpx.Response:
    body = {"inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP64",
                        "data": [x for row in IRIS_ROWS for x in row]}]}
    return httpx.post(f"{base_url}/v2/models/iris/infer", json=body, timeout=10)


def processes_of_pod(kubelet: LocalKubelet, namespace: str, pod: str) -> list[int]:
    pod_dir = (kubelet.pods_dir / f"{namespace}_{pod}").resolve()
    found = []
    for pid in pod_processes(kubelet.workdir):
        try:
            if Path(os.readlink(f"/proc/{pid}/cwd")) == pod_dir:
                found.append(pid)
        except OSError:
            pass
    return found


@pytest.fixture(scope="module")
def served(local_cluster: LocalCluster, model_files: ModelFiles) -> Iterator[Served]:
    namespace = f"t-{uuid.uuid4().hex[:10]}"
    cluster = local_cluster.cluster
    cluster.kubectl("create", "namespace", namespace)
    wait_for_service_account(cluster, namespace)
    apply(cluster, build_model_deployment(MD, namespace, model_spec(model_files)),
          arm_service(namespace, "champion"), arm_service(namespace, "challenger"))
    served = Served(local_cluster, namespace)
    served.wait_available(f"{MD}-champion")
    try:
        yield served
    finally:
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_model_pod_is_ready_and_answers_through_its_sidecar(served: Served) -> None:
    pod = served.ready_pod(**{"modelops.io/role": "champion"})
    status = pod["status"]
    pod_ip = served.kubelet.pod_ip(served.namespace, pod["metadata"]["name"])
    assert pod_ip.startswith("127.1.") and status["podIP"].startswith("10.245.")
    assert pod_ip.split(".")[2:] == status["podIP"].split(".")[2:]
    assert [c["state"]["terminated"]["exitCode"] for c in status["initContainerStatuses"]] == [0]
    assert all(c["ready"] and "running" in c["state"] for c in status["containerStatuses"])
    response = infer(f"http://{pod_ip}:8000")
    assert response.status_code == 200, response.text
    assert response.json()["model_name"] == "iris"
    assert served.kubelet.service_url(served.namespace, f"{MD}-champion") == (
        f"http://{pod_ip}:8000"
    )


def test_prometheus_scrapes_the_sidecar_with_pod_labels(served: Served) -> None:
    pod = served.ready_pod(**{"modelops.io/role": "champion"})
    name = pod["metadata"]["name"]
    assert infer(f"http://{served.local_ip(pod)}:8000").status_code == 200
    query = f'modelops_requests_total{{namespace="{served.namespace}",pod="{name}"}}'
    series = wait_until(lambda: served.local.query(query), timeout=30, what=query)
    assert series[0]["metric"]["deployment"] == MD
    assert series[0]["metric"]["container"] == "metrics-sidecar"


def test_router_reaches_the_champion_through_service_dns(served: Served) -> None:
    apply(served.cluster, *router_objects(served.namespace))
    served.wait_available(f"{MD}-router")
    router = served.ready_pod(**{"app.kubernetes.io/name": "modelops-router"})
    champion = served.ready_pod(**{"modelops.io/role": "champion"})
    config_file = (served.kubelet.pods_dir / f"{served.namespace}_{router['metadata']['name']}"
                   / "volumes" / "router-config" / "router.json")
    rendered = json.loads(config_file.read_text())
    assert rendered["champion"]["url"] == f"http://{served.local_ip(champion)}:8000"
    assert rendered["challenger"]["url"] == "http://127.0.0.1:1"  # no challenger pod: refused
    response = infer(f"http://{served.local_ip(router)}:8000")
    assert response.status_code == 200, response.text


def test_a_wrong_digest_shows_the_fetch_message(served: Served, model_files: ModelFiles) -> None:
    spec = model_spec(model_files, digest="sha256:" + "0" * 64)
    deployment = build_model_deployment(MD, served.namespace, spec, role="challenger")
    apply(served.cluster, deployment)

    def fetch_failure() -> str:
        for pod in served.pods(**{"modelops.io/role": "challenger"}):
            for status in pod.get("status", {}).get("initContainerStatuses") or []:
                for state in (status.get("state") or {}, status.get("lastState") or {}):
                    message = (state.get("terminated") or {}).get("message", "")
                    if state.get("terminated", {}).get("exitCode") and message:
                        return str(message)
        return ""

    message = wait_until(fetch_failure, timeout=60, what="the fetch's termination message")
    assert "digest mismatch" in message
    served.cluster.kubectl("delete", "deployment", f"{MD}-challenger", "-n", served.namespace)


def test_deleting_a_pod_stops_it_and_the_router_follows_the_replacement(served: Served) -> None:
    old = served.ready_pod(**{"modelops.io/role": "champion"})
    name = old["metadata"]["name"]
    assert processes_of_pod(served.kubelet, served.namespace, name)
    served.cluster.kubectl("delete", "pod", name, "-n", served.namespace, "--timeout=60s")
    assert processes_of_pod(served.kubelet, served.namespace, name) == []
    served.wait_available(f"{MD}-champion")
    new = served.ready_pod(**{"modelops.io/role": "champion"})
    assert new["metadata"]["name"] != name
    router = served.ready_pod(**{"app.kubernetes.io/name": "modelops-router"})

    def answered_by_new_pod() -> bool:
        response = infer(f"http://{served.local_ip(router)}:8000")
        return response.status_code == 200

    wait_until(answered_by_new_pod, timeout=30, what="the router to reach the new pod")
    assert served.kubelet.service_url(served.namespace, f"{MD}-champion") == (
        f"http://{served.local_ip(new)}:8000"
    )


def test_stopping_a_kubelet_leaves_no_process(
    local_cluster: LocalCluster, tmp_path: Path
) -> None:
    """A second kubelet on its own node, so the session's kubelet keeps running."""
    cluster = local_cluster.cluster
    node = f"modelops-local-{uuid.uuid4().hex[:6]}"
    kubelet = LocalKubelet.start(cluster, tmp_path / "kubelet", node_name=node)
    pod = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": node, "namespace": "default"},
        "spec": {"nodeName": node, "containers": [{
            "name": "web", "image": "python",
            "command": ["python", "-m", "http.server", "--bind", "$(MODELOPS_HOST)", "8000"],
            "ports": [{"name": "http", "containerPort": 8000}],
            "readinessProbe": {"httpGet": {"path": "/", "port": "http"}},
        }]},
    }
    try:
        wait_for_service_account(cluster, "default")
        apply(cluster, pod)
        wait_until(lambda: pod_processes(kubelet.workdir), timeout=30, what="the pod's process")
        # Signal it directly: stop() would also clean up whatever the kubelet left behind.
        kubelet.process.send_signal(signal.SIGTERM)
        kubelet.process.wait(30)
        assert pod_processes(kubelet.workdir) == []
    finally:
        kubelet.stop()
        cluster.kubectl("delete", "pod", node, "--force", "--grace-period=0", check=False)
        cluster.kubectl("delete", "node", node, check=False)
