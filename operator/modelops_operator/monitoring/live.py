"""One live deployment's input-drift watch: pure state, fed by the handler from Prometheus.

The handler (``handlers/monitoring.py``) reads, per look, what the champion's sidecars counted
since the previous look (``modelops_input_bin_total``, summed over replicas) and, once per
version, the profile they count against (``modelops_profile_bin_share``, which the sidecars
export from the verified file). Everything else is here: the detector, the state, and what
status, condition and metrics say.

The detector lives in the operator's memory. A restart begins a new detector: that loses the
evidence gathered so far (a drift is found later) but not the guarantee, since the chance of
a false alarm within T looks is at most T / c for every detector, restarted or not. A drift
already found is kept: the condition and status say so until another version goes live.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from ..conditions import (
    ACCURACY_DEGRADED,
    DATA_DRIFT,
    UNCERTAIN,
    ConditionState,
    format_time,
    parse_time,
)
from .detectors import BinnedDrift, RateIncrease, alarm_threshold, error_rate_null

#: Evidence written to status only in steps of this much (the metrics carry every look).
EVIDENCE_STEP = 0.1
TOP_FEATURES = 3


@dataclass(frozen=True)
class Reference:
    """The profile as the sidecars export it: features in order, bin shares, rows."""

    features: tuple[str, ...]
    shares: np.ndarray  # (F, K), zero-padded
    mask: np.ndarray  # (F, K) real bins
    rows: float


def reference_from(
    shares: Iterable[tuple[Mapping[str, str], float]], rows: float
) -> Reference | None:
    """The reference from ``modelops_profile_bin_share`` samples (labels feature, bin)."""
    by_feature: dict[str, dict[int, float]] = {}
    for labels, value in shares:
        try:
            bin_index = int(labels["bin"])
        except (KeyError, ValueError):
            continue
        by_feature.setdefault(labels.get("feature", ""), {})[bin_index] = value
    if not by_feature or rows <= 0:
        return None
    features = tuple(sorted(by_feature))
    width = max(max(bins) + 1 for bins in by_feature.values())
    shares_array = np.zeros((len(features), width))
    mask = np.zeros((len(features), width), dtype=bool)
    for f, name in enumerate(features):
        for b, value in by_feature[name].items():
            shares_array[f, b] = max(value, 0.0)
            mask[f, b] = True
    return Reference(features, shares_array, mask, rows)


def counts_from(
    samples: Iterable[tuple[Mapping[str, str], float]], reference: Reference
) -> np.ndarray:
    """(F, K) counts of one look from ``increase(modelops_input_bin_total[...])`` samples."""
    index = {name: i for i, name in enumerate(reference.features)}
    counts = np.zeros(reference.shares.shape)
    for labels, value in samples:
        f = index.get(labels.get("feature", ""))
        try:
            b = int(labels.get("bin", ""))
        except ValueError:
            continue
        if (
            f is not None
            and 0 <= b < reference.shares.shape[-1]
            and reference.mask[f, b]
            and math.isfinite(value)
        ):
            counts[f, b] += max(value, 0.0)
    return counts


@dataclass
class DriftWatch:
    """The drift detector of one deployment's live version."""

    version: str
    reference: Reference
    alarm_every_seconds: float
    interval_seconds: float
    since: float
    multiplicity: float = 1.0
    detector: BinnedDrift = field(init=False)
    last_look: float | None = None
    totals: Any = None  # the sidecars' counters at the last look (reading.SeriesTotals)
    rows: float = 0.0
    drifted_at: float | None = None
    rows_at_detection: float = 0.0
    top_at_detection: list[tuple[str, float]] = field(default_factory=list)
    evidence: float = 0.0
    top: list[tuple[str, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.detector = BinnedDrift(
            self.reference.shares[None],
            self.reference.mask,
            self.reference.rows,
            self.threshold,
        )

    @property
    def threshold(self) -> float:
        return alarm_threshold(self.alarm_every_seconds, self.interval_seconds, self.multiplicity)

    def resume(self, previous: Mapping[str, Any] | None) -> None:
        """Keep a drift the status already reported for this version (an operator restart)."""
        found = restored_alarm(previous, "drift", "Drifted", self.version)
        if found is not None:
            self.drifted_at = parse_time(found["detectedAt"])
            self.rows_at_detection = float(found.get("rows") or 0)
            self.top_at_detection = [(f["name"], f["share"]) for f in found.get("features") or []]

    def look(self, counts: np.ndarray, now: float) -> bool:
        """Take one look's counts; True when this look found drift (a new alarm)."""
        self.last_look = now
        self.detector.threshold = self.threshold  # alarm_every_seconds may have changed
        self.rows += float(counts.sum(axis=-1).max(initial=0.0))
        statistic = float(self.detector.update(counts[None])[0])
        self.evidence = max(statistic, 0.0) / math.log(self.threshold)
        shares = self.detector.feature_shares()[0]
        order = np.argsort(-shares)[:TOP_FEATURES]
        self.top = [(self.reference.features[i], float(shares[i])) for i in order]
        if not self.detector.alarmed()[0]:
            return False
        # Keep watching with a fresh detector; the drift found stays found for this version.
        self.detector.reset(np.ones(1, dtype=bool))
        newly = self.drifted_at is None
        if newly:
            self.drifted_at, self.rows_at_detection = now, self.rows
            self.top_at_detection = list(self.top)
        return newly


def _time(seconds: float | None) -> str | None:
    return None if seconds is None else format_time(datetime.fromtimestamp(seconds, UTC))


def drift_view(
    watch: DriftWatch | None,
    version: str,
    *,
    problem: str = "",
) -> tuple[dict[str, Any], ConditionState]:
    """status.monitoring.drift and the DataDrift condition.

    ``problem``: why this look could not be read (Prometheus down, no sidecar scraped yet).
    """
    if watch is None or (watch.last_look is None and watch.drifted_at is None):
        return _not_started(DATA_DRIFT, version, problem,
                            "no inputs counted yet by the champion's sidecars")
    top = watch.top_at_detection if watch.drifted_at is not None else watch.top
    features: list[dict[str, Any]] = [
        {"name": n, "share": round(s, 2)} for n, s in top if s >= 0.05
    ]
    # Only what changes with the state is written: a healthy look writes nothing.
    status: dict[str, Any] = {
        "version": watch.version,
        "evidence": _stepped(watch.evidence),
        "since": _time(watch.since),
    }
    if watch.drifted_at is not None:
        names = ", ".join(str(f["name"]) for f in features) or "several features"
        message = (
            f"inputs of version {watch.version} drifted from its training profile "
            f"(most in {names}); found after {int(watch.rows_at_detection):,} rows"
        )
        status.update(state="Drifted", detectedAt=_time(watch.drifted_at), features=features,
                      rows=int(watch.rows_at_detection), message=message, evidence=1.0)  # fmt: skip
        return status, ConditionState(DATA_DRIFT, "True", "InputsDrifted", message)
    if status["evidence"] >= 0.5:
        status["features"] = features
    days = watch.alarm_every_seconds / 86400
    return _calm(status, DATA_DRIFT, "NoDrift", watch.rows, problem,
                 nothing_yet="no inputs counted yet by the champion's sidecars",
                 healthy=f"no drift found in the inputs of version {watch.version} (alarm at "
                 f"evidence 1; false alarms at most once in {days:g} days on average)")


def _stepped(evidence: float) -> float:
    """Evidence as status writes it: rounded down to EVIDENCE_STEP, so a look that moves it
    a little writes nothing."""
    return round(math.floor(evidence / EVIDENCE_STEP) * EVIDENCE_STEP, 1)


def _not_started(
    kind: str, version: str, problem: str, nothing_yet: str
) -> tuple[dict[str, Any], ConditionState]:
    """The view before a watch's first look: NoData, or Unavailable with the reason."""
    state = "Unavailable" if problem else "NoData"
    message = problem or nothing_yet
    return ({"state": state, "version": version, "message": message},
            ConditionState(kind, "Unknown", state, message))


def _calm(
    status: dict[str, Any], kind: str, reason: str, counted: float, problem: str, *,
    nothing_yet: str, healthy: str,
) -> tuple[dict[str, Any], ConditionState]:  # fmt: skip
    """The view of a watch that found nothing: NoData while nothing was counted, else
    Watching (Unavailable, with the last look's finding, when this look could not read)."""
    if counted <= 0:
        status.update(state="NoData", message=nothing_yet)
        return status, ConditionState(kind, "Unknown", "NoData", nothing_yet)
    message = f"{problem}; last look: {healthy}" if problem else healthy
    status.update(state="Unavailable" if problem else "Watching", message=message)
    return status, ConditionState(kind, "False", reason, message)


def top_features_text(features: Sequence[Mapping[str, Any]]) -> str:
    return ", ".join(f"{f['name']} ({f['share']:.0%})" for f in features)


@dataclass
class AccuracyWatch:
    """Accuracy decay of one deployment's live version, from its labels (classifiers)."""

    version: str
    holdout: float
    holdout_rows: float
    margin: float  # accuracy points, 2.0 = two percentage points
    alarm_every_seconds: float
    interval_seconds: float
    since: float
    detector: RateIncrease = field(init=False)
    last_look: float | None = None
    totals: Any = None
    labels: float = 0.0
    wrong: float = 0.0
    evidence: float = 0.0
    degraded_at: float | None = None
    labels_at_detection: float = 0.0
    error_at_detection: float | None = None

    def __post_init__(self) -> None:
        self.detector = RateIncrease(self.allowed_error, self.threshold)

    @property
    def allowed_error(self) -> float:
        return error_rate_null(1.0 - self.holdout, self.holdout_rows, self.margin / 100.0)

    @property
    def threshold(self) -> float:
        return alarm_threshold(self.alarm_every_seconds, self.interval_seconds)

    def resume(self, previous: Mapping[str, Any] | None) -> None:
        """Keep a decay the status already reported for this version (an operator restart)."""
        found = restored_alarm(previous, "accuracy", "Degraded", self.version)
        if found is not None:
            self.degraded_at = parse_time(found["detectedAt"])
            self.labels_at_detection = float(found.get("labels") or 0)
            self.error_at_detection = found.get("observedError")

    def look(self, wrong: float, labelled: float, now: float) -> bool:
        """Take one look's labels; True when this look found the model degraded."""
        self.last_look = now
        self.detector.threshold = self.threshold  # alarm_every_seconds may have changed
        self.labels += labelled
        self.wrong += wrong
        statistic = float(self.detector.update(np.array([wrong]), np.array([labelled]))[0])
        self.evidence = max(statistic, 0.0) / math.log(self.threshold)
        if not self.detector.alarmed()[0]:
            return False
        self.detector.reset(np.ones(1, dtype=bool))
        newly = self.degraded_at is None
        if newly:
            self.degraded_at, self.labels_at_detection = now, self.labels
            self.error_at_detection = self.wrong / self.labels if self.labels else None
        return newly


def accuracy_view(
    watch: AccuracyWatch | None, version: str, *, problem: str = ""
) -> tuple[dict[str, Any], ConditionState]:
    """status.monitoring.accuracy and the AccuracyDegraded condition."""
    if watch is None or (watch.last_look is None and watch.degraded_at is None):
        return _not_started(ACCURACY_DEGRADED, version, problem,
                            "no holdout accuracy or no labels read yet")
    status: dict[str, Any] = {
        "version": watch.version,
        "holdout": round(watch.holdout, 4),
        "allowedError": round(watch.allowed_error, 4),
        "evidence": _stepped(watch.evidence),
        "since": _time(watch.since),
    }
    if watch.degraded_at is not None:
        observed = watch.error_at_detection
        message = (
            f"version {watch.version} is less accurate than its holdout allows: error rate "
            f"{observed if observed is not None else float('nan'):.3f} over "
            f"{int(watch.labels_at_detection):,} labels against at most "
            f"{watch.allowed_error:.3f} (holdout accuracy {watch.holdout:.3f}, margin "
            f"{watch.margin:g} points)"
        )
        status.update(state="Degraded", detectedAt=_time(watch.degraded_at), evidence=1.0,
                      labels=int(watch.labels_at_detection), message=message)  # fmt: skip
        if observed is not None:
            status["observedError"] = round(observed, 4)
        return status, ConditionState(ACCURACY_DEGRADED, "True", "AccuracyDecayed", message)
    return _calm(status, ACCURACY_DEGRADED, "AsAccurate", watch.labels, problem,
                 nothing_yet="no labels counted yet for this version",
                 healthy=f"no decay found in the labels of version {watch.version} (allowed "
                 f"error rate {watch.allowed_error:.3f})")


def restored_alarm(
    previous: Mapping[str, Any] | None, monitor: str, state: str, version: str
) -> Mapping[str, Any] | None:
    """The monitor's status when it already raised its alarm for this version."""
    found = ((previous or {}).get("monitoring") or {}).get(monitor) or {}
    if found.get("state") != state or found.get("version") != version:
        return None
    return found if found.get("detectedAt") else None


@dataclass
class HumilityWatch:
    """How often each humility rule fires on the live version's predictions (Uncertain).

    One detector per rule, each against ``max_share``; their false alarms add up, so each
    rule's threshold is the monitor's times the number of rules."""

    version: str
    rules: tuple[str, ...]
    max_share: float
    alarm_every_seconds: float
    interval_seconds: float
    since: float
    detector: RateIncrease = field(init=False)
    last_look: float | None = None
    totals: Any = None
    rows: float = 0.0  # checked rows since `since`
    fired: np.ndarray = field(init=False)
    evidence: float = 0.0
    uncertain_at: float | None = None
    rows_at_detection: float = 0.0
    top_at_detection: list[tuple[str, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.detector = RateIncrease(self.max_share, self.threshold, runs=len(self.rules))
        self.fired = np.zeros(len(self.rules))

    @property
    def threshold(self) -> float:
        return alarm_threshold(self.alarm_every_seconds, self.interval_seconds) * len(self.rules)

    def shares(self) -> list[tuple[str, float]]:
        """Each rule's share of the checked rows since ``since``, most frequent first."""
        if self.rows <= 0:
            return []
        found = [(rule, float(f / self.rows)) for rule, f in zip(self.rules, self.fired,
                                                                 strict=True)]
        return sorted(found, key=lambda item: -item[1])

    def resume(self, previous: Mapping[str, Any] | None) -> None:
        """Keep an alarm the status already reported for this version (an operator restart)."""
        found = restored_alarm(previous, "humility", UNCERTAIN, self.version)
        if found is not None:
            self.uncertain_at = parse_time(found["detectedAt"])
            self.rows_at_detection = float(found.get("rows") or 0)
            self.top_at_detection = [(str(r.get("name")), float(r.get("share") or 0))
                                     for r in found.get("rules") or []]

    def look(self, fired: np.ndarray, checked: float, now: float) -> bool:
        """Take one look's (R,) rows fired per rule and rows checked; True when this look
        found a rule firing too often."""
        self.last_look = now
        self.detector.threshold = self.threshold
        self.rows += checked
        self.fired += fired
        statistic = self.detector.update(fired, np.full(len(self.rules), checked))
        self.evidence = max(float(statistic.max(initial=0.0)), 0.0) / math.log(self.threshold)
        alarmed = self.detector.alarmed()
        if not alarmed.any():
            return False
        self.detector.reset(alarmed)
        newly = self.uncertain_at is None
        if newly:
            self.uncertain_at, self.rows_at_detection = now, self.rows
            self.top_at_detection = [(rule, share) for rule, share in self.shares()
                                     if rule in {r for r, a in zip(self.rules, alarmed,
                                                                   strict=True) if a}]
        return newly


def humility_view(
    watch: HumilityWatch | None, version: str, *, problem: str = ""
) -> tuple[dict[str, Any], ConditionState]:
    """status.monitoring.humility and the Uncertain condition."""
    if watch is None or (watch.last_look is None and watch.uncertain_at is None):
        return _not_started(UNCERTAIN, version, problem,
                            "no predictions checked yet by the champion's sidecars")
    status: dict[str, Any] = {
        "version": watch.version,
        "maxShare": watch.max_share,
        "evidence": _stepped(watch.evidence),
        "since": _time(watch.since),
    }
    if watch.uncertain_at is not None:
        rules = [{"name": n, "share": round(s, 4)} for n, s in watch.top_at_detection]
        names = ", ".join(f"{r['name']} ({r['share']:.1%})" for r in rules) or "a rule"
        message = (
            f"version {watch.version} is out of its depth too often: {names} of "
            f"{int(watch.rows_at_detection):,} predictions, more than the "
            f"{watch.max_share:.1%} allowed"
        )
        status.update(state=UNCERTAIN, detectedAt=_time(watch.uncertain_at), evidence=1.0,
                      rows=int(watch.rows_at_detection), rules=rules, message=message)  # fmt: skip
        return status, ConditionState(UNCERTAIN, "True", "RulesFireTooOften", message)
    if status["evidence"] >= 0.5:
        status["rules"] = [{"name": n, "share": round(s, 2)} for n, s in watch.shares()[:3]]
    return _calm(status, UNCERTAIN, "WithinBounds", watch.rows, problem,
                 nothing_yet="no predictions checked yet for this version",
                 healthy=f"no humility rule of version {watch.version} fires on more than "
                 f"{watch.max_share:.1%} of predictions")
