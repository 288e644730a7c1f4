"""Which replica answered: the header the sidecar writes, what the router takes from it."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import pytest

from modelops_serving.feedback_store import BoundedTTLMap
from modelops_serving.requestids import replace_request_id, with_request_id
from modelops_serving.servedby import (
    ReplicaPools,
    replica_address,
    served_by_line,
    take_served_by,
    take_served_by_line,
)
from modelops_serving.upstream import UpstreamPool, UpstreamUnreachable, failure_name


@pytest.mark.parametrize(("value", "expected"), [
    (b"10.244.1.7:8000", "10.244.1.7:8000"),
    (b" 127.0.0.3:1\t", "127.0.0.3:1"),  # optional whitespace around a field's value
    (b"10.244.1.7:65535", "10.244.1.7:65535"),
    (b"[fd00::7]:8000", "[fd00::7]:8000"),
    (b"[::1]:8000", "[::1]:8000"),
    (b"10.244.1.7:0", None),
    (b"10.244.1.7:65536", None),
    (b"10.244.1.7:08000", None),
    (b"10.244.1.7", None),
    (b"10.244.1.7:", None),
    (b"fraud-champion:8000", None),
    (b"fraud-champion.models.svc:8000", None),
    (b"http://10.244.1.7:8000", None),
    (b"10.244.1.7:8000/v2/feedback", None),
    (b"user@10.244.1.7:8000", None),
    (b"10.244.1.7:8000, 10.244.1.8:8000", None),
    (b"010.244.1.7:8000", None),
    (b"256.1.1.1:8000", None),
    (b"[10.244.1.7]:8000", None),
    (b"fd00::7:8000", None),
    (b"[fe80::1%eth0]:8000", None),
    (b"0.0.0.0:8000", None),
    (b"[::]:8000", None),
    (b"224.0.0.1:8000", None),
    (b"\xd9\xa1.2.3.4:8000", None),  # a non-ASCII digit
    (b"", None),
    (None, None),
])
def test_only_an_ip_literal_and_a_port_name_a_replica(value: bytes | None,
                                                      expected: str | None) -> None:
    assert replica_address(value) == expected


@pytest.mark.parametrize(("sockname", "line"), [
    (("10.244.1.7", 8000), b"\r\nX-Modelops-Served-By: 10.244.1.7:8000"),
    (("fd00::7", 8000, 0, 0), b"\r\nX-Modelops-Served-By: [fd00::7]:8000"),
    # A dual-stack socket that took an IPv4 connection names the IPv4 address.
    (("::ffff:10.244.1.7", 8000, 0, 0), b"\r\nX-Modelops-Served-By: 10.244.1.7:8000"),
    (("fe80::1%eth0", 8000, 0, 2), b""),  # a zone the router would not take
    ("/run/sidecar.sock", b""),
    (None, b""),
])
def test_the_sidecar_names_the_address_a_connection_came_in_on(sockname: object,
                                                               line: bytes) -> None:
    assert served_by_line(sockname) == line


def test_the_router_takes_exactly_one_value_out_of_an_answer() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Request-Id: a"
    assert take_served_by(head + b"\r\nX-Modelops-Served-By: 10.0.0.1:8000") == (
        head, b"10.0.0.1:8000")
    assert take_served_by(head) == (head, None)
    assert take_served_by(b"HTTP/1.1 200 OK\r\nx-modelops-served-by:\t10.0.0.1:8000 \r\n"
                          b"Content-Length: 2") == (b"HTTP/1.1 200 OK\r\nContent-Length: 2",
                                                    b"10.0.0.1:8000 ")
    # Two are ambiguous: both are dropped and neither is followed.
    assert take_served_by(b"HTTP/1.1 200 OK\r\nX-Modelops-Served-By: 10.0.0.1:8000\r\n"
                          b"Content-Length: 2\r\nX-Modelops-Served-By: 10.0.0.2:8000") == (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2", None)
    lines = [b"Content-Length: 2", b"X-Request-Id: a"]
    assert take_served_by_line([*lines, b"X-Modelops-Served-By: 10.0.0.1:8000"]) == (
        lines, b" 10.0.0.1:8000")
    assert take_served_by_line(lines) == (lines, None)
    assert take_served_by_line([b"x-modelops-served-by: 10.0.0.1:8000", *lines,
                                b"X-Modelops-Served-By: 10.0.0.1:8000"]) == (lines, None)


def test_the_sidecar_writes_its_own_served_by_in_place_of_the_model_servers() -> None:
    ours = b"\r\nX-Modelops-Served-By: 10.0.0.1:8000"
    head = b"HTTP/1.1 200 OK\r\nX-Modelops-Served-By: 192.0.2.1:9\r\nContent-Length: 2"
    assert replace_request_id(head, "id-1", ours) == (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Request-Id: id-1" + ours)
    lines = [b"x-modelops-served-by: 192.0.2.1:9", b"Content-Length: 2"]
    assert with_request_id(lines, "id-1", ours) == [
        b"Content-Length: 2", b"X-Request-Id: id-1", b"X-Modelops-Served-By: 10.0.0.1:8000"]
    assert with_request_id(lines, "id-1") == [b"Content-Length: 2", b"X-Request-Id: id-1"]


def test_replacing_a_remembered_value_keeps_its_expiry() -> None:
    now = [0.0]
    memory: BoundedTTLMap[str, str] = BoundedTTLMap(10, 5.0, clock=lambda: now[0])
    memory.put("a", "first")
    now[0] = 4.0
    assert memory.replace("a", "second") and memory.get("a") == "second"
    now[0] = 5.0
    assert memory.get("a") is None and not memory.replace("a", "third")
    assert len(memory) == 0


def test_replica_pools_keep_the_recently_used_ones() -> None:
    pools = ReplicaPools(limit=2)
    first = pools.pool("10.0.0.1:8000")
    second = pools.pool("10.0.0.2:8000")
    assert pools.pool("10.0.0.1:8000") is first  # now the most recently used
    pools.pool("10.0.0.3:8000")
    assert len(pools) == 2
    assert pools.pool("10.0.0.1:8000") is first
    assert pools.pool("10.0.0.2:8000") is not second  # it was dropped, and closed
    assert first.connect_timeout == pools.connect_timeout


async def test_a_failed_connect_says_the_request_was_never_sent() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(UpstreamUnreachable) as refused:
        await UpstreamPool(f"http://127.0.0.1:{port}").request("POST", "/v2/feedback", {}, b"{}")
    assert failure_name(refused.value) == "ConnectionRefusedError"
    # A listener whose accept queue is full drops the handshake: the connect timeout ends it.
    with socket.create_server(("127.0.0.1", 0), backlog=0) as full:
        waiting = []
        for _ in range(3):
            sock = socket.socket()
            sock.setblocking(False)
            waiting.append(sock)
            with contextlib.suppress(BlockingIOError):
                sock.connect(full.getsockname())
        await asyncio.sleep(0.1)
        pool = UpstreamPool(f"http://127.0.0.1:{full.getsockname()[1]}", connect_timeout=0.3)
        with pytest.raises(UpstreamUnreachable) as timed_out:
            await pool.request("POST", "/v2/feedback", {}, b"{}")
        assert failure_name(timed_out.value) == "connect timeout"
        for sock in waiting:
            sock.close()
