"""Router configuration reloads: a file caught half-written, an invalid port, an unknown field
and other bad documents leave the last good configuration in force and traffic unaffected."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.hostile.cases import BODY
from tests.hostile.conftest import (
    DataPlane,
    Proxy,
    Table,
    router_proxy,
    start_router,
    wait_until,
)
from tests.serving.serving_helpers import Program, router_config, write_config

pytestmark = pytest.mark.hostile


@pytest.fixture(scope="module")
def reloading(data_plane: DataPlane) -> Iterator[tuple[Proxy, Path, dict[str, object]]]:
    path = data_plane.work / "reload.json"
    good = router_config(f"http://127.0.0.1:{data_plane.sidecar.port}",
                         f"http://127.0.0.1:{data_plane.challenger.port}", mode="split",
                         challengerWeight=50)
    write_config(path, good)
    program: Program = start_router(path, data_plane.log_dir)
    try:
        yield router_proxy(program), path, good
    finally:
        program.stop()


def bad_documents(good: dict[str, object]) -> dict[str, bytes]:
    def changed(**fields: object) -> bytes:
        return json.dumps({**good, **fields}).encode()

    return {
        "invalid port": changed(champion={"url": "http://127.0.0.1:99999"}),
        "unknown field": changed(challengerWieght=10),
        "weight 150": changed(challengerWeight=150),
        "unknown mode": changed(mode="everything"),
        "wrong apiVersion": changed(apiVersion="router.modelops.io/v9"),
        "empty file": b"",
        "binary junk": bytes(range(256)),
    }


def write_in_place(path: Path, data: bytes) -> None:
    """Not atomic: the file is truncated, then written, as an editor or a bad script does."""
    with open(path, "wb") as file:
        file.write(data)
        file.flush()


def swap_in(path: Path, data: bytes) -> None:
    """Atomic, as a ConfigMap update: the router sees this document and nothing between."""
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def traffic_ok(router: Proxy, count: int = 10) -> list[int]:
    """Statuses of ``count`` inference calls (0: the connection dropped without an answer)."""
    statuses = []
    with httpx.Client(base_url=f"http://127.0.0.1:{router.port}", timeout=10) as client:
        for _ in range(count):
            try:
                statuses.append(client.post("/v2/models/fraud/infer", content=BODY).status_code)
            except httpx.HTTPError:
                statuses.append(0)
    return statuses


def weight(router: Proxy) -> float:
    return router.metric("modelops_router_challenger_weight_percent")


def reloads(router: Proxy, result: str) -> float:
    return router.metric("modelops_router_config_reloads_total", result=result)


def settle_good(router: Proxy, path: Path, good: dict[str, object]) -> None:
    """A good document (marked by a new mirrorPercent, which split mode does not use) in
    force before each case."""
    before = reloads(router, "success")
    write_config(path, {**good, "mirrorPercent": time.time_ns() % 97 + 1})
    wait_until(lambda: reloads(router, "success") > before, 10, "a good document loaded")


CASES = ["truncated mid-write", "invalid port", "unknown field", "weight 150", "unknown mode",
         "wrong apiVersion", "empty file", "binary junk"]
@pytest.mark.parametrize("case", CASES)
def test_bad_config_keeps_last_good(case: str, reloading: tuple[Proxy, Path, dict[str, object]],
                                    table: Table) -> None:
    router, path, good = reloading
    row = f"reload: {case}"
    table.once(row, "nginx", lambda: "n/a")
    settle_good(router, path, good)
    failed, loaded = reloads(router, "failure"), reloads(router, "success")
    if case == "truncated mid-write":
        text = json.dumps({**good, "challengerWeight": 30}).encode()
        write_in_place(path, text[: len(text) // 2])
    else:
        swap_in(path, bad_documents(good)[case])
    try:
        wait_until(lambda: reloads(router, "failure") > failed
                   or reloads(router, "success") > loaded, 5, "the router read the document")
    except AssertionError:
        table.record(row, "router", f"no reload counted, traffic {sorted(set(traffic_ok(router)))}")
        raise
    time.sleep(0.3)  # a second poll, should a truncated write be read twice
    refused = reloads(router, "success") == loaded
    statuses = traffic_ok(router)
    kept = weight(router)
    table.record(row, "router", f"{'refused' if refused else 'LOADED'}, weight {kept:.0f}, "
                 f"traffic {sorted(set(statuses))}")
    assert refused, "the router loaded the bad document"
    assert kept == 50
    assert statuses == [200] * len(statuses)
    if case == "truncated mid-write":  # the writer finishes: the new document is taken
        with open(path, "ab") as file:
            file.write(text[len(text) // 2:])
        wait_until(lambda: weight(router) == 30, 10, "the completed document loaded")
    router.check_after()


def test_router_recovers_after_the_bad_documents(
        reloading: tuple[Proxy, Path, dict[str, object]]) -> None:
    """Whatever the cases left, a good document brings the router back."""
    router, path, good = reloading
    settle_good(router, path, good)
    assert traffic_ok(router) == [200] * 10
