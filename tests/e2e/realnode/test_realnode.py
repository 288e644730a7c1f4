"""The real node runs the project's images as containers: model pods, the router, DNS, Services.

One namespace for the module: a champion model Deployment with two replicas (built by the
operator's pure builders, fetching iris from an HTTP server outside the cluster), its Service,
a router in front of it and a client pod that calls them by their Service names.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from modelops_devcluster.cluster import DevCluster, wait_for_service_account
from modelops_devcluster.nodeconfig import POD_SUBNET
from modelops_operator.api.modeldeployment import ModelDeploymentSpec
from modelops_operator.builders.workload import build_model_deployment
from modelops_operator.constants import DEFAULT_SERVING_IMAGE

from ..operator_fixtures import wait_until
from .conftest import ModelFiles, RealCluster

pytestmark = pytest.mark.e2e

MD = "iris"
MODEL_FILE = "iris-1.0.0.skops"
IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
REPLICAS = 2

# Runs inside the client pod: N inference calls to URL; prints the status of each call and the
# replica that answered it (the sidecar names its pod address in X-Modelops-Served-By). A call
# that fails is printed too, as its HTTP status (0 when no answer came) and what went wrong, so
# a failing test says whether the proxy, the model or the Service's routing refused it.
CLIENT_SCRIPT = """
import json, sys, time, urllib.error, urllib.request
url, n = sys.argv[1], int(sys.argv[2])
body = json.dumps({"inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP64",
                               "data": %s}]}).encode()
seen = []
for _ in range(n):
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            seen.append([answer.status, answer.headers.get("X-Modelops-Served-By", "")])
    except urllib.error.HTTPError as refused:
        seen.append([refused.code, "%%s %%r" %% (refused.headers.get("X-Modelops-Served-By", ""),
                                                 refused.read()[:300])])
    except OSError as failed:
        seen.append([0, "%%.3f %%r" %% (time.time(), failed)])
