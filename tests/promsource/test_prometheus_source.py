"""PrometheusSource against a real Prometheus scraping the sidecar's own metrics code."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from prometheus_client import make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from modelops_devcluster.cluster import free_port
from modelops_devcluster.prometheus import PrometheusProcess, ScrapeTarget
from modelops_operator.gating import Counts
from modelops_operator.promsource import (
    ArmSelector,
    CounterLedger,
    CountsReading,
    PrometheusSettings,
    PrometheusSource,
    PrometheusUnavailable,
)
from modelops_serving.metrics import SidecarMetrics

pytestmark = pytest.mark.slow

CHAMPION = ArmSelector(role="champion", version="v1")
CHALLENGER = ArmSelector(role="challenger", version="v2")


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Scrapes every second would flood the test output."""


class Exporter:
    """One fake pod: the sidecar's metrics served on a fixed loopback port."""

    def __init__(self, port: int, role: str, version: str) -> None:
        self.port = port
        self.identity = {"deployment": "fraud", "model": "fraud", "version": version, "role": role}
        self.server: WSGIServer | None = None
        self.restart()

    def restart(self) -> None:
        """A pod restart: the counters start again from zero on the same target."""
        self.stop()
        self.metrics = SidecarMetrics(self.identity)
        app = make_wsgi_app(self.metrics.registry)
        self.server = make_server(
            "127.0.0.1", self.port, app, ThreadingWSGIServer, handler_class=QuietHandler
        )
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def serve(self, requests: int, errors: int = 0, seconds: float = 0.01) -> None:
        for i in range(requests):
            self.metrics.count_request(500 if i < errors else 200)
            self.metrics.duration.observe(seconds)
            self.metrics.observe_predictions([i % 2])

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def pods() -> Iterator[dict[str, Exporter]]:
    exporters = {
        "champion": Exporter(free_port(), "champion", "v1"),
        "challenger": Exporter(free_port(), "challenger", "v2"),
    }
    yield exporters
    for exporter in exporters.values():
        exporter.stop()


@pytest.fixture
def prometheus(tmp_path: Path, pods: dict[str, Exporter]) -> Iterator[PrometheusProcess]:
    server = PrometheusProcess.start(tmp_path / "prometheus", targets(pods), scrape_interval="1s")
    yield server
    server.stop()


async def look(
    source: PrometheusSource, started_at: float, ledger: CounterLedger | None = None
) -> CountsReading:
    reading = await source.read_counts(
        namespace="shop",
        deployment="fraud",
        champion=CHAMPION,
        challenger=CHALLENGER,
        started_at=started_at,
        ledger=ledger,
    )
    assert reading.missing == []
    return reading


async def read(source: PrometheusSource, started_at: float) -> dict:
    return (await look(source, started_at)).counts


def targets(pods: dict[str, Exporter]) -> list[ScrapeTarget]:
    return [
        ScrapeTarget(f"127.0.0.1:{e.port}", {"namespace": "shop", "pod": f"fraud-{role}-0"})
        for role, e in pods.items()
    ]


async def test_counts_since_the_challenge_began(
    prometheus: PrometheusProcess, pods: dict[str, Exporter]
) -> None:
    pods["champion"].serve(100, errors=5)  # before the challenge: must not count
    prometheus.wait_for_scrapes()
    started_at = time.time()
    prometheus.wait_for_scrapes()
    pods["champion"].serve(50, errors=1)
    pods["challenger"].serve(30, errors=3, seconds=0.3)
    pods["challenger"].metrics.feedback["correct"].inc(7)
    pods["challenger"].metrics.feedback["incorrect"].inc(2)
    prometheus.wait_for_scrapes()

    source = PrometheusSource(PrometheusSettings(url=prometheus.url))
    try:
        counts = await read(source, started_at)
    finally:
        await source.aclose()
    assert (counts["champion"]["requests"], counts["champion"]["errors"]) == (50, 1)
    assert (counts["challenger"]["requests"], counts["challenger"]["errors"]) == (30, 3)
    assert counts["challenger"]["latencyBuckets"]["0.25"] == 0
    assert counts["challenger"]["latencyBuckets"]["0.5"] == 30
    assert counts["challenger"]["predictionBuckets"]["+Inf"] == 30
    assert (counts["challenger"]["feedbackCorrect"], counts["challenger"]["feedbackTotal"]) == (
        7,
        9,
    )
    assert counts["timestamp"] > started_at
    # The reading is exactly what the gating engine takes.
    parsed = Counts.from_dict(counts)
    assert parsed.challenger.requests == 30


