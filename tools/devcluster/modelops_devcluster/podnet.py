"""What a pod network, kube-proxy and CoreDNS would do, emulated on loopback (pure functions).

Each pod gets its own address in 127.1.0.0/16 (Linux routes all of 127/8 to `lo`), so pods can
all listen on 8000 and 9090. The API cannot show that address: EndpointSlice validation refuses
loopback addresses, so the endpoint controllers could not publish the pod. A pod's status.podIP
is therefore its local address mirrored into 10.245.0.0/16 (same host bits: 127.1.2.3 is
10.245.2.3), and everything that reads addresses from the API translates them back
(`PodAddressMap`). Addresses a program inside a pod would reach through the pod's
network namespace or the cluster DNS are rewritten into loopback addresses before it starts:

- `127.0.0.1:<p>` / `localhost:<p>`, where <p> is a port the pod declares -> `<podIP>:<p>`;
- `<svc>.<ns>.svc[.cluster.local][:<port>]` -> `<ready endpoint IP>:<targetPort>`;
- a path under a volume's mountPath -> the volume's directory on this machine.
"""

from __future__ import annotations

import ipaddress
import random
import re
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

DEFAULT_POD_CIDR = "127.1.0.0/16"  # where pods listen on this machine
DEFAULT_API_POD_CIDR = "10.245.0.0/16"  # what the API shows (next to kwok's 10.244.0.0/16)
# Nothing listens on port 1: a Service without ready endpoints refuses connections, as
# kube-proxy's REJECT rule does.
UNRESOLVED_ADDRESS = "127.0.0.1:1"

_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
SERVICE_HOST = re.compile(
    rf"(?<![\w.-])(?P<service>{_LABEL})\.(?P<namespace>{_LABEL})\.svc(?:\.cluster\.local)?"
    r"(?::(?P<port>\d+))?(?![\w.-])"
)
POD_LOCAL_ADDRESS = re.compile(r"(?<![\w.-])(?:127\.0\.0\.1|localhost):(?P<port>\d+)(?!\d)")

# Resolves (namespace, service, port or None) to "ip:port".
ServiceResolver = Callable[[str, str, int | None], str]


class PodAddressMap:
    """Local loopback pod addresses <-> the addresses the API shows for them."""

    def __init__(self, local_cidr: str = DEFAULT_POD_CIDR,
                 api_cidr: str = DEFAULT_API_POD_CIDR) -> None:
        self.local = ipaddress.ip_network(local_cidr)
        self.api = ipaddress.ip_network(api_cidr)
        if not self.local.is_loopback:
            raise ValueError(f"{local_cidr} is not a loopback network")
        if self.local.prefixlen != self.api.prefixlen or self.api.is_loopback:
            raise ValueError(f"{api_cidr} must be a non-loopback network as large as {local_cidr}")

    @staticmethod
    def _move(address: str, source: Any, target: Any) -> str:
        ip = ipaddress.ip_address(address)
        if ip not in source:
            return address
        return str(target.network_address + (int(ip) - int(source.network_address)))

    def to_api(self, local_address: str) -> str:
        return self._move(local_address, self.local, self.api)

    def to_local(self, api_address: str) -> str:
        """The loopback address of a pod address from the API; other addresses unchanged."""
        return self._move(api_address, self.api, self.local)


class PodIpAllocator:
    """Hands out loopback addresses; an address is skipped while any of the pod's ports on it
    cannot be bound, so two kubelets on one machine (a demo and a test run) do not collide."""

    def __init__(self, cidr: str = DEFAULT_POD_CIDR) -> None:
        network = ipaddress.ip_network(cidr)
        if not network.is_loopback:
            raise ValueError(f"{cidr} is not a loopback network")
        self.hosts = [str(h) for h in network.hosts()][1:]  # .0.1 looks like a gateway
        self.next_index = random.randrange(len(self.hosts))
        self.in_use: set[str] = set()

    def allocate(self, ports: Iterable[int]) -> str:
        wanted = sorted(set(ports))
        for _ in range(len(self.hosts)):
            address = self.hosts[self.next_index]
            self.next_index = (self.next_index + 1) % len(self.hosts)
            if address not in self.in_use and all(_bindable(address, p) for p in wanted):
                self.in_use.add(address)
                return address
        raise RuntimeError("no free pod address left")

    def release(self, address: str) -> None:
        self.in_use.discard(address)


def _bindable(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError:
            return False
    return True


def rewrite_pod_local_addresses(text: str, pod_ip: str, pod_ports: Iterable[int]) -> str:
    ports = set(pod_ports)

    def replace(match: re.Match[str]) -> str:
        port = int(match["port"])
        return f"{pod_ip}:{port}" if port in ports else match[0]

    return POD_LOCAL_ADDRESS.sub(replace, text)


def rewrite_service_hosts(text: str, resolve: ServiceResolver) -> str:
    def replace(match: re.Match[str]) -> str:
        port = int(match["port"]) if match["port"] else None
        return resolve(match["namespace"], match["service"], port)

    return SERVICE_HOST.sub(replace, text)


def rewrite_mount_path(value: str, mounts: Sequence[tuple[str, Path]]) -> str:
    """`/models/x` -> `<volume dir>/x` when /models is a mountPath (also inside `file://`)."""
    scheme = "file://" if value.startswith("file://") else ""
    path = value[len(scheme):]
    for mount_path, local in sorted(mounts, key=lambda m: len(m[0]), reverse=True):
        root = mount_path.rstrip("/")
        if root and (path == root or path.startswith(root + "/")):
            return scheme + str(local) + path[len(root):]
    return value


def pick_service_address(
    service: Mapping[str, Any] | None,
    slices: Iterable[Mapping[str, Any]],
    port: int | None,
    created: Callable[[Mapping[str, Any]], str] = lambda endpoint: "",
    local_address: Callable[[str], str] = lambda address: address,
) -> str:
    """The newest ready, non-terminating endpoint of the Service's port, as "ip:targetPort".

    `created(endpoint)` orders endpoints (a pod's creationTimestamp); a rollout's new pod wins.
    `local_address` turns the API's address into the one to connect to (PodAddressMap.to_local).
    """
    if service is None:
        return UNRESOLVED_ADDRESS
    wanted = 80 if port is None else port
    port_name = next(
        (p.get("name") or "" for p in service.get("spec", {}).get("ports") or ()
         if p.get("port") == wanted),
        None,
    )
    if port_name is None:
        return UNRESOLVED_ADDRESS
    candidates: list[tuple[str, str, int]] = []
    for endpoint_slice in slices:
        if endpoint_slice.get("addressType", "IPv4") != "IPv4":
            continue
        target = next(
            (p.get("port") for p in endpoint_slice.get("ports") or ()
             if (p.get("name") or "") == port_name),
            None,
        )
        if target is None:
            continue
        for endpoint in endpoint_slice.get("endpoints") or ():
            conditions = endpoint.get("conditions") or {}
            if conditions.get("ready") is False or conditions.get("terminating") is True:
                continue
            for address in endpoint.get("addresses") or ():
                candidates.append((created(endpoint), address, int(target)))
    if not candidates:
        return UNRESOLVED_ADDRESS
    _, address, target = max(candidates)
    return f"{local_address(address)}:{target}"