print(json.dumps(seen))
""" % [x for row in IRIS_ROWS for x in row]


def calls_from_client(
    cluster: DevCluster, namespace: str, url: str, n: int,
) -> list[tuple[int, str]]:
    """N calls from the `client` pod: (status, replica or what failed) for each."""
    result = cluster.kubectl("exec", "-n", namespace, "client", "--", "python3", "-c",
                             CLIENT_SCRIPT, url, str(n), timeout=120, check=False)
    assert result.returncode == 0, f"kubectl exec: {result.stderr.strip()}"
    return [(int(status), served_by) for status, served_by in json.loads(result.stdout)]


def answer_to_service_at_all(
    cluster: DevCluster, namespace: str, url: str, timeout: float = 30,
) -> None:
    """Wait until a call through the Service gets an answer; the answer must be a 200.

    kube-proxy writes a new Service's rules and CoreDNS learns its name a moment after its
    EndpointSlice is ready, so for that moment a call gets no answer at all (refused, no name).
    That is the cluster catching up, not the model; an HTTP answer other than 200 is a failure.
    """
    deadline = time.monotonic() + timeout
    while True:
        ((status, detail),) = calls_from_client(cluster, namespace, url, 1)
        assert status in (0, 200), f"the first answer through the Service: {status} {detail}"
        if status == 200:
            return
        assert time.monotonic() < deadline, f"no answer through the Service in {timeout} s: " \
            f"{detail}"
        time.sleep(0.5)


def replicas_reached_through(
    cluster: DevCluster, namespace: str, service: str, url: str, want: set[str] | int,
) -> Counter[str]:
    """Replicas (pod IPs) that answered requests a pod sent to a Service's URL; every answer 200.

    A pod is Ready before its address is in the Service's EndpointSlice and in kube-proxy's
    rules, so the requests wait for the slice and for a first answer, then go in rounds until
    `want` (the set of pod IPs, or how many) answered, at most three rounds: a Service that
    never spreads fails.
    """
    count = want if isinstance(want, int) else len(want)

    def ready_endpoints() -> set[str]:
        slices = json.loads(cluster.kubectl(
            "get", "endpointslices", "-n", namespace, "-l",
            f"kubernetes.io/service-name={service}", "-o", "json").stdout)["items"]
        return {address for s in slices for e in s.get("endpoints") or []
                if (e.get("conditions") or {}).get("ready") for address in e["addresses"]}

    wait_until(lambda: len(ready_endpoints()) >= count, timeout=60,
               what=f"{count} ready endpoints of Service {service}")
    answer_to_service_at_all(cluster, namespace, url)
    seen: Counter[str] = Counter()
    for _ in range(3):
        answers = calls_from_client(cluster, namespace, url, 60)
        assert {status for status, _ in answers} == {200}, answers
        seen.update(served_by.rsplit(":", 1)[0] for _, served_by in answers)
        if (len(seen) if isinstance(want, int) else set(seen)) == want:
            break
    return seen


def apply(cluster: DevCluster, *objects: dict[str, Any]) -> None:
    for obj in objects:
        cluster.kubectl("apply", "-f", "-", input=json.dumps(obj))


def model_spec(model_files: ModelFiles, digest: str | None = None) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate({
        "model": {"name": "iris", "version": "1.0.0", "uri": model_files.url(MODEL_FILE),
                  "format": "sklearn", "digest": digest or model_files.digest(MODEL_FILE)},
        "runtime": {"replicas": REPLICAS},
    })


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
        "name": "router", "image": DEFAULT_SERVING_IMAGE, "command": ["modelops-router"],
        "args": ["--config", "/etc/modelops/router/router.json", "--port", "8000",
                 "--metrics-port", "9090", "--deployment", MD, "--reload-interval", "0.5"],
        "ports": [{"name": "http", "containerPort": 8000},
                  {"name": "metrics", "containerPort": 9090}],
        "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 2},
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


def client_pod(namespace: str) -> dict[str, Any]:
    """A pod that only waits: tests run their requests inside it with `kubectl exec`."""
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "client", "namespace": namespace},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
            "name": "client", "image": DEFAULT_SERVING_IMAGE,
            "command": ["python3", "-c", "import time; time.sleep(10**9)"],
        }]},
    }


@dataclass
class Served:
    real: RealCluster
    namespace: str

    @property
    def cluster(self) -> DevCluster:
        return self.real.cluster

    def wait_available(self, deployment: str, replicas: int = 1, timeout: float = 120) -> None:
        self.cluster.kubectl("rollout", "status", "-n", self.namespace,
                             f"deployment/{deployment}", f"--timeout={timeout:.0f}s",
                             timeout=timeout + 10)
        status = json.loads(self.cluster.kubectl(
            "get", "-n", self.namespace, f"deployment/{deployment}", "-o", "json").stdout)["status"]
        assert status.get("readyReplicas") == replicas, status

    def pods(self, **labels: str) -> list[dict[str, Any]]:
        selector = ",".join(f"{k}={v}" for k, v in labels.items())
        listing = json.loads(self.cluster.kubectl(
            "get", "pods", "-n", self.namespace, "-l", selector, "-o", "json").stdout)
        return [p for p in listing["items"] if not p["metadata"].get("deletionTimestamp")]

    def ready_pods(self, **labels: str) -> list[dict[str, Any]]:
        return [p for p in self.pods(**labels)
                if any(c["type"] == "Ready" and c["status"] == "True"
                       for c in p.get("status", {}).get("conditions") or [])]

    def call_from_client(self, url: str, n: int) -> list[tuple[int, str]]:
        return calls_from_client(self.cluster, self.namespace, url, n)


@pytest.fixture(scope="module")
def served(real_cluster: RealCluster, model_files: ModelFiles) -> Iterator[Served]:
    namespace = f"t-{uuid.uuid4().hex[:10]}"
    cluster = real_cluster.cluster
    cluster.kubectl("create", "namespace", namespace)
    wait_for_service_account(cluster, namespace)
    apply(cluster, build_model_deployment(MD, namespace, model_spec(model_files)),
          arm_service(namespace, "champion"), arm_service(namespace, "challenger"),
          client_pod(namespace))
    served = Served(real_cluster, namespace)
    served.wait_available(f"{MD}-champion", replicas=REPLICAS, timeout=180)
    cluster.kubectl("wait", "-n", namespace, "--for=condition=Ready", "pod/client",
                    "--timeout=60s", timeout=70)
    try:
        yield served
    finally:
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_model_pods_run_as_containers_with_their_own_addresses(served: Served) -> None:
    pods = served.ready_pods(**{"modelops.io/role": "champion"})
    assert len(pods) == REPLICAS
    addresses = {p["status"]["podIP"] for p in pods}
    assert len(addresses) == REPLICAS
    prefix = POD_SUBNET.split(".0.0/")[0] + "."
    assert all(a.startswith(prefix) for a in addresses), addresses
    for pod in pods:
        status = pod["status"]
        assert [c["state"]["terminated"]["exitCode"] for c in status["initContainerStatuses"]] \
            == [0]
        assert all(c["ready"] and "running" in c["state"] for c in status["containerStatuses"])
        assert all(c["containerID"].startswith("containerd://")
                   for c in status["containerStatuses"])
    # `kubectl logs` reaches the kubelet through the API server, as users' clusters do.
    logs = served.cluster.kubectl("logs", "-n", served.namespace, pods[0]["metadata"]["name"],
                                  "-c", "model").stdout
    assert "iris" in logs


def test_a_service_spreads_requests_over_every_ready_replica(served: Served) -> None:
    service = f"{MD}-champion"
    url = f"http://{service}.{served.namespace}.svc:8000/v2/models/iris/infer"
    pod_ips = {p["status"]["podIP"] for p in served.ready_pods(**{"modelops.io/role": "champion"})}
    by_replica = replicas_reached_through(served.cluster, served.namespace, service, url, pod_ips)
    assert set(by_replica) == pod_ips, by_replica


def test_prometheus_in_the_cluster_scrapes_each_replica_with_pod_labels(served: Served) -> None:
    served.call_from_client(f"http://{MD}-champion.{served.namespace}.svc:8000"
                            "/v2/models/iris/infer", 20)
    names = {p["metadata"]["name"] for p in served.ready_pods(**{"modelops.io/role": "champion"})}
    query = f'modelops_requests_total{{namespace="{served.namespace}",deployment="{MD}"}}'

    def scraped_pods() -> set[str] | None:
        found = {s["metric"].get("pod") for s in served.real.query(query)}
        return found if found >= names else None

    wait_until(scraped_pods, timeout=60, what=query)
    series = served.real.query(query)
    assert {s["metric"]["role"] for s in series} == {"champion"}
    assert {s["metric"]["version"] for s in series} == {"1.0.0"}


def test_the_router_reaches_the_champion_through_service_dns(served: Served) -> None:
    apply(served.cluster, *router_objects(served.namespace))
    served.wait_available(f"{MD}-router")
    (router,) = served.ready_pods(**{"app.kubernetes.io/name": "modelops-router"})
    answers = served.call_from_client(
        f"http://{router['status']['podIP']}:8000/v2/models/iris/infer", 10)
    assert {status for status, _ in answers} == {200}


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

    message = wait_until(fetch_failure, timeout=90, what="the fetch's termination message")
    assert "digest mismatch" in message
    served.cluster.kubectl("delete", "deployment", f"{MD}-challenger", "-n", served.namespace)


def test_a_deleted_pod_is_replaced_and_the_router_follows(served: Served) -> None:
    old = served.ready_pods(**{"modelops.io/role": "champion"})[0]
    served.cluster.kubectl("delete", "pod", old["metadata"]["name"], "-n", served.namespace,
                           "--timeout=60s", timeout=70)
    served.wait_available(f"{MD}-champion", replicas=REPLICAS)
    names = {p["metadata"]["name"] for p in served.ready_pods(**{"modelops.io/role": "champion"})}
    assert old["metadata"]["name"] not in names
    (router,) = served.ready_pods(**{"app.kubernetes.io/name": "modelops-router"})
    url = f"http://{router['status']['podIP']}:8000/v2/models/iris/infer"
    answers = served.call_from_client(url, 20)
    assert {status for status, _ in answers} == {200}