async def test_a_restarted_pod_counts_before_and_after_its_restart(
    prometheus: PrometheusProcess, pods: dict[str, Exporter]
) -> None:
    prometheus.wait_for_scrapes()  # both pods were scraped before the challenge began
    started_at = time.time()
    pods["challenger"].serve(40, errors=2)
    pods["champion"].serve(10)
    prometheus.wait_for_scrapes()
    source = PrometheusSource(PrometheusSettings(url=prometheus.url))
    try:
        first = await look(source, started_at)
        pods["challenger"].restart()
        pods["challenger"].serve(5, errors=1)
        prometheus.wait_for_scrapes()
        second = await look(source, started_at, first.ledger)
    finally:
        await source.aclose()
    # What the old process counted before the restart was seen at the first look; what the new
    # one counted since is exact. Never more than really happened.
    counts = second.counts["challenger"]
    assert (counts["requests"], counts["errors"]) == (45, 3)
    assert (second.increments["challenger"]["requests"], second.counts["champion"]["requests"]) == (
        5,
        10,
    )


async def test_a_prometheus_without_the_history_never_makes_counts_jump(
    tmp_path: Path, prometheus: PrometheusProcess, pods: dict[str, Exporter]
) -> None:
    """Another replica, or the same one restarted on an empty disk: it has only the latest
    values, whole, and nothing at the challenge's start."""
    pods["champion"].serve(1000)  # before the challenge: must never count
    prometheus.wait_for_scrapes()
    started_at = time.time()
    prometheus.wait_for_scrapes()
    pods["champion"].serve(60, errors=2)
    pods["challenger"].serve(20)
    prometheus.wait_for_scrapes()
    replica = PrometheusProcess.start(tmp_path / "replica", targets(pods), scrape_interval="1s")
    sources = [PrometheusSource(PrometheusSettings(url=p.url)) for p in (prometheus, replica)]
    try:
        replica.wait_for_scrapes()
        # Its first look from the replica: nothing at the start, the pods started before.
        fresh = await look(sources[1], started_at)
        assert (fresh.counts["champion"]["requests"], fresh.counts["challenger"]["requests"]) == (
            0,
            0,
        )
        first = await look(sources[0], started_at)
        assert first.counts["champion"]["requests"] == 60
        pods["champion"].serve(40)
        pods["challenger"].serve(10, errors=1)
        replica.wait_for_scrapes()
        second = await look(sources[1], started_at, first.ledger)  # the other replica answers
        prometheus.wait_for_scrapes()
        third = await look(sources[0], started_at, second.ledger)  # and back
    finally:
        for source in sources:
            await source.aclose()
        replica.stop()
    for reading in (second, third):
        champion, challenger = reading.counts["champion"], reading.counts["challenger"]
        assert (champion["requests"], champion["errors"]) == (100, 2)
        assert (challenger["requests"], challenger["errors"]) == (30, 1)
    assert third.increments["champion"]["requests"] == 0


async def test_missing_arm_and_unreachable_prometheus_are_explicit(
    prometheus: PrometheusProcess, pods: dict[str, Exporter]
) -> None:
    pods["champion"].serve(3)
    prometheus.wait_for_scrapes()
    source = PrometheusSource(PrometheusSettings(url=prometheus.url, attempts=2))
    try:
        reading = await source.read_counts(
            namespace="shop",
            deployment="fraud",
            champion=CHAMPION,
            challenger=ArmSelector(role="challenger", version="v9"),
            started_at=time.time() - 60,
        )
        assert reading.missing == ["challenger (version v9)"]
        assert "timestamp" not in reading.counts
        prometheus.stop()
        with pytest.raises(PrometheusUnavailable, match="did not answer after 2 attempts"):
            await source.read_counts(
                namespace="shop",
                deployment="fraud",
                champion=CHAMPION,
                challenger=CHALLENGER,
                started_at=time.time() - 60,
            )
    finally:
        await source.aclose()
