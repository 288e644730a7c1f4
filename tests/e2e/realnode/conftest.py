"""Fixtures for end-to-end tests whose pods really run: a control plane with a local kubelet.

`local_cluster` (session) starts a second DevCluster *without* kwok's fake node, a LocalKubelet
(node `modelops-local`; each pod's containers run as processes of this virtualenv on the pod's
own address in 127.1.0.0/16) and a Prometheus that scrapes every running pod's `metrics` port
through the kubelet's file_sd targets (scrape interval 1 s; labels `namespace`, `pod`,
`container`).

In this directory `devcluster` IS that cluster, so the fixtures of tests/e2e (`namespace`,
and `crds`, `operator_identity`, `operator` from operator_fixtures) work unchanged against it.

Mark test modules here `pytestmark = pytest.mark.e2e`, like the rest of tests/e2e. Useful:
- `local_cluster.kubelet.pod_ip(ns, pod)`, `.service_url(ns, service[, port])` (what a pod's
  request to `<service>.<ns>.svc:<port>` reaches), `.pods_dir / f"{ns}_{pod}" / "<c>.log"`;
- `local_cluster.prometheus.url` (HTTP API), `local_cluster.query(promql)`;
- `model_files.url(name)` / `model_files.digest(name)`: examples/models over HTTP on 127.0.0.1.
"""

from __future__ import annotations

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
from modelops_devcluster.localkubelet import LocalKubelet
from modelops_devcluster.prometheus import PrometheusProcess

EXAMPLE_MODELS = Path(__file__).resolve().parents[3] / "examples" / "models"


@dataclass
class LocalCluster:
    """A control plane whose pods run: `cluster` (DevCluster), `kubelet`, `prometheus`."""

    cluster: DevCluster
    kubelet: LocalKubelet
    prometheus: PrometheusProcess
    workdir: Path

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The result vector of an instant query."""
        response = httpx.get(f"{self.prometheus.url}/api/v1/query", params={"query": promql},
                             timeout=10)
        response.raise_for_status()
        return list(response.json()["data"]["result"])


@pytest.fixture(scope="session")
def local_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    workdir = tmp_path_factory.mktemp("localnode")
    say = functools.partial(print, "[localnode]", flush=True)
    cluster = DevCluster.start(workdir / "cluster", fake_node=False, progress=say)
    kubelet = prometheus = None
    try:
        kubelet = LocalKubelet.start(cluster, workdir / "kubelet")
        prometheus = PrometheusProcess.start(
            workdir / "prometheus", [], scrape_interval="1s",
            file_sd_files=[kubelet.targets_file],
        )
        local = LocalCluster(cluster, kubelet, prometheus, workdir)
        yield local
        # A test may stop Prometheus and start another in its place: stop the current one.
        prometheus = local.prometheus
    finally:
        if prometheus is not None:
            prometheus.stop()
        if kubelet is not None:
            kubelet.stop()
        cluster.stop(progress=lambda _: None)
        say(f"logs kept in {workdir}")


@pytest.fixture(scope="session")
def devcluster(local_cluster: LocalCluster) -> DevCluster:
    """Overrides tests/e2e's fake-node cluster for the tests in this directory."""
    return local_cluster.cluster


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


@pytest.fixture(scope="session")
def model_files() -> Iterator[ModelFiles]:
    """examples/models served over HTTP on 127.0.0.1 (what a model registry would be)."""
    handler = functools.partial(_QuietHandler, directory=str(EXAMPLE_MODELS))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ModelFiles(f"http://127.0.0.1:{server.server_address[1]}", EXAMPLE_MODELS)
    finally:
        server.shutdown()
        server.server_close()
