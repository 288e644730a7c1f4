"""The dashboard end to end: a live challenge on the real node, the dashboard started as
`kubectl modelops dashboard` with the cluster's kubeconfig, and the page in headless
Chromium. It shows the challenge with its phase and gates, and a prediction sent from the form
(through the API server's service proxy) comes back with the version that answered.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import modelops_operator
from modelops_demo.models import TRAIN_SEED, draw_rows
from tests.harness.browser import browser_page, screenshot
from tests.harness.operator_process import OperatorProcess

from ..operator_fixtures import crds, operator_identity, wait_until  # noqa: F401 - fixtures
from .test_challenge import TARGET, cc_status, challenge, deploy, models, start_load  # noqa: F401

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LIVE_PHASES = ("Progressing", "AwaitingApproval")
DASHBOARD_START_SECONDS = 30


@pytest.fixture
def dashboard_url(real_cluster: Any, namespace: str) -> Iterator[str]:
    """The dashboard as a user starts it (`kubectl modelops dashboard`), reading with the
    cluster admin's kubeconfig."""
    package_root = str(Path(modelops_operator.__file__).resolve().parents[1])
    env = {**real_cluster.cluster.env,
           "PYTHONPATH": os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(
        [sys.executable, "-m", "modelops_operator.kubectl_plugin", "dashboard", "--namespace",
         namespace, "--port", "0", "--no-browser"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], DASHBOARD_START_SECONDS)
        line = process.stdout.readline() if ready else ""
        assert "modelops dashboard on http://127.0.0.1:" in line, line or "no output"
        yield line.split(" on ", 1)[1].split()[0]
    finally:
        process.terminate()
        process.wait(10)


def a_gate_has_evidence(namespace: str, cluster: Any) -> dict[str, Any] | None:
    """The challenge's status once it is live and a gate has an estimate and a bound."""
    status = cc_status(cluster, namespace)
    live = status.get("phase") in LIVE_PHASES and status.get("challenger")
    bounded = [g for g in status.get("gates") or () if g.get("estimate") is not None
               and (g.get("lower") is not None or g.get("upper") is not None)]  # fmt: skip
    return status if live and bounded else None


def test_the_dashboard_shows_the_live_challenge_and_predicts_from_the_form(
    real_cluster: Any,
    namespace: str,
    challenge_operator: OperatorProcess,
    models: Any,  # noqa: F811 - the module fixture of test_challenge
    dashboard_url: str,
    tmp_path: Path,
) -> None:
    began = time.monotonic()
    cluster = real_cluster.cluster
    deploy(cluster, namespace, models["champion"], approval={"required": True})
    load = start_load(real_cluster, namespace)
    try:
        challenge(cluster, namespace, models["better"])
        status = wait_until(lambda: a_gate_has_evidence(namespace, cluster), timeout=180,
                            interval=1, what="a live challenge with a gate's estimate and bound")
        print(f"[dashboard] challenge live after {time.monotonic() - began:.0f} s: "
              f"{status['phase']}, traffic {status.get('trafficPercent')}%")
        with browser_page() as page:
            page.goto(dashboard_url)
            card = page.locator(f'[data-testid="challenge"][data-name="{namespace}/{TARGET}-gate"]')
            card.wait_for()
            assert card.get_attribute("data-phase") in LIVE_PHASES
            assert card.locator(".phase").inner_text() in LIVE_PHASES
            accuracy = card.locator('tr[data-gate="accuracy"]')
            accuracy.locator("svg.interval line.bar").wait_for(state="attached")  # drawn
            assert accuracy.locator(".badge").inner_text() in ("Pending", "Pass")
            assert models["better"].version in card.inner_text()
            overview = screenshot(page, tmp_path / "dashboard-challenge.png")
            print(f"[dashboard] screenshot: {overview}")

            row_links = page.locator(f'tr[data-deployment="{namespace}/{TARGET}"] a')
            row_links.filter(has_text="predict").click()
            form = page.locator("#predict-form")
            form.wait_for()
            fields = form.locator("input")
            (row,), _ = draw_rows(1, TRAIN_SEED + 99)
            assert fields.count() == len(row)
            for index, value in enumerate(row):
                fields.nth(index).fill(f"{value:.4f}")
            form.locator("button[type=submit]").click()
            page.locator("#prediction-result .model-version").wait_for()
            answered = page.locator("#prediction-result .model-version").inner_text()
            assert answered in (models["champion"].version, models["better"].version)
            assert page.locator("#prediction-result .latency").inner_text().endswith(" ms")
            assert page.locator('#prediction-result tr[data-output="predict"]').count() == 1
            prediction = screenshot(page, tmp_path / "dashboard-prediction.png")
            print(f"[dashboard] version {answered} answered; screenshot: {prediction}")

            page.goto(f"{dashboard_url}#/d/{namespace}/{TARGET}")
            page.locator("h3", has_text="Lineage records").wait_for()
            page.goto(f"{dashboard_url}cards/{namespace}/{TARGET}")
            assert page.title() == f"Model card: {namespace}/{TARGET}"
            assert page.errors == [], page.errors
    finally:
        load.stop()
    print(f"[dashboard] test body took {time.monotonic() - began:.0f} s")
