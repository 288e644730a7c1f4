"""The drift monitor's whole reading path with real parts: a profile written by `modelops
profile` from a real model's training table, the Go sidecar counting inputs against it in front
of the real model server, a real Prometheus scraping the sidecar, and the operator's queries
and detector (`monitoring.reading`, `monitoring.live`) reading Prometheus look after look.

Healthy traffic (rows drawn from the training table) raises nothing; moving one feature by
three standard deviations raises DataDrift naming that feature. Labels as right as on the
holdout raise nothing; labels that contradict half the answers raise AccuracyDegraded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from serving_helpers import Models, Program, make_models, model_server, sidecar, v2_request

from modelops_devcluster.prometheus import PrometheusProcess, ScrapeTarget
from modelops_operator.monitoring.live import (
    AccuracyWatch,
    DriftWatch,
    accuracy_view,
    drift_view,
)
from modelops_operator.monitoring.profile import build_profile, encode, model_predictor
from modelops_operator.monitoring.reading import (
    grown,
    outcome_growth,
    read_holdout,
    read_outcomes,
    read_reference,
    read_totals,
)
from modelops_operator.promsource import PrometheusSettings, PrometheusSource
from modelops_operator.promsource.client import label_selector

pytestmark = pytest.mark.slow

LOOK_SECONDS = 2.0
SELECTOR = label_selector(
    {"namespace": "shop", "deployment": "fraud", "role": "champion", "version": "v1"}
)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    return make_models(tmp_path_factory.mktemp("models"))


@pytest.fixture
def profiled(models: Models, tmp_path: Path) -> Iterator[tuple[Program, PrometheusProcess]]:
    columns = {f"x{i}": models.X[:, i].tolist() for i in range(models.X.shape[1])}
    columns["y"] = _truth(models).tolist()
    profile = build_profile(
        columns, label="y", predict=model_predictor("sklearn", models.classifier_skops)
    )
    assert profile["holdout"]["metric"] == "accuracy"
    path = tmp_path / "profile.json"
    path.write_bytes(encode(profile))
    server = model_server("fraud", models.classifier_skops, "sklearn", "v1").start(tmp_path)
    proxy = sidecar(server, "fraud", "v1", "champion", "--profile-file", str(path))
    proxy.start(tmp_path)
    prometheus = None
    try:
        server.wait_ready("/v2/health/ready")
        proxy.wait_ready("/v2/health/ready")
        target = ScrapeTarget(f"127.0.0.1:{proxy.metrics_port}", {"namespace": "shop"})
        prometheus = PrometheusProcess.start(tmp_path / "prometheus", [target])
        prometheus.wait_for_scrapes()
        yield proxy, prometheus
    finally:
        if prometheus is not None:
            prometheus.stop()
        proxy.stop()
        server.stop()


def _truth(models: Models) -> np.ndarray:
    """The training labels of serving_helpers.make_models' classifier (same generator call)."""
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=400, n_features=4, n_informative=3, n_redundant=0, random_state=7
    )
    assert np.array_equal(x, models.X)
    return y


def _send(proxy: Program, rows: np.ndarray) -> None:
    with httpx.Client(base_url=proxy.url, timeout=10) as client:
        for start in range(0, len(rows), 4):
            answer = client.post("/v2/models/fraud/infer", json=v2_request(rows[start : start + 4]))
            assert answer.status_code == 200, answer.text


