"""`modelops gating replay --prometheus`: a challenge replayed from a real Prometheus's history,
scraped from the sidecar's own metrics code."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modelops_devcluster.prometheus import PrometheusProcess

from .test_prometheus_source import Exporter, targets
from .test_prometheus_source import pods as pods  # the two exporters, v1 and v2 (a fixture)

pytestmark = pytest.mark.slow

POLICY = {
    "apiVersion": "modelops.io/v1alpha1",
    "kind": "ChampionChallenger",
    "metadata": {"name": "fraud-gate"},
    "spec": {
        "targetRef": {"name": "fraud"},
        "strategy": {"type": "canary", "steps": [50]},
        "gates": [{"name": "errors", "type": "errorRate"}],
        "decision": {"interval": "5s", "warmUp": "0s", "maxDuration": "1h"},
    },
}


def replay(policy: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelops_operator.cli", "gating", "replay", "--policy",
         str(policy), "--prometheus", url, "--namespace", "shop", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_a_failing_challenger_is_rolled_back_from_the_recorded_series(
    tmp_path: Path, pods: dict[str, Exporter]
) -> None:
    server = PrometheusProcess.start(tmp_path / "prometheus", targets(pods), scrape_interval="1s")
    try:
        time.sleep(2)  # first scrapes: both series exist from zero
        start = time.time()
        deadline = start + 22
        while time.time() < deadline:  # 22 s of traffic: the challenger fails half its requests
            pods["champion"].serve(20, errors=0, seconds=0.001)
            pods["challenger"].serve(20, errors=10, seconds=0.001)
            time.sleep(0.25)
        time.sleep(2.5)  # the last counts scraped
        end = time.time()
        policy = tmp_path / "cc.yaml"
        policy.write_text(json.dumps(POLICY))
        done = replay(policy, server.url, "--start", str(start), "--end", str(end))
        assert done.returncode == 0, done.stderr
        answers = [json.loads(line) for line in done.stdout.splitlines()]
        # One look every 5 s from the start, all in the run named by the challenger's version,
        # stopping at the decision.
        assert answers and {a["run"] for a in answers} == {"v2"}
        assert [a["t"] for a in answers] == pytest.approx(
            [start + 5 * k for k in range(len(answers))])
        assert answers[0]["decision"] == "wait" and answers[0]["challengerPercent"] == 50
        assert answers[-1]["decision"] == "rollback", answers[-1]
        assert "errors" in answers[-1]["reason"]

        # What cannot be replayed is one clear line, not a traceback.
        wrong = replay(policy, server.url, "--start", str(start), "--end", str(end),
                       "--deployment", "nobody")  # fmt: skip
        assert wrong.returncode == 2
        assert wrong.stderr.startswith("modelops gating replay: --champion-version: no champion")
        backwards = replay(policy, server.url, "--start", str(end), "--end", str(start))
        assert backwards.returncode == 2 and "--end" in backwards.stderr
    finally:
        server.stop()
    down = replay(policy, server.url, "--start", str(start), "--end", str(end))
    assert down.returncode == 2 and "--prometheus" in down.stderr
