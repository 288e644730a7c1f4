"""Pure assembly of the gating engine's cumulative counts from Prometheus samples.

The gating engine wants exact integer counts since the challenge began. `increase()` extrapolates
to the window's edges and returns fractions, so instead every counter series is read twice — at
the challenge's start and now — and differenced per series (per pod), before summing:

* a series that did not exist at the start (a new pod, the new challenger) counts from zero;
* a series whose value went down was reset (its pod restarted): only what it counted since the
  reset is known, so that is what counts. Counts are lost rather than invented, and both arms
  are treated alike.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# Labels that identify one scraped series of a metric; grouping keys are removed from them.
SeriesKey = tuple[tuple[str, str], ...]


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


def series_increase(now: Iterable[Sample], start: Iterable[Sample]) -> dict[SeriesKey, float]:
    """Per series: how much the counter grew since the start, resets handled (see module doc)."""
    at_start = {s.key: s.value for s in start}
    grown: dict[SeriesKey, float] = {}
    for sample in now:
        before = at_start.get(sample.key)
        if before is None or sample.value < before:
            grown[sample.key] = sample.value
        else:
            grown[sample.key] = sample.value - before
    return grown


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
        "feedbackTotal": feedback.get("correct", 0.0) + feedback.get("incorrect", 0.0),
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
