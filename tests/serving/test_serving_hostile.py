"""The model server under hostile input, as a real process: every malformed request is a 4xx
with a V2 error naming what is wrong, the server stays healthy, decompression is capped,
inference runs off the event loop behind a bounded queue, and paths are taken literally.

Each case in ``CASES`` was tried against a running ``modelops-serve``; the ones marked
"was 500" answered 500 (or crashed the handler) before the server was hardened.
"""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import textwrap
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from serving_helpers import HOST, Models, Program, model_server

pytestmark = pytest.mark.slow

INFER = "/v2/models/iris/infer"
GOOD = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}]}
BODY_LIMIT = 1 << 20  # the server below runs with --max-body-bytes 1 MiB


def tensor(shape: object, datatype: object = "FP64", data: object = (), **extra: object) -> bytes:
    item = {"name": "x", "shape": shape, "datatype": datatype,
            "data": list(data) if isinstance(data, tuple) else data, **extra}
    return json.dumps({"inputs": [item]}).encode()


def with_id(request_id: str) -> bytes:
    return json.dumps({**GOOD, "id": request_id}).encode()


def gzip_bomb(inflated: int) -> bytes:
    """``inflated`` zero bytes, gzipped (about a thousandth of that)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b"\0" * (1 << 20)
    parts = [compressor.compress(block) for _ in range(inflated >> 20)]
    return b"".join(parts) + compressor.flush()


@dataclass
class Case:
    label: str
    body: bytes
    status: int
    fragment: str
    headers: dict[str, str] = field(default_factory=dict)
    path: str = INFER
    method: str = "POST"


GOOD_BYTES = json.dumps(GOOD).encode()
CASES = [
    # Shapes.
    Case("empty tensor with a huge dimension (was 500)", tensor([0, 2**62]), 400,
         "dimension 4611686018427387904 exceeds the limit"),
    Case("huge dimension before a zero (was 500)", tensor([2**62, 0]), 400,
         "exceeds the limit"),
    Case("dimensions whose product overflows numpy (was 500)",
         tensor([0, 2**31, 2**31, 2**31]), 400, "exceeds the limit"),
    Case("empty tensor, dimensions within the limit overflowing numpy (was 500)",
         tensor([0] + [10_000_000] * 5), 400, "is too big for numpy"),
    Case("dimension beyond 64 bits", tensor([0, 2**70]), 400, "non-negative integers"),
    Case("negative dimension", tensor([-1, 4], data=(1, 2, 3, 4)), 400,
         "non-negative integers"),
    Case("fractional dimension", tensor([1.5, 4]), 400, "non-negative integers"),
    Case("shape not a list", tensor(4, data=(1, 2, 3, 4)), 400, "shape: expected list"),
    Case("too many dimensions", tensor([1] * 40, data=(1,)), 400, "more than 32 dimensions"),
    Case("elements beyond the limit", tensor([100_000, 100_000]), 400, "exceed the limit"),
    Case("data shorter than the shape", tensor([2, 4], data=(1, 2, 3)), 400,
         "has 3 elements but shape [2, 4] needs 8"),
    Case("ragged nested data", tensor([2, 2], data=[[1, 2], [3]]), 400, "has 3 elements"),
    Case("nesting too deep", tensor([1], data=json.loads("[" * 40 + "1" + "]" * 40)), 400,
         "nesting deeper than 32 levels"),
    Case("wrong number of features", tensor([1, 3], data=(1, 2, 3)), 400,
         "expects 4 features"),
    Case("a 32-dimensional tensor for a 2-D model", tensor([1] * 32, data=(1,)), 400,
         "expected a 2-D tensor"),
    # Datatypes and values.
    Case("unknown datatype", tensor([1, 4], "FP99", (1, 2, 3, 4)), 400, "'FP99' is not one of"),
    Case("datatype not a string", tensor([1, 4], 5, (1, 2, 3, 4)), 400,
         "datatype: expected str"),
    Case("integer out of range", tensor([1, 4], "INT8", (1, 2, 3, 999)), 400,
         "do not fit INT8"),
    Case("negative unsigned", tensor([1, 4], "UINT64", (-1, 2, 3, 4)), 400,
         "do not fit UINT64"),
    Case("float overflowing FP16", tensor([1, 4], "FP16", (1e10, 2, 3, 4)), 400,
         "do not fit FP16"),
    Case("float for an integer type", tensor([1, 4], "INT32", (1.5, 2, 3, 4)), 400,
         "must be integers"),
    Case("strings for a number type", tensor([1, 4], data=("a", "b", "c", "d")), 400,
         "must be numbers"),
    Case("null elements", tensor([1, 4], data=(None, 2, 3, 4)), 400, "must be numbers"),
    Case("numbers for BOOL", tensor([1, 4], "BOOL", (1, 0, 1, 0)), 400,
         "BOOL elements must be true or false"),
    Case("BYTES for a numeric model", tensor([1, 4], "BYTES", ("a", "b", "c", "d")), 400,
         "BYTES tensors are not accepted"),
    # Request fields.
    Case("not an object", b"[1, 2, 3]", 400, "JSON object"),
    Case("no inputs", b'{"id": "x"}', 400, "missing required field 'inputs'"),
    Case("empty inputs", b'{"inputs": []}', 400, "at least one input"),
    Case("id not a string", json.dumps({**GOOD, "id": 5}).encode(), 400,
         "request.id: expected a string"),
    Case("id with a control character", with_id("a\x7fb"), 400, "control characters"),
    Case("id too long to echo as a header", with_id("a" * 300), 400,
         "longer than 256 characters"),
    Case("X-Request-Id header not UTF-8 (was 500)", GOOD_BYTES, 400,
         "X-Request-Id header: must be UTF-8",
         headers={"X-Request-Id": "caf\xe9"}),  # sent as the latin-1 byte 0xE9
    Case("outputs not a list", json.dumps({**GOOD, "outputs": {"name": "x"}}).encode(), 400,
         "request.outputs"),
    Case("unknown output", json.dumps({**GOOD, "outputs": [{"name": "nope"}]}).encode(), 400,
         "unknown output 'nope'"),
    # Encodings.
    Case("invalid JSON", b'{"inputs": [', 400, "not valid JSON"),
    Case("empty body", b"", 400, "not valid JSON"),
    Case("not UTF-8", b'{"inputs": "\xff\xfe"}', 400, "not valid UTF-8"),
    Case("UTF-16", GOOD_BYTES.decode().encode("utf-16"), 400, "not valid JSON"),
    Case("NaN literal", GOOD_BYTES.replace(b"[1, 2", b"[NaN, 2"), 400, "not valid JSON"),
    Case("number too big for a double", GOOD_BYTES.replace(b"[1, 2", b"[1e999, 2"), 400,
         "not valid JSON"),
    Case("JSON nested beyond the parser's depth", b"[" * 5000 + b"]" * 5000, 400,
         "not valid JSON"),
    Case("broken gzip (was 500)", b"\x1f\x8b\x08\x00garbage-not-gzip", 400,
         "not valid gzip data", headers={"Content-Encoding": "gzip"}),
    Case("broken deflate (was 500)", b"not deflate at all", 400, "not valid deflate data",
         headers={"Content-Encoding": "deflate"}),
    Case("truncated gzip", gzip.compress(GOOD_BYTES)[:20], 400, "gzip request body is truncated",
         headers={"Content-Encoding": "gzip"}),
    Case("gzip followed by garbage", gzip.compress(GOOD_BYTES) + b"junk", 400,
         "not valid gzip data", headers={"Content-Encoding": "gzip"}),
    Case("gzip bomb", gzip_bomb(64 << 20), 413, "inflates to more than the limit",
         headers={"Content-Encoding": "gzip"}),
    Case("unsupported content coding", b"x", 415, "Content-Encoding 'br' is not supported",
         headers={"Content-Encoding": "br"}),
    Case("unknown content coding (was ignored)", GOOD_BYTES, 415, "'rot13' is not supported",
         headers={"Content-Encoding": "rot13"}),
    Case("stacked content codings", gzip.compress(gzip.compress(GOOD_BYTES)), 415,
         "only one content coding", headers={"Content-Encoding": "gzip, gzip"}),
    Case("body over the limit", b" " * (BODY_LIMIT + 1), 413, "more than the limit"),
    # The binary tensor extension, which this server does not implement.
    Case("binary extension header", GOOD_BYTES + b"\0" * 32, 400,
         "binary tensor extension is not supported",
         headers={"Inference-Header-Content-Length": str(len(GOOD_BYTES)),
                  "Content-Type": "application/octet-stream"}),
    Case("binary_data_size on a tensor", tensor([1, 4], parameters={"binary_data_size": 32}),
         400, "binary_data_size: the binary tensor extension is not supported"),
    # Paths: aiohttp would route the decoded path; the server takes paths literally.
    Case("percent-encoded endpoint", GOOD_BYTES, 400, "percent-encoded paths are not served",
         path="/v2/models/iris/inf%65r"),
    Case("percent-encoded model name", GOOD_BYTES, 400, "percent-encoded paths",
         path="/v2/models/ir%69s/infer"),
    Case("encoded slash", GOOD_BYTES, 400, "percent-encoded paths",
         path="/v2/models/iris%2Finfer"),
    Case("encoded dots as a version", GOOD_BYTES, 400, "percent-encoded paths",
         path="/v2/models/iris/versions/%2E%2E/infer"),
    Case("encoded health probe", b"", 400, "percent-encoded paths",
         path="/v2/health/l%69ve", method="GET"),
    Case("dot segments are not resolved", GOOD_BYTES, 404, "Not Found",
         path="/v2/models/iris/../iris/infer"),
    Case("unknown path", b"", 404, "GET /v2/nowhere: Not Found", path="/v2/nowhere",
         method="GET"),
    Case("wrong method", b"", 405, "Method Not Allowed", method="GET"),
    Case("other model", GOOD_BYTES, 404, "model 'other' is not served here",
         path="/v2/models/other/infer"),
    Case("unserved version", GOOD_BYTES, 404, "serving no version",
         path="/v2/models/iris/versions/3/infer"),
]


def send(server: Program, case: Case) -> tuple[int, dict[str, str], bytes]:
    """Send the case as it is written: http.client leaves the path and the bytes alone."""
    connection = http.client.HTTPConnection(HOST, server.port, timeout=30)
    try:
        connection.putrequest(case.method, case.path, skip_accept_encoding=True)
        for name, value in case.headers.items():
            connection.putheader(name, value.encode("latin-1"))
        connection.putheader("Content-Length", str(len(case.body)))
        connection.endheaders(case.body)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


@pytest.fixture(scope="module")
def server(models: Models, log_dir: Path) -> Iterator[Program]:
    program = model_server("iris", models.classifier_skops, "sklearn", "",
                           "--max-body-bytes", str(BODY_LIMIT))
    program.start(log_dir)
    try:
        yield program.wait_ready("/v2/health/ready")
    finally:
        program.stop()


@pytest.mark.parametrize("case", CASES, ids=[case.label for case in CASES])
def test_hostile_requests_get_a_4xx_naming_the_problem(server: Program, case: Case) -> None:
    status, headers, body = send(server, case)
    assert status == case.status, body[:300]
    assert headers["Content-Type"].startswith("application/json")
    assert case.fragment in json.loads(body)["error"]
    assert httpx.get(f"{server.url}/v2/health/ready", timeout=10).status_code == 200


def test_the_server_survived_every_case_without_a_traceback(server: Program) -> None:
    for case in CASES:
        send(server, case)
    assert server.alive()
    status, _, body = send(server, Case("good", GOOD_BYTES, 200, ""))
    assert status == 200 and json.loads(body)["outputs"][0]["name"] == "predict"
    assert "Traceback" not in server.log()


def test_requests_the_parser_refuses_are_one_log_line(server: Program) -> None:
    """Refused by aiohttp's parser before the app sees them: a plain 400, logged in one line."""
    for request_line in (b"POST /v2/models/ir\xc3\xa9s/infer HTTP/1.1", b"GET * HTTP/1.1"):
        with socket.create_connection((HOST, server.port), timeout=30) as connection:
            connection.sendall(request_line + b"\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
            assert connection.recv(4096).startswith(b"HTTP/1.0 400 ")
    assert httpx.get(f"{server.url}/v2/health/live", timeout=10).status_code == 200
    assert "WARNING aiohttp.server: Error handling request" in server.log()
    assert "Traceback" not in server.log()


def test_compressed_requests_are_inflated(server: Program) -> None:
    for coding, body in (("gzip", gzip.compress(GOOD_BYTES)),
                         ("deflate", zlib.compress(GOOD_BYTES)),
                         ("deflate", zlib.compress(GOOD_BYTES)[2:-4]),  # raw deflate
                         ("gzip", gzip.compress(GOOD_BYTES[:30]) + gzip.compress(GOOD_BYTES[30:]))):
        status, _, answer = send(server, Case(coding, body, 200, "",
                                              headers={"Content-Encoding": coding}))
        assert status == 200, answer


def test_a_gzip_bomb_is_refused_without_inflating_it(server: Program) -> None:
    """A gigabyte of zeros in one megabyte: refused after the limit, so fast."""
    bomb = gzip_bomb(1 << 30)
    started = time.monotonic()
    status, _, body = send(server, Case("bomb", bomb, 413, "",
                                        headers={"Content-Encoding": "gzip"}))
    assert status == 413 and b"inflates to more than the limit" in body
    # Inflating all of it takes seconds; the limit (1 MiB) takes milliseconds. Generous bound.
    assert time.monotonic() - started < 30


GATED_MODEL = """
    import os
    import time

    import numpy as np

    class Gated:
        '''Answers once the test creates the file "open" (or after 60 s).'''

        def load(self, path):
            self.directory = path

        def predict(self, inputs):
            started = os.path.join(self.directory, "started-%d" % time.monotonic_ns())
            open(started, "w").close()
            deadline = time.monotonic() + 60
            while not os.path.exists(os.path.join(self.directory, "open")):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.01)
            return {"size": np.asarray([next(iter(inputs.values())).size])}
"""


@pytest.fixture
def gated(tmp_path: Path, log_dir: Path, spawn) -> Program:
    (tmp_path / "gated.py").write_text(textwrap.dedent(GATED_MODEL))
    program = model_server("gated", tmp_path, "custom", "1", "--custom-class", "gated:Gated",
                           "--inference-threads", "1", "--inference-queue", "1")
    spawn.append(program.start(log_dir))
    return program.wait_ready("/v2/health/ready")


def _wait_for(condition: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _infer_in_background(url: str, body: bytes, answers: list[httpx.Response]) -> threading.Thread:
    def post() -> None:
        answers.append(httpx.post(url, content=body, timeout=90))

    thread = threading.Thread(target=post, daemon=True)
    thread.start()
    return thread


def test_health_answers_while_a_large_inference_runs(gated: Program, tmp_path: Path) -> None:
    rows = 100_000  # a body of several megabytes, held in the model until released
    big = json.dumps({"inputs": [{"name": "x", "shape": [rows, 4], "datatype": "FP64",
                                  "data": [0.5] * (rows * 4)}]}).encode()
    answers: list[httpx.Response] = []
    url = f"{gated.url}/v2/models/gated/infer"
    thread = _infer_in_background(url, big, answers)
    _wait_for(lambda: any(tmp_path.glob("started-*")))
    for probe in ("/v2/health/live", "/v2/health/ready", "/v2/models/gated/ready"):
        assert httpx.get(gated.url + probe, timeout=1).status_code == 200
    (tmp_path / "open").touch()
    thread.join(60)
    assert answers[0].status_code == 200 and answers[0].json()["outputs"][0]["data"] == [rows * 4]


def test_a_full_queue_is_a_503_at_once(gated: Program, tmp_path: Path) -> None:
    """One thread and one queue slot: of three requests held by the model, one is refused."""
    answers: list[httpx.Response] = []
    url = f"{gated.url}/v2/models/gated/infer"
    threads = [_infer_in_background(url, GOOD_BYTES, answers) for _ in range(3)]
    _wait_for(lambda: len(answers) == 1)
    refused = answers[0]
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
    assert "--inference-queue" in refused.json()["error"]
    assert httpx.get(f"{gated.url}/v2/health/live", timeout=1).status_code == 200
    (tmp_path / "open").touch()
    for thread in threads:
        thread.join(60)
    assert sorted(a.status_code for a in answers) == [200, 200, 503]
    after = httpx.post(url, content=GOOD_BYTES, timeout=30)
    assert after.status_code == 200
