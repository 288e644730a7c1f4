"""Counting that survives Prometheus: per-series increments between consecutive looks.

The gates need what both arms counted since the challenge began. A difference against one value
at the start is wrong twice over: a restarted pod loses what it counted before its restart, and
a series with no sample at the start (Prometheus lost its history, or another replica answers)
counts its whole value, however old. So each look reads the raw counters, per series, and
compares every series with *its own* value at the previous look, kept in the ChampionChallenger's
status (`CounterLedger`). The rules, per process (one pod's sidecar or router, identified by every
label but the family's own: Prometheus' target labels and the exporter's identity):

* **Same process** (same start time, `modelops_process_start_time_seconds`): the increment is
  the growth since the previous look. A lower value is an answer older than the last one (a
  lagging Prometheus replica): it adds nothing and the higher baseline stays, so a series never
  counts the same requests twice.
* **Restarted process** (a later start time): a reset; the increment is the whole new value,
  which the new process counted since it started, after the previous look.
* **Older start time than the baseline**: an answer about a process that has since restarted
  (a lagging replica): nothing counts, the baseline stays.
* **Start time unknown** (an exporter without the gauge): Prometheus' own rule, a value lower
  than the baseline is a reset.
* **A process not in the ledger** counts its whole values only if it started after the challenge
  began (and after every process the ledger has forgotten started); otherwise it is a process
  Prometheus had lost (history gone, another replica) and its values only become the baseline.
  A series new in a known process (a first error code) counts whole: it appeared since.
* **Warm-up**: a process whose start time is less than `warm_up` seconds before the look
  counts nothing: its values only move its baselines, so what it counts from then on is
  evidence and its cold start is not. Without a start time there is nothing to time it by.
* **A process missing from a look** keeps its baselines for `KEEP_MISSING_LOOKS` looks, so
  Prometheus restarting, or a scrape gap, adds nothing when the series come back.
* **Bound**: at most `MAX_SERIES` series are kept; past it, the processes unseen the longest are
  forgotten first (whole processes). Forgetting loses counts, never invents them.

The cumulative totals the gates consume are the sums of the increments, kept beside the
baselines, so an operator restart resumes without double counting. Pure functions only: a
`Snapshot` and the previous ledger in, the increments and the next ledger out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .counts import FAMILY_LABELS, Sample, SeriesKey

LEDGER_VERSION = 1
# A process absent this many looks in a row is forgotten (its pod is gone, most likely).
KEEP_MISSING_LOOKS = 60
# Series kept in status. A sidecar exports 34 counter series with the default buckets (plus one
# per further status code), so this holds about 30 pods; under 30 bytes of status JSON a series.
MAX_SERIES = 1000
# Start times closer than this are the same process (they are one float, exported verbatim).
SAME_START_SECONDS = 1e-3

ProcessKey = tuple[tuple[str, str], ...]  # sorted (label, value) pairs naming one process
SeriesId = tuple[str, tuple[str, ...]]  # (family, values of the family's own labels)
ArmKey = tuple[str, str, tuple[str, ...]]  # (role, version, values of the family's own labels)


@dataclass(frozen=True)
class Snapshot:
    """One look's raw reading: each family's samples now, and the processes' start times."""

    series: Mapping[str, Sequence[Sample]]
    starts: Sequence[Sample] = ()


@dataclass(frozen=True)
class ProcessRecord:
    start: float | None  # when its counters started from zero (unix seconds), if exported
    seen: int  # the last look that saw it
    values: Mapping[SeriesId, float]


