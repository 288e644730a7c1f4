"""Command lines and readiness checks of the control-plane components, started in order."""

from __future__ import annotations

import ssl
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from .cluster import (
    ClusterState,
    DevClusterError,
    Progress,
    free_port,
    http_ok,
    kubeconfig_document,
)
from .pki import NODE_API_ADDRESS, POD_CIDR, SERVICE_CLUSTER_IP_RANGE, Pki
from .processes import process_alive

# Components whose port we picked can lose a race for it; a start is retried this often.
START_ATTEMPTS = 3


@dataclass(frozen=True)
class Component:
    name: str
    args: list[str]
    ready: Callable[[], bool]
    timeout: float = 60.0


class ComponentLauncher:
    def __init__(
        self, workdir: Path, bin_dir: Path, data_dir: Path, pki: Pki, progress: Progress,
        node_egress_socket: Path | None = None,
    ) -> None:
        self.workdir = workdir
        # With a real node, the API server reaches kubelets and pods through this CONNECT proxy.
        self.node_egress_socket = node_egress_socket
        self.bin_dir = bin_dir
        self.data_dir = data_dir
        self.pki = pki
        self.progress = progress
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        # Controllers, scheduler and kwok use their own kubeconfig written before they start.
        self.component_kubeconfig = workdir / "components.kubeconfig"

    def start_all(self, state: ClusterState, on_started: Callable[[ClusterState], None]) -> None:
        for build in (
            self._etcd,
            self._apiserver,
            self._controller_manager,
            self._scheduler,
            self._kwok,
        ):
            self._start_with_retries(build, state, on_started)

    # --------------------------------------------------------------------------- machinery
    def _start_with_retries(
        self,
        build: Callable[[ClusterState], Component],
        state: ClusterState,
        on_started: Callable[[ClusterState], None],
    ) -> None:
        for attempt in range(1, START_ATTEMPTS + 1):
            component = build(state)  # fresh ports on each attempt
            log_path = self.logs / f"{component.name}.log"
            began = time.monotonic()
            with log_path.open("ab") as log:
                process = subprocess.Popen(
                    [str(self.bin_dir / component.args[0]), *component.args[1:]],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    cwd=self.workdir,
                )
            state.pids[component.name] = process.pid
            on_started(state)
            deadline = began + component.timeout
            while time.monotonic() < deadline:
                if process.poll() is not None or not process_alive(process.pid):
                    break
                if component.ready():
                    self.progress(f"{component.name} ready ({time.monotonic() - began:.1f} s)")
                    return
                time.sleep(0.1)
            exited = process.poll() is not None
            if not exited:
                process.kill()
                process.wait()
            tail = log_path.read_text(errors="replace")[-2000:]
            if exited and "address already in use" in tail and attempt < START_ATTEMPTS:
                self.progress(
                    f"{component.name}: port taken, retrying ({attempt}/{START_ATTEMPTS})"
                )
                continue
            reason = "exited" if exited else f"not ready after {component.timeout:.0f} s"
            raise DevClusterError(f"{component.name} {reason}; log {log_path}:\n{tail}")

    # --------------------------------------------------------------------------- components
    def _etcd(self, state: ClusterState) -> Component:
        client, peer = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        peer_url = f"http://127.0.0.1:{peer}"
        return Component(
            name="etcd",
            args=[
                "etcd",
                "--name=default",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
                # A throwaway cluster: durability is not worth the fsync latency.
                "--unsafe-no-fsync=true",
                "--auto-compaction-retention=1",
                "--quota-backend-bytes=2147483648",
                "--log-level=warn",
            ],
            ready=lambda: http_ok(f"{self.etcd_url}/health"),
        )

    def _apiserver(self, state: ClusterState) -> Component:
        port = free_port()
        state.api_url = f"https://127.0.0.1:{port}"
        pki = self.pki
        ready_url = f"{state.api_url}/readyz"
        return Component(
            name="kube-apiserver",
            args=[
                "kube-apiserver",
                f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.workdir / 'pki'}",
                f"--tls-cert-file={pki.apiserver_cert}",
                f"--tls-private-key-file={pki.apiserver_key}",
                f"--client-ca-file={pki.ca_cert}",
                f"--token-auth-file={pki.tokens_csv}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki.service_account_pub}",
                f"--service-account-signing-key-file={pki.service_account_key}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--authorization-mode=Node,RBAC",
                "--allow-privileged=true",
                # Loopback cannot be an Endpoints address; without this the log floods.
                "--endpoint-reconciler-type=none",
                "--enable-priority-and-fairness=false",
                "--profiling=false",
                *self._real_node_apiserver_args(),
            ],
            ready=lambda: (
                http_ok(ready_url, verify=ssl.create_default_context(cafile=pki.ca_cert))
                and self._write_component_kubeconfig(state)
            ),
            timeout=90,
        )

    def _real_node_apiserver_args(self) -> list[str]:
        if self.node_egress_socket is None:
            return []
        egress = self.workdir / "egress-selector.yaml"
        egress.write_text(yaml.safe_dump({
            "apiVersion": "apiserver.k8s.io/v1beta1",
            "kind": "EgressSelectorConfiguration",
            "egressSelections": [{
                "name": "cluster",
                "connection": {
                    "proxyProtocol": "HTTPConnect",
                    "transport": {"uds": {"udsName": str(self.node_egress_socket)}},
                },
            }],
        }))
        # Later flags win: the node's address (relayed to 127.0.0.1) is what Services and pods
        # see as the `kubernetes` endpoint, kept current by the lease reconciler.
        return [
            f"--advertise-address={NODE_API_ADDRESS}",
            "--endpoint-reconciler-type=lease",
            f"--egress-selector-config-file={egress}",
            "--kubelet-preferred-address-types=InternalIP",
            f"--kubelet-client-certificate={self.pki.kubelet_client_cert}",
            f"--kubelet-client-key={self.pki.kubelet_client_key}",
        ]

    def _write_component_kubeconfig(self, state: ClusterState) -> bool:
        self.component_kubeconfig.write_text(
            yaml.safe_dump(
                kubeconfig_document(state.api_url, self.pki.ca_cert, self.pki.admin_token)
            )
        )
        self.component_kubeconfig.chmod(0o600)
        return True

    def _controller_manager(self, state: ClusterState) -> Component:
        port = free_port()
        kc = str(self.component_kubeconfig)
        return Component(
            name="kube-controller-manager",
            args=[
                "kube-controller-manager",
                f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
                "--leader-elect=false",
                "--use-service-account-credentials=false",
                f"--service-account-private-key-file={self.pki.service_account_key}",
                f"--root-ca-file={self.pki.ca_cert}",
                "--node-monitor-period=5s",
                "--node-monitor-grace-period=40s",
            ],
            ready=lambda: http_ok(f"https://127.0.0.1:{port}/healthz"),
        )

    def _scheduler(self, state: ClusterState) -> Component:
        port = free_port()
        kc = str(self.component_kubeconfig)
        return Component(
            name="kube-scheduler",
            args=[
                "kube-scheduler",
                f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
            ],
            ready=lambda: http_ok(f"https://127.0.0.1:{port}/healthz"),
        )

    def _kwok(self, state: ClusterState) -> Component:
        port = free_port()
        stages = self.data_dir / "kwok-stages.yaml"
        if not stages.exists():
            raise DevClusterError(f"kwok stages missing at {stages}; run `make cluster-build`")
        return Component(
            name="kwok",
            args=[
                "kwok",
                f"--kubeconfig={self.component_kubeconfig}",
                f"--config={stages}",
                # Only the fake node: a local kubelet's node must be left to that kubelet.
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                "--node-lease-duration-seconds=40",
                f"--cidr={POD_CIDR}",
                f"--server-address=127.0.0.1:{port}",
            ],
            ready=lambda: http_ok(f"http://127.0.0.1:{port}/healthz"),
        )
