"""Retries: how they are recognised, where the router sends them, what the sidecar counts.

The pure parts and the sidecar's bookkeeping, in process; ``test_serving_router.py`` and
``test_serving_sidecar.py`` send retries through the real programs.
"""

from __future__ import annotations

import orjson
import pytest
from serving_helpers import metric_value

from modelops_operator.promsource.counts import COUNTER_FAMILIES
from modelops_serving.feedback_store import FeedbackStore, MaturingScores
from modelops_serving.leanhttp import Request
from modelops_serving.metrics import SidecarMetrics
from modelops_serving.requestids import UNPARSED
from modelops_serving.retries import (
    Answered,
    Marks,
    RouteMemory,
    attempt_line,
    marks_of,
    read_marks,
    route_arm,
    with_attempt,
)
from modelops_serving.router_config import parse_config
from modelops_serving.routing import CHALLENGER, CHAMPION
from modelops_serving.sidecar import Sidecar


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def head(*lines: str) -> bytes:
    return "".join(f"\r\n{line}" for line in lines).encode() + b"\r\n"


@pytest.mark.parametrize(("lines", "expected"), [
    ((), Marks(None, 1, 0)),
    (("X-Request-Id: a", "x-request-id:  b \t"), Marks("b", 1, 0)),  # the last, as the sidecar
    (("X-Envoy-Attempt-Count: 1",), Marks(None, 1, 0)),
    (("x-envoy-attempt-count: 3",), Marks(None, 3, 0)),
    (("grpc-previous-rpc-attempts: 0",), Marks(None, 1, 0)),
    (("grpc-previous-rpc-attempts: 2",), Marks(None, 3, 0)),
    (("x-envoy-attempt-count: many", "grpc-previous-rpc-attempts: -1"), Marks(None, 1, 0)),
    (("X-Modelops-Attempt: 4",), Marks(None, 1, 4)),
    (("X-Modelops-Attempt: junk",), Marks(None, 1, 1)),  # there, so the router drops it
    (("x-envoy-attempt-count: 99999999999999999999",), Marks(None, 1000, 0)),
    (("grpc-previous-rpc-attempts: " + "9" * 5000,), Marks(None, 1001, 0)),  # int() refuses it
    (("X-Modelops-Attempt: 0002", "x-envoy-attempt-count: 000000001"), Marks(None, 1, 2)),
])
def test_marks_read_alike_from_a_head_and_from_header_pairs(lines: tuple[str, ...],
                                                            expected: Marks) -> None:
    assert read_marks(head("Host: x", *lines, "Content-Length: 2")) == expected
    pairs = [tuple(part.strip().encode() for part in line.split(":", 1)) for line in lines]
    assert marks_of(pairs) == expected  # type: ignore[arg-type]


def test_only_the_router_writes_the_attempt_header() -> None:
    assert attempt_line(1) == b"" and attempt_line(3) == b"\r\nX-Modelops-Attempt: 3"
    client = [(b"X-Request-Id", b"a"), (b"x-modelops-attempt", b"1")]
    assert with_attempt(client, 1) == [(b"X-Request-Id", b"a")]
    assert with_attempt(client, 2) == [(b"X-Request-Id", b"a"), (b"X-Modelops-Attempt", b"2")]
    # The sidecar believes it, and any standard marker: one of them is enough.
    assert read_marks(head("x-envoy-attempt-count: 1", "X-Modelops-Attempt: 2")).attempt == 2
    assert read_marks(head("X-Modelops-Attempt: 1", "x-envoy-attempt-count: 2")).attempt == 2


def test_a_retry_within_the_window_is_pinned_to_its_first_attempt() -> None:
    clock = Clock()
    memory = RouteMemory(capacity=100, ttl=3600, retry_window=60, clock=clock)
    first = Marks("r-1", 1, 0)
    assert memory.earlier(first) == (None, 1)
    memory.dispatched("r-1", None, CHALLENGER, "http://b", 1)
    clock.now = 5
    earlier, attempt = memory.earlier(first)
    assert earlier is not None and (earlier.arm, attempt) == (CHALLENGER, 2)
    memory.dispatched("r-1", earlier, CHALLENGER, "http://b", attempt)
    clock.now = 59  # the window runs from the first attempt, not the latest
    earlier, attempt = memory.earlier(Marks("r-1", 1, 5))  # a client's own number: not believed
    assert earlier is not None and attempt == 3
    assert memory.earlier(Marks("r-1", 7, 0))[1] == 7  # a standard marker may say more
    clock.now = 61
    assert memory.earlier(first) == (None, 1)  # the same id later: a new request
    assert memory.earlier(Marks("r-2", 2, 0)) == (None, 2)  # a marker without memory
    assert memory.earlier(Marks(None, 3, 0)) == (None, 3)


def test_the_answer_of_an_earlier_attempt_does_not_undo_a_later_one() -> None:
    clock = Clock()
    memory = RouteMemory(capacity=100, ttl=3600, retry_window=60, clock=clock)
    memory.dispatched("r", None, CHAMPION, "http://a", 1)
    memory.answered("r", CHAMPION, "http://a", "http://b", None, 1)  # a shadow copy went
    earlier, attempt = memory.earlier(Marks("r", 1, 0))
    memory.dispatched("r", earlier, CHAMPION, "http://a", attempt)
    memory.answered("r", CHAMPION, "http://a", None, "10.0.0.1:8000", 1)  # the first, late
    assert memory.routes.get("r") == Answered(CHAMPION, "http://a", "http://b", attempt=2)
    memory.answered("r", CHAMPION, "http://a", None, "10.0.0.2:8000", 2)
    # Feedback reaches the replica of the answer the client kept, and the first one's copy.
    assert memory.take("r") == Answered(CHAMPION, "http://a", "http://b", "10.0.0.2:8000",
                                        None, 2)


