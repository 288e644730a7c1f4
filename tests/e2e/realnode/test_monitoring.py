"""A live model watched end to end: pods on the real node fetch the model and its training
profile (written by `modelops profile` from the demo's holdout table), the sidecars count
inputs and labels, Prometheus in the cluster scrapes them, and the operator (a host process,
one look every 5 s) raises DataDrift and then AccuracyDegraded when the inputs move, and starts
one retraining (a Job that runs on the node, and a CloudEvent) for both, within its cooldown;
a second Prometheus evaluates the chart's own alert rules against the operator's metrics.

Healthy traffic first (rows and labels from the model's own task): nothing fires. Then the
strongest feature moves by 1.5 standard deviations, its labels following the task's true rule.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from modelops_demo.loadgen import LoadGenerator
from modelops_demo.models import (
    HOLDOUT_ROWS,
    HOLDOUT_SEED,
    NOISE_SCALE,
    TRUE_WEIGHTS,
    DemoStream,
    build_demo_models,
    draw_rows,
)
from modelops_devcluster.prometheus import PrometheusProcess, ScrapeTarget
from modelops_operator.constants import DEFAULT_SERVING_IMAGE
from modelops_operator.monitoring.profile import build_profile, digest, encode, model_predictor
from tests.harness.chart import CHART
from tests.harness.operator_process import OperatorProcess

from ..operator_fixtures import crds, get_json, operator_identity, wait_until  # noqa: F401 - fixtures
from .conftest import host_operator, serve_directory, service_url
from .test_challenge import BackgroundLoad, assert_no_failed_request

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TARGET = "fraud"
SHIFT = 1.5  # standard deviations of feature x0, the strongest
LOOK_SECONDS = "5"


class ShiftableStream:
    """The demo's request stream; with ``shift`` set, feature 0 moves and the labels follow
    the task's true rule (its weights and noise) for the moved rows."""

    def __init__(self) -> None:
        self.inner = DemoStream()
        self.shift = 0.0
        self.rng = np.random.default_rng(5)

    def __iter__(self) -> ShiftableStream:
        return self

    def __next__(self) -> tuple[list[float], int]:
        row, label = next(self.inner)
        if not self.shift:
            return row, label
        moved = [row[0] + self.shift, *row[1:]]
        score = float(np.dot(TRUE_WEIGHTS, moved)) + self.rng.normal(scale=NOISE_SCALE)
        return moved, int(score > 0)


@pytest.fixture(scope="module")
def served(real_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The demo's champion and its profile (from the 20,000-row holdout, with labels)."""
    directory = tmp_path_factory.mktemp("monitored")
    champion = build_demo_models(directory)["champion"]
    features, labels = draw_rows(HOLDOUT_ROWS, HOLDOUT_SEED)
    columns: dict[str, list[Any]] = {
        f"x{i}": features[:, i].tolist() for i in range(features.shape[1])
    }
    columns["label"] = labels.tolist()
    profile = encode(
        build_profile(columns, label="label", predict=model_predictor("sklearn", champion.path))
    )
    (directory / "profile.json").write_bytes(profile)
    with serve_directory(real_cluster, directory) as base:
        yield {
            "version": champion.version,
            "uri": f"{base}/{champion.path.relative_to(directory)}",
            "digest": champion.digest,
            "profile_uri": f"{base}/profile.json",
            "profile_digest": digest(profile),
        }


@pytest.fixture(scope="module")
def monitoring_operator(
    real_cluster: Any,
    operator_identity: tuple[Path, str],  # noqa: F811 - the fixture imported above
    tmp_path_factory: Any,
) -> Iterator[OperatorProcess]:
    log_dir = tmp_path_factory.mktemp("monitoring-operator")
    with host_operator(
        real_cluster, operator_identity, log_dir, MODELOPS_MONITOR_INTERVAL_SECONDS=LOOK_SECONDS
    ) as process:
        yield process


@pytest.fixture(scope="module")
def alerting(
    monitoring_operator: OperatorProcess, tmp_path_factory: Any
) -> Iterator[PrometheusProcess]:
    """A Prometheus of the host scraping the operator, with the chart's alert rules loaded."""
    target = ScrapeTarget(f"127.0.0.1:{monitoring_operator.metrics_port}", {})
    prometheus = PrometheusProcess.start(
        tmp_path_factory.mktemp("alerting"), [target], rule_files=[CHART / "files" / "alerts.yaml"]
    )
    try:
        yield prometheus
    finally:
        prometheus.stop()


class CloudEventSink:
    """An HTTP endpoint of the host that keeps every CloudEvent POSTed to it."""

    def __init__(self) -> None:
        received: list[dict[str, Any]] = []
        self.received = received

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                received.append({"type": self.headers.get("Content-Type"),
                                 "event": json.loads(self.rfile.read(length))})  # fmt: skip
                self.send_response(202)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/events"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sink() -> Iterator[CloudEventSink]:
    found = CloudEventSink()
    yield found
    found.close()


# A retraining as a Job: here it only says what it would train on; `make demo` trains for real.
RETRAINING_JOB = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {"labels": {"app": "retrain"}},
    "spec": {
        "backoffLimit": 0,
        "template": {
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "train",
                        "image": DEFAULT_SERVING_IMAGE,
                        "imagePullPolicy": "Never",
                        "command": ["python3", "-c", "print('retraining on fresh data')"],
                    }
                ],
            }
        },
    },
}


