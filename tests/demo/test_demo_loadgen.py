"""The load generator against real local HTTP servers: every outcome is counted."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from modelops_demo.loadgen import LoadGenerator
from modelops_demo.models import DemoStream

pytestmark = pytest.mark.timeout(30)


@dataclass
class FakeModelServer:
    """A V2 endpoint that answers with the request id; ``fail_infer`` / ``unmatch_feedback`` /
    ``fail_feedback`` decide, per call number, whether to answer 500 / 404 "unmatched" (the
    router's and sidecar's answer for a request id they have no record of) / 502 instead."""

    version: str = "1.0.0"
    fail_infer: Callable[[int], bool] = lambda n: False
    unmatch_feedback: Callable[[int], bool] = lambda n: False
    fail_feedback: Callable[[int], bool] = lambda n: False
    not_found_feedback: Callable[[int], bool] = lambda n: False  # a 404 of another kind
    infer_calls: int = 0
    feedback_calls: int = 0
    answered_ids: list[str] = field(default_factory=list)
    feedback: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    async def infer(self, request: web.Request) -> web.Response:
        self.infer_calls += 1
        body = await request.json()
        assert request.match_info["name"] == "demo-model"
        tensor = body["inputs"][0]
        assert tensor["shape"] == [1, len(tensor["data"])] and tensor["datatype"] == "FP64"
        if self.fail_infer(self.infer_calls):
            return web.json_response({"error": "injected"}, status=500)
        self.answered_ids.append(body["id"])
        # Predict "1" always: the feedback verdict then depends on the true label.
        return web.json_response(
            {"model_name": "demo-model", "model_version": self.version, "id": body["id"],
             "outputs": [{"name": "predict", "datatype": "INT64", "shape": [1], "data": [1]}]},
            headers={"X-Request-Id": body["id"], "X-Modelops-Receipt": f"receipt-of-{body['id']}"})

    async def take_feedback(self, request: web.Request) -> web.Response:
        self.feedback_calls += 1
        body = await request.json()
        if self.unmatch_feedback(self.feedback_calls):
            return web.json_response({"id": body["id"], "outcome": "unmatched",
                                      "error": "no record"}, status=404)
        if self.fail_feedback(self.feedback_calls):
            return web.json_response({"error": "the champion did not take the feedback"},
                                     status=502)
        if self.not_found_feedback(self.feedback_calls):
            return web.json_response({"error": "no such route"}, status=404)
        self.feedback.append(body)
        correct = int(body["truth"] == 1)
        return web.json_response({"id": body["id"], "correct": correct,
                                  "incorrect": 1 - correct, "scored": 0})


async def serve(model: FakeModelServer) -> web.AppRunner:
    app = web.Application()
    app.router.add_post("/v2/models/{name}/infer", model.infer)
    app.router.add_post("/v2/feedback", model.take_feedback)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    model.url = f"http://127.0.0.1:{port}"
    return runner


@pytest.fixture
async def servers() -> AsyncIterator[Callable[[FakeModelServer], Any]]:
    runners: list[web.AppRunner] = []

    async def start(model: FakeModelServer) -> FakeModelServer:
        runners.append(await serve(model))
        return model

    yield start
    for runner in runners:
        await runner.cleanup()


def generator(url: str, count: int, **kwargs: Any) -> LoadGenerator:
    options: dict[str, Any] = {"rate_per_second": 400, "concurrency": 8,
                               "feedback_delay_seconds": (0.0, 0.05), "max_requests": count}
    options.update(kwargs)
    return LoadGenerator(url, DemoStream(seed=7), "demo-model", **options)


async def test_counts_answers_and_sends_every_label_with_the_answered_id(servers):
    model = await servers(FakeModelServer())
    load = generator(model.url, 60)
    await asyncio.wait_for(load.run(asyncio.Event()), 20)
    snap = load.snapshot()
    assert snap["requests"]["sent"] == 60
    assert snap["requests"]["ok"] == 60 and snap["requests"]["failed"] == 0
    assert snap["requests"]["byVersion"] == {"1.0.0": 60}
    assert snap["feedback"]["sent"] == 60 and snap["feedback"]["failed"] == 0
    assert snap["feedback"]["unmatched"] == 0 and snap["recentUnmatched"] == []
    assert snap["feedback"]["pending"] == 0 and snap["feedback"]["dropped"] == 0
    assert len(set(model.answered_ids)) == 60  # every request id is unique
    assert sorted(f["id"] for f in model.feedback) == sorted(model.answered_ids)
    # Each label carries the signed receipt its answer came with (opaque to the client).
    assert all(f["receipt"] == f"receipt-of-{f['id']}" for f in model.feedback)
    # The labels are the stream's true labels (ints, as the sidecar scores classes).
    truths = [label for _, label in DemoStream(seed=7).take(60)]
    assert sorted(f["truth"] for f in model.feedback) == sorted(truths)
    assert all(type(f["truth"]) is int for f in model.feedback)
    assert snap["feedback"]["accuracyByVersion"]["1.0.0"] == pytest.approx(sum(truths) / 60)
    assert snap["latencyMs"]["p50"] is not None and snap["latencyMs"]["p50"] > 0


async def test_failed_requests_and_failed_or_unmatched_labels_are_counted_not_hidden(servers):
    model = await servers(FakeModelServer(fail_infer=lambda n: n % 4 == 0,
                                          unmatch_feedback=lambda n: n % 5 == 0,
                                          fail_feedback=lambda n: n % 10 == 1))
    load = generator(model.url, 40)
    await asyncio.wait_for(load.run(asyncio.Event()), 20)
    snap = load.snapshot()
    assert model.infer_calls == 40  # no retries
    assert snap["requests"]["ok"] == 30 and snap["requests"]["failed"] == 10
    assert snap["requests"]["byStatus"] == {"200": 30, "500": 10}
    # Only answered requests get a label; every fifth one reaches a pod without its record
    # (unmatched), calls 1, 11 and 21 are refused outright (failed); none is retried.
    assert model.feedback_calls == 30
    feedback = snap["feedback"]
    assert (feedback["sent"], feedback["unmatched"], feedback["failed"]) == (21, 6, 3)
    assert feedback["byStatus"] == {"200": 21, "404": 6, "502": 3}
    assert any("HTTP 500" in e for e in snap["recentErrors"])
    assert sum("HTTP 502" in e for e in snap["recentErrors"]) == 3
    # Unmatched labels are shown apart, so they never push request errors out of view.
    assert not any("unmatched" in e for e in snap["recentErrors"])
    assert snap["recentUnmatched"] and all("unmatched" in e for e in snap["recentUnmatched"])


async def test_a_404_that_is_not_unmatched_is_a_failed_label(servers):
    model = await servers(FakeModelServer(not_found_feedback=lambda n: True))
    load = generator(model.url, 5)
    await asyncio.wait_for(load.run(asyncio.Event()), 20)
    feedback = load.snapshot()["feedback"]
    assert (feedback["sent"], feedback["unmatched"], feedback["failed"]) == (0, 0, 5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_transport_errors_are_failures():
    load = generator(f"http://127.0.0.1:{free_port()}", 10, timeout_seconds=2.0)
    await asyncio.wait_for(load.run(asyncio.Event()), 20)
    snap = load.snapshot()
    assert snap["requests"]["failed"] == 10 and snap["requests"]["ok"] == 0
    assert set(snap["requests"]["byStatus"]) == {"transport:ConnectError"}
    assert snap["feedback"]["sent"] == 0


async def test_retarget_moves_new_requests_and_labels_to_the_new_address(servers):
    first = await servers(FakeModelServer(version="1.0.0"))
    second = await servers(FakeModelServer(version="1.1.0"))
    load = generator(first.url, None, rate_per_second=100, feedback_delay_seconds=(0.0, 0.0))
    load.start()
    for _ in range(500):
        if load.snapshot()["requests"]["ok"] >= 10:
            break
        await asyncio.sleep(0.01)
    load.retarget(second.url)
    for _ in range(500):
        if load.snapshot()["requests"]["byVersion"].get("1.1.0", 0) >= 10:
            break
        await asyncio.sleep(0.01)
    await load.stop()
    snap = load.snapshot()
    assert snap["requests"]["failed"] == 0
    assert snap["requests"]["byVersion"]["1.0.0"] >= 10
    assert snap["requests"]["byVersion"]["1.1.0"] >= 10
    assert second.feedback and snap["target"] == second.url
    # Stopping ends the run promptly; no label is lost silently.
    feedback = snap["feedback"]
    assert (feedback["sent"] + feedback["failed"] + feedback["unmatched"] + feedback["dropped"]
            == snap["requests"]["ok"])


async def test_paced_rate(servers):
    model = await servers(FakeModelServer())
    load = generator(model.url, 30, rate_per_second=60)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(load.run(asyncio.Event()), 20)
    elapsed = loop.time() - started
    # 30 requests at 60/s take about half a second: paced, not a burst.
    assert elapsed >= 0.4
    assert load.snapshot()["rate"]["okPerSecond"] > 0


async def test_invalid_settings_are_refused():
    with pytest.raises(ValueError):
        LoadGenerator("http://x", DemoStream(), "m", 0)
    with pytest.raises(ValueError):
        LoadGenerator("http://x", DemoStream(), "m", 10, feedback_delay_seconds=(3.0, 1.0))