def test_the_memory_stays_bounded() -> None:
    memory = RouteMemory(capacity=3, ttl=3600, retry_window=60)
    for i in range(10):
        memory.dispatched(f"r-{i}", None, CHAMPION, "http://a", 1)
    assert len(memory) == 3 and memory.earlier(Marks("r-0", 1, 0)) == (None, 1)


def config(**fields: object) -> object:
    document = {"apiVersion": "router.modelops.io/v1alpha1", "champion": {"url": "http://a"},
                "challenger": {"url": "http://b"}, **fields}
    return parse_config(orjson.dumps(document).decode())


def test_a_retry_goes_to_its_arm_while_the_configuration_still_sends_traffic_there() -> None:
    on_challenger = Answered(CHALLENGER, "http://b", None)
    on_champion = Answered(CHAMPION, "http://a", None)
    never = lambda: 0.99  # noqa: E731 -- a draw that would pick the champion at 5 %
    canary = config(challengerWeight=5)
    assert route_arm(canary, on_challenger, None, never) == CHALLENGER  # type: ignore[arg-type]
    assert route_arm(config(challengerWeight=100), on_champion, None,  # type: ignore[arg-type]
                     never) == CHAMPION
    assert route_arm(canary, None, None, never) == CHAMPION  # type: ignore[arg-type]
    rolled_back = config(challengerWeight=0)
    assert route_arm(rolled_back, on_challenger, None, never) == CHAMPION  # type: ignore[arg-type]
    shadow = config(mode="shadow")
    assert route_arm(shadow, on_challenger, None, never) == CHAMPION  # type: ignore[arg-type]


# -- the sidecar's counts ---------------------------------------------------------------------

ANSWER = {"id": "x", "outputs": [{"name": "label", "datatype": "INT64", "shape": [1],
                                  "data": [1]}]}


def make_sidecar(clock: Clock, maturing: MaturingScores | None = None) -> Sidecar:
    metrics = SidecarMetrics({"deployment": "d", "model": "m", "version": "v1",
                              "role": "challenger"})
    return Sidecar("http://127.0.0.1:1", metrics, FeedbackStore(clock=clock), maturing=maturing,
                   retry_window=60)


def counts(sidecar: Sidecar) -> dict[str, float]:
    """The sidecar's exported samples by name (summed over codes)."""
    found: dict[str, float] = {}
    for line in sidecar.metrics.exposition().decode().splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            name = series.partition("{")[0]
            found[name] = found.get(name, 0.0) + float(value)
    return found


def test_a_retry_is_remembered_for_feedback_but_counted_apart() -> None:
    clock = Clock()
    sidecar = make_sidecar(clock)
    body = orjson.dumps(ANSWER)
    sidecar.account("a", 503, b"{}", UNPARSED, 0.01, 1, True)  # the first attempt failed
    sidecar.account("a", 200, body, UNPARSED, 0.01, 2, True)  # the router's retry
    sidecar.account("e", 200, body, UNPARSED, 0.01, 3, False)  # Envoy's, no id of the client's
    found = counts(sidecar)
    assert found["modelops_requests_total"] == 1  # the 503
    assert found["modelops_request_duration_seconds_count"] == 1
    assert found["modelops_prediction_value_count"] == 0
    assert found["modelops_retries_total"] == 2
    assert sidecar.store.get("a") is not None  # its label will be scored
    # The gates never read it.
    assert "modelops_retries_total" not in {name for name, _ in COUNTER_FAMILIES.values()}


def test_a_repeated_client_id_is_a_retry_within_the_window_only() -> None:
    clock = Clock()
    sidecar = make_sidecar(clock)
    body = orjson.dumps(ANSWER)
    sidecar.account("a", 200, body, UNPARSED, 0.01, 1, True)
    clock.now = 30
    sidecar.account("a", 200, body, UNPARSED, 0.01, 1, True)  # the client timed out, retried
    clock.now = 61  # from the first answer: the retry did not restart the window
    sidecar.account("a", 200, body, UNPARSED, 0.01, 1, True)
    # An id the sidecar made up (or the response's own) is not the client's: never a retry.
    sidecar.account("x", 200, body, UNPARSED, 0.01, 1, False)
    sidecar.account("x", 200, body, UNPARSED, 0.01, 1, False)
    found = counts(sidecar)
    assert found["modelops_requests_total"] == 4 and found["modelops_retries_total"] == 1
    assert sidecar.is_retry(1, "a") and not sidecar.is_retry(1, "new")


def feedback(sidecar: Sidecar, request_id: str, truth: int) -> dict[str, object]:
    reply = sidecar.feedback(Request(b"POST", b"/v2/feedback", [],
                                     orjson.dumps({"id": request_id, "truth": truth}), True,
                                     False))
    return orjson.loads(reply.body)


@pytest.mark.parametrize("maturity", [None, 30.0])
def test_a_second_label_for_one_id_is_not_counted(maturity: float | None) -> None:
    clock = Clock()
    sidecar = make_sidecar(clock, MaturingScores(maturity, clock) if maturity else None)
    sidecar.account("a", 200, orjson.dumps(ANSWER), UNPARSED, 0.01, 1, True)
    assert feedback(sidecar, "a", 1)["correct"] == 1
    second = feedback(sidecar, "a", 0)  # sent again, or a changed mind: the first one stands
    assert second["outcome"] == "unmatched"
    clock.now = 31
    sidecar.count_matured()
    found = counts(sidecar)
    assert found["modelops_feedback_total"] == 2
    page = sidecar.metrics.exposition().decode()
    assert [metric_value(page, "modelops_feedback_total", outcome=outcome)
            for outcome in ("correct", "incorrect", "unmatched")] == [1, 0, 1]
