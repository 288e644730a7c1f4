"""The local kubelet process: registers one Node, runs the pods bound to it, keeps it Ready.

Started by `modelops-devcluster kubelet` (see localkubelet.LocalKubelet for the Python side).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import platform
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .kubeapi import ApiCredentials, Informer, KubeApi, Obj, spawn
from .podnet import (
    DEFAULT_API_POD_CIDR,
    DEFAULT_POD_CIDR,
    PodAddressMap,
    PodIpAllocator,
    pick_service_address,
)
from .podrunner import PodRunner

log = logging.getLogger("modelops.localkubelet")

DEFAULT_NODE_NAME = "modelops-local"
HEARTBEAT_SECONDS = 10
LEASE_DURATION_SECONDS = 40
NODE_CAPACITY = {"cpu": "16", "memory": "64Gi", "pods": "110"}
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
LEASE_NAMESPACE = "kube-node-lease"


def micro_now() -> str:
    """metav1.MicroTime, which Lease.spec.renewTime requires."""
    seconds = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{stamp}.{int(seconds % 1 * 1_000_000):06d}Z"


def node_manifest(name: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            # No kwok annotation: kwok only manages nodes carrying kwok.x-k8s.io/node=fake.
            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                       "kubernetes.io/arch": "amd64", "type": "local"},
        },
        "spec": {},
    }


class LocalKubeletDaemon:
    def __init__(self, api: KubeApi, node_name: str, workdir: Path, *,
                 pod_cidr: str = DEFAULT_POD_CIDR, api_pod_cidr: str = DEFAULT_API_POD_CIDR,
                 drain_seconds: float = 2.0, max_grace_seconds: float = 10.0) -> None:
        self.api = api
        self.node_name = node_name
        self.host_ip = "127.0.0.1"
        self.workdir = workdir
        self.pods_dir = workdir / "pods"
        self.targets_file = workdir / "targets.json"
        self.drain_seconds = drain_seconds
        self.max_grace_seconds = max_grace_seconds
        self.allocator = PodIpAllocator(pod_cidr)
        self.addresses = PodAddressMap(pod_cidr, api_pod_cidr)
        self.runners: dict[str, PodRunner] = {}
        self._written_targets: str | None = None
        self._started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.configmaps = Informer(api, "/api/v1/configmaps", self._on_source("configmaps"))
        self.secrets = Informer(api, "/api/v1/secrets", self._on_source("secrets"))
        self.services = Informer(api, "/api/v1/services", self._on_endpoints)
        self.endpoint_slices = Informer(
            api, "/apis/discovery.k8s.io/v1/endpointslices", self._on_endpoints
        )
        self.pods = Informer(api, "/api/v1/pods", self._on_pod,
                             {"fieldSelector": f"spec.nodeName={node_name}"})

    # ---------------------------------------------------------------------------- main loop
    async def run(self, stop: asyncio.Event) -> None:
        self.pods_dir.mkdir(parents=True, exist_ok=True)
        self._write_targets()
        sources = (self.configmaps, self.secrets, self.services, self.endpoint_slices)
        tasks = [asyncio.create_task(i.run()) for i in sources]
        try:
            await asyncio.wait_for(asyncio.gather(*(i.synced.wait() for i in sources)), 60)
            await self._register_node()
            tasks.append(asyncio.create_task(self.pods.run()))
            tasks.append(asyncio.create_task(self._heartbeat()))
            log.info("node %s registered; running pods", self.node_name)
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await self.stop_all_pods()

    async def stop_all_pods(self) -> None:
        runners = [r for r in self.runners.values() if not r.finished.is_set()]
        await asyncio.gather(*(r.terminate(delete=False) for r in runners),
                             return_exceptions=True)
        self.runners.clear()
        self._write_targets()

    # ---------------------------------------------------------------------------- node
    async def _register_node(self) -> None:
        await self.api.create("/api/v1/nodes", node_manifest(self.node_name))
        await self._heartbeat_once()

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                await self._heartbeat_once()
            except Exception as error:  # the API server may be restarting; try again
                log.warning("heartbeat failed: %s", error)

    async def _heartbeat_once(self) -> None:
        version = await self.api.get("/version") or {}
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

        def condition(kind: str, status: str, reason: str) -> dict[str, str]:
            return {"type": kind, "status": status, "reason": reason,
                    "lastHeartbeatTime": stamp, "lastTransitionTime": self._started}

        status = {
            "capacity": NODE_CAPACITY,
            "allocatable": NODE_CAPACITY,
            "phase": "Running",
            "conditions": [
                condition("Ready", "True", "KubeletReady"),
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID"),
            ],
            "addresses": [{"type": "InternalIP", "address": self.host_ip},
                          {"type": "Hostname", "address": self.node_name}],
            "nodeInfo": {
                "kubeletVersion": version.get("gitVersion", ""),
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
                "containerRuntimeVersion": "local://processes",
                "osImage": platform.platform(),
                "kernelVersion": platform.release(),
                "machineID": "", "systemUUID": "", "bootID": "",
            },
        }
        node = await self.api.merge_patch(f"/api/v1/nodes/{self.node_name}/status",
                                          {"status": status})
        if node is None:  # deleted under us: register again
            await self.api.create("/api/v1/nodes", node_manifest(self.node_name))
            return
        await self._renew_lease(node["metadata"]["uid"])

    async def _renew_lease(self, node_uid: str) -> None:
        leases = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases"
        spec = {"holderIdentity": self.node_name, "leaseDurationSeconds": LEASE_DURATION_SECONDS,
                "renewTime": micro_now()}
        if await self.api.merge_patch(f"{leases}/{self.node_name}", {"spec": spec}) is None:
            owner = {"apiVersion": "v1", "kind": "Node", "name": self.node_name, "uid": node_uid}
            await self.api.create(leases, {
                "metadata": {"name": self.node_name, "namespace": LEASE_NAMESPACE,
                             "ownerReferences": [owner]},
                "spec": spec,
            })

    # ---------------------------------------------------------------------------- pods
    def _on_pod(self, kind: str, pod: Obj) -> None:
        metadata = pod["metadata"]
        runner = self.runners.get(metadata["uid"])
        if kind == "DELETED":
            if runner is not None and not runner.terminating:
                spawn(runner.terminate(delete=False))
            return
        if runner is not None:
            runner.update(pod)
            return
        if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            return
        if metadata.get("deletionTimestamp"):
            # Deleted before we ran it (or by an earlier kubelet): nothing to stop.
            spawn(self.api.delete(
                f"/api/v1/namespaces/{metadata['namespace']}/pods/{metadata['name']}",
                {"gracePeriodSeconds": 0, "preconditions": {"uid": metadata["uid"]}},
            ))
            return
        runner = PodRunner(self, pod)
        self.runners[metadata["uid"]] = runner
        log.info("starting pod %s/%s", metadata["namespace"], metadata["name"])
        runner.start()

    def pod_changed(self, runner: PodRunner) -> None:
        if runner.finished.is_set():
            self.runners.pop(runner.uid, None)
        self._write_targets()

    def allocate_ip(self, ports: list[int]) -> str:
        return self.allocator.allocate(ports)

    def release_ip(self, address: str) -> None:
        self.allocator.release(address)

    def _write_targets(self) -> None:
        groups = [
            {"targets": [address],
             "labels": {"namespace": r.namespace, "pod": r.name, "container": container}}
            for r in self.runners.values() for container, address in r.metrics_addresses()
        ]
        text = json.dumps(sorted(groups, key=lambda g: g["targets"]), indent=1)
        if text == self._written_targets:
            return
        temporary = self.targets_file.with_name(f".tmp-{self.targets_file.name}")
        temporary.write_text(text)
        os.replace(temporary, self.targets_file)
        self._written_targets = text

    # ---------------------------------------------------------------------------- lookups
    async def lookup(self, kind: str, namespace: str, name: str) -> Obj | None:
        informer = self.configmaps if kind == "configmaps" else self.secrets
        cached = informer.cache.get(f"{namespace}/{name}")
        if cached is not None or informer.synced.is_set():
            return cached
        return await self.api.get(f"/api/v1/namespaces/{namespace}/{kind}/{name}")

    def resolve_service(self, namespace: str, service: str, port: int | None) -> str:
        slices = [
            s for s in self.endpoint_slices.cache.values()
            if s["metadata"].get("namespace") == namespace
            and (s["metadata"].get("labels") or {}).get(SERVICE_NAME_LABEL) == service
        ]
        created = {
            r.name: r.pod["metadata"].get("creationTimestamp", "")
            for r in self.runners.values() if r.namespace == namespace
        }

        def creation(endpoint: Mapping[str, Any]) -> str:
            return created.get((endpoint.get("targetRef") or {}).get("name", ""), "")

        return pick_service_address(
            self.services.cache.get(f"{namespace}/{service}"), slices, port, creation,
            self.addresses.to_local,
        )

    def _on_source(self, kind: str):
        def handle(_: str, obj: Obj) -> None:
            namespace, name = obj["metadata"].get("namespace"), obj["metadata"]["name"]
            for runner in list(self.runners.values()):
                if runner.namespace == namespace and (kind, name) in runner.volumes.sources():
                    runner.refresh_volumes()

        return handle

    def _on_endpoints(self, _: str, obj: Obj) -> None:
        for runner in list(self.runners.values()):
            if runner.volumes.sources():
                runner.refresh_volumes()


async def serve(kubeconfig: Path, workdir: Path, node_name: str, *, pod_cidr: str,
                api_pod_cidr: str, drain_seconds: float, max_grace_seconds: float) -> None:
    api = KubeApi(ApiCredentials.from_kubeconfig(kubeconfig))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    daemon = LocalKubeletDaemon(api, node_name, workdir, pod_cidr=pod_cidr,
                                api_pod_cidr=api_pod_cidr, drain_seconds=drain_seconds,
                                max_grace_seconds=max_grace_seconds)
    try:
        await daemon.run(stop)
    finally:
        with contextlib.suppress(Exception):
            await api.close()
    log.info("stopped")


def run_kubelet(kubeconfig: Path, workdir: Path, node_name: str = DEFAULT_NODE_NAME, *,
                pod_cidr: str = DEFAULT_POD_CIDR, api_pod_cidr: str = DEFAULT_API_POD_CIDR,
                drain_seconds: float = 2.0, max_grace_seconds: float = 10.0) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per probe and patch
    workdir.mkdir(parents=True, exist_ok=True)
    asyncio.run(serve(kubeconfig, workdir.resolve(), node_name, pod_cidr=pod_cidr,
                      api_pod_cidr=api_pod_cidr, drain_seconds=drain_seconds,
                      max_grace_seconds=max_grace_seconds))
    return 0
