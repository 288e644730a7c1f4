"""The console program, as a user runs it: with no kubeconfig, every verb that needs a cluster
says so in exactly one line on stderr and exits 1; the others still work."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
NO_KUBECONFIG = (
    "error: no kubeconfig found (KUBECONFIG, ~/.kube/config); pass --kubeconfig or set KUBECONFIG"
)
NEEDS_A_CLUSTER = [
    ["list"],
    ["list", "deployments", "-A"],
    ["get", "fraud-canary", "-n", "risk", "-o", "json"],
    ["status", "fraud-canary", "--watch", "-n", "risk"],
    ["report", "fraud-canary", "-o", "yaml"],
    ["approve", "fraud-canary", "-n", "risk"],
    ["promote", "fraud-canary", "--force", "-o", "json"],
    ["rollback", "fraud-canary", "-o", "name"],
    ["pause", "fraud-canary", "-n", "risk"],
    ["resume", "fraud-canary", "-o", "json"],
    ["history", "fraud", "-A", "-o", "json"],
    ["export", "-A", "--since", "24h"],
    ["card", "fraud", "-d", "/tmp", "-o", "json"],
    ["dashboard", "--no-browser", "-o", "json"],
]


def run(module: str, argv: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "KUBERNETES_SERVICE_HOST"}
    env.update(
        HOME=str(home),
        KUBECONFIG=str(home / "no-such-kubeconfig"),
        PYTHONPATH=os.pathsep.join(
            [str(REPO / "operator"), str(REPO / "serving"), env.get("PYTHONPATH", "")]
        ),
    )
    return subprocess.run(
        [sys.executable, "-m", module, *argv],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> list[subprocess.CompletedProcess[str]]:
    home = tmp_path_factory.mktemp("home")
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(lambda argv: run("modelops_operator.plugin", argv, home),
                             NEEDS_A_CLUSTER))  # fmt: skip


@pytest.mark.parametrize("index", range(len(NEEDS_A_CLUSTER)),
                         ids=[" ".join(a[:2]) for a in NEEDS_A_CLUSTER])  # fmt: skip
def test_missing_kubeconfig_is_one_line(
    results: list[subprocess.CompletedProcess[str]], index: int
) -> None:
    result = results[index]
    assert (result.returncode, result.stdout, result.stderr) == (1, "", NO_KUBECONFIG + "\n")


def test_usage_errors_and_the_verbs_that_need_no_cluster(tmp_path: Path) -> None:
    usage = run("modelops_operator.plugin", ["status", "fraud-canary", "-n"], tmp_path)
    assert usage.returncode == 2 and usage.stderr.count("\n") == 1
    assert usage.stderr.startswith("error: argument -n/--namespace: expected one argument")
    version = run("modelops_operator.plugin", ["version", "-o", "json"], tmp_path)
    assert version.returncode == 0 and '"clientVersion"' in version.stdout
    completion = run("modelops_operator.plugin", ["completion", "bash"], tmp_path)
    assert completion.returncode == 0 and "__complete" in completion.stdout
    # The historical module name runs the same program.
    shim = run("modelops_operator.kubectl_plugin", ["status", "x", "-n", "risk"], tmp_path)
    assert (shim.returncode, shim.stderr) == (1, NO_KUBECONFIG + "\n")
    # Completion without a cluster offers what it knows and never prints an error.
    words = run("modelops_operator.plugin", ["__complete", "get", "fr"], tmp_path)
    assert (words.returncode, words.stdout, words.stderr) == (0, ":4\n", "")


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completion_script(tmp_path: Path) -> None:
    """The script bash sources, driving the plugin's __complete as a shell would."""
    program = tmp_path / "kubectl-modelops"
    program.write_text(
        f"#!/bin/sh\nPYTHONPATH={REPO / 'operator'} exec {sys.executable} "
        '-m modelops_operator.plugin "$@"\n'
    )
    program.chmod(0o755)
    session = """
        source <(kubectl-modelops completion bash)
        COMP_WORDS=(kubectl-modelops list d); COMP_CWORD=2; _kubectl_modelops
        echo "${COMPREPLY[*]}"
        COMP_WORDS=(kubectl-modelops get x -o ""); COMP_CWORD=4; _kubectl_modelops
        echo "${COMPREPLY[*]}"
    """
    env = dict(os.environ, PATH=f"{tmp_path}{os.pathsep}{os.environ['PATH']}",
               KUBECONFIG=str(tmp_path / "none"))  # fmt: skip
    result = subprocess.run(
        ["bash", "-c", session], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.stdout.splitlines() == ["deployments", "table json yaml name jsonl"], result