@dataclass(frozen=True)
class CounterLedger:
    """What status keeps between looks: baselines per process and series, and the totals."""

    looks: int = 0
    at: float | None = None  # when the last look was taken
    # Every process the ledger forgot started at or before this: one that started later cannot
    # have been counted before.
    forgotten_before: float = -math.inf
    processes: Mapping[ProcessKey, ProcessRecord] = field(default_factory=dict)
    totals: Mapping[str, Mapping[ArmKey, float]] = field(default_factory=dict)

    @property
    def series_count(self) -> int:
        return sum(len(p.values) for p in self.processes.values())

    def totals_by_series(self) -> dict[str, dict[SeriesKey, float]]:
        """The totals keyed like Prometheus series (role, version, own labels): `arm_counts`
        and `paired_counts` take this shape."""
        return _as_series(self.totals)

    def to_dict(self) -> dict[str, Any]:
        processes = []
        for key, record in sorted(self.processes.items()):
            values: dict[str, list[list[Any]]] = {}
            for (family, own), value in sorted(record.values.items()):
                values.setdefault(family, []).append([*own, value])
            processes.append(
                {"labels": dict(key), "start": record.start, "seen": record.seen, "values": values}
            )
        totals = {
            family: [[role, version, *own, value] for (role, version, own), value in sorted(rows)]
            for family, rows in ((f, v.items()) for f, v in sorted(self.totals.items()))
        }
        out: dict[str, Any] = {
            "version": LEDGER_VERSION,
            "looks": self.looks,
            "at": self.at,
            "processes": processes,
            "totals": totals,
        }
        if math.isfinite(self.forgotten_before):
            out["forgottenBefore"] = self.forgotten_before
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CounterLedger:
        """The inverse of `to_dict`; raises ValueError on anything else."""
        if int(data.get("version", 0)) != LEDGER_VERSION:
            raise ValueError(f"unsupported counter ledger version {data.get('version')!r}")
        try:
            processes: dict[ProcessKey, ProcessRecord] = {}
            for item in data.get("processes") or ():
                values: dict[SeriesId, float] = {}
                for family, rows in (item.get("values") or {}).items():
                    width = len(FAMILY_LABELS[family])
                    for row in rows:
                        if len(row) != width + 1:
                            raise ValueError(f"bad {family} row {row!r}")
                        values[(family, tuple(str(v) for v in row[:-1]))] = float(row[-1])
                start = item.get("start")
                key = tuple(sorted((str(k), str(v)) for k, v in item["labels"].items()))
                processes[key] = ProcessRecord(
                    None if start is None else float(start), int(item["seen"]), values
                )
            totals: dict[str, dict[ArmKey, float]] = {}
            for family, rows in (data.get("totals") or {}).items():
                width = len(FAMILY_LABELS[family])
                for row in rows:
                    if len(row) != width + 3:
                        raise ValueError(f"bad {family} total {row!r}")
                    own = tuple(str(v) for v in row[2:-1])
                    totals.setdefault(family, {})[(str(row[0]), str(row[1]), own)] = float(row[-1])
            at = data.get("at")
            return cls(
                looks=int(data.get("looks", 0)),
                at=None if at is None else float(at),
                forgotten_before=float(data.get("forgottenBefore", -math.inf)),
                processes=processes,
                totals=totals,
            )
        except (KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"unreadable counter ledger: {error!r}") from error


@dataclass(frozen=True)
class LookStats:
    """What one look did, process by process (for tests, logs and the docs' claims)."""

    counted_new: int = 0  # processes first seen, started after the challenge: counted whole
    baseline_only: int = 0  # processes first seen, started before: baseline only
    restarted: int = 0  # resets: counted whole since the restart
    stale_answers: int = 0  # answers about an older process or lower values: nothing counted
    warming: int = 0  # processes within their warm-up: baselines only
    forgotten: int = 0  # processes dropped (missing too long, or over MAX_SERIES)


@dataclass(frozen=True)
class Look:
    """The outcome of `take_look`: keep `ledger` in status, hand the totals to the gates."""

    ledger: CounterLedger
    increments: Mapping[str, Mapping[ArmKey, float]]  # this look's, per family and arm key
    stats: LookStats

    def increments_by_series(self) -> dict[str, dict[SeriesKey, float]]:
        return _as_series(self.increments)


def _as_series(by_arm: Mapping[str, Mapping[ArmKey, float]]) -> dict[str, dict[SeriesKey, float]]:
    out: dict[str, dict[SeriesKey, float]] = {}
    for family, values in by_arm.items():
        names = FAMILY_LABELS[family]
        grouped = out.setdefault(family, {})
        for (role, version, own), value in values.items():
            labels = {"role": role, "version": version, **dict(zip(names, own, strict=True))}
            key = tuple(sorted((k, v) for k, v in labels.items() if v))
            grouped[key] = grouped.get(key, 0.0) + value
    return out


def process_key(labels: Mapping[str, str], own: Iterable[str] = ()) -> ProcessKey:
    """Every label but the metric name and the family's own: the process it came from."""
    skip = {"__name__", *own}
    return tuple(sorted((k, v) for k, v in labels.items() if k not in skip))


def _group(snapshot: Snapshot) -> dict[ProcessKey, dict[SeriesId, float]]:
    # A process that exports a start time but no counter yet (they are created at their first
    # event) is seen too: a series it shows later appeared since, and counts whole.
    seen: dict[ProcessKey, dict[SeriesId, float]] = {
        process_key(s.labels): {} for s in snapshot.starts
    }
    for family, samples in snapshot.series.items():
        own = FAMILY_LABELS[family]
        for sample in samples:
            values = seen.setdefault(process_key(sample.labels, own), {})
            series = (family, tuple(sample.labels.get(name, "") for name in own))
            # Two series differing only in labels the exporter does not set (a relabelling
            # rule) are still one process's counters: their sum is a counter too.
            values[series] = values.get(series, 0.0) + sample.value
    return seen