async def _watch(
    proxy: Program, prometheus: PrometheusProcess, models: Models
) -> tuple[list[float], list[str], DriftWatch]:
    """Healthy looks, then drifted ones; the evidence after each look and when drift was
    found (the looks' phase names)."""
    rng = np.random.default_rng(11)
    source = PrometheusSource(PrometheusSettings(url=prometheus.url))
    try:
        reference = await read_reference(source, SELECTOR, time.time())
        assert reference is not None, "the sidecar's profile series were not scraped"
        assert reference.features == ("x0", "x1", "x2", "x3")
        # A false alarm expected once in 300 looks (c = 300, shared by the four features).
        watch = DriftWatch("v1", reference, 300 * LOOK_SECONDS, LOOK_SECONDS, since=time.time())
        watch.totals = await read_totals(source, SELECTOR, reference, time.time())
        evidence, found = [], []
        shifted = models.X.copy()
        shifted[:, 0] += 3 * models.X[:, 0].std()
        for phase, table, looks in (("healthy", models.X, 6), ("drifted", shifted, 12)):
            for _ in range(looks):
                _send(proxy, table[rng.integers(0, len(table), 120)])
                await asyncio.to_thread(prometheus.wait_for_scrapes)
                now = time.time()
                totals = await read_totals(source, SELECTOR, reference, now)
                counts = grown(watch.totals, totals, reference)
                watch.totals = totals
                if watch.look(counts, now):
                    found.append(phase)
                evidence.append(watch.evidence)
                if found:
                    return evidence, found, watch
        return evidence, found, watch
    finally:
        await source.aclose()


def test_drift_is_found_in_the_moved_feature_and_not_before(
    profiled: tuple[Program, PrometheusProcess], models: Models
) -> None:
    proxy, prometheus = profiled
    evidence, found, watch = asyncio.run(_watch(proxy, prometheus, models))
    assert found == ["drifted"], f"evidence per look: {evidence}"
    assert max(evidence[:6]) < 1
    status, condition = drift_view(watch, "v1")
    assert (condition.type, condition.status, status["state"]) == ("DataDrift", "True", "Drifted")
    assert status["features"][0]["name"] == "x0"
    # Every request was counted once, through Prometheus, at the sidecar's bin rule.
    assert watch.rows == len(evidence) * 120


async def _judge(
    proxy: Program, prometheus: PrometheusProcess, models: Models
) -> tuple[list[str], AccuracyWatch]:
    rng = np.random.default_rng(12)
    truth = _truth(models)
    source = PrometheusSource(PrometheusSettings(url=prometheus.url))
    try:
        holdout = await read_holdout(source, SELECTOR, time.time())
        assert holdout is not None and holdout[1] == 400
        assert holdout[0] == pytest.approx(models.classifier.score(models.X, truth))
        watch = AccuracyWatch("v1", *holdout, 2.0, 300 * LOOK_SECONDS, LOOK_SECONDS, time.time())
        watch.totals = await read_outcomes(source, SELECTOR, time.time())
        found: list[str] = []
        with httpx.Client(base_url=proxy.url, timeout=10) as client:
            for phase, flip, looks in (("healthy", 0.0, 5), ("degraded", 0.5, 10)):
                for look in range(looks):
                    for i in rng.integers(0, len(truth), 60):
                        request_id = f"{phase}-{look}-{i}-{rng.integers(1 << 30)}"
                        body = v2_request(models.X[i : i + 1], request_id)
                        assert client.post("/v2/models/fraud/infer", json=body).status_code == 200
                        label = int(truth[i]) if rng.random() >= flip else 1 - int(truth[i])
                        answer = client.post(
                            "/v2/feedback", json={"id": request_id, "truth": label}
                        )
                        assert answer.status_code == 200, answer.text
                    await asyncio.to_thread(prometheus.wait_for_scrapes)
                    now = time.time()
                    totals = await read_outcomes(source, SELECTOR, now)
                    wrong, labelled = outcome_growth(watch.totals, totals)
                    watch.totals = totals
                    if watch.look(wrong, labelled, now):
                        found.append(phase)
                    if found:
                        return found, watch
        return found, watch
    finally:
        await source.aclose()


def test_accuracy_decay_is_found_from_labels_and_not_before(
    profiled: tuple[Program, PrometheusProcess], models: Models
) -> None:
    proxy, prometheus = profiled
    found, watch = asyncio.run(_judge(proxy, prometheus, models))
    assert found == ["degraded"], f"labels {watch.labels}, wrong {watch.wrong}"
    status, condition = accuracy_view(watch, "v1")
    assert (condition.type, condition.status, status["state"]) == (
        "AccuracyDegraded",
        "True",
        "Degraded",
    )
    assert watch.labels % 60 == 0  # every label counted once, through Prometheus
