"""Retried requests: recognised, kept on the arm of their first attempt, and counted apart.

The router and the sidecar are Go (dataplane/internal/marks, dataplane/internal/router/
memory.go, dataplane/internal/sidecar); they implement the rules below, and this module
stays as the Python model of them that the gating simulations run.

Clients retry failed requests. Counted as fresh requests, retries harm the gates twice: a retry
that the split sends to the other arm is counted there (with a 5 % canary, retries of the
champion's failures make an equal challenger look about twice as bad), and retries on the same
arm make errors come in clumps, which breaks the independence of requests that the gates'
e-processes assume. So a retry is recognised where it can be, sent to the arm of its first
attempt (one random draw decides the arm of a request and of all its attempts), served as
usual, and counted in ``modelops_retries_total`` instead of the series the gates read.

An attempt is a retry, for the router, when
- its X-Request-Id is one the router routed less than ``retry_window`` seconds before
  (``RouteMemory``: the same bounded memory that sends feedback to the arm that answered), or
- a standard marker says so: ``x-envoy-attempt-count`` > 1 (Envoy, Istio, Gateway API
  implementations built on Envoy), ``grpc-previous-rpc-attempts`` > 0 (gRPC's retry policy).
The router marks what it recognised for the sidecar (``X-Modelops-Attempt: N``). The sidecar
counts apart an attempt that any of the three markers calls a retry (so deployments without our
router, behind a Gateway API route, are covered by the standard ones), or whose X-Request-Id it
answered itself less than ``retry_window`` seconds before (its feedback store still holds that
prediction). What stays counted as independent is in docs/gating.md ("Retries and duplicate
labels").

Not pinned to the replica: a client retries to get away from what failed, often one pod, and
the evidence needs only the arm (the marker keeps the retry out of the counts on any replica;
feedback follows the replica that answered the last attempt). Not recognised by a digest of
the body, for clients that send no id: equal inputs from different users are common (a default
feature vector, a popular item), hashing every body costs time on the request path in
proportion to its size, and it would need a second memory of every request.

Who may say "retry": the router drops any X-Modelops-Attempt a client sends before it writes its
own, because the client's value would
reach the sidecar of an arm the client can choose: reusing the id of a request it saw answered
by the challenger pins a new request there, and a forged "X-Modelops-Attempt: 1" would have it
counted there as fresh, a count aimed at one arm. A client's standard markers do pass: with them
it can only take its own requests out of the evidence, and it decides that before the arm is
drawn (a marked request with an unknown id is split like any other), so the removal falls on
both arms alike, like a request never sent. Reusing an id, likewise, pins a request *and* takes
it out of the counts; the only thing a client gets to choose is what is left out, never what is
counted where. (With a sticky header a client chooses its arm outright; markers give it nothing
more than not sending a request would.)
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from .feedback_store import BoundedTTLMap
from .routing import CHAMPION, choose_arm

if TYPE_CHECKING:
    from .router_config import RouterConfig

# How long after a request's first attempt another one with its id is a retry. Client retry
# policies give up within seconds to a minute; a longer window would only take more of the
# traffic of clients that reuse one id for many requests out of the evidence.
RETRY_WINDOW_SECONDS = 60.0
ATTEMPT_FIELD = b"X-Modelops-Attempt"
MAX_ATTEMPT = 1000  # a marker is a count; a larger number says nothing more
# One pass over a request head (``"\r\nName: value"`` lines) finds the id and every marker.
_MARKS = re.compile(rb"\r\n(x-request-id|x-modelops-attempt|x-envoy-attempt-count|"
                    rb"grpc-previous-rpc-attempts)[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE)
_NAMES = frozenset((b"x-request-id", b"x-modelops-attempt", b"x-envoy-attempt-count",
                    b"grpc-previous-rpc-attempts"))


class Marks(NamedTuple):
    """What a request says about itself."""

    request_id: str | None  # the last X-Request-Id (the one the sidecar keys predictions by)
    standard: int  # the attempt the standard markers state; 1 when none says retry
    ours: int  # X-Modelops-Attempt's attempt; 0 when absent, 1 when unreadable

    @property
    def attempt(self) -> int:
        """The attempt the sidecar takes this for (it trusts ours: the router wrote it)."""
        return max(self.standard, self.ours)


def read_marks(head: bytes) -> Marks:
    """The marks of a request head whose lines are ``"\r\nName: value"`` (the hot paths)."""
    return _marks(_MARKS.findall(head))


def marks_of(headers: list[tuple[bytes, bytes]]) -> Marks:
    """The marks of raw ``(name, value)`` header pairs (the general paths)."""
    return _marks([(name, value) for name, value in headers if name.lower() in _NAMES])


def _marks(fields: list[tuple[bytes, bytes]]) -> Marks:
    if not fields:
        return _NO_MARKS
    request_id: str | None = None
    standard, ours = 1, 0
    for name, value in fields:
        name = name.lower()
        if name == b"x-request-id":
            request_id = value.strip(b" \t").decode("utf-8", "surrogateescape") or None
            continue
        number = _count(value.strip(b" \t"))
        if name == b"x-modelops-attempt":
            ours = max(ours, number or 1)
        elif number is None:
            continue
        elif name == b"x-envoy-attempt-count":
            standard = max(standard, number)
        else:  # grpc-previous-rpc-attempts counts the attempts before this one
            standard = max(standard, number + 1)
    return Marks(request_id, standard, ours)


_NO_MARKS = Marks(None, 1, 0)


def _count(value: bytes) -> int | None:
    """A marker's number, at most ``MAX_ATTEMPT``; None when it is not one. (Any number of
    digits is a count, but ``int`` refuses thousands of them: they are cut first.)"""
    if not value.isdigit():
        return None
    digits = value.lstrip(b"0")
    return MAX_ATTEMPT if len(digits) > 4 else min(int(digits or b"0"), MAX_ATTEMPT)


def attempt_line(attempt: int) -> bytes:
    """``"\r\nX-Modelops-Attempt: N"`` for a retry, to splice after a head's last line; b""
    for a first attempt."""
    return b"" if attempt <= 1 else b"\r\n%s: %d" % (ATTEMPT_FIELD, attempt)


def with_attempt(headers: list[tuple[bytes, bytes]], attempt: int) -> list[tuple[bytes, bytes]]:
    """Raw header pairs without a client's X-Modelops-Attempt, with ours for a retry."""
    kept = [(name, value) for name, value in headers if name.lower() != b"x-modelops-attempt"]
    if attempt > 1:
        kept.append((ATTEMPT_FIELD, b"%d" % attempt))
    return kept


