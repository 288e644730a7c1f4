"""Fixtures for end-to-end tests: one real control plane per test session, a namespace per test.

The cluster is started lazily, so a run of unit tests alone never builds or starts it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelops_devcluster.cluster import DevCluster, wait_for_service_account


@pytest.fixture(scope="session")
def devcluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    workdir: Path = tmp_path_factory.mktemp("devcluster")
    cluster = DevCluster.start(workdir, progress=lambda m: print(f"[devcluster] {m}", flush=True))
    try:
        yield cluster
    finally:
        cluster.stop(progress=lambda m: None)


@pytest.fixture
def namespace(devcluster: DevCluster) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    devcluster.kubectl("create", "namespace", name)
    wait_for_service_account(devcluster, name)
    try:
        yield name
    finally:
        devcluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
