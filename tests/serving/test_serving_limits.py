"""The Go data plane against hostile or careless clients, as real processes: bounded heads,
bodies and ids, percent-encoded inference paths, and a drain that drops nothing."""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from serving_helpers import (
    HOST,
    Program,
    ScriptedUpstream,
    Service,
    metric_value,
    plain_answer,
    router,
    router_config,
    sidecar,
    write_config,
)

pytestmark = pytest.mark.slow
INFER = "/v2/models/m/infer"
ANSWER = plain_answer(b'{"outputs":[{"name":"p","datatype":"INT64","shape":[1],"data":[1]}]}')


@pytest.fixture
def scripted(log_dir: Path, spawn: list[Program]) -> Iterator[Callable[..., Program]]:
    upstreams: list[ScriptedUpstream] = []

    def start(*flags: str, env: dict[str, str] | None = None) -> Program:
        upstream = ScriptedUpstream(lambda count: ANSWER)
        upstreams.append(upstream)
        proxy = sidecar(Program("scripted", [], upstream.port), "m", "v1", "champion", *flags)
        proxy.env.update(env or {})
        spawn.append(proxy.start(log_dir))
        proxy.wait_ready(proxy.metrics_url)
        return proxy

    yield start
    for upstream in upstreams:
        upstream.stop()


def raw(port: int, data: bytes) -> bytes:
    """``data`` on a new connection; the answer's head (the server may reset the connection
    after it, having left the rest of an oversized request unread)."""
    answer = b""
    with socket.create_connection((HOST, port), timeout=10) as sock:
        try:
            sock.sendall(data)
            while b"\r\n\r\n" not in answer and (chunk := sock.recv(65536)):
                answer += chunk
        except ConnectionResetError:
            pass
    return answer


def test_oversized_heads_and_ids_are_refused(scripted) -> None:
    proxy = scripted("--max-header-bytes", "4096", "--max-uri-bytes", "512")
    huge_header = b"X-Pad: " + b"a" * 12000  # Go allows 4 KiB over --max-header-bytes
    assert raw(proxy.port, b"GET / HTTP/1.1\r\nHost: x\r\n" + huge_header + b"\r\n\r\n").startswith(
        b"HTTP/1.1 431")
    assert raw(proxy.port, b"GET /" + b"p" * 1000 + b" HTTP/1.1\r\nHost: x\r\n\r\n").startswith(
        b"HTTP/1.1 414")
    with httpx.Client(base_url=proxy.url, timeout=10) as client:
        long_id = client.post(INFER, content=b"{}", headers={"X-Request-Id": "i" * 257})
        assert long_id.status_code == 400 and "X-Request-Id" in long_id.json()["error"]
        latin = client.post(INFER, content=b"{}", headers={"X-Request-Id": "caf\u00e9".encode()})
        assert latin.status_code == 400
        longest = client.post(INFER, content=b"{}", headers={"X-Request-Id": "i" * 256})
        assert longest.status_code == 200
    assert metric_value(httpx.get(proxy.metrics_url).text, "modelops_requests_total") == 1


def test_a_percent_encoded_inference_path_is_counted_and_split(
        scripted, log_dir: Path, tmp_path: Path, spawn: list[Program]) -> None:
    proxy = scripted()
    encoded = INFER.replace("infer", "inf%65r")
    assert httpx.post(proxy.url + encoded, content=b"{}", timeout=10).status_code == 200
    page = httpx.get(proxy.metrics_url).text
    assert metric_value(page, "modelops_requests_total", code="200") == 1
    assert metric_value(page, "modelops_prediction_value_count") == 1
    # The router sends it where it sends /infer: all of it to the challenger at weight 100.
    champion = ScriptedUpstream(lambda count: plain_answer(b'{"arm":"champion"}'))
    challenger = ScriptedUpstream(lambda count: plain_answer(b'{"arm":"challenger"}'))
    try:
        config = tmp_path / "router.json"
        write_config(config, router_config(champion.url, challenger.url, challengerWeight=100))
        front = router(config)
        spawn.append(front.start(log_dir))
        front.wait_ready("/healthz")
        answer = httpx.post(front.url + encoded, content=b"{}", timeout=10)
        assert answer.json() == {"arm": "challenger"}
        assert metric_value(httpx.get(front.metrics_url).text, "modelops_router_requests_total",
                            arm="challenger") == 1
    finally:
        champion.stop()
        challenger.stop()


