"""A local kubelet for the dev cluster: pods on its node run as real processes on loopback.

kwok's paper pods never serve. The local kubelet registers its own Node (`modelops-local`) and
runs each pod bound to it: init containers, then containers, as programs of this virtualenv,
each pod on its own address in 127.1.0.0/16 (see podnet for the network emulation; the API
shows that address as 10.245.x.y, which `pod_ip` translates back). It writes
`<workdir>/targets.json`, a Prometheus file_sd list of every running pod's `metrics` port.

From Python::

    cluster = DevCluster.start(workdir / "cluster", fake_node=False)
    kubelet = LocalKubelet.start(cluster, workdir / "kubelet")
    prometheus = PrometheusProcess.start(workdir / "prom", [], file_sd_files=[kubelet.targets_file])
    ...
    kubelet.service_url("default", "fraud")   # http://127.1.x.y:8000
    kubelet.stop()                             # every pod process is gone afterwards

From a shell: `modelops-devcluster kubelet --kubeconfig K --workdir W`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .cluster import DevCluster, DevClusterError
from .kubeletd import DEFAULT_NODE_NAME, SERVICE_NAME_LABEL
from .podnet import (
    DEFAULT_API_POD_CIDR,
    DEFAULT_POD_CIDR,
    UNRESOLVED_ADDRESS,
    PodAddressMap,
    pick_service_address,
)
from .processes import process_alive, stop_process_group

__all__ = ["DEFAULT_NODE_NAME", "LocalKubelet", "pod_processes"]


def pod_processes(workdir: Path) -> list[int]:
    """PIDs of processes a kubelet with this workdir started (they run in its pods directory)."""
    pods_dir = (workdir / "pods").resolve()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue
        if cwd.is_relative_to(pods_dir) and process_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


class LocalKubelet:
    """A running `modelops-devcluster kubelet` process; build it with `LocalKubelet.start`."""

    def __init__(self, cluster: DevCluster, workdir: Path, node_name: str,
                 process: subprocess.Popen[bytes], addresses: PodAddressMap) -> None:
        self.cluster = cluster
        self.addresses = addresses
        self.workdir = workdir
        self.node_name = node_name
        self.process = process
        self.log_file = workdir / "kubelet.log"

    @property
    def targets_file(self) -> Path:
        """Prometheus file_sd targets: `metrics` ports of the running pods."""
        return self.workdir / "targets.json"

    @property
    def pods_dir(self) -> Path:
        """`<namespace>_<pod>/` per pod: `<container>.log`, volumes, termination logs."""
        return self.workdir / "pods"

    @classmethod
    def start(cls, cluster: DevCluster, workdir: Path, *, node_name: str = DEFAULT_NODE_NAME,
              drain_seconds: float = 2.0, max_grace_seconds: float = 10.0,
              pod_cidr: str = DEFAULT_POD_CIDR, api_pod_cidr: str = DEFAULT_API_POD_CIDR,
              timeout: float = 60) -> LocalKubelet:
        """Start the kubelet in its own process group and wait until its Node is Ready."""
        workdir = workdir.resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, "-m", "modelops_devcluster", "kubelet",
            "--kubeconfig", str(cluster.kubeconfig), "--workdir", str(workdir),
            "--node-name", node_name, "--drain-seconds", str(drain_seconds),
            "--max-grace-seconds", str(max_grace_seconds),
            "--pod-cidr", pod_cidr, "--api-pod-cidr", api_pod_cidr,
        ]
        with (workdir / "kubelet.log").open("ab") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        kubelet = cls(cluster, workdir, node_name, process,
                      PodAddressMap(pod_cidr, api_pod_cidr))
        try:
            kubelet.wait_until_ready(timeout)
        except BaseException:
            kubelet.stop()
            raise
        return kubelet

    def wait_until_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self.cluster.api() as api:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise DevClusterError(f"kubelet exited; log {self.log_file}:\n"
                                          + self.log_file.read_text(errors="replace")[-2000:])
                node = api.get(f"/api/v1/nodes/{self.node_name}")
                if node.status_code == 200:
                    conditions = node.json().get("status", {}).get("conditions") or []
                    if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
                        return
                time.sleep(0.2)
        raise DevClusterError(f"node {self.node_name} not Ready after {timeout:.0f} s; "
                              f"see {self.log_file}")

    def stop(self, timeout: float = 30) -> None:
        """Stop the kubelet (it stops its pods); then stop any pod process it left behind."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                stop_process_group(self.process.pid, grace_seconds=0)
                self.process.wait()
        for pid in pod_processes(self.workdir):
            # Only a killed kubelet leaves these behind.
            with contextlib.suppress(ProcessLookupError):
                stop_process_group(os.getpgid(pid), grace_seconds=2)

    # ---------------------------------------------------------------------------- helpers
    def pod_ip(self, namespace: str, pod: str) -> str:
        """The loopback address the pod listens on ("" before it has one); the API shows
        `addresses.to_api()` of it."""
        with self.cluster.api() as api:
            response = api.get(f"/api/v1/namespaces/{namespace}/pods/{pod}")
            response.raise_for_status()
            api_address = response.json().get("status", {}).get("podIP")
        return self.addresses.to_local(api_address) if api_address else ""

    def service_address(self, namespace: str, service: str, port: int | None = None) -> str:
        """"ip:targetPort" of the Service's newest ready endpoint, as pods see it; the refused
        address 127.0.0.1:1 when it has none. `port` is a Service port (default: the first)."""
        with self.cluster.api() as api:
            response = api.get(f"/api/v1/namespaces/{namespace}/services/{service}")
            if response.status_code != 200:
                return UNRESOLVED_ADDRESS
            spec = response.json()
            if port is None:
                port = int((spec["spec"].get("ports") or [{"port": 80}])[0]["port"])
            slices = api.get(
                f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices",
                params={"labelSelector": f"{SERVICE_NAME_LABEL}={service}"},
            ).json()["items"]
            pods = api.get(f"/api/v1/namespaces/{namespace}/pods").json()["items"]
        created = {p["metadata"]["name"]: p["metadata"]["creationTimestamp"] for p in pods}

        def creation(endpoint: Mapping[str, Any]) -> str:
            return created.get((endpoint.get("targetRef") or {}).get("name", ""), "")

        return pick_service_address(spec, slices, port, creation, self.addresses.to_local)

    def service_url(self, namespace: str, service: str, port: int | None = None) -> str:
        return f"http://{self.service_address(namespace, service, port)}"
