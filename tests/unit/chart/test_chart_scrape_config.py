"""The plain-Prometheus scrape config keeps exactly the model pods' metrics ports, with the
labels the gates select by, and renames none of the sidecars' own labels.

Prometheus' Kubernetes pod discovery and relabelling are simulated on the pods the operator's
own builders produce, so a change of a port name or label on either side fails here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelops_operator.api.modeldeployment import ModelDeploymentSpec
from modelops_operator.builders.workload import build_model_deployment
from modelops_operator.challenge.workloads import build_router_deployment
from modelops_operator.promsource.client import PrometheusSettings
from tests.harness.chart import CHART

SCRAPE_CONFIG = CHART / "files" / "prometheus-scrape-config.yaml"
PROMETHEUS_DOC = Path(__file__).resolve().parents[3] / "docs" / "prometheus.md"
# Labels of the sidecars' and routers' own series that the gates read (promsource/, and the
# router's config revision): a target label of the same name would rename them.
METRIC_LABELS = {
    "deployment", "model", "version", "role", "code", "le", "outcome",
    "arm", "champion", "challenger", "revision",
}  # fmt: skip
SPEC = ModelDeploymentSpec.model_validate(
    {
        "model": {
            "name": "fraud",
            "version": "2.0.0",
            "uri": "https://models.example.com/fraud.onnx",
            "format": "onnx",
            "digest": "sha256:" + "ab" * 32,
        }
    }
)


def job() -> dict[str, Any]:
    (only,) = yaml.safe_load(SCRAPE_CONFIG.read_text())
    return only


def _sanitize(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def discover(deployment: Mapping[str, Any], phase: str = "Running") -> Iterator[dict[str, str]]:
    """The targets `kubernetes_sd_configs: role: pod` makes of one pod: one per container port."""
    metadata = deployment["metadata"]
    pod = deployment["spec"]["template"]
    common = {
        "__meta_kubernetes_namespace": metadata["namespace"],
        "__meta_kubernetes_pod_name": f"{metadata['name']}-7d9f-x2k4q",
        "__meta_kubernetes_pod_phase": phase,
        **{
            f"__meta_kubernetes_pod_label_{_sanitize(k)}": v
            for k, v in pod["metadata"]["labels"].items()
        },
    }
    spec = pod["spec"]
    for container in spec.get("initContainers", []) + spec["containers"]:
        for port in container.get("ports", []):
            yield {
                **common,
                "__address__": f"10.1.2.3:{port['containerPort']}",
                "__meta_kubernetes_pod_container_name": container["name"],
                "__meta_kubernetes_pod_container_port_name": port.get("name", ""),
                "__meta_kubernetes_pod_container_port_number": str(port["containerPort"]),
            }


def selected_by_discovery(target: Mapping[str, str]) -> bool:
    """The `selectors` of the job: the API server sends only pods matching them."""
    for selector in job()["kubernetes_sd_configs"][0].get("selectors", []):
        for term in selector["label"].split(","):
            key, value = term.split("=")
            if target.get(f"__meta_kubernetes_pod_label_{_sanitize(key)}") != value:
                return False
    return True


def relabel(target: Mapping[str, str]) -> dict[str, str] | None:
    """Prometheus' relabel_configs (the actions the job uses), then its final target labels."""
    labels = dict(target)
    for rule in job()["relabel_configs"]:
        value = rule.get("separator", ";").join(labels.get(s, "") for s in rule["source_labels"])
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        action = rule.get("action", "replace")
        if action == "keep" and not match:
            return None
        if action == "drop" and match:
            return None
        if action == "replace" and match:
            labels[rule["target_label"]] = match.expand(
                rule.get("replacement", "$1").replace("$1", r"\1")
            )
        assert action in ("keep", "drop", "replace"), f"simulate {action} first"
    final = {k: v for k, v in labels.items() if not k.startswith("__")}
    return {**final, "job": job()["job_name"], "instance": labels["__address__"]}


def scraped(deployment: Mapping[str, Any], **kwargs: Any) -> list[dict[str, str]]:
    kept = (relabel(t) for t in discover(deployment, **kwargs) if selected_by_discovery(t))
    return [t for t in kept if t is not None]


def test_the_file_is_one_pod_discovery_job_that_honours_no_labels() -> None:
    scrape = job()
    assert scrape["job_name"] == "modelops-pods"
    assert [sd["role"] for sd in scrape["kubernetes_sd_configs"]] == ["pod"]
    assert scrape["honor_labels"] is False  # a pod cannot claim another namespace


@pytest.mark.parametrize("role", ["champion", "challenger"])
def test_a_model_pod_is_scraped_once_on_its_sidecar_metrics_port(role: str) -> None:
    (target,) = scraped(build_model_deployment("fraud", "risk", SPEC, role))
    assert target["instance"] == "10.1.2.3:9090"
    assert target["container"] == "metrics-sidecar"
    namespace_label = PrometheusSettings(url="http://prometheus").namespace_label
    assert target[namespace_label] == "risk"
    assert target["pod"].startswith(f"fraud-{role}-")


def test_a_router_pod_is_scraped_once_on_its_metrics_port() -> None:
    (target,) = scraped(build_router_deployment("fraud", "risk"))
    assert (target["instance"], target["container"]) == ("10.1.2.3:9090", "router")
    assert target["namespace"] == "risk"


def test_other_pods_and_finished_pods_are_not_scraped() -> None:
    other = build_model_deployment("fraud", "risk", SPEC)
    other["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/managed-by"] = "helm"
    assert scraped(other) == []
    # The keep rule holds on its own too, should someone drop the discovery selector.
    assert [relabel(t) for t in discover(other)] == [None] * len(list(discover(other)))
    for phase in ("Pending", "Succeeded", "Failed"):
        assert scraped(build_model_deployment("fraud", "risk", SPEC), phase=phase) == []


def test_no_target_label_renames_a_label_the_gates_read() -> None:
    (target,) = scraped(build_model_deployment("fraud", "risk", SPEC))
    assert not METRIC_LABELS & set(target), "honor_labels: false would rename them exported_*"


def test_the_docs_show_the_same_job() -> None:
    text = PROMETHEUS_DOC.read_text()
    block = re.search(r"```yaml\nscrape_configs:\n(.*?)```", text, re.S)
    assert block is not None, "docs/prometheus.md has no scrape_configs block"
    assert yaml.safe_load(block.group(1)) == yaml.safe_load(SCRAPE_CONFIG.read_text())
