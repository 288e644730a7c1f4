"""Fixtures for end-to-end tests whose pods really run: a control plane with a real node.

`real_cluster` (session) starts a DevCluster with a real node (containerd, runc, CNI, kubelet,
kube-proxy, CoreDNS; the images of `make images` imported) and Prometheus inside the cluster,
scraping pods through Kubernetes service discovery with the chart's scrape configuration
(interval 1 s).

In this directory `devcluster` IS that cluster, so the fixtures of tests/e2e (`namespace`,
and `crds`, `operator_identity`, `operator` from operator_fixtures) work unchanged against it.

Mark test modules here `pytestmark = pytest.mark.e2e`, like the rest of tests/e2e. Useful:
- `real_cluster.prometheus.url` (a host port relayed to the in-cluster Service),
  `real_cluster.query(promql)`;
- `real_cluster.node.forward(ip, port)`: a host port reaching a ClusterIP or pod IP;
- `model_files.url(name)` / `model_files.digest(name)`: examples/models over HTTP from the
  host, as pods see it (at the node's address, like a registry outside the cluster).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelops_devcluster.cluster import DevCluster
from modelops_devcluster.clusterprometheus import ClusterPrometheus
from modelops_devcluster.nodeconfig import NODE_IP
from modelops_devcluster.realnode import RealNode, image_archives
from tests.harness.operator_process import OperatorProcess

from ..operator_fixtures import get_json, wait_until

EXAMPLE_MODELS = Path(__file__).resolve().parents[3] / "examples" / "models"


@dataclass
class RealCluster:
    """A control plane with a real node: `cluster` (DevCluster), `node`, `prometheus`."""

    cluster: DevCluster
    node: RealNode
    prometheus: ClusterPrometheus
    workdir: Path

    def query(self, promql: str) -> list[dict[str, Any]]:
        return self.prometheus.query(promql)


@pytest.fixture(scope="session")
def real_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealCluster]:
    workdir = tmp_path_factory.mktemp("realnode")
    say = functools.partial(print, "[realnode]", flush=True)
    cluster = DevCluster.start(workdir / "cluster", fake_node=False,
                               real_node_images=image_archives(), progress=say)
    try:
        node = cluster.node
        assert node is not None
        prometheus = ClusterPrometheus.deploy(cluster, scrape_interval="1s")
        yield RealCluster(cluster, node, prometheus, workdir)
    finally:
        cluster.stop(progress=lambda _: None)
        say(f"logs kept in {workdir}")


@pytest.fixture(scope="session")
def devcluster(real_cluster: RealCluster) -> DevCluster:
    """Overrides tests/e2e's fake-node cluster for the tests in this directory."""
    return real_cluster.cluster


@dataclass(frozen=True)
class ModelFiles:
    base_url: str
    directory: Path

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}"

    def digest(self, name: str) -> str:
        return "sha256:" + hashlib.sha256((self.directory / name).read_bytes()).hexdigest()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve_directory(real_cluster: RealCluster, directory: Path) -> Iterator[str]:
    """A directory over HTTP from the host, at the URL pods see it under (the node's address,
    like a registry outside the cluster)."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://{NODE_IP}:{real_cluster.node.expose(int(server.server_address[1]))}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def model_files(real_cluster: RealCluster) -> Iterator[ModelFiles]:
    """examples/models served over HTTP from the host (what a model registry would be)."""
    with serve_directory(real_cluster, EXAMPLE_MODELS) as base_url:
        yield ModelFiles(base_url, EXAMPLE_MODELS)


@contextlib.contextmanager
def host_operator(
    real_cluster: Any, operator_identity: tuple[Path, str], log_dir: Path, **env: str
) -> Iterator[OperatorProcess]:
    """The operator as a process of the host (a test can kill it), with the chart's
    ServiceAccount, reading the in-cluster Prometheus; ``env`` adds settings."""
    kubeconfig, _ = operator_identity
    log_path = log_dir / "operator.log"
    extra_env = {"MODELOPS_PROMETHEUS_URL": real_cluster.prometheus.url, **env}
    process = OperatorProcess.start(kubeconfig, log_path, extra_env=extra_env)
    try:
        yield process
    finally:
        process.stop()
        print(f"[operator] log: {log_path}")


@pytest.fixture(scope="module")
def challenge_operator(
    real_cluster: Any, operator_identity: tuple[Path, str], tmp_path_factory: Any
) -> Iterator[OperatorProcess]:
    """`operator_identity` comes from the test module (tests/e2e/operator_fixtures)."""
    log_dir = tmp_path_factory.mktemp("challenge-operator")
    # Labels come 0.5-2 s after the answer; a retired challenger stays long enough.
    with host_operator(
        real_cluster, operator_identity, log_dir, MODELOPS_FEEDBACK_GRACE_SECONDS="5"
    ) as process:
        yield process


def service_url(real_cluster: Any, namespace: str, service: str) -> str:
    """A host URL reaching the Service, once it answers (a pod is Ready before kube-proxy
    routes the Service's address to it)."""
    spec = get_json(real_cluster.cluster, "-n", namespace, f"service/{service}")["spec"]
    port = real_cluster.node.forward(spec["clusterIP"], spec["ports"][0]["port"])
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return httpx.get(f"{url}/v2/health/ready", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(answers, timeout=60, what=f"Service {service} to answer")
    return url
