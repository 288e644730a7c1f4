"""Session fixtures: the CRDs installed, and the operator running as the chart's ServiceAccount.

Import the fixtures into a test module with `from .operator_fixtures import *` (the names in
`__all__`), and helpers by name.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.harness.operator_process import (
    OperatorProcess,
    install_crds,
    service_account_kubeconfig,
)

__all__ = ["crds", "operator", "operator_identity"]

# Short, so tests see several drift resyncs; production uses 300 s.
RESYNC_SECONDS = 4.0


@pytest.fixture(scope="session")
def crds(devcluster: Any) -> None:
    install_crds(devcluster.kubectl)


@pytest.fixture(scope="session")
def operator_identity(devcluster: Any, crds: None, tmp_path_factory: pytest.TempPathFactory):
    kubeconfig = tmp_path_factory.mktemp("operator") / "kubeconfig"
    user = service_account_kubeconfig(
        devcluster.kubectl,
        devcluster.bin_dir / "helm",
        devcluster.api_url,
        devcluster.ca_file,
        kubeconfig,
    )
    return kubeconfig, user


@pytest.fixture(scope="module")
def operator(
    operator_identity: tuple[Any, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """The operator for one test module: it stops with the module, so no module that runs
    later (test_cli writes challenge phases itself) meets an operator it did not ask for."""
    kubeconfig, _ = operator_identity
    log_path = tmp_path_factory.mktemp("operator-log") / "operator.log"
    process = OperatorProcess.start(
        kubeconfig,
        log_path,
        resync_seconds=RESYNC_SECONDS,
        extra_env={
            # No Prometheus on this cluster (paper pods): a closed port fails fast, and the
            # challenge tests here check that no decision is taken without metrics.
            "MODELOPS_PROMETHEUS_URL": "http://127.0.0.1:9",
            "MODELOPS_FEEDBACK_GRACE_SECONDS": "2",
        },
    )
    try:
        yield process
    finally:
        process.stop()
        print(f"[operator] log: {log_path}")


def kubectl_modelops(devcluster: Any, namespace: str, *args: str) -> str:
    """Run the kubectl plugin as the cluster's admin; fail the test with its stderr otherwise."""
    result = subprocess.run(
        [sys.executable, "-m", "modelops_operator.kubectl_plugin", "-n", namespace, *args],
        env=devcluster.env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def get_json(devcluster: Any, *args: str) -> dict[str, Any]:
    return json.loads(devcluster.kubectl("get", *args, "-o", "json").stdout)


def wait_until(
    probe: Callable[[], Any], *, timeout: float = 60, interval: float = 0.5, what: str = ""
) -> Any:
    """Poll until `probe()` is truthy; fail with `what` and the last value otherwise."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout} s waiting for {what}; last value: {value!r}")
