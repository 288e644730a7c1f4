"""`modelops gating replay --prometheus URL --start --end`: last week's challenge, replayed.

The operator's own reader (`PrometheusSource.read_counts`, the counter ledger, warm-up by each
pod's start time) reads the sidecars' series as they were at each look: the challenge starts at
`--start`, and a look comes every `spec.decision.interval` until `--end`, as the daemon's would.
Each look's answer is the same JSON line the stdin replay writes; the run is the challenger's
version. Which versions were the two arms is read from the series (the `version` label of the
`champion` and `challenger` roles), unless given.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..promsource import PrometheusSettings, PrometheusSource, PrometheusUnavailable
from .model import ModelRef
from .replay import PolicyError, Replayer, ReplayPolicy, ReplayTarget

MAX_LOOKS = 100_000  # a week at 6 s; a longer replay is refused, not left running for hours


@dataclass(frozen=True)
class PrometheusReplay:
    url: str
    start: float
    end: float
    namespace: str
    deployment: str
    champion_version: str | None = None
    challenger_version: str | None = None
    namespace_label: str = "namespace"


def look_times(start: float, end: float, interval: float) -> list[float]:
    """The daemon's looks: at the start (the challenge begins), then every interval until end."""
    if not (math.isfinite(start) and math.isfinite(end)) or end <= start:
        raise PolicyError(f"--end: {end:g} is not after --start {start:g}")
    count = math.floor((end - start) / interval) + 1
    if count > MAX_LOOKS:
        raise PolicyError(
            f"--start/--end: {count:,} looks at spec.decision.interval {interval:g} s; at most "
            f"{MAX_LOOKS:,} (replay a shorter span)"
        )
    return [start + k * interval for k in range(count)]


async def _versions(source: PrometheusSource, where: PrometheusReplay) -> dict[str, set[str]]:
    """Each role's versions that served within [start, end]."""
    label = where.namespace_label
    selector = json.dumps(where.namespace), json.dumps(where.deployment)
    span = max(math.ceil(where.end - where.start), 1)
    query = (
        f"group by (role, version) (last_over_time(modelops_requests_total"
        f'{{{label}={selector[0]},deployment={selector[1]}}}[{span}s]))'
    )
    found: dict[str, set[str]] = {"champion": set(), "challenger": set()}
    for sample in await source.instant(query, where.end):
        role, version = sample.labels.get("role"), sample.labels.get("version")
        if role in found and version:
            found[role].add(version)
    return found


def _pick(role: str, given: str | None, found: set[str], flag: str) -> str:
    if given is not None:
        return given
    if len(found) == 1:
        return next(iter(found))
    if not found:
        raise PolicyError(f"{flag}: no {role} series in the span (namespace, deployment, times?)")
    raise PolicyError(f"{flag}: the span has {role} versions {', '.join(sorted(found))}; name one")


def replay_prometheus(
    policy: ReplayPolicy, where: PrometheusReplay, write: Callable[[str], Any]
) -> None:
    """Write one JSON answer per look; PolicyError for what cannot be replayed."""
    interval = policy.policy.gating.policy.interval
    times = look_times(where.start, where.end, interval)
    source = PrometheusSource(
        PrometheusSettings(url=where.url, namespace_label=where.namespace_label)
    )
    loop = asyncio.new_event_loop()
    try:
        try:
            found = loop.run_until_complete(_versions(source, where))
        except PrometheusUnavailable as error:
            raise PolicyError(f"--prometheus: {error}") from error
        champion = _pick("champion", where.champion_version, found["champion"],
                         "--champion-version")  # fmt: skip
        challenger = _pick("challenger", where.challenger_version, found["challenger"],
                           "--challenger-version")  # fmt: skip
        target = ReplayTarget(where.namespace, where.deployment, ModelRef(champion),
                              ModelRef(challenger))  # fmt: skip
        replayer = Replayer(policy, source, target, loop)
        for t in times:
            answer = replayer.look_at(challenger, t)
            write(json.dumps(answer, separators=(",", ":")) + "\n")
            if answer["decision"] != "wait":
                break
    finally:
        loop.run_until_complete(source.aclose())
        loop.close()
