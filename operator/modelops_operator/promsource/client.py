"""`PrometheusSource`: reads what both arms did since the challenge began, over the HTTP API.

Each look reads the raw counters now and turns them into increments against the previous look
(`ledger.py`); the first look of a challenge takes its baselines at the challenge's start.
Failures are explicit: an unreachable or failing Prometheus raises `PrometheusUnavailable` (the
controller then waits, with a condition that says why); no series for an arm is reported in
`CountsReading.missing`. Neither can ever look like good news for the challenger.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from .counts import (
    COUNTER_FAMILIES,
    START_TIME_GAUGE,
    ArmSelector,
    Sample,
    arm_counts,
    newest_timestamp,
    paired_counts,
    parse_vector,
    tracked,
    tracked_starts,
)
from .ledger import CounterLedger, Snapshot, begin, take_look

SIDECAR_FAMILIES = tuple(f for f in COUNTER_FAMILIES if f != "paired")


class PrometheusUnavailable(RuntimeError):
    """Prometheus could not answer; the message says what went wrong, for a condition."""


@dataclass(frozen=True)
class PrometheusSettings:
    url: str
    bearer_token: str | None = None
    ca_file: Path | None = None
    timeout_seconds: float = 5.0
    attempts: int = 3
    # Label Prometheus puts the pod's namespace in (Kubernetes service discovery relabelling).
    namespace_label: str = "namespace"


@dataclass(frozen=True)
class CountsReading:
    """Cumulative counts in the gating engine's `Counts` dict shape, and what was missing.

    `ledger` is what status must keep for the next look; `increments` is this look's share of
    `counts`, in the same shape. `complete`: every process counted all it served since the
    previous look (none warming up, restarted, lagging or seen for the first time), so the
    increments show the split the router made (the sample-ratio alarm reads only these)."""

    counts: dict[str, Any]
    missing: list[str] = field(default_factory=list)
    ledger: CounterLedger | None = None
    increments: dict[str, Any] = field(default_factory=dict)
    complete: bool = False


def label_selector(labels: Mapping[str, str]) -> str:
    """{a="x",b="y"}: a PromQL label matcher for exactly these values."""
    # PromQL string literals escape like JSON's (backslash, double quote, control characters).
    return "{" + ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(labels.items())) + "}"


class CountsSource(Protocol):
    """Where the gates' inputs come from: per-arm counts since a challenge began, and the
    instant queries of `prometheus` gates. `PrometheusSource` reads a Prometheus; the replay
    (`modelops gating replay`) answers from recorded series through the same code."""

    async def read_counts(
        self,
        *,
        namespace: str,
        deployment: str,
        champion: ArmSelector,
        challenger: ArmSelector,
        started_at: float,
        ledger: CounterLedger | None = None,
        now: float | None = None,
        paired: bool = False,
        warm_up: float = 0.0,
    ) -> CountsReading: ...

    async def instant(self, query: str, at: float | None = None) -> list[Sample]: ...


class PrometheusSource:
    def __init__(self, settings: PrometheusSettings, client: httpx.AsyncClient | None = None):
        self.settings = settings
        verify: bool | ssl.SSLContext = True
        if settings.ca_file:
            verify = ssl.create_default_context(cafile=str(settings.ca_file))
        headers = {}
        if settings.bearer_token:
            headers["Authorization"] = f"Bearer {settings.bearer_token}"
        self._client = client or httpx.AsyncClient(
            base_url=settings.url.rstrip("/"),
            verify=verify,
            headers=headers,
            timeout=settings.timeout_seconds,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def instant(self, query: str, at: float | None = None) -> list[Sample]:
        """One instant query, retried with backoff on transport errors and 5xx answers."""
        params = {"query": query}
        if at is not None:
            params["time"] = f"{at:.3f}"
        problem = ""
        for attempt in range(self.settings.attempts):
            if attempt:
                await asyncio.sleep(0.5 * 2 ** (attempt - 1))
            try:
                response = await self._client.get("/api/v1/query", params=params)
            except httpx.HTTPError as error:
                problem = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
                continue
            if response.status_code >= 500:
                problem = f"HTTP {response.status_code}: {response.text[:200]}"
                continue
            body = response.json()
            if body.get("status") != "success":
                # 4xx: a bad query will not get better by asking again.
                raise PrometheusUnavailable(f"query {query!r} failed: {body.get('error', body)}")
            return parse_vector(body["data"]["result"])
        raise PrometheusUnavailable(
            f"Prometheus at {self.settings.url} did not answer after "
            f"{self.settings.attempts} attempts ({problem})"
        )

    async def _snapshot(
        self,
        labels: Mapping[str, str],
        families: tuple[str, ...],
        arms: tuple[ArmSelector, ...],
        at: float,
    ) -> Snapshot:
        """Every tracked counter series and start time, as Prometheus has them at `at`.

        One query for all of them: behind a load balancer one Prometheus replica answers for
        the whole look, so a series it lacks is one its scrapes lacked, not one another replica
        had not yet lost (the ledger's new-series rules rely on that)."""
        family_of = {COUNTER_FAMILIES[f][0]: f for f in families}
        names = "|".join([*family_of, START_TIME_GAUGE])
        samples = await self.instant(f'{{__name__=~"{names}",{label_selector(labels)[1:]}', at)
        series: dict[str, list[Sample]] = {f: [] for f in families}
        starts: list[Sample] = []
        for sample in samples:
            name = sample.labels.get("__name__", "")
            if name == START_TIME_GAUGE:
                starts.append(sample)
            elif name in family_of:
                series[family_of[name]].append(sample)
        return Snapshot(
            series={f: tracked(f, found, arms) for f, found in series.items()},
            starts=tracked_starts(starts, arms, router="paired" in families),
        )

    async def read_counts(
        self,
        *,
        namespace: str,
        deployment: str,
        champion: ArmSelector,
        challenger: ArmSelector,
        started_at: float,
        ledger: CounterLedger | None = None,
        now: float | None = None,
        paired: bool = False,
        warm_up: float = 0.0,
    ) -> CountsReading:
        """Counts per arm since `started_at` (unix seconds), in the gating engine's shape.

        `ledger` is the previous look's (`CountsReading.ledger`), None on a challenge's first
        look: then the baselines are read as they were at `started_at`. A pod's counts from its
        first `warm_up` seconds are left out (the ledger's rule)."""
        now = time.time() if now is None else now
        labels = {self.settings.namespace_label: namespace, "deployment": deployment}
        selector = label_selector(labels)
        families = (*SIDECAR_FAMILIES, "paired") if paired else SIDECAR_FAMILIES
        arms = (champion, challenger)
        stamps_query = f"timestamp(modelops_requests_total{selector})"
        if ledger is None:
            snapshot, scraped_at, at_start = await asyncio.gather(
                self._snapshot(labels, families, arms, now),
                self.instant(stamps_query, now),
                self._snapshot(labels, families, arms, started_at),
            )
            ledger = begin(at_start, at=started_at)
        else:
            snapshot, scraped_at = await asyncio.gather(
                self._snapshot(labels, families, arms, now), self.instant(stamps_query, now)
            )
        look = take_look(
            ledger, snapshot, at=now, challenge_start=started_at, warm_up=warm_up
        )
        totals = look.ledger.totals_by_series()
        grown = look.increments_by_series()
        counts: dict[str, Any] = {arm.role: arm_counts(totals, arm) for arm in arms}
        increments: dict[str, Any] = {arm.role: arm_counts(grown, arm) for arm in arms}
        stamps = [newest_timestamp(scraped_at, arm) for arm in arms]
        missing = [
            f"{arm.role} (version {arm.version})"
            for arm, stamp in zip(arms, stamps, strict=True)
            if stamp is None
        ]
        if not missing:
            # The older arm's newest scrape: if either arm's data is old, the whole read is.
            counts["timestamp"] = min(s for s in stamps if s is not None)
        if paired:
            counts["paired"] = paired_counts(totals.get("paired", {}))
            increments["paired"] = paired_counts(grown.get("paired", {}))
        stats = look.stats
        complete = not (
            stats.warming or stats.restarted or stats.stale_answers or stats.baseline_only
            or stats.counted_new or stats.forgotten
        )
        return CountsReading(counts, missing, look.ledger, increments, complete)
