"""How a hostile case is written: its bytes, its contract, and which of our proxies fail it
today (strict xfail, so that a fix shows up as a failure to remove the mark)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pytest

from tests.hostile.rawhttp import Outcome, converse

TARGETS = ("sidecar", "router")
INFER = "/v2/models/fraud/infer"
ROW = np.array([[0.5, -1.0, 0.25, 2.0]])
BODY = json.dumps({"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64",
                               "data": ROW.ravel().tolist()}]}).encode()

Contract = Callable[[Outcome], None]


@dataclass
class Case:
    parts: Callable[[], Iterable[bytes]]  # the bytes to send, made when the case runs
    contract: Contract
    expect: int = 1  # answers to wait for
    wait: float = 5.0
    interval: float = 0.0

    def run(self, port: int) -> Outcome:
        return converse(port, self.parts(), expect=self.expect, wait=self.wait,
                        interval=self.interval)


def params(cases: Iterable[str], xfails: dict[tuple[str, str], str]) -> list[object]:
    """(case, target) pairs; those our programs fail today are strict xfails."""
    found = []
    for case in cases:
        for target in TARGETS:
            reason = xfails.get((case, target))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            found.append(pytest.param(case, target, id=f"{case}-{target}", marks=marks))
    return found


def refused(outcome: Outcome) -> None:
    """A clear 4xx, or a close without an answer (framing attacks); never a second answer."""
    ok = ((len(outcome.answers) == 1 and 400 <= outcome.statuses[0] < 500)
          or (not outcome.answers and outcome.closed))
    assert ok, f"expected one 4xx or a close, got {outcome.label()}"


def answered_once_then_closed(outcome: Outcome) -> None:
    """Content-Length and Transfer-Encoding both: refused, or framed by the Transfer-Encoding,
    answered once and the connection closed (RFC 9112 6.1: a server MAY process such a
    request by its Transfer-Encoding, and MUST close the connection after answering), so
    that nothing after the body is read as another request."""
    if len(outcome.answers) == 1 and 200 <= outcome.statuses[0] < 300:
        assert outcome.closed, f"answered but kept the connection: {outcome.label()}"
        return
    refused(outcome)


def refused_or_not_implemented(outcome: Outcome) -> None:
    """A transfer coding the server does not implement: a 4xx, or the 501 RFC 9112 6.1 says
    to answer (nginx's too), with the connection closed."""
    if len(outcome.answers) == 1 and outcome.statuses[0] == 501:
        assert outcome.closed, f"501 without a close: {outcome.label()}"
        return
    refused(outcome)


def status_in(*allowed: int) -> Contract:
    def contract(outcome: Outcome) -> None:
        assert outcome.status in allowed, \
            f"expected {' or '.join(map(str, allowed))}, got {outcome.label()}"
    return contract


def answered_or_refused(count: int = 1) -> Contract:
    """Each request answered with a 2xx or a 4xx, or the exchange refused (4xx / close)."""
    def contract(outcome: Outcome) -> None:
        assert not outcome.hung, f"no answer and no close: {outcome.label()}"
        assert all(200 <= s < 300 or 400 <= s < 500 for s in outcome.statuses), outcome.label()
        if outcome.answers and all(200 <= s < 300 for s in outcome.statuses):
            assert len(outcome.answers) == count, f"expected {count} answers: {outcome.label()}"
    return contract


def client_error(outcome: Outcome) -> None:
    """A 4xx for each request (payload abuse: the model server's answer, passed on)."""
    assert outcome.answers and all(400 <= s < 500 for s in outcome.statuses), \
        f"expected a 4xx, got {outcome.label()}"
