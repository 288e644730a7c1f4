"""Feedback through the router reaches the replica that answered, not any replica.

A model with two replicas behind a Service: two real sidecars on different loopback addresses
(127.0.0.2 and 127.0.0.3; all of 127.0.0.0/8 is loopback on Linux), each in front of a fake
model server, and for the Service a TCP relay in the test that sends each new connection to the
replica the test names, as kube-proxy sends it to one it picks. The router, a real process too,
knows only the Services' URLs, so the replica it reaches there for the feedback is the wrong one
unless it follows the answer's X-Modelops-Served-By.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
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
PREDICTION = (b'{"model_name":"m","outputs":[{"name":"label","datatype":"INT64","shape":[1],'
              b'"data":[1]}]}')
# A model server's own X-Modelops-Served-By: the sidecar writes its own instead.
MODEL_ANSWER = plain_answer(PREDICTION, b"X-Modelops-Served-By: 192.0.2.1:9")


class ForgingBackend(http.server.BaseHTTPRequestHandler):
    """Plays an arm's Service whose answers carry whatever X-Modelops-Served-By lines the
    request's X-Forge headers ask for; feedback sent to it says so."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        if self.path.endswith("/infer"):
            body, forged = PREDICTION, self.headers.get_all("X-Forge") or []
        else:
            body, forged = b'{"reached": "the arm\'s URL"}', []
        head = ["HTTP/1.1 200 OK", "Content-Type: application/json",
                f"X-Request-Id: {self.headers.get('X-Request-Id', 'none')}",
                *(f"X-Modelops-Served-By: {value}" for value in forged),
                f"Content-Length: {len(body)}"]
        # One write, as the sidecar answers: the router's hot path passes such an answer on as
        # it came (on a pooled connection), which is where the header must be taken out.
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)

    def log_message(self, *args: object) -> None:
        pass


@dataclass
class Replicas:
    a: Program  # 127.0.0.2
    b: Program  # 127.0.0.3
    champion: Service
    challenger: Service
    front: Program
    config_path: Path
    model: ScriptedUpstream

    def configure(self, champion: str | None = None, **fields: object) -> None:
        """A new router configuration (the Services by default), loaded once this returns."""
        config = router_config(champion or self.champion.url, self.challenger.url, **fields)
        if self.config_path.read_text() == json.dumps(config):
            return
        before = self.reloads()
        write_config(self.config_path, config)
        deadline = time.monotonic() + 10
        while self.reloads() == before:
            assert time.monotonic() < deadline, self.front.log()
            time.sleep(0.05)

    def reloads(self) -> float:
        return metric_value(httpx.get(self.front.metrics_url).text,
                            "modelops_router_config_reloads_total", result="success")

    def warm_up(self) -> None:
        """One request first, so that the router has a pooled connection through the Service:
        on it, its hot path gets the answer whole and passes it on as it came. Its id is new
        each time: a repeated one would be a retry, which the router does not mirror."""
        status, _, _ = exchange(self.front.url, inference(f"warm-up-{time.monotonic_ns()}"))
        assert status == 200


