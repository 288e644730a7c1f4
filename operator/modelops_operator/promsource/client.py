"""`PrometheusSource`: reads what both arms did since the challenge began, over the HTTP API.

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
from typing import Any

import httpx

from .counts import (
    ArmSelector,
    Sample,
    SeriesKey,
    arm_counts,
    newest_timestamp,
    paired_counts,
    parse_vector,
    series_increase,
)

# Counter families the sidecars (per arm) and the router (paired shadow results) export.
SIDECAR_COUNTERS = {
    "requests": "modelops_requests_total",
    "latency": "modelops_request_duration_seconds_bucket",
    "prediction": "modelops_prediction_value_bucket",
    "feedback": "modelops_feedback_total",
    "absoluteError": "modelops_feedback_absolute_error_total",
    "squaredError": "modelops_feedback_squared_error_total",
}
ROUTER_PAIRED_COUNTER = "modelops_shadow_paired_feedback_total"


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
    """Cumulative counts in the gating engine's `Counts` dict shape, and what was missing."""

    counts: dict[str, Any]
    missing: list[str] = field(default_factory=list)


def _selector(labels: Mapping[str, str]) -> str:
    # PromQL string literals escape like JSON's (backslash, double quote, control characters).
    return "{" + ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(labels.items())) + "}"


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

    async def read_counts(
        self,
        *,
        namespace: str,
        deployment: str,
        champion: ArmSelector,
        challenger: ArmSelector,
        started_at: float,
        now: float | None = None,
        paired: bool = False,
    ) -> CountsReading:
        """Counts per arm since `started_at` (unix seconds), in the gating engine's shape."""
        now = time.time() if now is None else now
        selector = _selector({self.settings.namespace_label: namespace, "deployment": deployment})
        families = dict(SIDECAR_COUNTERS)
        if paired:
            families["paired"] = ROUTER_PAIRED_COUNTER
        names = list(families)
        queries = [f"{families[n]}{selector}" for n in names]
        results = await asyncio.gather(
            *(self.instant(q, now) for q in queries),
            *(self.instant(q, started_at) for q in queries),
            self.instant(f"timestamp(modelops_requests_total{selector})", now),
        )
        grown: dict[str, dict[SeriesKey, float]] = {
            name: series_increase(results[i], results[len(names) + i])
            for i, name in enumerate(names)
        }
        scraped_at = results[-1]
        counts: dict[str, Any] = {
            "champion": arm_counts(grown, champion),
            "challenger": arm_counts(grown, challenger),
        }
        stamps = [newest_timestamp(scraped_at, arm) for arm in (champion, challenger)]
        missing = [
            f"{arm.role} (version {arm.version})"
            for arm, stamp in zip((champion, challenger), stamps, strict=True)
            if stamp is None
        ]
        if not missing:
            # The older arm's newest scrape: if either arm's data is old, the whole read is.
            counts["timestamp"] = min(s for s in stamps if s is not None)
        if paired:
            counts["paired"] = paired_counts(grown["paired"])
        return CountsReading(counts=counts, missing=missing)
