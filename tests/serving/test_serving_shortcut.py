"""The sidecar's hot path against a scripted upstream: the cases a real server rarely shows.

The upstream here is a raw socket server in the test process whose answers are scripted per
test: connections closed under a pooled request, answers that never come, chunked or
connection-level responses, its own X-Request-Id. The sidecar is the real program.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from serving_helpers import (
    HOST,
    Program,
    Script,
    ScriptedUpstream,
    metric_value,
    plain_answer,
    sidecar,
)

pytestmark = pytest.mark.slow
INFER = "/v2/models/m/infer"
PLAIN_REQUEST = (b"POST " + INFER.encode() + b" HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")


@pytest.fixture
def scripted(log_dir: Path, spawn: list[Program]) -> Iterator[Callable[..., Program]]:
    upstreams: list[ScriptedUpstream] = []

    def start(script: Script, *flags: str) -> Program:
        upstream = ScriptedUpstream(script)
        upstreams.append(upstream)
        proxy = sidecar(Program("scripted", [], upstream.port), "m", "v1", "champion", *flags)
        spawn.append(proxy.start(log_dir))
        proxy.wait_ready(proxy.metrics_url)
        proxy.upstream = upstream  # type: ignore[attr-defined]
        return proxy

    yield start
    for upstream in upstreams:
        upstream.stop()


def exchange(port: int, data: bytes, timeout: float = 10) -> bytes:
    """One request on a fresh connection; the raw answer (Content-Length framed)."""
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(data)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
        head, _, body = answer.partition(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        while len(body) < length:
            body += sock.recv(65536)
        return answer


def test_a_pooled_connection_closed_under_a_request_is_retried_once(scripted) -> None:
    # The upstream drops every second request on a connection without answering, as a server
    # does when its keep-alive timeout strikes just as a request arrives.
    proxy = scripted(lambda count: None if count == 2 else plain_answer())
    with httpx.Client(base_url=proxy.url, timeout=10) as client:
        for _ in range(6):
            response = client.post(INFER, content=b"{}", headers={"Connection": "keep-alive"})
            assert response.status_code == 200, response.text
            time.sleep(0.05)
    upstream = proxy.upstream
    assert upstream.answered == 6 and upstream.closed_unanswered >= 1


def test_an_upstream_that_never_answers_gives_a_504(scripted) -> None:
    proxy = scripted(lambda count: plain_answer() if count == 1 else b"", "--upstream-timeout",
                     "0.5")
    first = exchange(proxy.port, PLAIN_REQUEST)  # now a pooled connection exists
    assert first.startswith(b"HTTP/1.1 200")
    started = time.monotonic()
    second = exchange(proxy.port, PLAIN_REQUEST)
    assert second.startswith(b"HTTP/1.1 504") and b"timed out" in second
    assert time.monotonic() - started < 5  # the timer sweep runs every second
    metrics = httpx.get(proxy.metrics_url).text
    assert metric_value(metrics, "modelops_requests_total", code="504") == 1
    assert metric_value(metrics, "modelops_requests_total", code="200") == 1


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Request-Id: theirs\r\n\r\n"
    b"5\r\n{\"id\"\r\n0\r\n\r\n",
    plain_answer(b'{"id"', b"Connection: keep-alive", b"X-Request-Id: theirs"),
    plain_answer(b'{"id"', b"X-Request-Id: theirs"),
])
def test_every_answer_shape_reaches_the_client_whole(scripted, answer: bytes) -> None:
    proxy = scripted(lambda count: answer)
    raw = exchange(proxy.port, PLAIN_REQUEST.replace(b"Host: x", b"Host: x\r\nX-Request-Id: mine"))
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.lower().split(b"\r\n")
    assert lines[0] == b"http/1.1 200 ok" and body == b'{"id"'
    assert b"content-length: 5" in lines and b"transfer-encoding: chunked" not in lines
    assert [line for line in lines if line.startswith(b"x-request-id")] == [b"x-request-id: mine"]


def test_without_a_client_id_the_response_body_names_the_prediction(scripted) -> None:
    proxy = scripted(lambda count: plain_answer(
        b'{"id":"from-body","outputs":[{"name":"p","datatype":"INT64","shape":[1],"data":[1]}]}',
        b"X-Request-Id: theirs"))
    raw = exchange(proxy.port, PLAIN_REQUEST)
    assert b"\r\nX-Request-Id: from-body\r\n" in raw and b"theirs" not in raw
    scored = httpx.post(f"{proxy.url}/v2/feedback", json={"id": "from-body", "truth": 1})
    assert scored.json() == {"id": "from-body", "correct": 1, "incorrect": 0, "scored": 0}


def test_requests_the_hot_path_leaves_alone_still_work(scripted) -> None:
    proxy = scripted(lambda count: plain_answer())
    with socket.create_connection((HOST, proxy.port), timeout=10) as sock:
        # Pipelined on one connection: answered in order by the general path.
        sock.sendall(PLAIN_REQUEST.replace(b"Host: x", b"Host: x\r\nX-Request-Id: one")
                     + PLAIN_REQUEST.replace(b"Host: x", b"Host: x\r\nX-Request-Id: two"))
        answers = b""
        deadline = time.monotonic() + 10
        while answers.count(b"HTTP/1.1 200") < 2 and time.monotonic() < deadline:
            answers += sock.recv(65536)
    assert answers.index(b"X-Request-Id: one") < answers.index(b"X-Request-Id: two")
    http10 = exchange(proxy.port, PLAIN_REQUEST.replace(b"HTTP/1.1", b"HTTP/1.0"))
    assert http10.startswith(b"HTTP/1.0 200")  # Go answers in the request's version
    assert proxy.upstream.answered == 3


def test_a_request_arriving_while_the_hot_path_answers_waits_its_turn(scripted) -> None:
    def slow_first(count: int) -> bytes:
        if count == 1:
            time.sleep(0.3)  # the first answer is still on its way when the second request comes
        return plain_answer()

    proxy = scripted(slow_first)
    with socket.create_connection((HOST, proxy.port), timeout=10) as sock:
        sock.sendall(PLAIN_REQUEST.replace(b"Host: x", b"Host: x\r\nX-Request-Id: one"))
        time.sleep(0.1)
        sock.sendall(PLAIN_REQUEST.replace(b"Host: x", b"Host: x\r\nX-Request-Id: two"))
        answers = b""
        deadline = time.monotonic() + 10
        while answers.count(b"HTTP/1.1 200") < 2 and time.monotonic() < deadline:
            answers += sock.recv(65536)
    assert answers.index(b"X-Request-Id: one") < answers.index(b"X-Request-Id: two")