@dataclass(frozen=True, slots=True)
class Answered:
    """Where one request went, so its feedback can follow it and its retries stay with it: the
    arm and its URL, and the address (``ip:port``) of the replica behind it that answered when
    it said so (``servedby.py``); ``attempt`` is the latest attempt routed."""

    arm: str
    url: str
    shadow_url: str | None
    replica: str | None = None
    shadow_replica: str | None = None
    attempt: int = 1


class RouteMemory:
    """The router's memory of request ids: at most ``capacity`` of them, each ``ttl`` seconds
    from its first attempt. Feedback takes an id's record to reach the arm and the replica that
    answered; an attempt whose id was first routed less than ``retry_window`` seconds before is
    a retry, sent where the first one went. One map serves both, so a retry costs one lookup."""

    def __init__(self, capacity: int, ttl: float, retry_window: float = RETRY_WINDOW_SECONDS,
                 clock: Callable[[], float] = time.monotonic):
        self.routes: BoundedTTLMap[str, Answered] = BoundedTTLMap(capacity, ttl, clock)
        self.retry_window = retry_window
        # A first attempt's record names only its arm and URL: one shared object per arm (a
        # frozen instance costs more to build than the rest of the hot path's bookkeeping).
        self._first: dict[tuple[str, str], Answered] = {}

    def __len__(self) -> int:
        return len(self.routes)

    def earlier(self, marks: Marks) -> tuple[Answered | None, int]:
        """The record of the attempt this one retries (None when it is no retry the memory
        knows) and this attempt's number. A client's X-Modelops-Attempt is not believed."""
        if marks.request_id is not None:
            found = self.routes.get_aged(marks.request_id)
            if found is not None and found[1] <= self.retry_window:
                return found[0], max(marks.standard, found[0].attempt + 1)
        return None, marks.standard

    def dispatched(self, request_id: str | None, earlier: Answered | None, arm: str, url: str,
                   attempt: int) -> None:
        """An attempt is on its way (before its answer: a retry may come while it is in
        flight). A retry keeps the first attempt's place and time; a first attempt, or an
        id seen outside the window, starts anew."""
        if request_id is None:
            return
        if earlier is not None:
            record = Answered(arm, url, earlier.shadow_url, earlier.replica,
                              earlier.shadow_replica, attempt)
            if self.routes.replace(request_id, record):
                return
        first = self._first.get((arm, url)) if attempt == 1 else None
        if first is None:
            first = Answered(arm, url, None, attempt=attempt)
            if attempt == 1:
                if len(self._first) >= 16:  # arms' URLs change only with the configuration
                    self._first.clear()
                self._first[arm, url] = first
        self.routes.put(request_id, first)

    def answered(self, request_id: str, arm: str, url: str, shadow_url: str | None,
                 replica: str | None, attempt: int) -> None:
        """After an answer: the replica that answered (and the arm the copy went to, in
        shadow mode), unless a later attempt is already on its way; a retry keeps the first
        attempt's shadow copy, the one its feedback pairs with."""
        routes = self.routes
        current = routes.get(request_id)
        if current is not None and current.attempt > attempt:
            return
        shadow_replica = None
        if attempt > 1 and current is not None:
            shadow_url, shadow_replica = current.shadow_url, current.shadow_replica
        record = Answered(arm, url, shadow_url, replica, shadow_replica, attempt)
        if not routes.replace(request_id, record):
            routes.put(request_id, record)

    def take(self, request_id: str) -> Answered | None:
        return self.routes.take(request_id)


def route_arm(config: RouterConfig, earlier: Answered | None, sticky: str | None,
              draw: Callable[[], float] = random.random, secret: bytes = b"") -> str:
    """The arm of an inference request: its first attempt's while the configuration still
    sends traffic there, else the split's choice (weight, or the sticky key's position)."""
    split = config.mode == "split" and config.challenger is not None
    if earlier is not None and (earlier.arm == CHAMPION or (split and config.challengerWeight > 0)):
        return earlier.arm
    if config.mode != "split":
        return CHAMPION
    return choose_arm(config.challengerWeight, sticky, draw, secret)