def _deploy(cluster: Any, namespace: str, served: dict[str, str], sink_url: str) -> None:
    manifest = {
        "apiVersion": "modelops.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": TARGET},
        "spec": {
            "model": {
                "name": "fraud",
                "version": served["version"],
                "uri": served["uri"],
                "format": "sklearn",
                "digest": served["digest"],
                "profile": {"uri": served["profile_uri"], "digest": served["profile_digest"]},
            },
            "runtime": {"replicas": 2},
            "monitoring": {
                "feedback": {"enabled": True},
                "drift": {"alarmEvery": "1h"},
                "accuracy": {"alarmEvery": "1h", "margin": 2},
                "retraining": {
                    "cooldown": "24h",
                    "template": RETRAINING_JOB,
                    "cloudEvent": {"url": sink_url},
                },
            },
        },
    }
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))
    cluster.kubectl(
        "wait", "-n", namespace, "--for=condition=Ready", f"mdep/{TARGET}", "--timeout=180s"
    )


def _monitoring(cluster: Any, namespace: str) -> dict[str, Any]:
    status = get_json(cluster, "-n", namespace, f"mdep/{TARGET}").get("status") or {}
    conditions = {c["type"]: c for c in status.get("conditions") or []}
    return {"monitoring": status.get("monitoring") or {}, "conditions": conditions}


def _condition(cluster: Any, namespace: str, kind: str, wanted: str) -> dict[str, Any] | None:
    found = _monitoring(cluster, namespace)
    condition = found["conditions"].get(kind) or {}
    return found if condition.get("status") == wanted else None


def _firing(prometheus: PrometheusProcess, alert: str) -> bool:
    query = f'ALERTS{{alertname="{alert}",alertstate="firing"}}'
    answer = httpx.get(f"{prometheus.url}/api/v1/query", params={"query": query}, timeout=5).json()
    return bool(answer["data"]["result"])


def test_drift_then_accuracy_decay_are_found_and_alerted(
    real_cluster: Any,
    namespace: str,
    monitoring_operator: OperatorProcess,
    alerting: PrometheusProcess,
    served: dict[str, str],
    sink: CloudEventSink,
) -> None:
    cluster = real_cluster.cluster
    _deploy(cluster, namespace, served, sink.url)
    url = service_url(real_cluster, namespace, TARGET)
    stream = ShiftableStream()
    load = BackgroundLoad(
        LoadGenerator(
            url,
            stream,
            "fraud",
            rate_per_second=40,
            feedback_delay_seconds=(0.5, 2),
        )
    )
    try:
        # Healthy: the monitors see rows and labels and find nothing.
        watching = wait_until(
            lambda: _condition(cluster, namespace, "DataDrift", "False"),
            timeout=120,
            what="DataDrift=False (the drift monitor watching healthy inputs)",
        )
        assert watching["monitoring"]["drift"]["state"] == "Watching"
        wait_until(
            lambda: _condition(cluster, namespace, "AccuracyDegraded", "False"),
            timeout=120,
            what="AccuracyDegraded=False (labels as accurate as the holdout)",
        )
        time.sleep(30)
        calm = _monitoring(cluster, namespace)
        assert calm["conditions"]["DataDrift"]["status"] == "False", calm
        assert calm["conditions"]["AccuracyDegraded"]["status"] == "False", calm
        assert not _firing(alerting, "ModelopsDataDrift")

        stream.shift = SHIFT
        drifted = wait_until(
            lambda: _condition(cluster, namespace, "DataDrift", "True"),
            timeout=120,
            what="DataDrift=True",
        )
        drift = drifted["monitoring"]["drift"]
        assert drift["state"] == "Drifted" and drift["features"][0]["name"] == "x0", drift
        degraded = wait_until(
            lambda: _condition(cluster, namespace, "AccuracyDegraded", "True"),
            timeout=180,
            what="AccuracyDegraded=True",
        )
        assert (
            degraded["monitoring"]["accuracy"]["observedError"]
            > degraded["monitoring"]["accuracy"]["allowedError"]
        )
        events = get_json(cluster, "-n", namespace, "events")["items"]
        reasons = {e["reason"] for e in events if e["involvedObject"]["name"] == TARGET}
        assert {"DataDrift", "AccuracyDegraded"} <= reasons, reasons
        wait_until(
            lambda: _firing(alerting, "ModelopsDataDrift"),
            timeout=60,
            what="the drift alert firing",
        )
        wait_until(
            lambda: _firing(alerting, "ModelopsAccuracyDegraded"),
            timeout=60,
            what="the accuracy alert",
        )
    finally:
        final = load.stop()
    assert_no_failed_request(cluster, namespace, final)
    # AccuracyDegraded came within the cooldown: still one Job, one event.
    jobs = get_json(cluster, "-n", namespace, "jobs", "-l", f"modelops.io/deployment={TARGET}")[
        "items"
    ]
    assert len(jobs) == 1 and len(sink.received) == 1
    printed = get_json(cluster, "-n", namespace, f"mdep/{TARGET}")
    print(json.dumps(printed["status"]["monitoring"], indent=1))


