"""Run the operator as a real process with the chart's least-privilege identity.

Used by the end-to-end tests and the benchmark: the chart's ServiceAccount and RBAC are
rendered with `helm template` and applied, a token is minted for the ServiceAccount with the
TokenRequest API (`kubectl create token`), and `kopf run` is started with a kubeconfig holding
only that token. So the tests prove the chart grants enough, and not that an admin can do it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from modelops_devcluster.cluster import free_port

from .chart import REPO_ROOT, helm_template

CRDS = REPO_ROOT / "crds"
SYSTEM_NAMESPACE = "modelops-system"
RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding")

Kubectl = Callable[..., subprocess.CompletedProcess[str]]


def install_crds(kubectl: Kubectl) -> None:
    kubectl("apply", "--server-side", "--field-manager=modelops-tests", "-f", str(CRDS))
    kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(CRDS))


def service_account_kubeconfig(
    kubectl: Kubectl, helm: Path, api_url: str, ca_file: Path, path: Path
) -> str:
    """Apply the chart's RBAC, mint a token for its ServiceAccount, write a kubeconfig.

    Returns the ServiceAccount's user name (system:serviceaccount:<ns>:<name>).
    """
    kubectl("create", "namespace", SYSTEM_NAMESPACE, check=False)
    docs = [d for d in helm_template(helm, SYSTEM_NAMESPACE) if d["kind"] in RBAC_KINDS]
    kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
    account = next(d for d in docs if d["kind"] == "ServiceAccount")["metadata"]["name"]
    token = kubectl(
        "create", "token", account, "-n", SYSTEM_NAMESPACE, "--duration=6h"
    ).stdout.strip()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "dev", "cluster": {"server": api_url, "certificate-authority": str(ca_file)}}
        ],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [
            {
                "name": "operator",
                "context": {"cluster": "dev", "user": account, "namespace": SYSTEM_NAMESPACE},
            }
        ],
        "current-context": "operator",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return f"system:serviceaccount:{SYSTEM_NAMESPACE}:{account}"


_SAMPLE = re.compile(r"^modelops_operator_api_writes_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")


@dataclass
class OperatorProcess:
    """`kopf run` of modelops_operator.main in a subprocess."""

    process: subprocess.Popen[bytes]
    log_path: Path
    metrics_port: int
    health_port: int
    command: list[str]
    env: dict[str, str]

    @classmethod
    def start(
        cls,
        kubeconfig: Path,
        log_path: Path,
        *,
        resync_seconds: float = 300,
        extra_env: dict[str, str] | None = None,
        timeout: float = 60,
        namespaces: Sequence[str] = (),
    ) -> OperatorProcess:
        """`namespaces`: serve only those (a shard, the chart's watchNamespaces); else all."""
        metrics_port, health_port = free_port(), free_port()
        env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "MODELOPS_RESYNC_SECONDS": str(resync_seconds),
            "MODELOPS_METRICS_PORT": str(metrics_port),
            "MODELOPS_METRICS_ADDR": "127.0.0.1",
            **(extra_env or {}),
        }
        command = [
            sys.executable, "-m", "kopf", "run", "--standalone",
            *([f"--namespace={n}" for n in namespaces] or ["--all-namespaces"]),
            f"--liveness=http://127.0.0.1:{health_port}/healthz",
            "-m", "modelops_operator.main",
        ]  # fmt: skip
        log_path.write_bytes(b"")
        operator = cls(cls._spawn(command, env, log_path), log_path, metrics_port, health_port,
                       command, env)  # fmt: skip
        operator._wait_healthy(timeout)
        return operator

    def _wait_healthy(self, timeout: float) -> None:
        """Healthy within `timeout`, or stopped: an operator that never became healthy must not
        outlive the test (or bench) that gave up on it and act on the next one's objects."""
        try:
            self._poll_healthy(timeout)
        except BaseException:
            self.stop()
            raise

    @staticmethod
    def _spawn(command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
        with log_path.open("ab") as log:
            return subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def restart(self, timeout: float = 60) -> None:
        """Stop and start again (same ports, same log); its write counter starts from zero."""
        self.stop()
        self.process = self._spawn(self.command, self.env, self.log_path)
        self._wait_healthy(timeout)

    def _poll_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"operator exited early:\n{self.log()[-4000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.health_port}/healthz", timeout=2).is_success:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"operator not healthy after {timeout} s:\n{self.log()[-4000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def writes(self) -> dict[str, float]:
        """The operator's own write counter, by 'VERB resource'."""
        text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        counts: dict[str, float] = {}
        for line in text.splitlines():
            match = _SAMPLE.match(line)
            if match:
                labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group("labels")))
                counts[f"{labels['verb']} {labels['resource']}"] = float(match.group("value"))
        return counts

    def peak_rss_kib(self) -> int:
        """VmHWM of the operator process (Linux)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]

    def cpu_seconds(self) -> float:
        """User plus system CPU time the operator process has used so far (Linux)."""
        return cpu_seconds_of_stat(Path(f"/proc/{self.process.pid}/stat").read_text())

    def stop(self, timeout: float = 15) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def cpu_seconds_of_stat(stat: str) -> float:
    """utime + stime of a /proc/<pid>/stat line, in seconds."""
    # Count fields after the command name: it is in parentheses and may hold spaces itself.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def apiserver_writes(metrics_text: str, resources: set[str]) -> dict[str, float]:
    """Write requests the API server counted, by 'VERB resource[/subresource]'.

    From `apiserver_request_total`; it has no user label, so callers restrict the resources
    and the time window to ones where only the operator can write.
    """
    counts: dict[str, float] = {}
    for line in metrics_text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line[: line.rindex("}")]))
        if labels.get("verb") not in {"POST", "PUT", "PATCH", "APPLY", "DELETE"}:
            continue
        if labels.get("resource") not in resources or labels.get("dry_run"):
            continue
        sub = f"/{labels['subresource']}" if labels.get("subresource") else ""
        key = f"{labels['verb']} {labels['resource']}{sub}"
        counts[key] = counts.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return counts
