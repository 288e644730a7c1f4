"""Prometheus inside the dev cluster, scraping pods as users' clusters do.

It discovers pods through the Kubernetes API (`kubernetes_sd_configs`) with exactly the
scrape configuration the chart ships for plain-Prometheus users
(charts/modelops/files/prometheus-scrape-config.yaml), so the labels the gates query here are
the labels users will have. Its Service is `prometheus-operated.monitoring:9090`, the operator's
default `MODELOPS_PROMETHEUS_URL`, so the chart installs with default values.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from .nodeconfig import service_account_with_cluster_role

NAMESPACE = "monitoring"
SERVICE = "prometheus-operated"
PORT = 9090
SCRAPE_CONFIG = (
    Path(__file__).resolve().parents[3] / "charts" / "modelops" / "files"
    / "prometheus-scrape-config.yaml"
)
PROMETHEUS_IMAGE = "modelops.dev/prometheus"  # its tag: dist/images/images.txt


def prometheus_config(scrape_interval: str, scrape_configs: list[dict[str, Any]]) -> str:
    return yaml.safe_dump({
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "scrape_configs": scrape_configs,
    })


def shipped_scrape_configs() -> list[dict[str, Any]]:
    document = yaml.safe_load(SCRAPE_CONFIG.read_text())
    configs = document["scrape_configs"] if isinstance(document, dict) else document
    return list(configs)


def prometheus_manifests(scrape_interval: str, image: str) -> list[dict[str, Any]]:
    labels = {"app.kubernetes.io/name": "prometheus"}
    meta = {"name": "prometheus", "namespace": NAMESPACE}
    config = prometheus_config(scrape_interval, shipped_scrape_configs())
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        *service_account_with_cluster_role(meta, "modelops-dev-prometheus", [
            {"apiGroups": [""], "resources": ["pods", "services", "endpoints", "nodes"],
             "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
             "verbs": ["get", "list", "watch"]},
        ]),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
         "data": {"prometheus.yml": config}},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {**meta, "labels": labels},
            "spec": {
                "replicas": 1,
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": "prometheus",
                        "securityContext": {"runAsNonRoot": True, "runAsUser": 65532,
                                            "fsGroup": 65532},
                        "containers": [{
                            "name": "prometheus",
                            "image": image,
                            "imagePullPolicy": "Never",
                            "args": ["--config.file=/etc/prometheus/prometheus.yml",
                                     "--storage.tsdb.path=/prometheus",
                                     f"--web.listen-address=:{PORT}",
                                     "--web.enable-lifecycle",
                                     "--storage.tsdb.retention.time=1d"],
                            "ports": [{"name": "web", "containerPort": PORT}],
                            "readinessProbe": {"httpGet": {"path": "/-/ready", "port": "web"},
                                               "periodSeconds": 2},
                            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                                          "limits": {"memory": "1Gi"}},
                            "securityContext": {"readOnlyRootFilesystem": True,
                                                "allowPrivilegeEscalation": False,
                                                "capabilities": {"drop": ["ALL"]}},
                            "volumeMounts": [
                                {"name": "config", "mountPath": "/etc/prometheus"},
                                {"name": "data", "mountPath": "/prometheus"},
                            ],
                        }],
                        "volumes": [{"name": "config", "configMap": {"name": "prometheus"}},
                                    {"name": "data", "emptyDir": {}}],
                    },
                },
            },
        },
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": SERVICE, "namespace": NAMESPACE, "labels": labels},
         "spec": {"selector": labels, "ports": [{"name": "web", "port": PORT,
                                                  "targetPort": "web"}]}},
    ]


class ClusterPrometheus:
    """Prometheus deployed into a cluster with a real node; `url` is a port on the host."""

    def __init__(self, cluster: Any, url: str) -> None:
        self.cluster = cluster
        self.url = url

    @classmethod
    def deploy(cls, cluster: Any, scrape_interval: str = "2s",
               image: str | None = None) -> ClusterPrometheus:
        from .realnode import image_reference

        image = image or image_reference(PROMETHEUS_IMAGE)
        manifests = yaml.safe_dump_all(prometheus_manifests(scrape_interval, image))
        cluster.kubectl("apply", "--server-side", "--field-manager=modelops-devcluster",
                        "-f", "-", input=manifests)
        cluster.kubectl("-n", NAMESPACE, "rollout", "status", "deployment/prometheus",
                        "--timeout=120s", timeout=130)
        service = json.loads(cluster.kubectl("-n", NAMESPACE, "get", "service", SERVICE,
                                             "-o", "json").stdout)
        port = cluster.node.forward(service["spec"]["clusterIP"], PORT)
        prometheus = cls(cluster, f"http://127.0.0.1:{port}")
        prometheus.wait_ready()
        return prometheus

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"Prometheus at {self.url} not ready after {timeout:.0f} s")

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The result vector of an instant query."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10)
        response.raise_for_status()
        return list(response.json()["data"]["result"])
