"""Which replica answered: the sidecar names it, the router sends that request's feedback there.

Behind a Service, feedback sent to the Service's URL reaches any replica, but only the replica
that answered remembers the prediction. So the sidecar adds ``X-Modelops-Served-By: <ip>:<port>``
to the inference answers it forwards: the local address of the connection it accepted, which in a
pod is the pod IP and the sidecar's traffic port (nothing to configure). The router remembers the
value with the request id and strips it from the answer. The router will connect to this address,
so it takes nothing but an IP literal and a port: no host name, path or user part.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import Any

from .upstream import UpstreamPool

FIELD_NAME = b"X-Modelops-Served-By"
_LINE_PREFIX = FIELD_NAME.lower() + b":"  # to find it among raw "Name: value" lines
# The field in a head whose lines are "\r\nName: value", its value as the one group.
_FIELD = re.compile(rb"\r\nx-modelops-served-by[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE)
_ADDRESS = re.compile(rb"(\d{1,3}(?:\.\d{1,3}){3}|\[[0-9A-Fa-f:.]{2,45}\]):([1-9][0-9]{0,4})")


@functools.lru_cache(maxsize=1024)  # a router sees a few replicas; checking one takes ~10 µs
def replica_address(value: bytes | None) -> str | None:
    """``value`` (``ip:port``, ``[ipv6]:port``) when it names one unicast or loopback address
    and a port 1-65535 exactly; None for anything else."""
    if value is None:
        return None
    value = value.strip(b" \t")
    match = _ADDRESS.fullmatch(value)
    if match is None or int(match[2]) > 65535:
        return None
    host = match[1]
    bracketed = host.startswith(b"[")
    try:
        address = ipaddress.ip_address(host.strip(b"[]").decode("ascii"))
    except ValueError:
        return None
    if bracketed != (address.version == 6) or address.is_unspecified or address.is_multicast:
        return None
    return value.decode("ascii")


def served_by_line(sockname: Any) -> bytes:
    """``b"\\r\\nX-Modelops-Served-By: <ip>:<port>"`` for a connection accepted on ``sockname``
    (``transport.get_extra_info("sockname")``), to splice after a head's last line; b"" when
    that is not an IP address (a Unix socket) or not one the router would take."""
    if not isinstance(sockname, tuple) or len(sockname) < 2:
        return b""
    try:
        address = ipaddress.ip_address(sockname[0])
    except ValueError:
        return b""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # a dual-stack socket took an IPv4 connection
    host = f"[{address}]" if address.version == 6 else str(address)
    value = f"{host}:{sockname[1]}".encode("ascii")
    return b"\r\n%s: %s" % (FIELD_NAME, value) if replica_address(value) else b""


def without_served_by(lines: list[bytes]) -> list[bytes]:
    """Raw header lines (``Name: value``) without any X-Modelops-Served-By."""
    return [line for line in lines if line[:21].lower() != _LINE_PREFIX]


def take_served_by_line(lines: list[bytes]) -> tuple[list[bytes], bytes | None]:
    """Raw header lines without X-Modelops-Served-By, and its value when there was exactly
    one (more than one is ambiguous: none is taken)."""
    values = [line[21:] for line in lines if line[:21].lower() == _LINE_PREFIX]
    if not values:
        return lines, None
    return without_served_by(lines), values[0] if len(values) == 1 else None


def take_served_by(head: bytes) -> tuple[bytes, bytes | None]:
    """The same for a response head (status line, then ``"\\r\\nName: value"`` lines)."""
    parts = _FIELD.split(head)
    if len(parts) == 1:
        return head, None
    return b"".join(parts[::2]), parts[1] if len(parts) == 3 else None


class ReplicaPools:
    """The router's keep-alive pools to the replicas that answered, by ``ip:port``; beyond
    ``limit`` the least recently used is closed (pods come and go while a challenge runs).
    A replica that takes longer than ``connect_timeout`` to accept is taken for gone."""

    def __init__(self, limit: int = 64, connect_timeout: float = 2.0):
        self.limit = limit
        self.connect_timeout = connect_timeout
        self._pools: dict[str, UpstreamPool] = {}  # least recently used first

    def __len__(self) -> int:
        return len(self._pools)

    def pool(self, address: str) -> UpstreamPool:
        pool = self._pools.pop(address, None)
        if pool is None:
            pool = UpstreamPool(f"http://{address}", connect_timeout=self.connect_timeout)
            if len(self._pools) >= self.limit:
                self._pools.pop(next(iter(self._pools))).close()
        self._pools[address] = pool
        return pool

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
