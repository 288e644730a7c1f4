"""A container of the local kubelet: its run state, its command line, its readiness probe.

Containers are local programs (images are ignored): the container's `command`, else the entry
point its name implies, found in this virtualenv's bin directory first.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ENTRYPOINTS = {
    "model": "modelops-serve",
    "router": "modelops-router",
    "model-fetch": "modelops-fetch",
    "metrics-sidecar": "modelops-sidecar",
}
DEFAULT_TERMINATION_LOG = "/dev/termination-log"
BACKOFF_INITIAL_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 10.0
# A container that ran this long before exiting restarts without the accumulated backoff.
BACKOFF_RESET_SECONDS = 20.0
MESSAGE_LIMIT_BYTES = 4096
ENV_REFERENCE = re.compile(r"\$\((\w+)\)")
def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class ContainerRun:
    spec: dict[str, Any]
    init: bool
    process: asyncio.subprocess.Process | None = None
    state: dict[str, Any] = field(
        default_factory=lambda: {"waiting": {"reason": "PodInitializing"}}
    )
    last_state: dict[str, Any] = field(default_factory=dict)
    restart_count: int = 0
    ready: bool = False
    probe_failures: int = 0

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    @property
    def running(self) -> bool:
        return "running" in self.state

    @property
    def succeeded(self) -> bool:
        return self.state.get("terminated", {}).get("exitCode") == 0

    def status(self) -> dict[str, Any]:
        started = self.running
        return {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": "",
            "containerID": f"local://{self.process.pid}" if self.process else "",
            "ready": self.ready,
            "started": started,
            "restartCount": self.restart_count,
            "state": self.state,
            "lastState": self.last_state,
        }


def resolve_executable(container: dict[str, Any], bin_dir: Path) -> list[str]:
    """The command line of a container: its command (or its name's entry point) plus args."""
    command = list(container.get("command") or [])
    if not command:
        entrypoint = ENTRYPOINTS.get(container["name"])
        if entrypoint is None:
            raise LookupError(
                f"no local program for container {container['name']!r} (image "
                f"{container.get('image')!r}); set its command"
            )
        command = [entrypoint]
    program = command[0]
    candidates = [bin_dir / Path(program).name]
    if os.path.isabs(program):
        candidates.insert(0, Path(program))
    found = next((str(c) for c in candidates if c.is_file() and os.access(c, os.X_OK)), None)
    found = found or shutil.which(program)
    if found is None:
        raise LookupError(f"program {program!r} not found in {bin_dir} or PATH")
    return [found, *command[1:], *(container.get("args") or [])]


def expand_references(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in env values, command and args."""
    return ENV_REFERENCE.sub(lambda m: env.get(m[1], m[0]), value)


async def probe_once(client: httpx.AsyncClient, run: ContainerRun, probe: dict[str, Any],
                     pod_ip: str) -> bool:
    """One readinessProbe check (httpGet or tcpSocket) against the pod's address."""
    if "httpGet" in probe:
        action = probe["httpGet"]
        host = action.get("host") or pod_ip
        port = probe_port(run, action.get("port"))
        url = f"{action.get('scheme', 'HTTP').lower()}://{host}:{port}{action.get('path', '/')}"
        try:
            response = await client.get(url)
        except httpx.HTTPError:
            return False
        return 200 <= response.status_code < 400
    if "tcpSocket" in probe:
        port = probe_port(run, probe["tcpSocket"].get("port"))
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(pod_ip, port), 1)
        except (TimeoutError, OSError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
    return True  # no probe (or exec, not emulated): ready once running


def probe_port(run: ContainerRun, port: Any) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for declared in run.spec.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise ValueError(f"probe port {port!r} is not a port of {run.name}")