def _compare_starts(before: float | None, now: float | None) -> str:
    if before is None or now is None:
        return "unknown"
    if now > before + SAME_START_SECONDS:
        return "restarted"
    if now < before - SAME_START_SECONDS:
        return "older"
    return "same"


def _size(record: ProcessRecord) -> int:
    return max(len(record.values), 1)  # a process without counters yet still takes room


def _forget(
    processes: dict[ProcessKey, ProcessRecord], look: int, at: float, forgotten_before: float
) -> tuple[float, int]:
    """Drop, in place, the processes missing too long, then the longest unseen (among equals
    the earliest started, which keeps forgotten_before early) until MAX_SERIES holds."""
    dropped = [k for k, r in processes.items() if look - r.seen > KEEP_MISSING_LOOKS]
    total = sum(_size(r) for k, r in processes.items() if k not in dropped)
    candidates = sorted(
        (r.seen, -math.inf if r.start is None else r.start, k)
        for k, r in processes.items()
        if k not in dropped
    )
    for _, _, key in candidates:
        if total <= MAX_SERIES:
            break
        dropped.append(key)
        total -= _size(processes[key])
    for key in dropped:
        record = processes.pop(key)
        # Unknown start: it started before now, which is all that is known.
        forgotten_before = max(forgotten_before, at if record.start is None else record.start)
    return forgotten_before, len(dropped)


def take_look(
    ledger: CounterLedger,
    snapshot: Snapshot,
    *,
    at: float,
    challenge_start: float,
    warm_up: float = 0.0,
) -> Look:
    """Increments since the previous look and the next ledger (the rules: module docstring)."""
    look = ledger.looks + 1
    starts = {process_key(s.labels): s.value for s in snapshot.starts}
    threshold = max(challenge_start, ledger.forgotten_before)
    processes = dict(ledger.processes)
    increments: dict[str, dict[ArmKey, float]] = {}
    stats = {
        "counted_new": 0, "baseline_only": 0, "restarted": 0, "stale_answers": 0, "warming": 0,
    }
    warming: set[ProcessKey] = set()

    def add(key: ProcessKey, series: SeriesId, value: float) -> None:
        # Zeros are kept: a histogram's edges must all be there, counted or not.
        if key in warming:
            value = 0.0
        labels = dict(key)
        family, own = series
        arm = (labels.get("role", ""), labels.get("version", ""), own)
        per_family = increments.setdefault(family, {})
        per_family[arm] = per_family.get(arm, 0.0) + max(value, 0.0)

    for key, values in _group(snapshot).items():
        start = starts.get(key)
        record = processes.get(key)
        if start is not None and at < start + warm_up:
            warming.add(key)
            stats["warming"] += 1
        if record is None:
            counted = start is not None and start > threshold
            stats["counted_new" if counted else "baseline_only"] += 1
            for series, value in values.items():
                add(key, series, value if counted else 0.0)
            processes[key] = ProcessRecord(start, look, dict(values))
            continue
        relation = _compare_starts(record.start, start)
        if relation == "older":
            stats["stale_answers"] += 1
            for series in values:
                add(key, series, 0.0)
            processes[key] = ProcessRecord(record.start, look, record.values)
            continue
        if relation == "restarted":
            stats["restarted"] += 1
            for series, value in values.items():
                add(key, series, value)
            # The old process's series died with it; only the new one's are baselines now.
            processes[key] = ProcessRecord(start, look, dict(values))
            continue
        kept = dict(record.values)
        lagging = False
        for series, value in values.items():
            before = kept.get(series)
            if before is None:
                add(key, series, value)  # appeared since the process was last seen
            elif value >= before:
                add(key, series, value - before)
            elif relation == "same":
                lagging = True  # a lagging replica's answer: keep the higher baseline
                add(key, series, 0.0)
                continue
            else:
                add(key, series, value)  # start unknown: a drop is a reset
            kept[series] = value
        stats["stale_answers"] += lagging
        processes[key] = ProcessRecord(start if start is not None else record.start, look, kept)

    forgotten_before, dropped = _forget(processes, look, at, ledger.forgotten_before)
    totals = {family: dict(values) for family, values in ledger.totals.items()}
    for family, grown in increments.items():
        summed = totals.setdefault(family, {})
        for arm, value in grown.items():
            summed[arm] = summed.get(arm, 0.0) + value
    return Look(
        ledger=CounterLedger(look, at, forgotten_before, processes, totals),
        increments=increments,
        stats=LookStats(**stats, forgotten=dropped),
    )


def begin(snapshot: Snapshot, *, at: float) -> CounterLedger:
    """The ledger of a look at the challenge's start: every series a baseline, nothing counted."""
    return take_look(CounterLedger(), snapshot, at=at, challenge_start=math.inf).ledger
