"""The sidecar's Prometheus metrics (the names the operator's gates query).

The sidecar is Go (dataplane/internal/sidecar/metrics.go) and exports exactly these names,
labels and types; this Python registry stays as their reference, and the operator's tests
(promsource, gating) produce sidecar pages with it.

Every series carries ``deployment``, ``model``, ``version`` and ``role``; the children are bound
once at start-up so the per-request cost is one dictionary lookup and an increment.
"""

from __future__ import annotations

import math
import time
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

IDENTITY_LABELS = ("deployment", "model", "version", "role")
DEFAULT_LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
DEFAULT_PREDICTION_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
FEEDBACK_OUTCOMES = ("correct", "incorrect", "scored", "unmatched", "invalid", "late")
# Why a label was refused for its receipt (dataplane/internal/receipt.Failures).
RECEIPT_REFUSALS = ("missing", "malformed", "unknown_key", "forged", "expired", "future",
                    "other_deployment", "duplicate", "other_version")
MAX_OBSERVED_VALUES = 1024  # per response, so a huge batch costs bounded time

# The _created series double the series count and no gate uses them.
prometheus_client.disable_created_metrics()


def parse_buckets(text: str | None, default: tuple[float, ...], flag: str) -> tuple[float, ...]:
    if not text:
        return default
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise ValueError(f"{flag}: expected comma-separated numbers, got '{text}'") from exc
    if not values or any(math.isnan(v) for v in values) or list(values) != sorted(set(values)):
        raise ValueError(f"{flag}: buckets must be distinct numbers in increasing order")
    return values


class SidecarMetrics:
    def __init__(
        self,
        identity: dict[str, str],
        prediction_buckets: tuple[float, ...] = DEFAULT_PREDICTION_BUCKETS,
        latency_buckets: tuple[float, ...] = DEFAULT_LATENCY_BUCKETS,
    ):
        self.registry = CollectorRegistry(auto_describe=True)
        names = IDENTITY_LABELS
        ident = [identity.get(name, "") for name in names]
        self._ident = ident
        self._requests = Counter(
            "modelops_requests", "Inference requests answered, by HTTP status code.",
            [*names, "code"], registry=self.registry)
        self.duration = Histogram(
            "modelops_request_duration_seconds", "Inference request latency seen by the sidecar.",
            names, buckets=latency_buckets, registry=self.registry).labels(*ident)
        self.prediction = Histogram(
            "modelops_prediction_value",
            "Predicted values (class label or score) of successful inference responses.",
            names, buckets=prediction_buckets, registry=self.registry).labels(*ident)
        feedback = Counter(
            "modelops_feedback", "Feedback rows by outcome (correct/incorrect for "
            "classifiers, scored for regressors, unmatched, invalid).",
            [*names, "outcome"], registry=self.registry)
        self.feedback = {o: feedback.labels(*ident, o) for o in FEEDBACK_OUTCOMES}
        self.absolute_error = Counter(
            "modelops_feedback_absolute_error",
            "Sum of |truth - prediction| over scored regression feedback rows.",
            names, registry=self.registry).labels(*ident)
        self.squared_error = Counter(
            "modelops_feedback_squared_error",
            "Sum of (truth - prediction)^2 over scored regression feedback rows.",
            names, registry=self.registry).labels(*ident)
        self.store_entries = Gauge(
            "modelops_feedback_store_entries", "Predictions remembered for feedback.",
            names, registry=self.registry).labels(*ident)
        self.store_evictions = Counter(
            "modelops_feedback_store_evictions",
            "Predictions dropped from the full store before their feedback arrived.",
            names, registry=self.registry).labels(*ident)
        # When these counters started from zero: the operator tells a restart (a reset) from
        # a lagging Prometheus answer, and a new pod from one whose history was lost.
        Gauge(
            "modelops_process_start_time_seconds",
            "When this process's counters started from zero (unix seconds).",
            names, registry=self.registry).labels(*ident).set(time.time())
        # Retries (retries.py) are counted here, not in the series above: the gates read those
        # as independent requests, which a retry of one is not.
        self._retries = Counter(
            "modelops_retries", "Retried inference requests answered (marked by the router or "
            "a standard attempt header, or a repeated X-Request-Id), by HTTP status code; not "
            "in modelops_requests, its latency or its predictions.",
            [*names, "code"], registry=self.registry)
        refused = Counter(
            "modelops_feedback_refused", "Labels refused for their receipt (missing, malformed, "
            "forged, unknown_key, expired, future, other_deployment, duplicate, other_version); "
            "none of them was counted.", [*names, "reason"], registry=self.registry)
        self.refused = {r: refused.labels(*ident, r) for r in RECEIPT_REFUSALS}
        self.receipts_forgotten = Counter(
            "modelops_feedback_receipts_forgotten", "Scored receipts the duplicate check forgot "
            "before they expired, to stay within its capacity (a replay of one of them would "
            "count again).", names, registry=self.registry).labels(*ident)
        self._request_children: dict[int, Any] = {}
        self._retry_children: dict[int, Any] = {}
        self._requests_family = self._requests

    def count_request(self, code: int) -> None:
        child = self._request_children.get(code)
        if child is None:
            child = self._requests_family.labels(*self._ident, str(code))
            self._request_children[code] = child
        child.inc()

    def count_retry(self, code: int) -> None:
        child = self._retry_children.get(code)
        if child is None:
            child = self._retries.labels(*self._ident, str(code))
            self._retry_children[code] = child
        child.inc()

    def observe_predictions(self, values: list[Any]) -> None:
        observe = self.prediction.observe
        for value in values[:MAX_OBSERVED_VALUES]:
            if isinstance(value, int | float) and value == value:
                observe(value)

    def exposition(self) -> bytes:
        return prometheus_client.generate_latest(self.registry)
