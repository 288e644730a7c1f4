"""Pure pieces of reading counters from Prometheus: samples, the arms, and the engine's shape.

The gating engine wants exact integer counts since the challenge began. `increase()` extrapolates
to the window's edges and returns fractions, so the raw counters are read instead, per series,
and turned into increments between consecutive looks by `ledger.py` (resets, lost history and
lagging replicas handled there); `arm_counts` and `paired_counts` then sum them per arm.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# Labels that identify one scraped series of a metric; grouping keys are removed from them.
SeriesKey = tuple[tuple[str, str], ...]

# The counter families the gates read: the metric, and the labels that tell its series apart
# within one process. Every other label names the process (Prometheus' target labels, the
# exporter's identity: deployment, model, version, role).
COUNTER_FAMILIES = {
    "requests": ("modelops_requests_total", ("code",)),
    "latency": ("modelops_request_duration_seconds_bucket", ("le",)),
    "prediction": ("modelops_prediction_value_bucket", ("le",)),
    "feedback": ("modelops_feedback_total", ("outcome",)),
    "absoluteError": ("modelops_feedback_absolute_error_total", ()),
    "squaredError": ("modelops_feedback_squared_error_total", ()),
    # The router's, in shadow mode: both arms' correctness on one labelled request.
    "paired": ("modelops_shadow_paired_feedback_total", ("champion", "challenger")),
}
FAMILY_LABELS = {family: labels for family, (_, labels) in COUNTER_FAMILIES.items()}
# When an exporter's counters started from zero (sidecar and router): tells a restart (reset)
# from a lagging answer, and a new pod from one whose history Prometheus lost.
START_TIME_GAUGE = "modelops_process_start_time_seconds"


@dataclass(frozen=True)
class Sample:
    labels: Mapping[str, str]
    value: float
    timestamp: float

    @property
    def key(self) -> SeriesKey:
        return tuple(sorted(self.labels.items()))


@dataclass(frozen=True)
class ArmSelector:
    """Which series belong to one arm: DESIGN's gating labels."""

    role: str
    version: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        return labels.get("role") == self.role and labels.get("version") == self.version


def parse_vector(result: Iterable[Mapping[str, Any]]) -> list[Sample]:
    """Turn the `data.result` of an instant-vector query into samples (NaN values dropped)."""
    samples = []
    for item in result:
        ts, raw = item["value"]
        value = float(raw)
        if math.isnan(value):
            continue
        samples.append(Sample(labels=dict(item["metric"]), value=value, timestamp=float(ts)))
    return samples


def sum_by(
    grown: Mapping[SeriesKey, float], arm: ArmSelector, label: str | None = None
) -> dict[str, float]:
    """Sum the growth of an arm's series, grouped by one label (or all under the key "")."""
    totals: dict[str, float] = defaultdict(float)
    for key, value in grown.items():
        labels = dict(key)
        if not arm.matches(labels):
            continue
        totals[labels.get(label, "") if label else ""] += value
    return dict(totals)


def is_server_error(code: str) -> bool:
    return code.startswith("5")


def arm_counts(
    metrics: Mapping[str, Mapping[SeriesKey, float]], arm: ArmSelector
) -> dict[str, Any]:
    """One arm's entry of the gating engine's `Counts` dict (camelCase, cumulative)."""
    by_code = sum_by(metrics.get("requests", {}), arm, "code")
    feedback = sum_by(metrics.get("feedback", {}), arm, "outcome")
    counts: dict[str, Any] = {
        "requests": sum(by_code.values()),
        "errors": sum(v for code, v in by_code.items() if is_server_error(code)),
        "latencyBuckets": sum_by(metrics.get("latency", {}), arm, "le"),
        "predictionBuckets": sum_by(metrics.get("prediction", {}), arm, "le"),
        "feedbackCorrect": feedback.get("correct", 0.0),
        # Labelled rows: classification's correct and incorrect, regression's scored ones.
        "feedbackTotal": feedback.get("correct", 0.0) + feedback.get("incorrect", 0.0)
        + feedback.get("scored", 0.0),
    }
    if feedback.get("scored"):
        counts["errorSum"] = sum(sum_by(metrics.get("absoluteError", {}), arm).values())
        counts["squaredErrorSum"] = sum(sum_by(metrics.get("squaredError", {}), arm).values())
    return counts


def paired_counts(grown: Mapping[SeriesKey, float]) -> dict[str, float]:
    """Shadow pairs by who was right, from the router's paired-feedback counter."""
    names = {
        ("correct", "correct"): "both",
        ("correct", "incorrect"): "championOnly",
        ("incorrect", "correct"): "challengerOnly",
        ("incorrect", "incorrect"): "neither",
    }
    paired = dict.fromkeys(names.values(), 0.0)
    for key, value in grown.items():
        labels = dict(key)
        name = names.get((labels.get("champion", ""), labels.get("challenger", "")))
        if name:
            paired[name] += value
    return paired


def newest_timestamp(samples: Iterable[Sample], arm: ArmSelector) -> float | None:
    stamps = [s.value for s in samples if arm.matches(s.labels)]
    return max(stamps) if stamps else None


def tracked(family: str, samples: Iterable[Sample], arms: Iterable[ArmSelector]) -> list[Sample]:
    """The samples worth a baseline: the arms' own (role and version), and the router's paired
    results (which carry no arm). Older versions' series are never counted, so never kept."""
    if family == "paired":
        return list(samples)
    chosen = tuple(arms)
    return [s for s in samples if any(arm.matches(s.labels) for arm in chosen)]


def tracked_starts(
    samples: Iterable[Sample], arms: Iterable[ArmSelector], router: bool
) -> list[Sample]:
    """The start times of the arms' sidecars, and of the routers (no `role`) when their paired
    results are read."""
    chosen = tuple(arms)
    return [
        s
        for s in samples
        if any(arm.matches(s.labels) for arm in chosen) or (router and "role" not in s.labels)
    ]
