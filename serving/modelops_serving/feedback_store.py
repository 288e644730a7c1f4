"""A bounded, time-limited map from request id to the prediction the model made.

Memory stays flat under any load: at most ``capacity`` entries, each holding at most
``max_values`` predicted values, and entries older than ``ttl`` seconds are dropped. Entries
are kept in insertion order, which with one fixed TTL is also expiry order, so purging is a
pop from the front and every operation is O(1) amortised.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Remembered:
    values: tuple[Any, ...]
    classification: bool
    expires_at: float


class FeedbackStore:
    def __init__(
        self,
        capacity: int = 50_000,
        ttl: float = 3600.0,
        max_values: int = 64,
        clock: Callable[[], float] = time.monotonic,
    ):
        if capacity < 1 or ttl <= 0 or max_values < 1:
            raise ValueError("capacity and max_values must be >= 1 and ttl > 0")
        self.capacity = capacity
        self.ttl = ttl
        self.max_values = max_values
        self._clock = clock
        self._entries: OrderedDict[str, Remembered] = OrderedDict()
        self.evicted = 0  # dropped for room, before their feedback could arrive
        self.expired = 0

    def __len__(self) -> int:
        return len(self._entries)

    def _purge_expired(self, now: float) -> None:
        entries = self._entries
        while entries:
            key, first = next(iter(entries.items()))
            if first.expires_at > now:
                break
            del entries[key]
            self.expired += 1

    def remember(self, request_id: str, values: list[Any], classification: bool) -> None:
        now = self._clock()
        self._purge_expired(now)
        entries = self._entries
        if request_id in entries:
            del entries[request_id]
        elif len(entries) >= self.capacity:
            entries.popitem(last=False)
            self.evicted += 1
        entries[request_id] = Remembered(
            tuple(values[: self.max_values]), classification, now + self.ttl
        )

    def take(self, request_id: str) -> Remembered | None:
        """Remove and return the prediction, so one request is scored at most once."""
        self._purge_expired(self._clock())
        return self._entries.pop(request_id, None)


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


def score(remembered: Remembered, truth: list[Any]) -> Score:
    """Compare true values with the remembered predictions, row by row.

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
        absolute += abs(error)
        squared += error * error
    return Score(scored=len(values), absolute_error=absolute, squared_error=squared)
