"""A bounded, time-limited map from request id to the prediction the model made.

The sidecar that keeps predictions is Go (dataplane/internal/feedback, the same rules); this
module stays as the Python model the gating simulations and their tests run.

Memory stays flat under any load: at most ``capacity`` entries, each holding at most
``max_values`` predicted values, and entries older than ``ttl`` seconds are dropped. Entries
are kept in insertion order, which with one fixed TTL is also expiry order, so purging is a
pop from the front and every operation is O(1) amortised.
"""

from __future__ import annotations

import heapq
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedTTLMap(Generic[K, V]):
    """At most ``capacity`` entries, each forgotten ``ttl`` seconds after it was put."""

    def __init__(self, capacity: int, ttl: float, clock: Callable[[], float] = time.monotonic):
        if capacity < 1 or ttl <= 0:
            raise ValueError("capacity must be >= 1 and ttl > 0")
        self.capacity = capacity
        self.ttl = ttl
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self.evicted = 0  # dropped for room before they expired
        self.expired = 0

    def __len__(self) -> int:
        return len(self._entries)

    def _purge_expired(self, now: float) -> None:
        entries = self._entries
        while entries:
            key, (expires_at, _) = next(iter(entries.items()))
            if expires_at > now:
                break
            del entries[key]
            self.expired += 1

    def put(self, key: K, value: V) -> None:
        now = self._clock()
        self._purge_expired(now)
        entries = self._entries
        if key in entries:
            del entries[key]
        elif len(entries) >= self.capacity:
            entries.popitem(last=False)
            self.evicted += 1
        entries[key] = (now + self.ttl, value)

    def get(self, key: K) -> V | None:
        self._purge_expired(self._clock())
        found = self._entries.get(key)
        return None if found is None else found[1]

    def get_aged(self, key: K) -> tuple[V, float] | None:
        """The value and its age, the seconds since it was put; None if gone."""
        now = self._clock()
        self._purge_expired(now)
        found = self._entries.get(key)
        return None if found is None else (found[1], now - found[0] + self.ttl)

    def replace(self, key: K, value: V) -> bool:
        """A new value for a live entry, which keeps its place and expiry; False if gone."""
        self._purge_expired(self._clock())
        found = self._entries.get(key)
        if found is None:
            return False
        self._entries[key] = (found[0], value)
        return True

    def take(self, key: K) -> V | None:
        found = self.take_dated(key)
        return None if found is None else found[0]

    def take_dated(self, key: K) -> tuple[V, float] | None:
        """The value and when it was put (on this map's clock), removed; None if gone."""
        self._purge_expired(self._clock())
        found = self._entries.pop(key, None)
        return None if found is None else (found[1], found[0] - self.ttl)


@dataclass(frozen=True)
class Remembered:
    values: tuple[Any, ...]
    classification: bool


class FeedbackStore(BoundedTTLMap[str, Remembered]):
    """Predictions by request id, each holding at most ``max_values`` values."""

    def __init__(
        self,
        capacity: int = 50_000,
        ttl: float = 3600.0,
        max_values: int = 64,
        clock: Callable[[], float] = time.monotonic,
    ):
        if max_values < 1:
            raise ValueError("max_values must be >= 1")
        super().__init__(capacity, ttl, clock)
        self.max_values = max_values

    def remember(self, request_id: str, values: list[Any], classification: bool,
                 keep_time: bool = False) -> None:
        """``keep_time``: a live entry of the id keeps its age (a retry's answer replaces
        its first attempt's, which the retry window is measured from)."""
        remembered = Remembered(tuple(values[: self.max_values]), classification)
        if not (keep_time and self.replace(request_id, remembered)):
            self.put(request_id, remembered)


def same_value(predicted: Any, truth: Any) -> bool:
    if isinstance(predicted, bool | int | float) and isinstance(truth, bool | int | float):
        return bool(predicted == truth)
    return str(predicted) == str(truth)


@dataclass(frozen=True)
class Score:
    correct: int = 0
    incorrect: int = 0
    scored: int = 0  # regression rows
    absolute_error: float = 0.0
    squared_error: float = 0.0


def score(remembered: Remembered, truth: list[Any], loss_bound: float | None = None) -> Score:
    """Compare true values with the remembered predictions, row by row.

    A regression row's absolute error counts at most ``loss_bound`` (its square at most the
    bound's square): bounded losses are what the accuracy gate's exact test needs.
    Raises ValueError (the message names the field) when the truth cannot be compared.
    """
    values = remembered.values
    if len(truth) != len(values):
        raise ValueError(
            f"truth: has {len(truth)} values but the prediction had {len(values)}"
        )
    if remembered.classification:
        correct = sum(1 for p, t in zip(values, truth, strict=True) if same_value(p, t))
        return Score(correct=correct, incorrect=len(values) - correct)
    absolute = squared = 0.0
    for p, t in zip(values, truth, strict=True):
        if isinstance(t, bool) or not isinstance(t, int | float):
            raise ValueError("truth: regression feedback needs numbers")
        error = float(t) - float(p)
        if error != error or error in (float("inf"), float("-inf")):
            raise ValueError("truth: values must be finite numbers")
        size = abs(error) if loss_bound is None else min(abs(error), loss_bound)
        absolute += size
        squared += size * size
    return Score(scored=len(values), absolute_error=absolute, squared_error=squared)


class MaturingScores:
    """Scores held until their prediction is ``window`` seconds old, then released.

    Labels come back after delays that differ by client, by model and over the day. Counted at
    arrival, a model whose labels come later is judged on other hours' traffic than the model it
    is compared with. Counted when their prediction is exactly ``window`` old, both models'
    labels describe the same requests' time; a label older than the window on arrival is late
    and not counted at all. At most one entry per remembered prediction (a prediction is scored
    once), so the heap is bounded by the store's capacity.
    """

    def __init__(self, window: float, clock: Callable[[], float] = time.monotonic):
        if window <= 0:
            raise ValueError("the maturity window must be positive")
        self.window = window
        self._clock = clock
        self._heap: list[tuple[float, int, Score]] = []
        self._order = 0  # ties keep arrival order; Score itself is not ordered

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, predicted_at: float, result: Score) -> bool:
        """Hold ``result`` until ``predicted_at + window``; False (dropped) if already late."""
        release_at = predicted_at + self.window
        if release_at < self._clock():
            return False
        self._order += 1
        heapq.heappush(self._heap, (release_at, self._order, result))
        return True

    def release(self) -> list[Score]:
        """The scores whose prediction has reached the window's age."""
        now, out = self._clock(), []
        while self._heap and self._heap[0][0] <= now:
            out.append(heapq.heappop(self._heap)[2])
        return out
