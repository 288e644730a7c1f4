"""Thin handler of the live-model monitors: one timer per ModelDeployment with a profile.

Each look reads from Prometheus what the champion's sidecars counted since the previous look,
feeds the pure watch (``monitoring/live.py``), exports the evidence as metrics, posts an Event
when drift is found, and hands status and condition to the status publisher (the single
writer of the status), waking it only when what it would write changed.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

import kopf
from prometheus_client import Counter, Gauge
from pydantic import ValidationError

from ..api.modeldeployment import ModelDeploymentSpec
from ..constants import ROLE_CHAMPION
from ..gating.config import parse_duration
from ..monitoring.live import DriftWatch, drift_view, restored_drift
from ..monitoring.reading import grown, read_reference, read_totals
from ..promsource import PrometheusUnavailable
from ..promsource.client import label_selector
from .modeldeployment import MDEP, _wake

INTERVAL_SECONDS = float(os.environ.get("MODELOPS_MONITOR_INTERVAL_SECONDS", "60"))
# Optional: expected time between false alarms of the whole fleet this operator watches; each
# deployment's threshold is then at least (monitored deployments) x this (docs/monitoring.md).
FLEET_ALARM_EVERY_SECONDS = parse_duration(os.environ.get("MODELOPS_FLEET_ALARM_EVERY") or None)
# Shorter than this since the previous look: too little for increase() to say anything.
MIN_LOOK_SECONDS = 10.0

EVIDENCE = Gauge(
    "modelops_monitor_evidence",
    "How far each live-model monitor is towards an alarm (log M / log c; 1 alarms).",
    ["namespace", "deployment", "monitor"],
)
ALARM = Gauge(
    "modelops_monitor_alarm",
    "1 while a monitor's alarm stands for the live version (DataDrift=True), else 0.",
    ["namespace", "deployment", "monitor"],
)
ALARMS = Counter(
    "modelops_monitor_alarms",
    "Alarms raised by the live-model monitors.",
    ["namespace", "deployment", "monitor"],
)
ROWS = Counter(
    "modelops_monitor_rows",
    "Input rows the drift monitor has taken in.",
    ["namespace", "deployment"],
)


def _monitored(spec: Any, **_: Any) -> bool:
    return bool(((spec or {}).get("model") or {}).get("profile"))


def _live_version(spec: ModelDeploymentSpec, status: Any) -> str:
    champion = (status or {}).get("champion") or {}
    return str(champion.get("version") or spec.model.version)


def _alarm_every(spec: ModelDeploymentSpec, monitored: int) -> float:
    own = parse_duration(spec.monitoring.drift.alarm_every) or 90 * 86400.0
    if FLEET_ALARM_EVERY_SECONDS:
        return max(own, FLEET_ALARM_EVERY_SECONDS * max(monitored, 1))
    return own


async def _new_watch(
    memo: kopf.Memo, selector: str, version: str, alarm_every: float, status: Any, now: float
) -> DriftWatch | None:
    reference = await read_reference(memo.prometheus, selector, now)
    if reference is None:
        return None
    watch = DriftWatch(version, reference, alarm_every, INTERVAL_SECONDS, since=now)
    found = restored_drift(status, version)
    if found is not None:  # drift found before a restart stays found
        drift = status["monitoring"]["drift"]
        watch.drifted_at, watch.rows_at_detection = found, float(drift.get("rows") or 0)
        watch.top_at_detection = [(f["name"], f["share"]) for f in drift.get("features") or []]
        watch.last_look = now
    return watch


@kopf.timer(*MDEP, interval=INTERVAL_SECONDS, initial_delay=INTERVAL_SECONDS, when=_monitored)
async def watch_live_model(
    name: str, namespace: str | None, body: kopf.Body, memo: kopf.Memo, logger: Any, **_: Any
) -> None:
    if namespace is None:
        return
    try:
        spec = ModelDeploymentSpec.model_validate(dict(body.get("spec") or {}))
    except ValidationError:
        return  # the reconcile reports an invalid spec
    key = (namespace, name)
    watches = memo.drift_watches
    version = _live_version(spec, body.get("status"))
    labels = {
        memo.prometheus.settings.namespace_label: namespace,
        "deployment": name,
        "role": ROLE_CHAMPION,
        "version": version,
    }
    selector = label_selector(labels)
    now = time.time()
    alarm_every = _alarm_every(spec, len(watches))
    watch: DriftWatch | None = watches.get(key)
    problem = ""
    try:
        if watch is None or watch.version != version:
            watch = await _new_watch(memo, selector, version, alarm_every, body.get("status"), now)
            if watch is None:
                problem = "no profile series from the champion's sidecars yet"
            else:
                watches[key] = watch
        elif watch.last_look is None or now - watch.last_look >= MIN_LOOK_SECONDS:
            # The first look after (re)starting reads the counters it will count from.
            totals = await read_totals(memo.prometheus, selector, now)
            counts = grown(watch.totals, totals, watch.reference)
            watch.totals = totals
            watch.alarm_every_seconds = alarm_every
            watch.detector.threshold = watch.threshold
            ROWS.labels(namespace, name).inc(float(counts.sum(axis=-1).max(initial=0.0)))
            if watch.look(counts, now):
                found = drift_view(watch, version)[0]
                ALARMS.labels(namespace, name, "drift").inc()
                kopf.warn(body, reason="DataDrift", message=found["message"])
                logger.warning(found["message"])
    except PrometheusUnavailable as error:
        problem = f"Prometheus unavailable: {error}"
    view = drift_view(watch, version, problem=problem)
    if watch is not None:
        EVIDENCE.labels(namespace, name, "drift").set(min(watch.evidence, 1.0))
        ALARM.labels(namespace, name, "drift").set(1.0 if watch.drifted_at is not None else 0.0)
    if memo.monitor_views.get(key) != view:
        memo.monitor_views[key] = view
        _wake(memo, key)


@kopf.on.event(*MDEP, when=lambda event, **_: event.get("type") == "DELETED")
async def forget_monitors(name: str, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    """A deleted ModelDeployment's monitors and series go with it."""
    key = (namespace, name)
    memo.drift_watches.pop(key, None)
    memo.monitor_views.pop(key, None)
    for family in (EVIDENCE, ALARM, ALARMS):
        with contextlib.suppress(KeyError):
            family.remove(namespace, name, "drift")
    with contextlib.suppress(KeyError):
        ROWS.remove(namespace, name)
