"""One pod on the local node: volumes, init containers, containers as processes, probes, status.

Each container runs in its own process group with its log in the pod directory (podcontainers
says which program a container is).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import httpx

from .kubeapi import KubeApi, Obj, spawn
from .podcontainers import (
    BACKOFF_INITIAL_SECONDS,
    BACKOFF_MAX_SECONDS,
    BACKOFF_RESET_SECONDS,
    DEFAULT_TERMINATION_LOG,
    MESSAGE_LIMIT_BYTES,
    ContainerRun,
    expand_references,
    now,
    probe_once,
    resolve_executable,
)
from .podnet import (
    PodAddressMap,
    rewrite_mount_path,
    rewrite_pod_local_addresses,
    rewrite_service_hosts,
)
from .podvolumes import VolumeSet

log = logging.getLogger("modelops.localkubelet")


class NodeContext(Protocol):
    """What a pod needs from its kubelet."""

    api: KubeApi
    node_name: str
    host_ip: str
    pods_dir: Path
    drain_seconds: float
    max_grace_seconds: float
    addresses: PodAddressMap

    def resolve_service(self, namespace: str, service: str, port: int | None) -> str: ...
    async def lookup(self, kind: str, namespace: str, name: str) -> Obj | None: ...
    def allocate_ip(self, ports: list[int]) -> str: ...
    def release_ip(self, address: str) -> None: ...
    def pod_changed(self, runner: PodRunner) -> None: ...


class PodRunner:
    """Runs one pod until it is deleted; `status()` is what the API should show."""

    def __init__(self, node: NodeContext, pod: Obj) -> None:
        self.node = node
        self.pod = pod
        metadata = pod["metadata"]
        self.namespace: str = metadata["namespace"]
        self.name: str = metadata["name"]
        self.uid: str = metadata["uid"]
        spec = pod["spec"]
        self.restart_policy: str = spec.get("restartPolicy", "Always")
        self.init_runs = [ContainerRun(c, init=True) for c in spec.get("initContainers") or []]
        self.runs = [ContainerRun(c, init=False) for c in spec.get("containers") or []]
        self.ports = sorted({
            int(p["containerPort"])
            for c in spec.get("containers") or [] for p in c.get("ports") or []
        })
        self.directory = node.pods_dir / f"{self.namespace}_{self.name}"
        self.volumes = VolumeSet(self.directory / "volumes", spec.get("volumes") or [], self)
        self.pod_ip = ""  # where it listens here; the API shows addresses.to_api(pod_ip)
        self.start_time = now()
        self.initialized = False
        self.terminating = False
        self.finished = asyncio.Event()
        self.conditions: dict[str, tuple[str, str]] = {}
        self._status_dirty = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._main: asyncio.Task[None] | None = None

    # ---------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self._main = asyncio.create_task(self._run(), name=f"pod {self.namespace}/{self.name}")
        self._tasks.append(asyncio.create_task(self._publish_status()))

    def update(self, pod: Obj) -> None:
        self.pod = pod
        if pod["metadata"].get("deletionTimestamp") and not self.terminating:
            self.terminating = True
            spawn(self.terminate(delete=True))

    async def terminate(self, *, delete: bool) -> None:
        """Not ready -> drain -> SIGTERM -> SIGKILL after the grace -> delete the pod object."""
        self.terminating = True
        for run in self.init_runs + self.runs:
            run.ready = False
        if delete:
            try:
                await self._patch_status()  # the endpoint controllers drop the pod first
            except Exception as error:
                log.warning("not-ready status of %s/%s: %s", self.namespace, self.name, error)
            await asyncio.sleep(self.node.drain_seconds)
        if self._main:
            self._main.cancel()
        for task in self._tasks[1:]:
            task.cancel()
        grace = float(self.pod["spec"].get("terminationGracePeriodSeconds", 30))
        grace = min(grace, self.node.max_grace_seconds)
        runs = self.init_runs + self.runs
        await asyncio.gather(*(self._stop_process(run, grace) for run in runs))
        self._tasks[0].cancel()
        if delete:
            await self.node.api.delete(
                f"/api/v1/namespaces/{self.namespace}/pods/{self.name}",
                {"gracePeriodSeconds": 0, "preconditions": {"uid": self.uid}},
            )
        if self.pod_ip:
            self.node.release_ip(self.pod_ip)
        self.finished.set()
        self.node.pod_changed(self)

    async def _run(self) -> None:
        try:
            self.pod_ip = self.node.allocate_ip(self.ports)
            self.directory.mkdir(parents=True, exist_ok=True)
            await self.volumes.prepare()
            self._touch()
            for run in self.init_runs:
                if not await self._run_to_completion(run):
                    self._touch()
                    return
            self.initialized = True
            for run in self.runs:
                run.state = {"waiting": {"reason": "ContainerCreating"}}
                self._tasks.append(asyncio.create_task(self._supervise(run)))
                self._tasks.append(asyncio.create_task(self._probe(run)))
            self._touch()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.exception("pod %s/%s failed to start", self.namespace, self.name)
            for run in self.init_runs + self.runs:
                run.state = {"waiting": {"reason": "CreateContainerError", "message": str(error)}}
            self._touch()

    def refresh_volumes(self) -> None:
        if not self.terminating and self.pod_ip:
            spawn(self.volumes.render_all())

    # ---------------------------------------------------------------------------- processes
    async def _run_to_completion(self, run: ContainerRun) -> bool:
        """An init container, retried with backoff until it succeeds (unless restartPolicy is
        Never)."""
        backoff = BACKOFF_INITIAL_SECONDS
        while True:
            exit_code = await self._run_once(run)
            if exit_code == 0:
                return True
            if self.restart_policy == "Never":
                return False
            await self._back_off(run, backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_SECONDS)

    async def _supervise(self, run: ContainerRun) -> None:
        backoff = BACKOFF_INITIAL_SECONDS
        while True:
            began = time.monotonic()
            exit_code = await self._run_once(run)
            restart = self.restart_policy == "Always" or (
                self.restart_policy == "OnFailure" and exit_code != 0
            )
            if not restart:
                return
            if time.monotonic() - began > BACKOFF_RESET_SECONDS:
                backoff = BACKOFF_INITIAL_SECONDS
            await self._back_off(run, backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_SECONDS)

    async def _back_off(self, run: ContainerRun, seconds: float) -> None:
        run.last_state = run.state
        run.state = {"waiting": {"reason": "CrashLoopBackOff",
                                 "message": f"back-off {seconds:.0f}s restarting {run.name}"}}
        self._touch()
        await asyncio.sleep(seconds)
        run.restart_count += 1

    async def _run_once(self, run: ContainerRun) -> int:
        termination_log = self._termination_log(run)
        log_path = self.directory / f"{run.name}.log"
        try:
            command, env = await self._command_and_env(run)
        except (LookupError, ValueError) as error:
            run.state = {"terminated": {"exitCode": 128, "reason": "StartError",
                                        "message": str(error), "startedAt": now(),
                                        "finishedAt": now()}}
            self._touch()
            return 128
        termination_log.write_text("")
        with log_path.open("ab") as log_file:
            log_file.write(f"--- {now()} starting {' '.join(command)}\n".encode())
            log_offset = log_file.tell()
            run.process = await asyncio.create_subprocess_exec(
                *command, env=env, cwd=self.directory, stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
            )
        started_at = now()
        run.state = {"running": {"startedAt": started_at}}
        run.probe_failures = 0
        self._touch()
        try:
            code = await run.process.wait()
        finally:
            run.ready = False
        exit_code = 128 - code if code < 0 else code  # killed by signal N -> 128 + N
        message = termination_log.read_text(errors="replace")[:MESSAGE_LIMIT_BYTES].strip()
        if not message and exit_code != 0 and run.spec.get(
            "terminationMessagePolicy") == "FallbackToLogsOnError":
            with log_path.open("rb") as log_file:
                log_file.seek(log_offset)
                tail = log_file.read()[-2048:].decode(errors="replace")
            message = "\n".join(tail.splitlines()[-80:])
        terminated: dict[str, Any] = {
            "exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error",
            "startedAt": started_at, "finishedAt": now(),
        }
        if message:
            terminated["message"] = message
        run.state = {"terminated": terminated}
        self._touch()
        return exit_code

    async def _stop_process(self, run: ContainerRun, grace: float) -> None:
        process = run.process
        if process is None:
            return
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), wait)
                break
        # Children the program left behind in its group go too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    def process_groups(self) -> list[int]:
        return [r.process.pid for r in self.init_runs + self.runs
                if r.process and r.process.returncode is None]

    # ---------------------------------------------------------------------------- rewriting
    def _termination_log(self, run: ContainerRun) -> Path:
        return self.directory / f"{run.name}.termination-log"

    def _mounts(self, run: ContainerRun) -> list[tuple[str, Path]]:
        mounts = [
            (m["mountPath"], self.volumes.local_path(m["name"], m.get("subPath", "")))
            for m in run.spec.get("volumeMounts") or []
        ]
        path = run.spec.get("terminationMessagePath", DEFAULT_TERMINATION_LOG)
        return [*mounts, (path, self._termination_log(run))]

    def rewrite(self, value: str, mounts: list[tuple[str, Path]] | None = None) -> str:
        """What a path or address inside the pod is on this machine."""
        if mounts:
            value = rewrite_mount_path(value, mounts)
        value = rewrite_service_hosts(value, self.node.resolve_service)
        return rewrite_pod_local_addresses(value, self.pod_ip, self.ports)

    async def _command_and_env(self, run: ContainerRun) -> tuple[list[str], dict[str, str]]:
        spec = run.spec
        bin_dir = Path(sys.executable).parent
        env = {
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": os.environ.get("HOME", str(self.directory)),
            "HOSTNAME": self.name,
        }
        mounts = self._mounts(run)
        if any(m == "/tmp" for m, _ in mounts):
            env["TMPDIR"] = str(dict(mounts)["/tmp"])
        for source in spec.get("envFrom") or []:
            prefix = source.get("prefix", "")
            for key, source_value in (await self._env_source(source)).items():
                env[prefix + key] = source_value
        for variable in spec.get("env") or []:
            if "valueFrom" in variable:
                value = await self._value_from(variable["valueFrom"])
                if value is None:
                    continue
            else:
                value = expand_references(str(variable.get("value", "")), env)
            env[variable["name"]] = value
        env = {k: self.rewrite(v, mounts) for k, v in env.items()}
        env["MODELOPS_HOST"] = self.pod_ip  # our programs listen on the pod's own address
        command = resolve_executable(spec, bin_dir)
        command = [command[0]] + [self.rewrite(expand_references(a, env), mounts)
                                  for a in command[1:]]
        return command, env

    async def _env_source(self, source: dict[str, Any]) -> dict[str, str]:
        for kind, field_name in (("configmaps", "configMapRef"), ("secrets", "secretRef")):
            if field_name in source:
                reference = source[field_name]
                obj = await self.node.lookup(kind, self.namespace, reference["name"])
                if obj is None:
                    if reference.get("optional"):
                        return {}
                    raise ValueError(f"{kind[:-1]} {reference['name']!r} not found")
                return VolumeSet.decoded_data(kind, obj)
        return {}

    async def _value_from(self, source: dict[str, Any]) -> str | None:
        for kind, field_name in (("configmaps", "configMapKeyRef"), ("secrets", "secretKeyRef")):
            if field_name in source:
                reference = source[field_name]
                obj = await self.node.lookup(kind, self.namespace, reference["name"])
                data = VolumeSet.decoded_data(kind, obj) if obj else {}
                if reference["key"] not in data:
                    if reference.get("optional"):
                        return None
                    raise ValueError(f"{field_name} {reference['name']}/{reference['key']} missing")
                return data[reference["key"]]
        field_path = source.get("fieldRef", {}).get("fieldPath", "")
        known = {
            "metadata.name": self.name, "metadata.namespace": self.namespace,
            "metadata.uid": self.uid, "spec.nodeName": self.node.node_name,
            "status.podIP": self.pod_ip, "status.hostIP": self.node.host_ip,
        }
        return known.get(field_path)

    # ---------------------------------------------------------------------------- probes
    async def _probe(self, run: ContainerRun) -> None:
        probe = run.spec.get("readinessProbe") or {}
        period = min(float(probe.get("periodSeconds", 10)), 1.0)
        failure_threshold = int(probe.get("failureThreshold", 3))
        async with httpx.AsyncClient(timeout=float(probe.get("timeoutSeconds", 1))) as client:
            while True:
                if run.running:
                    try:
                        ok = await probe_once(client, run, probe, self.pod_ip)
                    except ValueError as error:  # a probe port the container does not declare
                        log.warning("%s/%s %s: %s", self.namespace, self.name, run.name, error)
                        ok = False
                    run.probe_failures = 0 if ok else run.probe_failures + 1
                    ready = ok or (run.ready and run.probe_failures < failure_threshold)
                    if ready != run.ready and run.running and not self.terminating:
                        run.ready = ready
                        self._touch()
                await asyncio.sleep(period)

    # ---------------------------------------------------------------------------- status
    def _touch(self) -> None:
        self._status_dirty.set()
        self.node.pod_changed(self)

    def phase(self) -> str:
        runs = self.runs
        if not self.initialized:
            failed_init = self.restart_policy == "Never" and any(
                "terminated" in r.state and not r.succeeded for r in self.init_runs)
            return "Failed" if failed_init else "Pending"
        if any(r.running or "waiting" in r.state for r in runs):
            return "Running" if any(r.running or r.restart_count for r in runs) else "Pending"
        return "Succeeded" if all(r.succeeded for r in runs) else "Failed"

    def metrics_addresses(self) -> list[tuple[str, str]]:
        """(container, "ip:port") of every port named `metrics`, while the pod runs."""
        if self.terminating or not self.pod_ip or self.phase() != "Running":
            return []
        return [
            (r.name, f"{self.pod_ip}:{p['containerPort']}")
            for r in self.runs for p in r.spec.get("ports") or [] if p.get("name") == "metrics"
        ]

    def status(self) -> dict[str, Any]:
        containers_ready = all(r.ready for r in self.runs) and not self.terminating
        wanted = {
            "PodScheduled": True,
            "Initialized": self.initialized,
            "ContainersReady": containers_ready,
            "Ready": containers_ready,
        }
        conditions = []
        for kind, value in wanted.items():
            text = "True" if value else "False"
            if self.conditions.get(kind, ("", ""))[0] != text:
                self.conditions[kind] = (text, now())
            conditions.append({"type": kind, "status": text,
                               "lastTransitionTime": self.conditions[kind][1]})
        status: dict[str, Any] = {
            "phase": self.phase(),
            "conditions": conditions,
            "hostIP": self.node.host_ip,
            "hostIPs": [{"ip": self.node.host_ip}],
            "startTime": self.start_time,
            "initContainerStatuses": [r.status() for r in self.init_runs],
            "containerStatuses": [r.status() for r in self.runs],
        }
        if self.pod_ip:
            api_address = self.node.addresses.to_api(self.pod_ip)
            status["podIP"] = api_address
            status["podIPs"] = [{"ip": api_address}]
        return status

    async def _patch_status(self) -> None:
        await self.node.api.merge_patch(
            f"/api/v1/namespaces/{self.namespace}/pods/{self.name}/status",
            {"metadata": {"uid": self.uid}, "status": self.status()},
        )

    async def _publish_status(self) -> None:
        """Coalesce changes into one status patch at a time."""
        published: dict[str, Any] | None = None
        while True:
            await self._status_dirty.wait()
            self._status_dirty.clear()
            status = self.status()
            if status != published:
                try:
                    await self._patch_status()
                    published = status
                except Exception as error:
                    log.warning("status of %s/%s: %s", self.namespace, self.name, error)
                    await asyncio.sleep(1)
                    self._status_dirty.set()
            await asyncio.sleep(0.05)


ChangeCallback = Callable[[PodRunner], None]
