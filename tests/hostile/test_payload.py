"""Payload abuse aimed at the model server through the proxy: the model server's 4xx must come
back as a 4xx (never a 5xx, never a hang), and the proxy must not choke on what it forwards."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Callable

import pytest

from tests.hostile.cases import INFER, Case, client_error, params
from tests.hostile.conftest import DataPlane, Table
from tests.hostile.rawhttp import MiB, request

pytestmark = pytest.mark.hostile


def infer(body: bytes, *headers: str) -> list[bytes]:
    return [request("POST", INFER, "Content-Type: application/json", *headers, body=body)]


def tensor(shape: list[int], data: object, datatype: str = "FP64") -> bytes:
    return json.dumps({"inputs": [{"name": "input-0", "shape": shape, "datatype": datatype,
                                   "data": data}]}).encode()


def gzip_bomb(size: int = 256 * MiB) -> bytes:
    """A gzip stream of ``size`` zero bytes (about 250 KB)."""
    squeezer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b"\0" * MiB
    return b"".join([squeezer.compress(block) for _ in range(size // MiB)] + [squeezer.flush()])


def bad(parts: Callable[[], list[bytes]], wait: float = 5.0) -> Case:
    return Case(parts, client_error, wait=wait)


BOMB = gzip_bomb()
CASES: dict[str, Case] = {
    "shape [0, 2**62]": bad(lambda: infer(tensor([0, 2**62], []))),
    "shape [2**31, 2**31]": bad(lambda: infer(tensor([2**31, 2**31], [1.0]))),
    "shape [-1, 4]": bad(lambda: infer(tensor([-1, 4], [1.0] * 4))),
    "broken gzip body": bad(lambda: infer(gzip.compress(tensor([1, 4], [1.0] * 4))[:-12],
                                           "Content-Encoding: gzip")),
    "gzip bomb (256 MiB of zeros)": bad(lambda: infer(BOMB, "Content-Encoding: gzip"), wait=20),
    "bad JSON": bad(lambda: infer(b'{"inputs": [{"name": "input-0", "shape": [1, 4],')),
    "JSON nested 100000 deep": bad(lambda: infer(b"[" * 100_000 + b"]" * 100_000)),
    "unknown datatype": bad(lambda: infer(tensor([1, 4], [1.0] * 4, "FP1024"))),
    "strings as FP64": bad(lambda: infer(tensor([1, 4], ["a", "b", "c", "d"]))),
    "1e999 as FP32": bad(lambda: infer(b'{"inputs": [{"name": "input-0", "shape": [1, 4], '
                                        b'"datatype": "FP32", "data": [1e999, 1, 2, 3]}]}')),
}

XFAILS: dict[tuple[str, str], str] = {}


@pytest.mark.parametrize(("case", "target"), params(CASES, XFAILS))
def test_payload(case: str, target: str, data_plane: DataPlane, table: Table) -> None:
    proxy, outcome, watch = data_plane.attack(case, CASES[case], target, table)
    proxy.check_after(outcome, watch)
