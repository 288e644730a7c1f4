"""Limits: request heads, request lines, bodies and request ids larger than any client needs.

Memory-hungry cases run against proxies of their own (``heavy``), so that a proxy that buffers
everything does not slow the other modules' cases. Each asserts the proxy's resident memory stays
within RSS_BUDGET over its level before the case.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from tests.hostile.cases import (
    BODY,
    INFER,
    TARGETS,
    Case,
    params,
    refused,
    status_in,
)
from tests.hostile.conftest import DataPlane, Fresh, Heavy, Proxy, Table, wait_until
from tests.hostile.rawhttp import MiB, Outcome, converse, request
from tests.serving.serving_helpers import router_config, write_config

pytestmark = pytest.mark.hostile

HEAD_FLOOD = 48 * MiB
BIG_BODY = 60 * MiB


def head_flood() -> Iterator[bytes]:
    """A request head that never ends: 4 KiB header lines, 48 MiB in all, as fast as taken."""
    yield f"POST {INFER} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
    line = b"X-Pad: " + b"a" * 4089 + b"\r\n"
    block = line * 256  # 1 MiB
    for _ in range(HEAD_FLOOD // len(block)):
        yield block


def big_body() -> Iterator[bytes]:
    yield request("POST", INFER, f"Content-Length: {BIG_BODY}", length=False)
    block = b" " * MiB  # JSON whitespace: harmless if it were ever parsed
    for _ in range(BIG_BODY // MiB):
        yield block


def with_id(value: str) -> list[bytes]:
    return [request("POST", INFER, f"X-Request-Id: {value}", body=BODY)]


def answered_4xx(outcome: Outcome) -> None:
    assert outcome.answers and 400 <= outcome.statuses[0] < 500, \
        f"expected a 4xx (413, or the model server's), got {outcome.label()}"


# Cases on the shared proxies.
CASES: dict[str, Case] = {
    "request line 100 KB": Case(lambda: [request("GET", "/v2/models/fraud?q=" + "a" * 100_000)],
                                status_in(414, 431)),
    "X-Request-Id 60 KB": Case(lambda: with_id("r" * 60_000), status_in(400, 431)),
    "X-Request-Id 300 B": Case(lambda: with_id("r" * 300), status_in(400)),
    "X-Request-Id non-ASCII": Case(lambda: with_id("réq-请求-1"), status_in(400)),
    "X-Request-Id with DEL": Case(lambda: with_id("req\x7f1"), status_in(400)),
}

XFAILS: dict[tuple[str, str], str] = {}


@pytest.mark.parametrize(("case", "target"), params(CASES, XFAILS))
def test_limit(case: str, target: str, data_plane: DataPlane, table: Table) -> None:
    proxy, outcome, watch = data_plane.attack(case, CASES[case], target, table)
    proxy.check_after(outcome, watch)


def flood_head(port: int) -> Outcome:
    return converse(port, head_flood(), wait=3)


def memory_label(outcome: Outcome | list[Outcome], growth: int) -> str:
    outcomes = outcome if isinstance(outcome, list) else [outcome]
    text = " / ".join(o.label() for o in outcomes)
    return f"{text}, took {outcomes[0].sent / MiB:.1f} MiB, RSS +{growth / MiB:.0f} MiB"


@pytest.mark.parametrize("target", TARGETS)
def test_endless_request_head(target: str, data_plane: DataPlane, heavy: Heavy,
                              table: Table) -> None:
    """48 MiB of header lines sent as fast as taken: refused (431/400 or a close) long before
    the end, without the proxy holding the head in memory."""
    case = "request head 48 MiB, fast"

    def on_nginx() -> str:
        with data_plane.nginx.memory() as watch:
            outcome = flood_head(data_plane.nginx.port)
        return memory_label(outcome, watch.growth)

    table.once(case, "nginx", on_nginx)
    proxy = heavy.target(target)
    with proxy.memory() as watch:
        outcome = flood_head(proxy.port)
    table.record(case, target, memory_label(outcome, watch.growth))
    refused(outcome)
    assert outcome.sent < HEAD_FLOOD // 2, "the proxy took most of the 48 MiB head"
    proxy.check_after(outcome, watch)


def send_bodies(port: int, count: int) -> list[Outcome]:
    results: list[Outcome] = [Outcome() for _ in range(count)]

    def one(index: int) -> None:
        results[index] = converse(port, big_body(), wait=30)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    return results


@pytest.mark.parametrize(("count", "target"), [
    pytest.param(c, t, id=f"{c}x60MiB-{t}") for c in (1, 2) for t in TARGETS])
def test_big_bodies(count: int, target: str, data_plane: DataPlane, heavy: Heavy,
                    table: Table) -> None:
    """60 MiB bodies (one, then two at once): a 413, or taken within the memory budget;
    the model server (16 MiB limit) answers 413 to what is forwarded; never a 5xx."""
    case = f"{count} x body 60 MiB" + (" at once" if count > 1 else "")

    def on_nginx() -> str:
        with data_plane.nginx.memory() as watch:
            outcomes = send_bodies(data_plane.nginx.port, count)
        return memory_label(outcomes, watch.growth)

    table.once(case, "nginx", on_nginx)
    proxy = heavy.target(target)
    with proxy.memory() as watch:
        outcomes = send_bodies(proxy.port, count)
    table.record(case, target, memory_label(outcomes, watch.growth))
    for outcome in outcomes:
        answered_4xx(outcome)
        proxy.check_after(outcome)
    proxy.check_after(None, watch)


def mirrored(proxy: Proxy) -> float:
    return proxy.metric("modelops_router_mirror_requests_total", outcome="sent")


def test_non_ascii_request_ids_leave_shadow_mode_working(data_plane: DataPlane, fresh: Fresh,
                                                         table: Table) -> None:
    """16 requests with a non-ASCII X-Request-Id to a router in shadow mode (each refused or
    answered), then normal requests: the mirror still copies them to the challenger."""
    case = "shadow: 16 non-ASCII ids, then mirror"
    table.once(case, "nginx", lambda: "n/a (no mirror)")
    path = data_plane.work / "shadow.json"
    write_config(path, router_config(f"http://127.0.0.1:{data_plane.sidecar.port}",
                                     f"http://127.0.0.1:{data_plane.challenger.port}",
                                     mode="shadow", mirrorPercent=100))
    from tests.hostile.conftest import router_proxy, start_router

    program = start_router(path, data_plane.log_dir)
    fresh.started.append(program)
    router = router_proxy(program)
    statuses = [converse(router.port, with_id(f"réq-请求-{i}"), grace=0).status
                for i in range(16)]
    time.sleep(0.5)  # the copies are made after the answers
    before = mirrored(router)
    normal = [converse(router.port, with_id(f"plain-{i}"), grace=0).status for i in range(8)]
    try:
        wait_until(lambda: mirrored(router) >= before + 1, 5, "a normal request mirrored")
        table.record(case, "router", f"ids: {sorted(set(statuses))}, then mirrored")
    except AssertionError:
        table.record(case, "router", f"ids: {sorted(set(statuses))}, then NOT mirrored")
        raise
    assert all(s == 200 for s in normal), normal
    router.check_after()
