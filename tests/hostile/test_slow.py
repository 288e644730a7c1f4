"""Slow clients, all at once against nginx, the sidecar and the router for one window of
WINDOW seconds (so the suite waits once): slowloris, a request head that grows slowly, a body
trickled a byte a second, a body that stalls. Meanwhile each proxy's health endpoint is asked
every second. Then a pipelining client that never reads its answers, against a proxy in front
of an upstream whose answers are 1 MiB each."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.hostile.cases import INFER, TARGETS
from tests.hostile.conftest import (
    HEALTH_BOUND,
    DataPlane,
    Fresh,
    Nginx,
    Proxy,
    Table,
)
from tests.hostile.rawhttp import HOST, MemoryWatch, MiB, Outcome, converse
from tests.serving.serving_helpers import ScriptedUpstream, free_port, plain_answer

pytestmark = pytest.mark.hostile

WINDOW = 15.0  # seconds the slow clients go on
HEADER_TIMEOUT_BOUND = 10.0  # a partial head or a stalled body is closed within this
SLOWLORIS_CONNECTIONS = 10
HEAD = f"POST {INFER} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()


def trickle(first: bytes, piece: bytes, until: float) -> Iterator[bytes]:
    yield first
    while time.monotonic() < until:
        yield piece


ATTACKS = {
    # name: (connections, first bytes, then each interval, interval seconds or None: silence)
    "slowloris (a header line a second)": (SLOWLORIS_CONNECTIONS, HEAD, b"X-S: 1\r\n", 1.0),
    "request head growing 640 KiB/s": (1, HEAD, b"X-G: " + b"g" * 65_529 + b"\r\n", 0.1),
    "body trickled a byte a second": (5, HEAD + b"Content-Length: 100000\r\n\r\n", b"x", 1.0),
    "body stalled after 10 bytes": (5, HEAD + b"Content-Length: 1000\r\n\r\n" + b"x" * 10, b"",
                                    None),
}


@dataclass
class Window:
    outcomes: dict[tuple[str, str], list[Outcome]] = field(default_factory=dict)
    worst_health: dict[str, float] = field(default_factory=dict)  # inf: a check failed
    memory: dict[str, MemoryWatch] = field(default_factory=dict)


def attack(port: int, name: str, until: float) -> Outcome:
    _count, first, piece, interval = ATTACKS[name]
    if interval is None:
        return converse(port, [first], wait=until - time.monotonic())
    return converse(port, trickle(first, piece, until), interval=interval, wait=0.5)


@pytest.fixture(scope="module")
def window(data_plane: DataPlane, table: Table) -> Window:
    proxies = {name: data_plane.target(name) for name in ("nginx", *TARGETS)}
    result = Window()
    until = time.monotonic() + WINDOW
    threads = []
    for target, proxy in proxies.items():
        for name, (count, *_rest) in ATTACKS.items():
            slots: list[Outcome] = []
            result.outcomes[(name, target)] = slots

            def run(port: int = proxy.port, name: str = name, slots: list[Outcome] = slots
                    ) -> None:
                slots.append(attack(port, name, until))

            threads += [threading.Thread(target=run, daemon=True) for _ in range(count)]
        result.memory[target] = proxy.memory().__enter__()
        result.worst_health[target] = 0.0
    for thread in threads:
        thread.start()
    while time.monotonic() < until:
        for target, proxy in proxies.items():
            seconds = proxy.health()
            result.worst_health[target] = max(result.worst_health[target],
                                              seconds if seconds is not None else float("inf"))
        time.sleep(1.0)
    for thread in threads:
        thread.join(WINDOW + 10)
    for target in proxies:
        result.memory[target].__exit__()
    for (name, target), outcomes in result.outcomes.items():
        closed = [o for o in outcomes if o.closed or o.answers]
        text = f"{len(closed)}/{len(outcomes)} closed"
        if closed:
            text += f" by {max(o.elapsed for o in closed):.0f}s"
            statuses = sorted({o.status for o in closed if o.status})
            text += f" ({','.join(map(str, statuses))})" if statuses else ""
        table.record(name, target, text)
    for target in proxies:
        health = result.worst_health[target]
        table.record("health during the slow clients", target,
                     "failed" if health == float("inf") else f"worst {health:.2f}s")
    return result


def closed_in_time(outcomes: list[Outcome]) -> None:
    late = [o.label() for o in outcomes
            if not (o.closed or o.answers) or o.elapsed > HEADER_TIMEOUT_BOUND + 1]
    assert not late, f"{len(late)} of {len(outcomes)} not closed within " \
                     f"{HEADER_TIMEOUT_BOUND}s: {late[:3]}"
    assert all(o.status is None or o.status < 500 for o in outcomes), \
        [o.label() for o in outcomes]


@pytest.mark.parametrize(("case", "target"), [
    pytest.param(c, t, id=f"{c}-{t}")
    for c in ("slowloris (a header line a second)", "request head growing 640 KiB/s",
              "body stalled after 10 bytes") for t in TARGETS])
def test_slow_client_is_closed(case: str, target: str, window: Window) -> None:
    closed_in_time(window.outcomes[(case, target)])


@pytest.mark.parametrize("target", TARGETS)
def test_others_served_during_slow_clients(target: str, window: Window,
                                           data_plane: DataPlane) -> None:
    """Health answered within HEALTH_BOUND every second of the window, memory in budget (the
    trickled body need not be closed: nginx's client_body_timeout is per read, too)."""
    assert window.worst_health[target] <= HEALTH_BOUND, window.worst_health
    data_plane.target(target).check_after(None, window.memory[target])


# -- a pipelining client that never reads ------------------------------------------------------

PIPELINED = 200
ANSWER = plain_answer(b"[" + b"0," * (MiB // 2 - 1) + b"0]")  # 1 MiB of JSON


def never_reads(port: int, seconds: float = 4.0) -> int:
    """Sends PIPELINED requests without reading an answer; the bytes the proxy took."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.connect((HOST, port))
    sock.setblocking(False)
    data = memoryview(b"GET /v2/models/fraud HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * PIPELINED)
    sent, deadline = 0, time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            if sent < len(data):
                try:
                    sent += sock.send(data[sent:])
                except BlockingIOError:
                    pass
                except OSError:
                    break
            time.sleep(0.05)
    finally:
        sock.close()
    return sent


@pytest.fixture(scope="module")
def big_upstream(data_plane: DataPlane) -> Iterator[tuple[ScriptedUpstream, Nginx]]:
    upstream = ScriptedUpstream(lambda count: ANSWER)
    nginx = Nginx(free_port(), data_plane.work / "nginx-big").start(upstream.port)
    try:
        yield upstream, nginx
    finally:
        nginx.stop()
        upstream.stop()


@pytest.mark.parametrize("target", TARGETS)
def test_pipelining_client_that_never_reads(target: str, data_plane: DataPlane, fresh: Fresh,
                                            big_upstream: tuple[ScriptedUpstream, Nginx],
                                            table: Table) -> None:
    upstream, nginx = big_upstream
    case = f"pipelined x{PIPELINED}, never read (1 MiB answers)"

    def on_nginx() -> str:
        assert nginx.process is not None
        proxy = Proxy("nginx", nginx.port, "/", nginx.process, nginx)
        time.sleep(0.5)
        with proxy.memory() as watch:
            took = never_reads(nginx.port)
        return f"took {took / 1024:.0f} KiB, RSS +{watch.growth / MiB:.0f} MiB"

    table.once(case, "nginx", on_nginx)
    proxy = fresh.target(target, upstream)  # type: ignore[arg-type]
    with proxy.memory() as watch:
        took = never_reads(proxy.port)
    table.record(case, target, f"took {took / 1024:.0f} KiB, RSS +{watch.growth / MiB:.0f} MiB")
    proxy.check_after(None, watch)
