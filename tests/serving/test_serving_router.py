"""router -> sidecar -> model server, all real processes: split, sticky, shadow, reload."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import time
from collections import Counter
from pathlib import Path

import aiohttp
import httpx
import numpy as np
import orjson
import pytest
from serving_helpers import (
    HOST,
    STICKY_KEY_FILE,
    Models,
    metric_value,
    router,
    router_config,
    v2_request,
    write_config,
)

from modelops_serving.routing import key_position

pytestmark = pytest.mark.slow
INFER = "/v2/models/fraud/infer"


async def fire(url: str, bodies: list[dict], concurrency: int = 16,
               headers: list[dict[str, str]] | None = None) -> list[tuple[int, dict]]:
    """Send every body once with at most ``concurrency`` in flight; keep order."""
    results: list[tuple[int, dict]] = [(0, {})] * len(bodies)
    encoded = [orjson.dumps(body) for body in bodies]
    json_type = {"Content-Type": "application/json"}
    next_index = iter(range(len(bodies)))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def worker() -> None:
            for i in next_index:
                hdrs = {**headers[i], **json_type} if headers else json_type
                try:
                    async with session.post(url + INFER, data=encoded[i], headers=hdrs) as r:
                        results[i] = (r.status, orjson.loads(await r.read()))
                except aiohttp.ClientError as exc:
                    results[i] = (-1, {"error": repr(exc)})

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


def expected_label(models: Models, row: np.ndarray, version: str) -> int:
    if version == "v1":
        return int(models.classifier.predict(row.reshape(1, -1))[0])
    return int(models.onnx_labels(row.reshape(1, -1))[0])


async def test_predictions_through_router_equal_each_models_own(stack, models: Models) -> None:
    rows = models.X[:60]
    for weight, version in ((0, "v1"), (100, "v2")):
        stack.configure(mode="split", challengerWeight=weight)
        response = httpx.post(stack.router.url + INFER, json=v2_request(rows), timeout=10)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model_version"] == version
        expected = (models.classifier.predict(rows) if version == "v1"
                    else models.onnx_labels(rows))
        assert body["outputs"][0]["data"] == expected.tolist()


async def test_split_fidelity_90_10(stack, models: Models) -> None:
    stack.configure(mode="split", challengerWeight=10)
    bodies = [v2_request(models.X[i % 50: i % 50 + 1]) for i in range(10_000)]
    results = await fire(stack.router.url, bodies, concurrency=32)
    assert all(status == 200 for status, _ in results), Counter(s for s, _ in results)
    versions = Counter(body["model_version"] for _, body in results)
    share = versions["v2"] / len(results) * 100
    assert abs(share - 10) <= 1.5, versions


async def test_sticky_header_keeps_a_key_on_one_side(stack, models: Models) -> None:
    stack.configure(mode="split", challengerWeight=50, stickyHeader="x-user")
    users = [f"user-{i}" for i in range(40)]
    bodies = [v2_request(models.X[:1]) for _ in range(400)]
    headers = [{"x-user": users[i % 40]} for i in range(400)]
    results = await fire(stack.router.url, bodies, concurrency=8, headers=headers)
    seen: dict[str, set[str]] = {}
    for (status, body), hdr in zip(results, headers, strict=True):
        assert status == 200
        seen.setdefault(hdr["x-user"], set()).add(body["model_version"])
    assert all(len(v) == 1 for v in seen.values()), seen
    # Each user is where the keyed hash puts it; unkeyed, a fifth of them would land elsewhere
    # (a client that knew the unkeyed hash could choose its arm, and steer a gate).
    secret = (stack.config_path.parent / STICKY_KEY_FILE).read_bytes()
    keyed = {u: {"v2" if key_position(u, secret) < 0.5 else "v1"} for u in users}
    unkeyed = {u: {"v2" if key_position(u) < 0.5 else "v1"} for u in users}
    assert seen == keyed
    assert sum(keyed[u] != unkeyed[u] for u in users) >= 8
    sides = Counter(next(iter(v)) for v in seen.values())
    assert sides["v1"] > 0 and sides["v2"] > 0  # both arms get some users
    # The general path (here HTTP/1.0, which the hot path leaves alone) picks the same arm,
    # trailing whitespace in the header's value notwithstanding.
    body = json.dumps(v2_request(models.X[:1])).encode()
    for user in users[:10]:
        raw = (f"POST {INFER} HTTP/1.0\r\nContent-Type: application/json\r\n"
               f"x-user: {user} \t\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
        with socket.create_connection(("127.0.0.1", stack.router.port), timeout=10) as sock:
            sock.sendall(raw)
            answer = b""
            while chunk := sock.recv(65536):  # HTTP/1.0: the router closes when done
                answer += chunk
        assert answer.split(b" ", 2)[1] == b"200"  # Go answers in the request's HTTP version
        assert {json.loads(answer.partition(b"\r\n\r\n")[2])["model_version"]} == seen[user]
    # Raising the weight only moves users to the challenger, never back.
    stack.configure(mode="split", challengerWeight=90, stickyHeader="x-user")
    later = await fire(stack.router.url, bodies[:40], concurrency=8, headers=headers[:40])
    for (_, body), hdr in zip(later, headers[:40], strict=True):
        if seen[hdr["x-user"]] == {"v2"}:
            assert body["model_version"] == "v2"


async def test_reload_under_load_drops_nothing(stack, models: Models) -> None:
    stack.configure(mode="split", challengerWeight=0)
    rows = models.X[:80]
    bodies = [v2_request(rows[i % 80: i % 80 + 1]) for i in range(2500)]
    changes = [dict(mode="split", challengerWeight=w) for w in (25, 50, 75, 100, 0)]
    changes.append(dict(mode="shadow", mirrorPercent=100))

    async def keep_reconfiguring() -> int:
        done = 0
        while not load.done():
            fields = changes[done % len(changes)]
            write_config(stack.config_path, router_config(stack.champion.url,
                                                          stack.challenger.url, **fields))
            done += 1
            await asyncio.sleep(0.05)
        return done

    load = asyncio.ensure_future(fire(stack.router.url, bodies, concurrency=16))
    reloads = await keep_reconfiguring()
    results = await load
    failures = [(s, b) for s, b in results if s != 200]
    assert not failures, failures[:5]
    assert reloads > 5
    for i, (_, body) in enumerate(results):
        row = rows[i % 80]
        assert body["outputs"][0]["data"] == [expected_label(models, row, body["model_version"])]


def test_bad_config_keeps_the_last_good_one(stack, models: Models) -> None:
    stack.configure(mode="split", challengerWeight=100)
    failures_before = stack.reloads("failure")
    # Written whole (rename), as a ConfigMap update is: the router must see this bad file,
    # not a half-written one (reading a partial write is the data-plane issue's item 7).
    partial = stack.config_path.with_suffix(".tmp")
    partial.write_text(json.dumps({"apiVersion": "router.modelops.io/v1alpha1",
                                   "champion": {"url": "not a url"}}))
    partial.replace(stack.config_path)
    deadline = time.monotonic() + 10
    while stack.reloads("failure") == failures_before:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    response = httpx.post(stack.router.url + INFER, json=v2_request(models.X[:2]))
    assert response.json()["model_version"] == "v2"
    assert "champion.url" in stack.router.log()


def test_feedback_goes_to_the_arm_that_answered(stack, models: Models) -> None:
    stack.configure(mode="split", challengerWeight=100)
    rows = models.X[:1]
    response = httpx.post(stack.router.url + INFER, json=v2_request(rows))
    request_id = response.headers["X-Request-Id"]
    label = response.json()["outputs"][0]["data"][0]
    before = httpx.get(stack.challenger.metrics_url).text
    feedback = httpx.post(stack.router.url + "/v2/feedback",
                          json={"id": request_id, "truth": label})
    assert feedback.json()["correct"] == 1
    after = httpx.get(stack.challenger.metrics_url).text
    assert (metric_value(after, "modelops_feedback_total", outcome="correct")
            - metric_value(before, "modelops_feedback_total", outcome="correct")) == 1
    unknown = httpx.post(stack.router.url + "/v2/feedback", json={"id": "nope", "truth": 1})
    assert unknown.status_code == 404


async def test_shadow_mirrors_records_pairs_and_feeds_back_to_both(stack, models: Models) -> None:
    stack.configure(mode="shadow", mirrorPercent=100)
    before = httpx.get(stack.router.metrics_url).text
    challenger_before = httpx.get(stack.challenger.metrics_url).text
    rows = models.X[:50]
    bodies = [v2_request(rows[i:i + 1], f"shadow-{i}") for i in range(50)]
    results = await fire(stack.router.url, bodies, concurrency=4)
    assert all(s == 200 and b["model_version"] == "v1" for s, b in results)
    deadline = time.monotonic() + 15
    while True:
        after = httpx.get(stack.router.metrics_url).text
        pairs = sum(metric_value(after, "modelops_shadow_agreement_total", outcome=o)
                    - metric_value(before, "modelops_shadow_agreement_total", outcome=o)
                    for o in ("agree", "disagree", "error"))
        if pairs == 50:
            break
        assert time.monotonic() < deadline, after
        time.sleep(0.1)
    agreed = (metric_value(after, "modelops_shadow_agreement_total", outcome="agree")
              - metric_value(before, "modelops_shadow_agreement_total", outcome="agree"))
    same = sum(expected_label(models, r, "v1") == expected_label(models, r, "v2") for r in rows)
    assert agreed == same
    challenger_after = httpx.get(stack.challenger.metrics_url).text
    assert (metric_value(challenger_after, "modelops_requests_total", code="200")
            - metric_value(challenger_before, "modelops_requests_total", code="200")) == 50
    truth = int(models.classifier.predict(rows[:1])[0])
    feedback = httpx.post(stack.router.url + "/v2/feedback", json={"id": "shadow-0",
                                                                   "truth": truth})
    assert feedback.status_code == 200 and feedback.json()["correct"] == 1
    paired = httpx.get(stack.router.metrics_url).text
    challenger_right = expected_label(models, rows[0], "v2") == truth
    expected_challenger = "correct" if challenger_right else "incorrect"
    assert (metric_value(paired, "modelops_shadow_paired_feedback_total", champion="correct",
                         challenger=expected_challenger)
            - metric_value(after, "modelops_shadow_paired_feedback_total", champion="correct",
                           challenger=expected_challenger)) == 1


async def test_slow_or_dead_mirror_target_leaves_the_primary_alone(
    stack, models: Models, log_dir: Path, tmp_path: Path, spawn
) -> None:
    # A socket that accepts connections but never answers: the slowest possible challenger.
    black_hole = socket.socket()
    black_hole.bind((HOST, 0))
    black_hole.listen(1024)
    config_path = tmp_path / "router.yaml"
    write_config(config_path, router_config(
        stack.champion.url, f"http://{HOST}:{black_hole.getsockname()[1]}", mode="shadow"))
    front = router(config_path, "--mirror-queue", "20", "--mirror-workers", "2",
                   "--mirror-timeout", "30")
    spawn.append(front.start(log_dir))
    try:
        front.wait_ready("/healthz")
        rows = models.X[:1]
        started = time.monotonic()
        results = await fire(front.url, [v2_request(rows) for _ in range(300)], concurrency=8)
        elapsed = time.monotonic() - started
        assert all(s == 200 for s, _ in results)
        assert {b["outputs"][0]["data"][0] for _, b in results} == {
            int(models.classifier.predict(rows)[0])}
        # Far below the 30 s a single mirror copy could wait: nothing waited for the mirror.
        assert elapsed < 25
        metrics = httpx.get(front.metrics_url).text
        assert metric_value(metrics, "modelops_router_mirror_requests_total",
                            outcome="dropped") >= 300 - 20 - 2
    finally:
        black_hole.close()


def test_expect_continue_is_answered_by_the_router_not_forwarded(stack, models: Models) -> None:
    # The router reads the whole body before forwarding; forwarding Expect would make the
    # upstream send an interim 100 that the hop could take for the final answer.
    stack.configure(mode="split", challengerWeight=0)
    host, port = stack.router.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    body = json.dumps(v2_request(models.X[:3])).encode()
    connection.request("POST", INFER, body=body, headers={
        "Content-Type": "application/json", "Expect": "100-continue"})
    response = connection.getresponse()
    payload = response.read()
    connection.close()
    assert response.status == 200, payload
    assert json.loads(payload)["outputs"][0]["data"] == models.classifier.predict(
        models.X[:3]).tolist()


def http_10(port: int, body: bytes, *headers: str) -> tuple[int, dict]:
    """One inference call over HTTP/1.0, which the router's hot path leaves to its general
    path; the status and the JSON answer."""
    lines = [f"POST {INFER} HTTP/1.0", "Content-Type: application/json", *headers,
             f"Content-Length: {len(body)}"]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        answer = b""
        while chunk := sock.recv(65536):  # HTTP/1.0: the router closes when done
            answer += chunk
    head, _, payload = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(payload)


async def test_a_retry_stays_on_its_first_arm_and_is_counted_apart(stack, models: Models) -> None:
    stack.configure(mode="split", challengerWeight=50)
    arms = {"v1": stack.champion, "v2": stack.challenger}
    pages = [stack.router.metrics_url, *(arm.metrics_url for arm in arms.values())]
    before = [httpx.get(url).text for url in pages]
    run = time.monotonic_ns()
    ids = [f"retried-{run}-{i}" for i in range(60)]
    body = v2_request(models.X[:1])
    first = await fire(stack.router.url, [body] * 60, headers=[{"X-Request-Id": i} for i in ids])
    # The retries say they are first attempts: the router drops what a client says of that.
    again = await fire(stack.router.url, [body] * 60, concurrency=4,
                       headers=[{"X-Request-Id": i, "X-Modelops-Attempt": "1"} for i in ids])
    landed = [b["model_version"] for _, b in first]
    assert [b["model_version"] for _, b in again] == landed
    assert 0 < landed.count("v2") < 60
    encoded = json.dumps(body).encode()
    for request_id, version in list(zip(ids, landed, strict=True))[:6]:  # the general path
        status, answer = http_10(stack.router.port, encoded, f"X-Request-Id: {request_id}")
        assert status == 200 and answer["model_version"] == version
    # Marked by a retrying proxy in front (Envoy): counted apart wherever the split sends them.
    await fire(stack.router.url, [body] * 20, headers=[
        {"X-Request-Id": f"marked-{run}-{i}", "x-envoy-attempt-count": "2"} for i in range(20)])
    # A client's own "retry" number on a fresh request is dropped: counted as fresh.
    forged = await fire(stack.router.url, [body] * 20, headers=[
        {"X-Request-Id": f"forged-{run}-{i}", "X-Modelops-Attempt": "9"} for i in range(20)])
    after = [httpx.get(url).text for url in pages]

    def delta(page: int, name: str, **labels: str) -> float:
        return metric_value(after[page], name, **labels) - metric_value(before[page], name,
                                                                         **labels)

    fresh = Counter(landed) + Counter(b["model_version"] for _, b in forged)
    for page, version in enumerate(arms, start=1):
        assert delta(page, "modelops_requests_total") == fresh[version]
        assert delta(page, "modelops_request_duration_seconds_count") == fresh[version]
    assert sum(delta(page, "modelops_retries_total", code="200") for page in (1, 2)) == 86
    assert delta(0, "modelops_router_retries_total") == 86
    assert delta(0, "modelops_router_requests_total") == 60 + 86 + 20  # the router sees all
