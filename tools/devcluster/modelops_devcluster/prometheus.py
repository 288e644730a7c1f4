"""A real Prometheus (Debian's package) on loopback, scraping the static targets it is given.

Used by the tests of the operator's Prometheus client (tests/promsource): exporters on
127.0.0.1 stand for pods, and their static targets carry the labels Kubernetes service
discovery adds (`namespace`, `pod`). Clusters with a real node run Prometheus inside the
cluster instead (clusterprometheus.py).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from .cluster import DevClusterError, free_port
from .processes import stop_process_group


@dataclass(frozen=True)
class ScrapeTarget:
    address: str  # host:port serving /metrics
    labels: Mapping[str, str]


def prometheus_config(
    targets: Sequence[ScrapeTarget],
    scrape_interval: str,
    rule_files: Sequence[Path] = (),
) -> dict[str, object]:
    scrape_configs: list[dict[str, object]] = [
        {
            "job_name": "modelops",
            "static_configs": [
                {"targets": [t.address], "labels": dict(t.labels)} for t in targets
            ],
        }
    ]
    config: dict[str, object] = {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "scrape_configs": scrape_configs,
    }
    if rule_files:  # alerting and recording rules, evaluated every scrape interval
        config["rule_files"] = [str(path) for path in rule_files]
    return config


class PrometheusProcess:
    """Start with `PrometheusProcess.start`, stop with `.stop()`; `.url` is its HTTP API."""

    def __init__(self, workdir: Path, port: int, process: subprocess.Popen[bytes]) -> None:
        self.workdir = workdir
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.process = process

    @classmethod
    def start(
        cls,
        workdir: Path,
        targets: Sequence[ScrapeTarget],
        *,
        scrape_interval: str = "1s",
        port: int | None = None,
        timeout: float = 60,
        rule_files: Sequence[Path] = (),
    ) -> PrometheusProcess:
        binary = shutil.which("prometheus")
        if binary is None:
            raise DevClusterError("prometheus not found; `make system-deps` installs it")
        workdir.mkdir(parents=True, exist_ok=True)
        config = workdir / "prometheus.yml"
        config.write_text(
            yaml.safe_dump(prometheus_config(targets, scrape_interval, rule_files))
        )
        port = port or free_port()
        log = (workdir / "prometheus.log").open("ab")
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--web.enable-lifecycle",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        prometheus = cls(workdir, port, process)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                tail = (workdir / "prometheus.log").read_text(errors="replace")[-2000:]
                raise DevClusterError(f"prometheus exited:\n{tail}")
            try:
                if httpx.get(f"{prometheus.url}/-/ready", timeout=1).status_code == 200:
                    return prometheus
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        prometheus.stop()
        raise DevClusterError(f"prometheus not ready after {timeout:.0f} s")

    def wait_for_scrapes(self, count: int = 2, timeout: float = 30) -> None:
        """Wait until every target has been scraped `count` more times (and is up)."""

        def scrape_times() -> dict[str, str]:
            active = httpx.get(f"{self.url}/api/v1/targets", timeout=5).json()["data"]
            return {
                t["scrapeUrl"]: t["lastScrape"]
                for t in active["activeTargets"]
                if t["health"] == "up"
            }

        seen: dict[str, set[str]] = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for url, stamp in scrape_times().items():
                seen.setdefault(url, set()).add(stamp)
            if seen and all(len(stamps) > count for stamps in seen.values()):
                return
            time.sleep(0.2)
        raise DevClusterError(f"targets not scraped {count} times within {timeout:.0f} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            stop_process_group(self.process.pid, grace_seconds=10)
        self.process.wait()
