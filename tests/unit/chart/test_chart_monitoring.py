"""The chart's alerts and dashboard: promtool checks and unit-tests the rules, every PromQL
expression of the dashboard parses, every metric they read is one the project exports, and
the chart renders both only when asked."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.chart import CHART, REPO_ROOT
from tests.unit.chart.test_chart_render import HELM, render

ALERTS = CHART / "files" / "alerts.yaml"
DASHBOARD = CHART / "files" / "dashboard.json"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="no promtool (make system-deps installs Debian's prometheus)"
)
# Grafana's variables, replaced by what they stand for so promtool can parse the queries.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$namespace": ".*", "$deployment": ".*"}


def _promtool(*args: str) -> str:
    assert PROMTOOL is not None
    done = subprocess.run([PROMTOOL, *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@needs_promtool
def test_promtool_accepts_the_rules_and_their_unit_tests_pass() -> None:
    assert "SUCCESS: 18 rules found" in _promtool("check", "rules", str(ALERTS))
    assert "SUCCESS" in _promtool("test", "rules", str(Path(__file__).parent / "alerts_test.yaml"))


def _dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            queries.append(re.sub(r"^label_values\((.*), \w+\)$", r"\1", variable["query"]))
    return queries


@needs_promtool
def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    queries = _dashboard_queries()
    assert len(queries) >= 12
    rules = []
    for i, query in enumerate(queries):
        for variable, value in GRAFANA_VARIABLES.items():
            query = query.replace(variable, value)
        rules.append({"record": f"dashboard:query_{i}", "expr": query})
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    _promtool("check", "rules", str(path))


def _exported_metric_names() -> set[str]:
    """Every metric name the Go data plane and the operator register."""
    names: set[str] = set()
    for path in [*REPO_ROOT.glob("dataplane/internal/*/*.go"), *REPO_ROOT.glob("operator/**/*.py")]:
        if path.name.endswith("_test.go"):
            continue
        text = path.read_text()
        names.update(re.findall(r'Name:\s*"(modelops_[a-z_]+)"', text))
        names.update(re.findall(r'(?:Counter|Gauge|Histogram)\(\s*"(modelops_[a-z_]+)"', text))
    return names


def test_alerts_and_dashboard_read_only_metrics_the_project_exports() -> None:
    exported = _exported_metric_names()
    rules = yaml.safe_load(ALERTS.read_text())
    recorded = {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    expressions = [r["expr"] for g in rules["groups"] for r in g["rules"]] + _dashboard_queries()
    used = {name for e in expressions for name in re.findall(r"\bmodelops[a-z0-9_:]*", e)}
    for name in sorted(used - recorded):
        base = re.sub(r"_(total|bucket|count|sum)$", "", name)
        assert name in exported or base in exported, f"{name} is read but nobody exports it"


@pytest.mark.skipif(HELM is None, reason="no helm binary (make cluster-build)")
def test_the_chart_renders_rules_and_dashboard_only_when_asked() -> None:
    kinds = {d["kind"] for d in render()}
    assert "PrometheusRule" not in kinds
    documents = render(
        "prometheusRule.enabled=true",
        "prometheusRule.additionalLabels.release=kps",
        "grafanaDashboard.enabled=true",
    )
    by_kind: dict[str, Any] = {d["kind"]: d for d in documents if d["kind"] != "ConfigMap"}
    rule = by_kind["PrometheusRule"]
    assert rule["metadata"]["labels"]["release"] == "kps"
    assert rule["spec"] == yaml.safe_load(ALERTS.read_text())
    dashboard = next(
        d
        for d in documents
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard")
    )
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["modelops.json"]) == json.loads(DASHBOARD.read_text())