def test_sigterm_drains_keep_alive_clients_without_a_failure(scripted) -> None:
    """kube-proxy keeps sending a terminating pod's established connections to it: for
    --drain-seconds every answer says Connection: close, and the clients reconnect (to this
    pod, here; to another, in a cluster) without one failed request."""
    proxy = scripted(env={"MODELOPS_DRAIN_SECONDS": "2"})
    results: list[tuple[int, str]] = []
    stop = threading.Event()

    def keep_sending() -> None:
        with httpx.Client(base_url=proxy.url, timeout=10) as client:
            while not stop.is_set():
                try:
                    response = client.post(INFER, content=b"{}")
                    results.append((response.status_code, response.headers.get("connection", "")))
                except httpx.HTTPError as exc:
                    results.append((-1, repr(exc)))

    clients = [threading.Thread(target=keep_sending) for _ in range(4)]
    for thread in clients:
        thread.start()
    time.sleep(0.5)
    before = len(results)
    assert proxy.process is not None
    proxy.process.send_signal(signal.SIGTERM)
    time.sleep(1.5)  # within the drain period
    stop.set()
    for thread in clients:
        thread.join(15)
    failures = [r for r in results if r[0] != 200]
    assert not failures, failures[:5]
    drained = results[before + 8:]  # the answers in flight at the signal aside
    assert drained and all(connection == "close" for _, connection in drained)
    assert proxy.process.wait(10) == 0


def test_a_sticky_key_keeps_users_on_one_arm_and_a_short_key_is_refused(
        log_dir: Path, tmp_path: Path, spawn: list[Program]) -> None:
    champion = ScriptedUpstream(lambda count: plain_answer(b'{"arm":"champion"}'))
    challenger = ScriptedUpstream(lambda count: plain_answer(b'{"arm":"challenger"}'))
    try:
        config = tmp_path / "router.json"
        write_config(config, router_config(champion.url, challenger.url, challengerWeight=50,
                                           stickyHeader="x-user"))
        short = tmp_path / "short.key"
        short.write_text("too short\n")
        refused = router(config, "--sticky-key-file", str(short))
        spawn.append(refused.start(log_dir))
        assert refused.process is not None and refused.process.wait(10) == 2
        assert "16 to 64 bytes" in refused.log()
        key = tmp_path / "sticky.key"
        key.write_text("0123456789abcdef0123456789abcdef\n")
        front = router(config, "--sticky-key-file", str(key))
        spawn.append(front.start(log_dir))
        front.wait_ready("/healthz")
        with httpx.Client(base_url=front.url, timeout=10) as client:
            arms = {user: {client.post(INFER, content=b"{}", headers={"x-user": user}).json()["arm"]
                           for _ in range(4)} for user in (f"user-{i}" for i in range(20))}
        assert all(len(seen) == 1 for seen in arms.values()), arms
        assert {next(iter(seen)) for seen in arms.values()} == {"champion", "challenger"}
    finally:
        champion.stop()
        challenger.stop()


def test_a_terminating_sidecar_behind_a_service_fails_no_request(
        log_dir: Path, tmp_path: Path, spawn: list[Program]) -> None:
    """router -> Service -> two sidecar replicas; one gets SIGTERM while the router sends it
    keep-alive traffic. The Service sends new connections to the other one at once (its
    endpoints updated), established ones stay where they were, as kube-proxy keeps them. Not one
    client request fails: the draining replica closes each connection after its answer, the
    router's next request reconnects to the replica that stays."""
    model = ScriptedUpstream(lambda count: ANSWER)
    upstream = Program("scripted", [], model.port)
    leaving = sidecar(upstream, "m", "v1", "champion", host="127.0.0.2")
    leaving.env["MODELOPS_DRAIN_SECONDS"] = "1.5"
    staying = sidecar(upstream, "m", "v1", "champion", host="127.0.0.3")
    service = Service()
    try:
        for program in (leaving, staying):
            spawn.append(program.start(log_dir))
            program.wait_ready(program.metrics_url)
        service.replica = (leaving.host, leaving.port)
        config = tmp_path / "router.json"
        write_config(config, router_config(service.url, None))
        front = router(config)
        spawn.append(front.start(log_dir))
        front.wait_ready("/healthz")
        results: list[int | str] = []
        stop = threading.Event()

        def keep_sending() -> None:
            with httpx.Client(base_url=front.url, timeout=10) as client:
                while not stop.is_set():
                    try:
                        results.append(client.post(INFER, content=b"{}").status_code)
                    except httpx.HTTPError as exc:
                        results.append(repr(exc))

        clients = [threading.Thread(target=keep_sending) for _ in range(4)]
        for thread in clients:
            thread.start()
        time.sleep(0.5)
        assert leaving.process is not None
        leaving.process.send_signal(signal.SIGTERM)
        service.replica = (staying.host, staying.port)  # new connections go to the other one
        assert leaving.process.wait(15) == 0
        time.sleep(0.5)  # and some more traffic after it is gone
        stop.set()
        for thread in clients:
            thread.join(15)
        failures = [r for r in results if r != 200]
        assert not failures, failures[:5]
        assert len(results) > 50
        served = metric_value(httpx.get(staying.metrics_url).text, "modelops_requests_total")
        assert served > 0
    finally:
        service.close()
        model.stop()
