"""Fixtures for the serving tests: models made at test time, programs run as real processes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from serving_helpers import (
    STICKY_KEY_FILE,
    Models,
    Program,
    make_models,
    metric_value,
    model_server,
    router,
    router_config,
    sidecar,
    write_config,
)


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    return make_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture
def spawn(log_dir: Path) -> Iterator[list[Program]]:
    """Programs a single test starts; all are stopped when it ends."""
    started: list[Program] = []
    yield started
    for program in started:
        program.stop()


@dataclass
class Stack:
    """router -> sidecars -> model servers: sklearn champion (v1), ONNX challenger (v2)."""

    champion_server: Program
    challenger_server: Program
    champion: Program
    challenger: Program
    router: Program
    config_path: Path

    def configure(self, **fields: object) -> None:
        """Write a new router configuration and wait until the router has loaded it."""
        config = router_config(self.champion.url, self.challenger.url, **fields)
        if self.config_path.read_text() == json.dumps(config):
            return  # the router ignores a rewrite with identical content
        before = self.reloads()
        write_config(self.config_path, config)
        deadline = time.monotonic() + 10
        while self.reloads() == before:
            if time.monotonic() > deadline:
                raise AssertionError(f"router did not reload:\n{self.router.log()}")
            time.sleep(0.05)

    def reloads(self, result: str = "success") -> float:
        return metric_value(httpx.get(self.router.metrics_url).text,
                            "modelops_router_config_reloads_total", result=result)


@pytest.fixture(scope="session")
def stack(
    models: Models, log_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    config_path = tmp_path_factory.mktemp("router") / "router.json"
    champion_server = model_server("fraud", models.classifier_skops, "sklearn", "v1")
    challenger_server = model_server("fraud", models.classifier_onnx, "onnx", "v2")
    champion = sidecar(champion_server, "fraud", "v1", "champion")
    challenger = sidecar(challenger_server, "fraud", "v2", "challenger")
    write_config(config_path, router_config(champion.url, challenger.url, mode="split",
                                            challengerWeight=0))
    # Keyed, as the operator runs it (a Secret per ModelDeployment): see the sticky test.
    (config_path.parent / STICKY_KEY_FILE).write_bytes(bytes(range(32)))
    front = router(config_path, "--sticky-key-file", str(config_path.parent / STICKY_KEY_FILE))
    programs = [champion_server, challenger_server, champion, challenger, front]
    try:
        for program in programs:
            program.start(log_dir)
        champion_server.wait_ready("/v2/health/ready")
        challenger_server.wait_ready("/v2/health/ready")
        champion.wait_ready("/v2/health/ready")
        challenger.wait_ready("/v2/health/ready")
        front.wait_ready("/healthz")
        yield Stack(champion_server, challenger_server, champion, challenger, front, config_path)
    finally:
        for program in reversed(programs):
            program.stop()
