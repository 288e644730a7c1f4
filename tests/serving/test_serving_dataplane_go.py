"""The Go data plane's own unit tests (dataplane/: the sidecar and the router), run by pytest
so that `make test` runs them too."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

DATAPLANE = Path(__file__).resolve().parents[2] / "dataplane"


def test_go_unit_tests_pass() -> None:
    go = shutil.which("go")
    if go is None:
        pytest.fail("go is not on PATH: the data plane (dataplane/) is built and tested with it")
    env = {**os.environ, "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
    result = subprocess.run([go, "test", "-count=1", "./..."], cwd=DATAPLANE, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
