"""Signed, stateless feedback through the real proxies, with the key ring the operator writes.

Two replicas of one arm (real sidecars on 127.0.0.2 and 127.0.0.3) behind a Service played by a
relay, and a real router: every label is matched whichever replica answered, after the replica
restarted, once; a label without a valid receipt is refused with a 4xx and counted, and no
arm's counters move. In shadow mode the challenger's copy is scored against the same label.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from serving_helpers import (
    Program,
    ScriptedUpstream,
    Service,
    metric_value,
    plain_answer,
    router,
    router_config,
    sidecar,
    write_config,
    write_receipt_keys,
)

pytestmark = pytest.mark.slow
INFER = "/v2/models/m/infer"
PREDICTION = (b'{"model_name":"m","outputs":[{"name":"label","datatype":"INT64","shape":[1],'
              b'"data":[1]}]}')
RECEIPT = "X-Modelops-Receipt"


@dataclass
class Plane:
    a: Program  # champion replica on 127.0.0.2
    b: Program  # champion replica on 127.0.0.3
    shadow: Program  # challenger, for shadow mode
    champion: Service
    front: Program
    config_path: Path
    upstream: Program  # the model server the sidecars are in front of
    keys: Path

    def configure(self, **fields: object) -> None:
        config = router_config(self.champion.url, self.shadow.url, **fields)
        if self.config_path.read_text() == json.dumps(config):
            return  # in force already: no reload to wait for
        before = self.front_metric("modelops_router_config_reloads_total", result="success")
        write_config(self.config_path, config)
        deadline = time.monotonic() + 10
        while self.front_metric("modelops_router_config_reloads_total",
                                result="success") == before:
            assert time.monotonic() < deadline, self.front.log()
            time.sleep(0.05)

    def front_metric(self, name: str, **labels: str) -> float:
        return metric_value(httpx.get(self.front.metrics_url).text, name, **labels)


def counts(program: Program) -> dict[str, float]:
    text = httpx.get(program.metrics_url).text
    return {
        **{o: metric_value(text, "modelops_feedback_total", outcome=o)
           for o in ("correct", "incorrect")},
        **{r: metric_value(text, "modelops_feedback_refused_total", reason=r)
           for r in ("duplicate", "forged", "missing", "expired")},
    }


def moved(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before[k] for k in after if after[k] != before[k]}


@pytest.fixture(scope="module")
def plane(log_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    work = tmp_path_factory.mktemp("receipts")
    keys = write_receipt_keys(work / "receipt-keys.json")
    model = ScriptedUpstream(lambda count: plain_answer(PREDICTION))
    upstream = Program("fake-model", [], model.port)
    signed = ("--receipt-keys-file", str(keys))
    a = sidecar(upstream, "m", "v1", "champion", *signed, host="127.0.0.2")
    b = sidecar(upstream, "m", "v1", "champion", *signed, host="127.0.0.3")
    shadow = sidecar(upstream, "m", "v2", "challenger", *signed)
    champion = Service()
    config_path = work / "router.json"
    write_config(config_path, router_config(champion.url, shadow.url, mode="split",
                                            challengerWeight=0))
    front = router(config_path, *signed)
    programs = [a, b, shadow, front]
    try:
        for program in programs:
            program.start(log_dir)
        for program in (a, b, shadow):
            program.wait_ready(program.metrics_url)
        front.wait_ready("/healthz")
        yield Plane(a, b, shadow, champion, front, config_path, upstream, keys)
    finally:
        for program in reversed(programs):
            program.stop()
        champion.close()
        model.stop()


def infer(client: httpx.Client, request_id: str) -> str:
    answer = client.post(INFER, content=b"{}", headers={"X-Request-Id": request_id})
    assert answer.status_code == 200, answer.text
    assert answer.content == PREDICTION
    token = answer.headers.get(RECEIPT)
    assert token, f"no receipt on {request_id}"
    return token


def label(client: httpx.Client, document: dict[str, object]) -> httpx.Response:
    return client.post("/v2/feedback", json=document)


def test_every_label_is_matched_on_either_replica_after_a_restart_and_counts_once(
        plane: Plane, log_dir: Path) -> None:
    plane.configure(mode="split", challengerWeight=0)
    before = {"a": counts(plane.a), "b": counts(plane.b)}
    receipts: list[str] = []
    with httpx.Client(base_url=plane.front.url, timeout=10) as client:
        for replica in (plane.a, plane.b):
            plane.champion.route_to(replica)  # the Service picks this replica now
            receipts += [infer(client, f"{replica.host}-{i}") for i in range(20)]
        # Both replicas restart: all they remembered is gone.
        for replica in (plane.a, plane.b):
            replica.stop()
            replica.start(log_dir).wait_ready(replica.metrics_url)
        plane.champion.route_to(plane.a)
        before = {"a": counts(plane.a), "b": counts(plane.b)}  # restarted from zero
        answers = [label(client, {"receipt": token, "truth": 1}) for token in receipts]
        assert [a.status_code for a in answers] == [200] * 40, [a.text for a in answers]
        # Each label went to the replica that answered, named inside its receipt.
        assert moved(counts(plane.a), before["a"]) == {"correct": 20}
        assert moved(counts(plane.b), before["b"]) == {"correct": 20}
        replays = [label(client, {"receipt": token, "truth": 0}) for token in receipts[::5]]
        assert {a.status_code for a in replays} == {409}
        assert {a.json()["reason"] for a in replays} == {"duplicate"}
    assert moved(counts(plane.a), before["a"]) == {"correct": 20, "duplicate": 4}
    assert moved(counts(plane.b), before["b"]) == {"correct": 20, "duplicate": 4}


def altered(token: str) -> str:
    """The receipt with its prediction turned from class 1 to class 0, signature kept."""
    version, key, payload, mac = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["p"] = [0]
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return ".".join((version, key, forged, mac))


def test_labels_without_a_valid_receipt_are_refused_counted_and_score_nothing(
        plane: Plane) -> None:
    plane.configure(mode="split", challengerWeight=0)
    plane.champion.route_to(plane.a)
    with httpx.Client(base_url=plane.front.url, timeout=10) as client:
        token = infer(client, "genuine")
        sidecars = {"a": counts(plane.a), "b": counts(plane.b)}
        refused_before = {r: plane.front_metric("modelops_router_feedback_refused_total", reason=r)
                          for r in ("missing", "forged", "malformed")}
        cases = {
            "missing": ({"id": "genuine", "truth": 1}, 400),
            "forged": ({"receipt": altered(token), "truth": 0}, 403),
            "malformed": ({"receipt": "v1.k1.not-ours", "truth": 0}, 400),
        }
        for reason, (document, status) in cases.items():
            answer = label(client, document)
            assert answer.status_code == status, answer.text
            assert answer.json()["reason"] == reason
        for reason in cases:
            refused = plane.front_metric("modelops_router_feedback_refused_total", reason=reason)
            assert refused - refused_before[reason] == 1, reason
        # Nothing reached an arm; the genuine receipt is still good, once.
        assert counts(plane.a) == sidecars["a"] and counts(plane.b) == sidecars["b"]
        assert label(client, {"receipt": token, "truth": 1}).status_code == 200
    assert moved(counts(plane.a), sidecars["a"]) == {"correct": 1}


def test_a_receipt_older_than_max_delay_is_refused(plane: Plane, log_dir: Path) -> None:
    brief = sidecar(plane.upstream, "m", "v1", "champion", "--receipt-keys-file",
                    str(plane.keys), "--feedback-max-delay", "1")
    brief.start(log_dir).wait_ready(brief.metrics_url)
    try:
        with httpx.Client(base_url=brief.url, timeout=10) as client:
            token = infer(client, "brief")
            time.sleep(2.2)  # receipts carry whole seconds: older than 1 s for sure
            answer = label(client, {"receipt": token, "truth": 1})
        assert answer.status_code == 410, answer.text
        assert answer.json()["reason"] == "expired"
        assert counts(brief)["expired"] == 1  # a new sidecar: its only label
    finally:
        brief.stop()


def test_in_shadow_mode_the_champions_receipt_scores_both_arms(plane: Plane) -> None:
    plane.configure(mode="shadow", mirrorPercent=100)
    plane.champion.route_to(plane.a)
    paired_before = plane.front_metric("modelops_shadow_paired_feedback_total",
                                       champion="correct", challenger="correct")
    before = {"a": counts(plane.a), "shadow": counts(plane.shadow)}
    with httpx.Client(base_url=plane.front.url, timeout=10) as client:
        token = infer(client, "mirrored")
        deadline = time.monotonic() + 10
        while plane.front_metric("modelops_router_mirror_requests_total", outcome="sent") < 1:
            assert time.monotonic() < deadline, plane.front.log()
            time.sleep(0.05)
        time.sleep(0.2)  # the copy's answer recorded by the router
        answer = label(client, {"receipt": token, "truth": 1})
    assert answer.status_code == 200, answer.text
    assert moved(counts(plane.a), before["a"]) == {"correct": 1}
    assert moved(counts(plane.shadow), before["shadow"]) == {"correct": 1}
    assert plane.front_metric("modelops_shadow_paired_feedback_total", champion="correct",
                              challenger="correct") - paired_before == 1
