"""What the drift monitor reads from Prometheus, in the queries the handler and the tests share.

The sidecars export the profile they count against (``modelops_profile_*``) and their counts
(``modelops_input_bin_total``). A look reads every replica's counters as they are now and
counts what each grew since the previous look. (``increase()`` over the time since the last
look would lose what happened between the last scrape before that window and the first one
in it: with looks a minute apart and scrapes every 15 s, about a quarter of the rows.) A
counter that went down was reset by a restart and counts from zero; a series seen for the
first time counts from zero too, when the previous look had read any: a new pod.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np

from ..promsource.counts import Sample
from .live import Reference, counts_from, reference_from


class InstantQueries(Protocol):
    async def instant(self, query: str, at: float | None = None) -> list[Sample]: ...


async def read_reference(source: InstantQueries, selector: str, at: float) -> Reference | None:
    """The profile the selected sidecars count against; None until one has been scraped."""
    shares = await source.instant(f"modelops_profile_bin_share{selector}", at)
    rows = await source.instant(f"max(modelops_profile_rows{selector})", at)
    return reference_from(((s.labels, s.value) for s in shares), rows[0].value if rows else 0.0)


# Each sidecar's counters by pod, as one array: a deployment's memory stays a few KiB per pod
# (50 features x 20 bins is 8 KiB), not a dictionary entry per series.
PodTotals = dict[str, np.ndarray]
# Prometheus's labels that tell one sidecar from another (the pod, else the scrape target).
POD_LABELS = ("pod", "instance")


def _pod_of(labels: Mapping[str, str]) -> str:
    return "/".join(labels.get(name, "") for name in POD_LABELS)


async def read_totals(
    source: InstantQueries, selector: str, reference: Reference, at: float
) -> PodTotals:
    """Every selected sidecar's input counters at ``at``: (F, K) per pod."""
    query = f"sum by (pod, instance, feature, bin) (modelops_input_bin_total{selector})"
    samples = await source.instant(query, at)
    by_pod: dict[str, list[tuple[Mapping[str, str], float]]] = {}
    for sample in samples:
        by_pod.setdefault(_pod_of(sample.labels), []).append((sample.labels, sample.value))
    return {pod: counts_from(found, reference) for pod, found in by_pod.items()}


def growth(previous: Mapping[str, np.ndarray] | None, totals: PodTotals) -> np.ndarray | None:
    """What the counters grew between two reads, summed over pods; None for a first read (no
    baseline). A cell that went down was reset (a restart) and counts from zero; a pod seen for
    the first time counts whole, when the previous read found any pod (a new pod)."""
    if previous is None:
        return None
    total: np.ndarray | None = None
    for pod, now in totals.items():
        before = previous.get(pod)
        if before is None:
            grew = now if previous else np.zeros_like(now)
        else:
            grew = np.where(now >= before, now - before, now)
        total = grew if total is None else total + grew
    return total


def grown(
    previous: Mapping[str, np.ndarray] | None, totals: PodTotals, reference: Reference
) -> np.ndarray:
    """(F, K) rows counted between two reads."""
    found = growth(previous, totals)
    return np.zeros(reference.shares.shape) if found is None else found


async def read_holdout(
    source: InstantQueries, selector: str, at: float
) -> tuple[float, float] | None:
    """The profile's holdout accuracy and its row count, as the sidecars export them."""
    accuracy = await source.instant(
        f'max(modelops_profile_holdout{{metric="accuracy",{selector[1:]})', at
    )
    rows = await source.instant(f"max(modelops_profile_holdout_rows{selector})", at)
    if not accuracy or not rows or rows[0].value <= 0:
        return None
    return accuracy[0].value, rows[0].value


OUTCOMES = ("correct", "incorrect")


async def read_outcomes(source: InstantQueries, selector: str, at: float) -> PodTotals:
    """The labels scored for the selected version's predictions: [correct, incorrect] per pod."""
    query = (
        f"sum by (pod, instance, outcome) "
        f'(modelops_feedback_total{{outcome=~"correct|incorrect",{selector[1:]})'
    )
    by_pod: dict[str, np.ndarray] = {}
    for sample in await source.instant(query, at):
        outcome = sample.labels.get("outcome", "")
        if outcome in OUTCOMES:
            counts = by_pod.setdefault(_pod_of(sample.labels), np.zeros(len(OUTCOMES)))
            counts[OUTCOMES.index(outcome)] += max(sample.value, 0.0)
    return by_pod


def outcome_growth(
    previous: Mapping[str, np.ndarray] | None, totals: PodTotals
) -> tuple[float, float]:
    """(wrong, labelled) between two reads."""
    found = growth(previous, totals)
    if found is None:
        return 0.0, 0.0
    return float(found[1]), float(found.sum())


async def read_humility(
    source: InstantQueries, selector: str, rules: tuple[str, ...], at: float
) -> PodTotals:
    """Rows checked and rows each rule fired on: [checked, *fired by rule] per pod."""
    checked = await source.instant(
        f"sum by (pod, instance) (modelops_humility_checked_rows_total{selector})", at
    )
    fired = await source.instant(
        f"sum by (pod, instance, rule) (modelops_humility_rows_total{selector})", at
    )
    by_pod: dict[str, np.ndarray] = {}
    for sample in checked:
        by_pod.setdefault(_pod_of(sample.labels), np.zeros(1 + len(rules)))[0] += sample.value
    for sample in fired:
        rule = sample.labels.get("rule", "")
        if rule in rules:
            counts = by_pod.setdefault(_pod_of(sample.labels), np.zeros(1 + len(rules)))
            counts[1 + rules.index(rule)] += max(sample.value, 0.0)
    return by_pod


def humility_growth(
    previous: Mapping[str, np.ndarray] | None, totals: PodTotals, rules: int
) -> tuple[np.ndarray, float]:
    """(rows fired per rule, rows checked) between two reads."""
    found = growth(previous, totals)
    if found is None:
        return np.zeros(rules), 0.0
    return found[1:], float(found[0])
