"""The sidecar's hot path decides which messages it may pass on as they are: pure checks."""

from __future__ import annotations

import pytest

from modelops_serving.requestids import replace_request_id
from modelops_serving.shortcut import plain_inference_request
from modelops_serving.upstream import PlainAnswer, frame_plain

BODY = b'{"inputs": []}'


def request(*headers: str, line: str = "POST /v2/models/m/infer HTTP/1.1",
            body: bytes = BODY, length: bool = True) -> bytes:
    fields = [line, "Host: 127.0.0.1", "Content-Type: application/json", *headers]
    if length:
        fields.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(fields) + "\r\n\r\n").encode() + body


def test_a_plain_inference_request_is_taken() -> None:
    data = request()
    bounds = plain_inference_request(data, 1024)
    assert bounds is not None
    line_end, head_end = bounds
    assert data[:line_end] == b"POST /v2/models/m/infer HTTP/1.1"
    assert data[head_end + 4:] == BODY
    # HTTP/1.1's default said out loud, a query string, a versioned path: still plain.
    assert plain_inference_request(request("Connection: Keep-Alive"), 1024) is not None
    assert plain_inference_request(
        request(line="POST /v2/models/m/versions/2/infer?x=1 HTTP/1.1"), 1024) is not None


@pytest.mark.parametrize("data", [
    request("Connection: close"),
    request("Connection: keep-alive, X-Secret"),
    request("Transfer-Encoding: chunked"),
    request("Expect: 100-continue"),
    request("Keep-Alive: timeout=5"),
    request("Upgrade: h2c"),
    request("TE: trailers"),
    request("Proxy-Authorization: Basic eA=="),
    request("Content-Length: 3"),  # two lengths
    request(length=False),
    request(line="POST /v2/models/m/infer HTTP/1.0"),
    request(line="GET /v2/models/m/infer HTTP/1.1", body=b""),
    request(line="POST /v2/feedback HTTP/1.1"),
    request(line="POST /v2/models/m/ready?then=/infer HTTP/1.1"),
    request()[:-3],  # the body is not all here yet
    request() + request(),  # pipelined: the general path keeps the order
    request(body=b"x" * 2000),  # larger than the limit: the general path answers 413
])
def test_anything_else_takes_the_general_path(data: bytes) -> None:
    assert plain_inference_request(data, 1024) is None


def response(*headers: str, status: str = "200 OK", body: bytes = b'{"id":"a"}',
             version: str = "HTTP/1.1", length: bool = True) -> bytes:
    fields = [f"{version} {status}", "Content-Type: application/json", *headers]
    if length:
        fields.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(fields) + "\r\n\r\n").encode() + body


def test_a_plain_response_is_passed_on_as_it_came() -> None:
    framed = frame_plain(response("X-Request-Id: a"))
    assert isinstance(framed, PlainAnswer)
    assert framed.status == 200 and framed.body == b'{"id":"a"}'
    assert framed.head.startswith(b"HTTP/1.1 200 OK\r\n") and not framed.head.endswith(b"\r\n")
    assert frame_plain(response(status="400 Bad Request")).status == 400  # type: ignore[union-attr]


@pytest.mark.parametrize("data", [
    response("Transfer-Encoding: chunked", length=False),
    response("Connection: close"),
    response("Connection: keep-alive"),
    response("Content-Length: 99"),
    response(status="204 No Content", body=b""),
    response(status="100 Continue", body=b""),
    response(version="HTTP/1.0"),
    response()[:-2],
    response() + b"extra",
    b"HTTP/1.1 2000 OK\r\n\r\n",
])
def test_responses_needing_care_are_parsed_in_full(data: bytes) -> None:
    assert frame_plain(data) is None


def test_the_request_id_header_is_ours_alone() -> None:
    head = b"HTTP/1.1 200 OK\r\nx-request-ID: theirs\r\nContent-Length: 2"
    assert replace_request_id(head, "mine") == (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Request-Id: mine")
    injected = replace_request_id(b"HTTP/1.1 200 OK", "a\r\nSet-Cookie: x")
    assert injected == b"HTTP/1.1 200 OK\r\nX-Request-Id: a  Set-Cookie: x"