@pytest.fixture(scope="module")
def replicas(log_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    model = ScriptedUpstream(lambda count: MODEL_ANSWER)
    upstream = Program("fake-model", [], model.port)
    a = sidecar(upstream, "m", "v1", "champion", host="127.0.0.2")
    b = sidecar(upstream, "m", "v1", "champion", host="127.0.0.3")
    champion, challenger = Service(), Service()
    config_path = tmp_path_factory.mktemp("served-by") / "router.json"
    write_config(config_path, router_config(champion.url, challenger.url, mode="split",
                                            challengerWeight=0))
    front = router(config_path)
    programs = [a, b, front]
    try:
        for program in programs:
            program.start(log_dir)
        a.wait_ready(a.metrics_url)
        b.wait_ready(b.metrics_url)
        front.wait_ready("/healthz")
        yield Replicas(a, b, champion, challenger, front, config_path, model)
    finally:
        for program in reversed(programs):
            program.stop()
        champion.close()
        challenger.close()
        model.stop()


def inference(request_id: str, version: str = "HTTP/1.1", *headers: str) -> bytes:
    """One plain inference request; over HTTP/1.1 in one write the proxies take it on their
    hot path, over HTTP/1.0 on their general path."""
    lines = [f"POST {INFER} {version}", "Host: fraud", "Content-Type: application/json",
             f"X-Request-Id: {request_id}", *headers, "Content-Length: 2"]
    return ("\r\n".join(lines) + "\r\n\r\n{}").encode()


def exchange(url: str, data: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    """``data`` sent in one write on a fresh connection: status, header fields, body."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(data)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
        head, _, body = answer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        fields = [(name.strip().lower(), value.strip())
                  for name, _, value in (line.partition(":") for line in lines[1:])]
        length = int(dict(fields)["content-length"])
        while len(body) < length:
            body += sock.recv(65536)
    return int(lines[0].split()[1]), fields, body


def served_by(fields: list[tuple[str, str]]) -> list[str]:
    return [value for name, value in fields if name == "x-modelops-served-by"]


def feedback_counts(program: Program) -> dict[str, float]:
    text = httpx.get(program.metrics_url).text
    return {outcome: metric_value(text, "modelops_feedback_total", outcome=outcome)
            for outcome in ("correct", "unmatched")}


def router_metric(replicas: Replicas, name: str, **labels: str) -> float:
    return metric_value(httpx.get(replicas.front.metrics_url).text, name, **labels)


@pytest.mark.parametrize("version", ["HTTP/1.1", "HTTP/1.0"])
def test_a_sidecar_names_the_address_it_answered_on(replicas: Replicas, version: str) -> None:
    for replica in (replicas.a, replicas.b):
        # Twice: the second goes out on a pooled connection to the model server, and on the
        # hot path its answer comes back whole, to be passed on nearly as it came.
        for attempt in range(2):
            status, fields, body = exchange(replica.url, inference(f"direct-{attempt}", version))
            assert status == 200 and body == PREDICTION
            # Its own, in place of the model server's.
            assert served_by(fields) == [f"{replica.host}:{replica.port}"]


@pytest.mark.parametrize("version", ["HTTP/1.1", "HTTP/1.0"])
def test_feedback_reaches_the_replica_that_answered(replicas: Replicas, version: str) -> None:
    replicas.configure(mode="split", challengerWeight=0)
    replicas.champion.route_to(replicas.b)
    replicas.warm_up()
    request_id = f"follow-{version}"
    status, fields, body = exchange(replicas.front.url, inference(request_id, version))
    assert status == 200 and body == PREDICTION
    assert served_by(fields) == []  # the router keeps the pod's address to itself
    replicas.champion.route_to(replicas.a)  # the Service would now pick the other replica
    a_before, b_before = feedback_counts(replicas.a), feedback_counts(replicas.b)
    feedback = httpx.post(replicas.front.url + "/v2/feedback",
                          json={"id": request_id, "truth": 1}, timeout=10)
    assert feedback.status_code == 200, feedback.text
    assert feedback.json() == {"id": request_id, "correct": 1, "incorrect": 0, "scored": 0}
    assert feedback_counts(replicas.b)["correct"] - b_before["correct"] == 1
    assert feedback_counts(replicas.a) == a_before


def test_forged_or_invalid_served_by_values_are_not_followed(
        replicas: Replicas) -> None:
    backend = http.server.ThreadingHTTPServer((HOST, 0), ForgingBackend)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    try:
        replicas.configure(champion=f"http://{HOST}:{backend.server_address[1]}",
                           mode="split", challengerWeight=0)
        b = f"127.0.0.3:{replicas.b.port}"
        cases: list[tuple[list[str], str]] = [
            ([b], "replica"),  # a valid one is followed: the test can tell the two apart
            ([b, b], "arm"),  # two are ambiguous
            ([f"localhost:{replicas.b.port}"], "arm"),
            ([f"http://{b}"], "arm"),
            ([f"{b}/v2"], "arm"),
            ([f"user@{b}"], "arm"),
            ([f"{b}, 127.0.0.2:{replicas.a.port}"], "arm"),
            (["127.0.0.3:0"], "arm"),
            (["127.0.0.3:65536"], "arm"),
            ([f"0.0.0.0:{replicas.b.port}"], "arm"),
            ([f"[::1%lo]:{replicas.b.port}"], "arm"),
        ]
        for i, (values, reached) in enumerate(cases):
            for version in ("HTTP/1.1", "HTTP/1.0"):
                request_id = f"forged-{i}-{version}"
                status, fields, _ = exchange(replicas.front.url, inference(
                    request_id, version, *(f"X-Forge: {value}" for value in values)))
                assert status == 200 and served_by(fields) == [], (values, version)
                feedback = httpx.post(replicas.front.url + "/v2/feedback",
                                      json={"id": request_id, "truth": 1}, timeout=10)
                if reached == "arm":
                    assert feedback.json() == {"reached": "the arm's URL"}, (values, version)
                else:  # sidecar b never saw this id
                    assert feedback.status_code == 404, (values, version)
                    assert feedback.json()["outcome"] == "unmatched"
    finally:
        replicas.configure(mode="split", challengerWeight=0)
        backend.shutdown()
        backend.server_close()


def test_feedback_for_a_replica_that_is_gone_goes_through_the_service(
        replicas: Replicas, log_dir: Path, spawn: list[Program]) -> None:
    replicas.configure(mode="split", challengerWeight=0)
    doomed = sidecar(Program("fake-model", [], replicas.model.port), "m", "v1", "champion",
                     host="127.0.0.4")
    spawn.append(doomed.start(log_dir))
    doomed.wait_ready(doomed.metrics_url)
    replicas.champion.route_to(doomed)
    status, _, _ = exchange(replicas.front.url, inference("orphan"))
    assert status == 200
    doomed.stop()  # the pod is gone; its address refuses connections
    replicas.champion.route_to(replicas.a)
    a_before = feedback_counts(replicas.a)
    fallbacks = router_metric(replicas, "modelops_router_feedback_fallbacks_total")
    feedback = httpx.post(replicas.front.url + "/v2/feedback",
                          json={"id": "orphan", "truth": 1}, timeout=10)
    # Honestly unmatched: the replica that remembered the prediction is gone.
    assert feedback.status_code == 404 and feedback.json()["outcome"] == "unmatched"
    assert feedback_counts(replicas.a)["unmatched"] - a_before["unmatched"] == 1
    assert router_metric(replicas, "modelops_router_feedback_fallbacks_total") == fallbacks + 1


def test_shadow_feedback_follows_each_copy_to_its_replica(replicas: Replicas) -> None:
    replicas.configure(mode="shadow", mirrorPercent=100)
    try:
        replicas.champion.route_to(replicas.a)
        replicas.challenger.route_to(replicas.b)
        # Counted before the warm-up: its copy may be sent before the next line runs.
        sent = router_metric(replicas, "modelops_router_mirror_requests_total", outcome="sent")
        replicas.warm_up()
        status, fields, _ = exchange(replicas.front.url, inference("shadowed"))
        assert status == 200 and served_by(fields) == []
        deadline = time.monotonic() + 10
        while router_metric(replicas, "modelops_router_mirror_requests_total",
                            outcome="sent") < sent + 2:  # the warm-up's copy and this one's
            assert time.monotonic() < deadline, replicas.front.log()
            time.sleep(0.05)
        # Both Services would now pick the replica that answered the other copy.
        replicas.champion.route_to(replicas.b)
        replicas.challenger.route_to(replicas.a)
        a_before, b_before = feedback_counts(replicas.a), feedback_counts(replicas.b)
        pairs = router_metric(replicas, "modelops_shadow_paired_feedback_total",
                              champion="correct", challenger="correct")
        feedback = httpx.post(replicas.front.url + "/v2/feedback",
                              json={"id": "shadowed", "truth": 1}, timeout=10)
        assert feedback.status_code == 200 and feedback.json()["correct"] == 1
        a_after, b_after = feedback_counts(replicas.a), feedback_counts(replicas.b)
        assert a_after["correct"] - a_before["correct"] == 1  # the champion's copy
        assert b_after["correct"] - b_before["correct"] == 1  # the challenger's copy
        assert a_after["unmatched"] == a_before["unmatched"]
        assert b_after["unmatched"] == b_before["unmatched"]
        assert router_metric(replicas, "modelops_shadow_paired_feedback_total",
                             champion="correct", challenger="correct") == pairs + 1
    finally:
        replicas.configure(mode="split", challengerWeight=0)
