"""The test harness's operator process: one that never becomes healthy is not left running."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from modelops_devcluster.cluster import free_port
from tests.harness.operator_process import OperatorProcess


def test_an_operator_that_never_answers_its_health_check_is_stopped(tmp_path: Path) -> None:
    log = tmp_path / "operator.log"
    command = [sys.executable, "-c", "import time; time.sleep(60)"]  # alive, never healthy
    with log.open("ab") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    operator = OperatorProcess(process, log, free_port(), free_port(), command, {})
    try:
        with pytest.raises(RuntimeError, match="not healthy after 1 s"):
            operator._wait_healthy(1)
        assert process.poll() is not None, "the unhealthy operator is still running"
    finally:
        process.kill()
        process.wait()
