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


SeriesTotals = dict[tuple[tuple[str, str], ...], float]


async def read_totals(source: InstantQueries, selector: str, at: float) -> SeriesTotals:
    """Every selected sidecar's input counters at ``at``, by series."""
    samples = await source.instant(f"modelops_input_bin_total{selector}", at)
    return {tuple(sorted(s.labels.items())): s.value for s in samples}


def series_growth(
    previous: Mapping[tuple[tuple[str, str], ...], float] | None, totals: SeriesTotals
) -> list[tuple[dict[str, str], float]]:
    """What each series grew between two reads; nothing for a first read (no baseline)."""
    if previous is None:
        return []
    increments = []
    for key, value in totals.items():
        before = previous.get(key)
        if before is None:
            growth = value if previous else 0.0  # a new pod's counts, all since it started
        else:
            growth = value - before if value >= before else value  # reset: from zero
        increments.append((dict(key), growth))
    return increments


def grown(
    previous: Mapping[tuple[tuple[str, str], ...], float] | None,
    totals: SeriesTotals,
    reference: Reference,
) -> np.ndarray:
    """(F, K) rows counted between two reads."""
    return counts_from(series_growth(previous, totals), reference)


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


async def read_outcomes(source: InstantQueries, selector: str, at: float) -> SeriesTotals:
    """The labels scored for the selected version's predictions, by outcome and series."""
    query = f'modelops_feedback_total{{outcome=~"correct|incorrect",{selector[1:]}'
    samples = await source.instant(query, at)
    return {tuple(sorted(s.labels.items())): s.value for s in samples}


def outcome_growth(
    previous: Mapping[tuple[tuple[str, str], ...], float] | None, totals: SeriesTotals
) -> tuple[float, float]:
    """(wrong, labelled) between two reads."""
    wrong = labelled = 0.0
    for labels, growth in series_growth(previous, totals):
        labelled += growth
        if labels.get("outcome") == "incorrect":
            wrong += growth
    return wrong, labelled
