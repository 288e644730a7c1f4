"""Framing and smuggling: requests whose length or shape two HTTP parsers could read two ways.

Each case goes to nginx (recorded), then to the sidecar and to the router (asserted): a framing
attack must be refused (one 4xx, or a close without an answer), never answered twice, never a
5xx; a request that is merely unusual but unambiguous may be answered or refused.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.hostile.cases import (
    BODY,
    INFER,
    Case,
    answered_once_then_closed,
    answered_or_refused,
    params,
    refused,
    refused_or_not_implemented,
)
from tests.hostile.conftest import DataPlane, Table
from tests.hostile.rawhttp import HOST, MiB, request

pytestmark = pytest.mark.hostile


def chunked(body: bytes, size: bytes | None = None, eol: bytes = b"\r\n") -> bytes:
    size = size if size is not None else b"%x" % len(body)
    return size + eol + body + b"\r\n0\r\n\r\n"


def post(*headers: str, body: bytes = BODY, **options: object) -> bytes:
    return request("POST", INFER, *headers, body=body, length=False, **options)  # type: ignore[arg-type]


SMUGGLED = b"0\r\n\r\nGET /v2/models/fraud HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def huge_extension() -> Iterator[bytes]:
    yield post("Transfer-Encoding: chunked", body=b"")
    yield b"%x;ext=" % len(BODY)
    for _ in range(16):
        yield b"a" * MiB
    yield b"\r\n" + BODY + b"\r\n0\r\n\r\n"


def keep_alive_10() -> Iterator[bytes]:
    one = request("POST", INFER, "Connection: keep-alive", body=BODY, version="HTTP/1.0")
    yield one + one


class Trap:
    """A listener that must never be connected to: the host an absolute-form target names."""

    def __init__(self) -> None:
        self.sock = socket.create_server((HOST, 0))
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]

    def touched(self) -> bool:
        try:
            conn, _ = self.sock.accept()
        except TimeoutError:
            return False
        conn.close()
        return True


TRAP = Trap()

CASES: dict[str, Case] = {
    "CL+TE": Case(lambda: [post("Transfer-Encoding: chunked",
                                f"Content-Length: {len(chunked(BODY))}", body=chunked(BODY))],
                  answered_once_then_closed),
    "CL+TE, smuggled GET": Case(lambda: [post("Content-Length: 4", "Transfer-Encoding: chunked",
                                              body=SMUGGLED)], answered_once_then_closed,
                                expect=2),
    "duplicate Content-Length": Case(lambda: [post(f"Content-Length: {len(BODY)}",
                                                   f"Content-Length: {len(BODY) - 10}")],
                                     refused),
    "Content-Length: n, n": Case(lambda: [post(f"Content-Length: {len(BODY)}, {len(BODY)}")],
                                 refused),
    "TE: chunked, identity": Case(lambda: [post("Transfer-Encoding: chunked, identity",
                                                body=chunked(BODY))], refused_or_not_implemented),
    "TE: identity, chunked + CL": Case(lambda: [post(
        "Transfer-Encoding: identity, chunked", f"Content-Length: {len(BODY)}",
        body=chunked(BODY))], refused_or_not_implemented),
    "space before colon (CL)": Case(lambda: [post(f"Content-Length : {len(BODY)}")], refused),
    "obs-fold header line": Case(lambda: [post(f"Content-Length: {len(BODY)}",
                                               "X-Request-Id: folded\r\n  continued")],
                                 answered_or_refused()),
    "obs-fold on Transfer-Encoding": Case(lambda: [post(
        f"Content-Length: {len(BODY)}", "Transfer-Encoding: identity\r\n chunked",
        body=chunked(BODY))], refused_or_not_implemented),
    "bare LF line ends": Case(lambda: [post(f"Content-Length: {len(BODY)}", eol=b"\n")],
                              answered_or_refused()),
    "bare CR in a header": Case(lambda: [post(f"Content-Length: {len(BODY)}",
                                              "X-A: 1\rX-B: 2")], refused),
    "NUL in a header value": Case(lambda: [post(f"Content-Length: {len(BODY)}", "X-A: a\x00b")],
                                  refused),
    "chunk size not hex": Case(lambda: [post("Transfer-Encoding: chunked",
                                             body=chunked(BODY, b"zz"))], refused),
    "chunk size negative": Case(lambda: [post("Transfer-Encoding: chunked",
                                              body=chunked(BODY, b"-1"))], refused),
    "chunk size overflow": Case(lambda: [post("Transfer-Encoding: chunked",
                                              body=chunked(BODY, b"1" + b"0" * 20))], refused),
    "bare LF after chunk size": Case(lambda: [post("Transfer-Encoding: chunked",
                                                   body=chunked(BODY, eol=b"\n"))], refused),
    "chunk extension 16 MiB": Case(huge_extension, answered_or_refused(), wait=10),
    "HTTP/1.0 keep-alive, 2 requests": Case(keep_alive_10, answered_or_refused(2), expect=2),
    "absolute-form, other host": Case(lambda: [request(
        "POST", f"http://{HOST}:{TRAP.port}{INFER}", body=BODY)], answered_or_refused()),
}

# What the current programs get wrong (the rewrite must flip these).
XFAILS: dict[tuple[str, str], str] = {}


@pytest.mark.parametrize(("case", "target"), params(CASES, XFAILS))
def test_framing(case: str, target: str, data_plane: DataPlane, table: Table) -> None:
    proxy, outcome, watch = data_plane.attack(case, CASES[case], target, table)
    if case.startswith("absolute-form"):
        assert not TRAP.touched(), "the proxy connected to the host named in the target"
    proxy.check_after(outcome, watch)
