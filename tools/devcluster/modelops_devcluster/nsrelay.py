"""A TCP relay between the host's network namespace and the node's, with no shared interface.

The node's namespace has no link to the host (nothing is added to the host's interfaces), so
the parts that must cross are relayed by this process, which holds a socket in each namespace:

- `--forward node:ADDR:PORT=host:ADDR:PORT`: pods, the kubelet and kube-proxy reach the API
  server (on the host's 127.0.0.1) at the node's address;
- `--connect-proxy PATH`: an HTTP CONNECT proxy on a unix socket, dialling inside the node.
  The API server's egress selector sends its connections to kubelets and pods through it
  (`kubectl logs`, `exec`, `port-forward`), as konnectivity does in managed clusters;
- `--forward host:127.0.0.1:0=node:ADDR:PORT`: a port on the host for a Service or a pod
  (tests and the demo's load generator reach Prometheus or a NodePort this way).

A socket belongs to the namespace it was created in; setns(2) switches the thread only while
one is created. On start it prints one JSON line naming the host ports it listens on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

CLONE_NEWNET = 0x40000000
MAX_CONNECTIONS = 1024
CONNECT_HEAD_LIMIT = 8192
HEAD_TIMEOUT = 10.0
DIAL_TIMEOUT = 10.0
CHUNK = 65536

_libc = ctypes.CDLL(None, use_errno=True)


class Namespaces:
    def __init__(self, node_netns: str) -> None:
        self.fds = {
            "host": os.open("/proc/self/ns/net", os.O_RDONLY),
            "node": os.open(node_netns, os.O_RDONLY),
        }

    @contextlib.contextmanager
    def entered(self, name: str) -> Iterator[None]:
        self._setns(self.fds[name])
        try:
            yield
        finally:
            self._setns(self.fds["host"])

    @staticmethod
    def _setns(fd: int) -> None:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns: {os.strerror(err)}")

    def socket(self, name: str) -> socket.socket:
        with self.entered(name):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        return sock


@dataclass(frozen=True)
class Endpoint:
    namespace: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        namespace, host, port = text.split(":")
        if namespace not in ("host", "node"):
            raise ValueError(f"{text}: the namespace must be host or node")
        return cls(namespace, host, int(port))


class Relay:
    def __init__(self, namespaces: Namespaces) -> None:
        self.ns = namespaces
        self.slots = asyncio.Semaphore(MAX_CONNECTIONS)

    async def dial(self, namespace: str, host: str, port: int) -> tuple[
        asyncio.StreamReader, asyncio.StreamWriter
    ]:
        sock = self.ns.socket(namespace)
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (host, port)), DIAL_TIMEOUT)
        except BaseException:
            sock.close()
            raise
        return await asyncio.open_connection(sock=sock)

    async def listen_tcp(self, local: Endpoint, target: Endpoint) -> int:
        sock = self.ns.socket(local.namespace)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((local.host, local.port))

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            async with self._slot(writer) as admitted:
                if not admitted:
                    return
                try:
                    up_reader, up_writer = await self.dial(target.namespace, target.host,
                                                           target.port)
                except (OSError, TimeoutError):
                    writer.close()
                    return
                await _splice(reader, writer, up_reader, up_writer)

        await asyncio.start_server(serve, sock=sock, backlog=512)
        return int(sock.getsockname()[1])

    async def listen_connect_proxy(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            async with self._slot(writer) as admitted:
                if not admitted:
                    return
                target = await _read_connect(reader, writer)
                if target is None:
                    return
                try:
                    up_reader, up_writer = await self.dial("node", *target)
                except (OSError, TimeoutError) as error:
                    writer.write(f"HTTP/1.1 502 Bad Gateway\r\n\r\n{error}".encode())
                    writer.close()
                    return
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await _splice(reader, writer, up_reader, up_writer)

        await asyncio.start_unix_server(serve, path=path, limit=CONNECT_HEAD_LIMIT)
        os.chmod(path, 0o600)

    @contextlib.asynccontextmanager
    async def _slot(self, writer: asyncio.StreamWriter) -> AsyncIterator[bool]:
        """Admits the connection (True) or, at the cap, closes it (False): a refusal, not an
        unbounded queue."""
        if self.slots.locked():
            writer.close()
            yield False
            return
        async with self.slots:
            yield True


async def _read_connect(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> tuple[str, int] | None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
        method, authority, _ = head.split(b"\r\n", 1)[0].decode("ascii").split(" ", 2)
        host, port = authority.rsplit(":", 1)
        if method != "CONNECT":
            raise ValueError(method)
        return host.strip("[]"), int(port)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
            UnicodeDecodeError, ValueError):
        writer.write(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
        writer.close()
        return None


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(CHUNK):
            writer.write(chunk)
            await writer.drain()  # backpressure: a slow reader slows its writer
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


async def _splice(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter,
) -> None:
    try:
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
    finally:
        for w in (writer, up_writer):
            w.close()


async def run(args: argparse.Namespace) -> None:
    relay = Relay(Namespaces(args.netns))
    ports: dict[str, int] = {}
    for rule in args.forward:
        local, target = (Endpoint.parse(side) for side in rule.split("="))
        ports[rule] = await relay.listen_tcp(local, target)
    if args.connect_proxy:
        await relay.listen_connect_proxy(args.connect_proxy)
    print(json.dumps({"ports": ports}), flush=True)
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nsrelay", description=__doc__)
    parser.add_argument("--netns", required=True, help="the node's netns file (/proc/PID/ns/net)")
    parser.add_argument("--forward", action="append", default=[],
                        help="NS:ADDR:PORT=NS:ADDR:PORT with NS host or node")
    parser.add_argument("--connect-proxy", help="unix socket of the CONNECT proxy into the node")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
