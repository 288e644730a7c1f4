"""Start and stop a real Kubernetes control plane as local processes on 127.0.0.1.

etcd -> kube-apiserver (RBAC on) -> kube-controller-manager + kube-scheduler -> kwok, then one
fake Node that kwok keeps Ready, so Deployments roll out to (paper) Ready pods. Every process
runs in its own process group and is stopped by PID, never by name; the PIDs live in a state
file so that `modelops-devcluster down` in another process can stop what `up` started.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import yaml

from .nodeconfig import NodePaths
from .pki import SERVICE_CLUSTER_IP_RANGE, create_pki

if TYPE_CHECKING:
    from .realnode import RealNode
from .processes import process_alive, process_runs_binary_from, stop_process_group

FAKE_NODE_NAME = "kwok-node-0"
STATE_FILE = "state.json"
# Reverse of the start order: nothing is left talking to a component that is already gone.
STOP_ORDER = ("kwok", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd")

Progress = Callable[[str], None]


class DevClusterError(RuntimeError):
    """The control plane could not be started; the message names the component and its log."""


def cache_root() -> Path:
    explicit = os.environ.get("MODELOPS_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "modelops" / "devcluster"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ClusterState:
    """What `down` and the test fixtures need to find a running cluster again."""

    workdir: str
    bin_dir: str
    api_url: str
    kubeconfig: str
    ca_file: str
    token: str
    pids: dict[str, int] = field(default_factory=dict)


def kubeconfig_document(api_url: str, ca_file: Path, token: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "modelops-dev",
                "cluster": {"server": api_url, "certificate-authority": str(ca_file)},
            }
        ],
        "users": [{"name": "admin", "user": {"token": token}}],
        "contexts": [
            {
                "name": "modelops-dev",
                "context": {"cluster": "modelops-dev", "user": "admin", "namespace": "default"},
            }
        ],
        "current-context": "modelops-dev",
    }


def _fake_node(name: str) -> dict[str, object]:
    capacity = {"cpu": "32", "memory": "256Gi", "pods": "250"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake"},
            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "type": "kwok"},
        },
        "status": {"allocatable": capacity, "capacity": capacity},
    }


class DevCluster:
    """A running control plane. Build it with `DevCluster.start` or `DevCluster.load`."""

    def __init__(self, state: ClusterState) -> None:
        self.state = state
        self.workdir = Path(state.workdir)
        self.bin_dir = Path(state.bin_dir)
        self.kubeconfig = Path(state.kubeconfig)
        self.api_url = state.api_url
        self.ca_file = Path(state.ca_file)
        self.token = state.token

    # ----------------------------------------------------------------------------- using it
    @property
    def env(self) -> dict[str, str]:
        """The environment a subprocess needs to talk to this cluster with its binaries."""
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        return env

    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin_dir / "kubectl"), *args],
            env=self.env,
            input=input,
            text=True,
            capture_output=True,
            check=check,
            timeout=timeout,
        )

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.api_url,
            verify=ssl.create_default_context(cafile=self.ca_file),
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
        )

    # ----------------------------------------------------------------------------- lifecycle
    @classmethod
    def load(cls, workdir: Path) -> DevCluster:
        data = json.loads((workdir / STATE_FILE).read_text())
        return cls(ClusterState(**data))

    @classmethod
    def start(
        cls,
        workdir: Path,
        *,
        bin_dir: Path | None = None,
        data_dir: Path | None = None,
        kubeconfig: Path | None = None,
        gateway_api: bool = True,
        fake_node: bool = True,
        real_node_images: Sequence[Path] | None = None,
        progress: Progress = print,
    ) -> DevCluster:
        """Start every component, wait until the fake node is Ready, return the cluster.

        With `fake_node=False` no kwok node is made (kwok still runs, idle). With
        `real_node_images` (archives from `make images`), a real node (realnode.py) joins the
        cluster with those images imported, and pods really run.

        On any failure the components already started are stopped before the error is raised.
        """
        from .components import ComponentLauncher

        bin_dir = bin_dir or cache_root() / "bin"
        data_dir = data_dir or cache_root() / "data"
        missing = [
            b for b in ("etcd", "kube-apiserver", "kubectl", "kwok") if not (bin_dir / b).exists()
        ]
        if missing:
            raise DevClusterError(
                f"missing binaries in {bin_dir}: {', '.join(missing)}; run `make cluster-build`"
            )
        workdir = workdir.resolve()
        if (workdir / STATE_FILE).exists():
            previous = cls.load(workdir)
            if previous.running_components():
                raise DevClusterError(
                    f"a cluster from {workdir} is still running; stop it with `make cluster-down`"
                )
        for leftover in ("etcd", "logs"):
            subprocess.run(["rm", "-rf", str(workdir / leftover)], check=True)
        workdir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        pki = create_pki(workdir / "pki")
        kubeconfig = kubeconfig or workdir / "kubeconfig"
        egress = None
        if real_node_images is not None:
            from .realnode import run_dir_for

            egress = NodePaths(workdir / "node", run_dir_for(workdir)).egress_socket
        launcher = ComponentLauncher(workdir, bin_dir, data_dir, pki, progress, egress)
        state = ClusterState(
            workdir=str(workdir),
            bin_dir=str(bin_dir),
            api_url="",
            kubeconfig=str(kubeconfig),
            ca_file=str(pki.ca_cert),
            token=pki.admin_token,
        )
        cluster = cls(state)
        try:
            launcher.start_all(state, on_started=cluster._save)
            cluster = cls(state)
            kubeconfig.parent.mkdir(parents=True, exist_ok=True)
            kubeconfig.write_text(
                yaml.safe_dump(kubeconfig_document(state.api_url, pki.ca_cert, pki.admin_token))
            )
            kubeconfig.chmod(0o600)
            cluster._save(state)
            if fake_node:
                cluster._create_fake_node_and_wait(progress)
            if real_node_images is not None:
                from .realnode import RealNode

                RealNode.start(cluster, real_node_images, progress)
            if gateway_api:
                cluster._install_gateway_api_crds(data_dir, progress)
            cluster._wait_for_default_service_account(progress)
        except BaseException:
            cluster.stop(progress=progress)
            raise
        progress(f"cluster ready in {time.monotonic() - started:.1f} s at {state.api_url}")
        return cluster

    def running_components(self) -> list[str]:
        return [
            name
            for name, pid in self.state.pids.items()
            if process_alive(pid) and process_runs_binary_from(pid, self.bin_dir)
        ]

    @property
    def node(self) -> RealNode | None:
        """The real node, when this cluster has one."""
        from .realnode import RealNode

        return RealNode.load(self.workdir)

    def restart_apiserver(self, *, timeout: float = 60) -> float:
        """Stop the API server (SIGTERM, as a rolling control-plane upgrade does) and start it
        again with the same command line, port and log; returns the seconds it was away.

        Clients see refused connections meanwhile and their watches end; etcd keeps the state.
        The controllers run without leader election, so they wait rather than exit.
        """
        pid = self.state.pids["kube-apiserver"]
        if not (process_alive(pid) and process_runs_binary_from(pid, self.bin_dir)):
            raise DevClusterError(f"kube-apiserver (pid {pid}) is not running")
        command = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        began = time.monotonic()
        stop_process_group(pid, grace_seconds=10)
        log_path = self.workdir / "logs" / "kube-apiserver.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [c.decode() for c in command], stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.workdir,
            )  # fmt: skip
        self.state.pids["kube-apiserver"] = process.pid
        self._save(self.state)
        verify = ssl.create_default_context(cafile=self.ca_file)
        deadline = began + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise DevClusterError(f"kube-apiserver exited on restart; log {log_path}")
            if http_ok(f"{self.api_url}/readyz", verify=verify):
                return time.monotonic() - began
            time.sleep(0.1)
        raise DevClusterError(f"kube-apiserver not ready {timeout:.0f} s after a restart")

    def stop(self, *, progress: Progress = print) -> None:
        """Stop every component (SIGTERM, then SIGKILL after 10 s), in reverse start order."""
        node = self.node
        if node is not None:
            node.stop()
            progress(f"stopped node {node.name}")
        for name in STOP_ORDER:
            pid = self.state.pids.get(name)
            if pid is None:
                continue
            # A PID can be reused after a reboot: only signal a process running our binary.
            if process_alive(pid) and process_runs_binary_from(pid, self.bin_dir):
                stop_process_group(pid, grace_seconds=10)
                progress(f"stopped {name} (pid {pid})")
        self.state.pids.clear()
        self._save(self.state)

    # ----------------------------------------------------------------------------- internals
    def _save(self, state: ClusterState) -> None:
        Path(state.workdir, STATE_FILE).write_text(json.dumps(asdict(state), indent=2))

    def _create_fake_node_and_wait(self, progress: Progress, timeout: float = 60) -> None:
        with self.api() as api:
            response = api.post("/api/v1/nodes", json=_fake_node(FAKE_NODE_NAME))
            if response.status_code not in (201, 409):
                raise DevClusterError(f"creating the fake node failed: {response.text}")
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                node = api.get(f"/api/v1/nodes/{FAKE_NODE_NAME}").json()
                conditions = node.get("status", {}).get("conditions") or []
                if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
                    progress(f"node {FAKE_NODE_NAME} Ready (kwok)")
                    return
                time.sleep(0.2)
        raise DevClusterError(
            f"node {FAKE_NODE_NAME} not Ready after {timeout:.0f} s; see {self.workdir}/logs/"
        )

    def _install_gateway_api_crds(self, data_dir: Path, progress: Progress) -> None:
        crd_dir = data_dir / "gateway-api-crds"
        files = sorted(crd_dir.glob("*.yaml"))
        if not files:
            raise DevClusterError(f"no Gateway API CRDs in {crd_dir}; run `make cluster-build`")
        # HTTPRoute's CRD is larger than the client-side-apply annotation limit: apply server-side.
        args = ["apply", "--server-side", "--field-manager=modelops-devcluster"]
        args += [f"--filename={f}" for f in files]
        result = self.kubectl(*args, check=False)
        if result.returncode != 0:
            raise DevClusterError(f"installing Gateway API CRDs failed: {result.stderr}")
        crds = [f"--filename={f}" for f in files if "_vap_" not in f.name]
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s", *crds)
        progress(f"Gateway API CRDs installed ({len(files)} files)")

    def _wait_for_default_service_account(self, progress: Progress, timeout: float = 60) -> None:
        wait_for_service_account(self, "default", timeout)
        progress("default ServiceAccount present (controller-manager working)")


def http_ok(url: str, verify: bool | ssl.SSLContext = False) -> bool:
    """A 200 from `url` within 2 s (a component's health or readiness endpoint)."""
    try:
        response = httpx.get(url, verify=verify, timeout=2)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def wait_for_service_account(cluster: DevCluster, namespace: str, timeout: float = 60) -> None:
    """Pods are refused until the `default` ServiceAccount exists: KCM makes it."""
    deadline = time.monotonic() + timeout
    with cluster.api() as api:
        while time.monotonic() < deadline:
            if (
                api.get(f"/api/v1/namespaces/{namespace}/serviceaccounts/default").status_code
                == 200
            ):
                return
            time.sleep(0.2)
    raise DevClusterError(
        f"no default ServiceAccount in namespace {namespace} after {timeout:.0f} s"
    )


def leftover_processes(
    bin_dir: Path, workdir: Path | None = None, names: Iterable[str] = STOP_ORDER
) -> list[tuple[int, str]]:
    """Processes running a control-plane binary from bin_dir (and, if given, started in workdir).

    Components run with the cluster's workdir as their current directory, which tells the
    processes of one cluster from those of another cluster on the same machine.
    """
    wanted = set(names)
    found: list[tuple[int, str]] = []
    resolved_dir = bin_dir.resolve()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            exe = Path(os.readlink(entry / "exe"))
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue
        if exe.parent != resolved_dir or exe.name not in wanted:
            continue
        if workdir is None or cwd == workdir.resolve():
            found.append((int(entry.name), exe.name))
    return found


__all__ = [
    "SERVICE_CLUSTER_IP_RANGE",
    "ClusterState",
    "DevCluster",
    "DevClusterError",
    "cache_root",
    "free_port",
    "leftover_processes",
    "wait_for_service_account",
]
