"""Retries: how they are recognised and where the router sends them, in the Python model of
those rules (``retries.py``) that the gating simulations run. The Go data plane implements the
same rules (dataplane/internal/marks, router/memory.go, with their Go tests);
``test_serving_router.py`` and ``test_serving_sidecar.py`` send retries through the real
programs, and what the sidecar counts is tested in dataplane/internal/sidecar."""

from __future__ import annotations

import orjson
import pytest

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
