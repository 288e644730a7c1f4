"""The Go data plane's own unit tests (dataplane/, `go test`), in the same run as the rest: the
proxies' pure parts (limits, receipts, routing, marks) are tested in Go, beside their code."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

DATAPLANE = Path(__file__).resolve().parents[2] / "dataplane"


def test_the_go_data_plane_passes_its_own_tests() -> None:
    go = shutil.which("go")
    if go is None:
        pytest.fail("go is not on PATH: `make install` builds the data plane with it")
    result = subprocess.run(
        [go, "test", "-count=1", "./..."],
        cwd=DATAPLANE,
        env={**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
