"""The metrics sidecar as a real process in front of a real model server."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from serving_helpers import Models, metric_value, model_server, sidecar, v2_request

pytestmark = pytest.mark.slow


def infer(url: str, body: object, **kwargs: object) -> httpx.Response:
    return httpx.post(f"{url}/v2/models/fraud/infer", json=body, timeout=10, **kwargs)


def test_forwards_unchanged_and_counts(stack, models: Models) -> None:
    rows = models.X[:8]
    before = httpx.get(stack.champion.metrics_url).text
    direct = infer(stack.champion_server.url, v2_request(rows, "same-id"))
    through = infer(stack.champion.url, v2_request(rows, "same-id"))
    assert through.status_code == 200
    assert through.json() == direct.json()
    assert through.headers["X-Request-Id"] == "same-id"
    bad = infer(stack.champion.url, {"inputs": []})
    assert bad.status_code == 400
    after = httpx.get(stack.champion.metrics_url).text
    labels = {"deployment": "fraud", "model": "fraud", "version": "v1", "role": "champion"}

    def delta(name: str, **extra: str) -> float:
        return metric_value(after, name, **labels, **extra) - metric_value(
            before, name, **labels, **extra)

    assert delta("modelops_requests_total", code="200") == 1
    assert delta("modelops_requests_total", code="400") == 1
    assert delta("modelops_request_duration_seconds_count") == 2
    predicted = models.classifier.predict(rows)
    assert delta("modelops_prediction_value_count") == len(rows)
    assert delta("modelops_prediction_value_sum") == pytest.approx(float(predicted.sum()))


def test_classification_feedback_joins_by_request_id(stack, models: Models) -> None:
    rows = models.X[10:13]
    predicted = models.classifier.predict(rows).tolist()
    truth = [predicted[0], 1 - predicted[1], predicted[2]]
    before = httpx.get(stack.champion.metrics_url).text
    # No id in the body: the id comes back in the response and as X-Request-Id.
    response = infer(stack.champion.url, v2_request(rows))
    request_id = response.headers["X-Request-Id"]
    assert response.json()["id"] == request_id
    scored = httpx.post(f"{stack.champion.url}/v2/feedback", json={"id": request_id,
                                                                    "truth": truth})
    assert scored.json() == {"id": request_id, "correct": 2, "incorrect": 1, "scored": 0}
    again = httpx.post(f"{stack.champion.url}/v2/feedback", json={"id": request_id, "truth": truth})
    assert again.status_code == 404 and again.json()["outcome"] == "unmatched"
    invalid = httpx.post(f"{stack.champion.url}/v2/feedback", json={"id": "x"})
    assert invalid.status_code == 400 and "truth" in invalid.json()["error"]
    after = httpx.get(stack.champion.metrics_url).text
    for outcome, expected in (("correct", 2), ("incorrect", 1), ("unmatched", 1), ("invalid", 1)):
        change = (metric_value(after, "modelops_feedback_total", outcome=outcome)
                  - metric_value(before, "modelops_feedback_total", outcome=outcome))
        assert change == expected, outcome


def test_regression_feedback_sums_errors_and_store_stays_bounded(
    models: Models, log_dir: Path, spawn
) -> None:
    server = model_server("fraud", models.regressor_skops, "sklearn", "r1")
    proxy = sidecar(server, "fraud", "r1", "challenger", "--feedback-capacity", "20",
                    "--prediction-buckets=-100,0,100")
    spawn.extend([server.start(log_dir), proxy.start(log_dir)])
    server.wait_ready("/v2/health/ready")
    proxy.wait_ready("/v2/health/ready")
    rows = models.X[:2]
    predicted = models.regressor.predict(rows)
    first = infer(proxy.url, v2_request(rows, "r-0"))
    assert first.status_code == 200
    truth = [float(predicted[0] + 1.5), float(predicted[1] - 2.0)]
    result = httpx.post(f"{proxy.url}/v2/feedback", json={"id": "r-0", "truth": truth}).json()
    assert result["scored"] == 2
    metrics = httpx.get(proxy.metrics_url).text
    assert metric_value(metrics, "modelops_feedback_absolute_error_total") == pytest.approx(3.5)
    assert metric_value(metrics, "modelops_feedback_squared_error_total") == pytest.approx(6.25)
    assert 'le="-100.0"' in metrics and 'le="100.0"' in metrics
    for i in range(60):
        assert infer(proxy.url, v2_request(rows[:1], f"load-{i}")).status_code == 200
    metrics = httpx.get(proxy.metrics_url).text
    assert metric_value(metrics, "modelops_feedback_store_entries") == 20
    assert metric_value(metrics, "modelops_feedback_store_evictions_total") == 40
    oldest = httpx.post(f"{proxy.url}/v2/feedback", json={"id": "load-0", "truth": 1.0})
    assert oldest.status_code == 404
    newest = httpx.post(f"{proxy.url}/v2/feedback", json={"id": "load-59", "truth": 1.0})
    assert newest.status_code == 200


def test_a_label_counts_when_its_prediction_reaches_the_maturity_window(
    models: Models, log_dir: Path, spawn
) -> None:
    """Labels are counted at one age for every model, and a later one is not counted."""
    server = model_server("fraud", models.classifier_skops, "sklearn", "m1")
    proxy = sidecar(server, "fraud", "m1", "challenger", "--label-maturity", "2")
    spawn.extend([server.start(log_dir), proxy.start(log_dir)])
    server.wait_ready("/v2/health/ready")
    proxy.wait_ready("/v2/health/ready")
    rows = models.X[:1]
    label = [int(models.classifier.predict(rows)[0])]
    assert infer(proxy.url, v2_request(rows, "early")).status_code == 200
    assert infer(proxy.url, v2_request(rows, "late")).status_code == 200
    early = httpx.post(f"{proxy.url}/v2/feedback", json={"id": "early", "truth": label})
    assert early.json()["correct"] == 1
    held = httpx.get(proxy.metrics_url).text
    assert metric_value(held, "modelops_feedback_total", outcome="correct") == 0  # not yet
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        counted = httpx.get(proxy.metrics_url).text
        if metric_value(counted, "modelops_feedback_total", outcome="correct") == 1:
            break
        time.sleep(0.2)
    else:
        pytest.fail("the held label was never counted")
    # "late" was predicted a little after "early": wait until it is past the window too.
    time.sleep(0.5)
    late = httpx.post(f"{proxy.url}/v2/feedback", json={"id": "late", "truth": label})
    assert late.status_code == 200 and late.json()["outcome"] == "late"
    final = httpx.get(proxy.metrics_url).text
    assert metric_value(final, "modelops_feedback_total", outcome="late") == 1
    assert metric_value(final, "modelops_feedback_total", outcome="correct") == 1


def test_with_feedback_off_labels_are_refused(
    models: Models, log_dir: Path, spawn
) -> None:
    """What a ModelDeployment without spec.monitoring.feedback.enabled runs."""
    server = model_server("fraud", models.classifier_skops, "sklearn", "m1")
    proxy = sidecar(server, "fraud", "m1", "champion", "--feedback", "off")
    spawn.extend([server.start(log_dir), proxy.start(log_dir)])
    server.wait_ready("/v2/health/ready")
    proxy.wait_ready("/v2/health/ready")
    rows = models.X[:1]
    assert infer(proxy.url, v2_request(rows, "kept?")).status_code == 200
    refused = httpx.post(f"{proxy.url}/v2/feedback", json={"id": "kept?", "truth": [1]})
    assert refused.status_code == 404
    assert "spec.monitoring.feedback.enabled" in refused.json()["error"]
    metrics = httpx.get(proxy.metrics_url).text
    assert metric_value(metrics, "modelops_prediction_value_count") == 1  # still observed
    assert metric_value(metrics, "modelops_feedback_total", outcome="invalid") == 1


def test_upstream_down_is_a_502_not_a_crash(models: Models, log_dir: Path, spawn) -> None:
    server = model_server("fraud", models.classifier_skops, "sklearn", "v1")  # never started
    proxy = sidecar(server, "fraud", "v1", "champion")
    spawn.append(proxy.start(log_dir))
    proxy.wait_ready(proxy.metrics_url)
    response = infer(proxy.url, v2_request(models.X[:1]))
    assert response.status_code == 502 and "unavailable" in response.json()["error"]
    metrics = httpx.get(proxy.metrics_url).text
    assert metric_value(metrics, "modelops_requests_total", code="502") == 1


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool missing: make test installs it (Debian package prometheus)")
def test_promtool_accepts_the_metrics(stack, models: Models) -> None:
    infer(stack.champion.url, v2_request(models.X[:3]))
    text = httpx.get(stack.champion.metrics_url).text
    assert "modelops_prediction_value_bucket" in text
    for page in (text, httpx.get(stack.router.metrics_url).text):
        check = subprocess.run(["promtool", "check", "metrics"], input=page.encode(),
                               capture_output=True, timeout=30)
        assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()


def test_prediction_histogram_matches_model_outputs(stack, models: Models) -> None:
    rows = models.X[100:150]
    before = httpx.get(stack.champion.metrics_url).text
    infer(stack.champion.url, v2_request(rows))
    after = httpx.get(stack.champion.metrics_url).text
    ones = int(np.sum(models.classifier.predict(rows)))
    zeros = len(rows) - ones
    le_01 = (metric_value(after, "modelops_prediction_value_bucket", le="0.1", role="champion")
             - metric_value(before, "modelops_prediction_value_bucket", le="0.1", role="champion"))
    assert le_01 == zeros


def test_head_requests_pass_through_the_proxies(stack) -> None:
    # Found by fuzzing: a HEAD answer announces a length but has no body.
    for url in (stack.champion.url, stack.router.url):
        response = httpx.head(f"{url}/v2/health/ready", timeout=5)
        assert response.status_code == 200 and response.content == b""
        assert httpx.get(f"{url}/v2/health/ready", timeout=5).json() == {"ready": True}


def test_retries_without_a_router_are_counted_apart(stack, models: Models) -> None:
    """Behind a Gateway API route: a standard attempt marker, or an id this sidecar answered
    within the window, makes a retry; it is answered and its label scored all the same."""
    rows = models.X[:1]
    label = int(models.classifier.predict(rows)[0])
    run = time.monotonic_ns()
    before = httpx.get(stack.champion.metrics_url).text
    first = infer(stack.champion.url, v2_request(rows), headers={"X-Request-Id": f"g-{run}"})
    repeated = infer(stack.champion.url, v2_request(rows), headers={"X-Request-Id": f"g-{run}"})
    envoy = infer(stack.champion.url, v2_request(rows),
                  headers={"X-Request-Id": f"e-{run}", "x-envoy-attempt-count": "2"})
    grpc = infer(stack.champion.url, v2_request(rows), headers={"grpc-previous-rpc-attempts": "1"})
    assert [r.status_code for r in (first, repeated, envoy, grpc)] == [200] * 4
    assert repeated.json() == first.json()
    scored = httpx.post(f"{stack.champion.url}/v2/feedback", json={"id": f"e-{run}",
                                                                    "truth": label})
    assert scored.json()["correct"] == 1
    after = httpx.get(stack.champion.metrics_url).text

    def delta(name: str, **labels: str) -> float:
        return metric_value(after, name, **labels) - metric_value(before, name, **labels)

    assert delta("modelops_requests_total") == 1
    assert delta("modelops_request_duration_seconds_count") == 1
    assert delta("modelops_prediction_value_count") == 1
    assert delta("modelops_retries_total", code="200") == 3
    assert delta("modelops_feedback_total", outcome="correct") == 1


def metric_families(page: str) -> dict[str, tuple[str, frozenset[str]]]:
    """Each family's type and the label names its samples carry."""
    types = dict(line.split()[2:4] for line in page.splitlines() if line.startswith("# TYPE"))
    labels: dict[str, set[str]] = {name: set() for name in types}
    for line in page.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        series = line.rpartition(" ")[0]
        name, _, label_text = series.partition("{")
        family = next((f for f in types if name == f or (
            name.startswith(f + "_") and name[len(f) + 1:] in ("bucket", "sum", "count"))), name)
        labels.setdefault(family, set()).update(
            pair.split("=")[0] for pair in label_text.rstrip("}").split(",") if pair)
    return {name: (types.get(name, ""), frozenset(names)) for name, names in labels.items()}


def test_the_go_sidecar_exports_what_the_python_one_did(stack, models: Models) -> None:
    """Names, types and label names of every family as the Python sidecar's registry
    (metrics.py, which the operator's tests build pages with) exports them."""
    from modelops_serving.metrics import SidecarMetrics

    reference = SidecarMetrics({"deployment": "fraud", "model": "fraud", "version": "v1",
                                "role": "champion"})
    reference.count_request(200)
    reference.count_retry(200)
    infer(stack.champion.url, v2_request(models.X[:1]), headers={"x-envoy-attempt-count": "2"})
    infer(stack.champion.url, v2_request(models.X[:1]))
    ours = metric_families(httpx.get(stack.champion.metrics_url).text)
    theirs = metric_families(reference.exposition().decode())
    assert ours == theirs
