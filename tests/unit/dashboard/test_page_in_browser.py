"""The page itself in headless Chromium, over the fake cluster: it draws the live challenge
with its gates' intervals, refreshes, and sends a prediction from the form. The same flow on a
real cluster: tests/e2e/realnode/test_dashboard.py."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from modelops_operator.dashboard.api import DashboardApi
from modelops_operator.dashboard.server import DashboardServer
from tests.harness.browser import browser_page, screenshot

from .fakes import FakeCluster

pytestmark = pytest.mark.slow


@pytest.fixture
def dashboard() -> Iterator[tuple[str, FakeCluster]]:
    cluster = FakeCluster()
    server = DashboardServer("127.0.0.1", 0, DashboardApi(cluster), "t0ken")  # type: ignore[arg-type]
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield server.url, cluster
    finally:
        server.shutdown()
        server.server_close()


def test_the_page_shows_the_live_challenge_and_predicts_from_the_form(
    dashboard: tuple[str, FakeCluster], tmp_path: Path
) -> None:
    url, cluster = dashboard
    with browser_page() as page:
        page.goto(url)
        card = page.locator('[data-testid="challenge"][data-name="ml/iris-canary"]')
        card.wait_for()
        assert card.get_attribute("data-phase") == "Progressing"
        assert card.locator(".phase").inner_text() == "Progressing"
        gates = card.locator("tr[data-gate]")
        assert gates.count() == 2
        accuracy = card.locator('tr[data-gate="accuracy"]')
        assert "Pending" in accuracy.inner_text() and "[-0.03, 0.05]" in accuracy.inner_text()
        assert accuracy.locator("svg.interval line.bar").count() == 1
        assert accuracy.locator("svg.interval line.margin").count() == 1

        # The next refresh shows the gate's new verdict without a reload.
        cluster.ccs[0]["status"]["gates"][0]["verdict"] = "Pass"
        expect(accuracy.locator(".badge")).to_have_text("Pass", timeout=10_000)

        page.locator('tr[data-deployment="ml/iris"] a', has_text="predict").click()
        form = page.locator("#predict-form")
        form.wait_for()
        fields = form.locator("input")
        assert fields.count() == 4
        for index, value in enumerate(["5.1", "3.5", "1.4", "0.2"]):
            fields.nth(index).fill(value)
        form.locator("button[type=submit]").click()
        version = page.locator("#prediction-result .model-version")
        version.wait_for()
        assert version.inner_text() == "1.1.0"
        assert "[0]" in page.locator('#prediction-result tr[data-output="predict"]').inner_text()
        screenshot(page, tmp_path / "prediction.png")

        page.goto(url + "#/d/ml/iris")
        page.locator("h2", has_text="History").wait_for()
        assert "argocd iris-app abc123" in page.locator("main").inner_text()
        assert page.errors == []
    assert (tmp_path / "prediction.png").stat().st_size > 0
