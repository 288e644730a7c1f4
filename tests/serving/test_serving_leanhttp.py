"""The sidecar's HTTP/1.1 server over raw sockets: framing, limits, errors."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import httpx
import pytest
from serving_helpers import HOST, Models, Program, metric_value, model_server, sidecar, v2_request

pytestmark = pytest.mark.slow

INFER = "/v2/models/fraud/infer"


@pytest.fixture
def proxied(models: Models, log_dir: Path, spawn: list[Program]) -> Program:
    server = model_server("fraud", models.classifier_skops, "sklearn", "v1")
    proxy = sidecar(server, "fraud", "v1", "champion", "--max-body-bytes", "4096")
    spawn.extend([server.start(log_dir), proxy.start(log_dir)])
    server.wait_ready("/v2/health/ready")
    proxy.wait_ready("/v2/health/ready")
    return proxy


def connect(program: Program) -> socket.socket:
    sock = socket.create_connection((HOST, program.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class Reader:
    """Reads complete responses (Content-Length framed, as the sidecar sends) off a socket."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buffer += data
        return bool(data)

    def response(self, head_request: bool = False) -> tuple[int, dict[str, str], bytes]:
        deadline = time.monotonic() + 10
        while b"\r\n\r\n" not in self.buffer:
            assert time.monotonic() < deadline and self._fill(), self.buffer
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = 0 if head_request or status < 200 else int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            assert time.monotonic() < deadline and self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, headers, body

    def closed(self) -> bool:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if not self._fill():
                    return True
            except ConnectionResetError:
                return True
        return False


def infer_request(body: bytes, *headers: str, chunked: bool = False) -> bytes:
    lines = [f"POST {INFER} HTTP/1.1", f"Host: {HOST}", "Content-Type: application/json",
             *headers]
    if chunked:
        middle = len(body) // 2
        pieces = [body[:middle], body[middle:]]
        encoded = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
        lines.append("Transfer-Encoding: chunked")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + encoded
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def test_keep_alive_pipelining_and_chunked_bodies(proxied: Program, models: Models) -> None:
    rows = models.X[:2]
    expected = models.classifier.predict(rows).tolist()  # type: ignore[attr-defined]
    body = json.dumps(v2_request(rows)).encode()
    with connect(proxied) as sock:
        reader = Reader(sock)
        # Two requests on one connection, one after the other.
        for i in range(2):
            sock.sendall(infer_request(body, f"X-Request-Id: seq-{i}"))
            status, headers, content = reader.response()
            assert status == 200 and headers["x-request-id"] == f"seq-{i}"
            assert json.loads(content)["outputs"][0]["data"] == expected
        # Pipelined: three requests in one write (the last chunked, split across sends) are
        # answered in order; a chunked request closes its connection after its answer (Go
        # cannot tell whether it also had a Content-Length: RFC 9112 6.1, serve/guard.go).
        batch = (infer_request(body, "X-Request-Id: p-0")
                 + infer_request(body, "X-Request-Id: p-1")
                 + infer_request(body, "X-Request-Id: p-2", chunked=True))
        cut = len(batch) // 2 + 7
        sock.sendall(batch[:cut])
        time.sleep(0.05)
        sock.sendall(batch[cut:])
        for i in range(3):
            status, headers, content = reader.response()
            assert (status, headers["x-request-id"]) == (200, f"p-{i}")
            assert json.loads(content)["outputs"][0]["data"] == expected
        assert headers["connection"] == "close" and reader.closed()
    with connect(proxied) as sock:
        reader = Reader(sock)
        # Connection: close is honoured.
        sock.sendall(infer_request(body, "Connection: close"))
        status, headers, _ = reader.response()
        assert status == 200 and headers["connection"] == "close"
        assert reader.closed()
    metrics = httpx.get(proxied.metrics_url, timeout=10).text
    assert metric_value(metrics, "modelops_requests_total", code="200") == 6


def test_limits_and_malformed_requests(proxied: Program) -> None:
    # A declared body over --max-body-bytes: 413 without reading it, then the connection closes.
    with connect(proxied) as sock:
        sock.sendall(f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n".encode())
        reader = Reader(sock)
        status, _, content = reader.response()
        assert status == 413 and "larger than 4096" in json.loads(content)["error"]
        assert reader.closed()
    # A chunked body that grows over the limit.
    with connect(proxied) as sock:
        sock.sendall(infer_request(b"[" + b"1," * 3000 + b"1]", chunked=True))
        reader = Reader(sock)
        assert reader.response()[0] == 413
        assert reader.closed()
    # Not HTTP at all: 400 (Go's own plain-text answer), then close; the process keeps serving.
    with connect(proxied) as sock:
        sock.sendall(b"\x16\x03\x01 hello this is not http\r\n\r\n")
        reader = Reader(sock)
        status, _, content = reader.response()
        assert status == 400
        assert reader.closed()
    with connect(proxied) as sock:
        sock.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n")
        assert Reader(sock).response()[:1] == (200,)


def test_expect_continue_head_http10_and_feedback(proxied: Program, models: Models) -> None:
    body = json.dumps(v2_request(models.X[:1], "cont-1")).encode()
    with connect(proxied) as sock:
        reader = Reader(sock)
        head, _, payload = infer_request(body, "Expect: 100-continue").partition(b"\r\n\r\n")
        sock.sendall(head + b"\r\n\r\n")
        assert reader.response()[0] == 100  # the client may now send the body
        sock.sendall(payload)
        status, headers, content = reader.response()
        assert status == 200 and headers["x-request-id"] == "cont-1"
        # HEAD: the length of the body it would have, and no body.
        sock.sendall(b"HEAD /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, _ = reader.response(head_request=True)
        assert status == 200 and int(headers["content-length"]) > 0
        sock.sendall(b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, content = reader.response()
        assert status == 200 and json.loads(content) == {"ready": True}
        # Feedback is answered by the sidecar itself, also with a query string.
        truth = models.classifier.predict(models.X[:1]).tolist()  # type: ignore[attr-defined]
        feedback = json.dumps({"id": "cont-1", "truth": truth}).encode()
        sock.sendall(b"POST /v2/feedback?x=1 HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                     % (len(feedback), feedback))
        status, _, content = reader.response()
        assert status == 200 and json.loads(content)["correct"] == 1
    # HTTP/1.0 without keep-alive: answered, then closed.
    with connect(proxied) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.0\r\n\r\n")
        reader = Reader(sock)
        assert reader.response()[0] == 200
        assert reader.closed()
    # HTTP/1.0 with keep-alive: the connection stays open and says so.
    with connect(proxied) as sock:
        reader = Reader(sock)
        for _ in range(2):
            sock.sendall(b"GET /v2/health/live HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            status, headers, _ = reader.response()
            assert status == 200 and headers["connection"] == "keep-alive"