HUMBLE = "careful"
HUMILITY = {
    "maxShare": 0.05,
    "alarmEvery": "1h",
    "rules": [
        {"name": "far-out", "when": {"outlyingInput": {"features": ["x0"]}}, "action": "refuse"},
        {"name": "unsure", "when": {"confidenceBelow": 0.75}, "action": "override",
         "overrideValue": 7},
        {"name": "odd-x1", "when": {"outlyingInput": {"features": ["x1"]}}, "action": "flag"},
    ],
}


def _infer(client: httpx.Client, row: list[float], probabilities: bool = False) -> httpx.Response:
    body: dict[str, Any] = {
        "inputs": [{"name": "input-0", "shape": [1, len(row)], "datatype": "FP64", "data": row}]
    }
    if probabilities:
        body["outputs"] = [{"name": "predict"}, {"name": "predict_proba"}]
    return client.post("/v2/models/fraud/infer", json=body)


def test_humility_rules_act_per_prediction_and_uncertain_fires_when_one_fires_too_often(
    real_cluster: Any,
    namespace: str,
    monitoring_operator: OperatorProcess,
    served: dict[str, str],
) -> None:
    """Refuse, override and flag on the real sidecar; then a rule firing on a fifth of the
    predictions (against 5 % allowed) raises Uncertain, with an Event and a metric."""
    cluster = real_cluster.cluster
    manifest = {
        "apiVersion": "modelops.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": HUMBLE},
        "spec": {
            "model": {
                "name": "fraud", "version": served["version"], "uri": served["uri"],
                "format": "sklearn", "digest": served["digest"],
                "profile": {"uri": served["profile_uri"], "digest": served["profile_digest"]},
            },
            "monitoring": {"humility": HUMILITY},
        },
    }  # fmt: skip
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))
    cluster.kubectl(
        "wait", "-n", namespace, "--for=condition=Ready", f"mdep/{HUMBLE}", "--timeout=180s"
    )
    # Ready before kube-proxy routes the Service: the first request of one CI run was reset.
    url = service_url(real_cluster, namespace, HUMBLE)
    ordinary = [0.5, 1.5, 0.5, 0.5, 0.0, 0.0]  # far from the champion's boundary
    with httpx.Client(base_url=url, timeout=10) as client:
        plain = _infer(client, ordinary)
        assert plain.status_code == 200 and "x-modelops-humility" not in plain.headers
        refused = _infer(client, [50.0, *ordinary[1:]])
        assert refused.status_code == 422, refused.text
        assert "humility rule 'far-out' refused row 0" in refused.json()["error"]
        # All zeros: the champion is unsure (about one half), so its answer is overridden.
        unsure = _infer(client, [0.0] * 6, probabilities=True)
        assert unsure.status_code == 200 and unsure.headers["x-modelops-humility"] == "unsure"
        outputs = {o["name"]: o["data"] for o in unsure.json()["outputs"]}
        assert outputs["predict"] == [7] and max(outputs["predict_proba"]) < 0.75
        flagged = _infer(client, [0.5, 50.0, *ordinary[2:]])
        assert flagged.status_code == 200 and flagged.headers["x-modelops-humility"] == "odd-x1"

        # One prediction in five has an x1 the profile never saw: four times what is allowed.
        def uncertain() -> dict[str, Any] | None:
            for sent in range(200):
                row = [0.5, 50.0 if sent % 5 == 0 else 1.5, *ordinary[2:]]
                assert _infer(client, row).status_code == 200
            status = get_json(cluster, "-n", namespace, f"mdep/{HUMBLE}").get("status") or {}
            conditions = {c["type"]: c for c in status.get("conditions") or []}
            found = conditions.get("Uncertain") or {}
            return status if found.get("status") == "True" else None

        status = wait_until(uncertain, timeout=150, what="Uncertain=True")
    humility = status["monitoring"]["humility"]
    assert humility["state"] == "Uncertain" and humility["rules"][0]["name"] == "odd-x1", humility
    assert 0.1 < humility["rules"][0]["share"] < 0.3, humility
    events = get_json(cluster, "-n", namespace, "events")["items"]
    assert "Uncertain" in {e["reason"] for e in events if e["involvedObject"]["name"] == HUMBLE}
    fired = real_cluster.query(
        f'sum by (rule) (modelops_humility_rows_total{{deployment="{HUMBLE}"}})'
    )
    by_rule = {s["metric"]["rule"]: float(s["value"][1]) for s in fired}
    assert by_rule["far-out"] >= 1 and by_rule["unsure"] >= 1 and by_rule["odd-x1"] >= 40
    print(json.dumps(humility, indent=1))
