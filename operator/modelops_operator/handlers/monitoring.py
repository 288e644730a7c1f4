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
from datetime import UTC, datetime
from typing import Any

import httpx
import httpx2
import kopf
from lightkube.core.exceptions import ApiError
from prometheus_client import Counter, Gauge
from pydantic import ValidationError

from ..api.modeldeployment import ModelDeploymentSpec
from ..conditions import format_time
from ..constants import ROLE_CHAMPION
from ..gating.config import parse_duration
from ..kube import create_generated
from ..lineage.store import write_records
from ..monitoring.retraining import (
    cloud_event,
    due,
    resource_plural,
    retraining_object,
    retraining_record,
    standing,
)
from ..opmetrics import count_error
from ..promsource import PrometheusUnavailable
from ..promsource.client import label_selector
from . import notify
from .modeldeployment import MDEP, _wake

INTERVAL_SECONDS = float(os.environ.get("MODELOPS_MONITOR_INTERVAL_SECONDS", "60"))
# Optional: expected time between false alarms of the whole fleet this operator watches; each
# deployment's threshold is then at least (monitored deployments) x this (docs/monitoring.md).
FLEET_ALARM_EVERY_SECONDS = parse_duration(os.environ.get("MODELOPS_FLEET_ALARM_EVERY") or None)
CLOUD_EVENT_TIMEOUT_SECONDS = 5.0
# Which monitor's view holds each condition spec.monitoring.retraining.on names.
RETRAINING_MONITORS = {"DataDrift": "drift", "AccuracyDegraded": "accuracy"}
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
    spec = spec or {}
    return bool((spec.get("model") or {}).get("profile")
                or (spec.get("monitoring") or {}).get("humility"))


def _live_version(spec: ModelDeploymentSpec, status: Any) -> str:
    champion = (status or {}).get("champion") or {}
    return str(champion.get("version") or spec.model.version)


def _alarm_every(alarm_every: str, monitored: int) -> float:
    own = parse_duration(alarm_every) or 90 * 86400.0
    if FLEET_ALARM_EVERY_SECONDS:
        return max(own, FLEET_ALARM_EVERY_SECONDS * max(monitored, 1))
    return own


def _show(namespace: str, name: str, monitor: str, evidence: float, alarm: bool) -> None:
    EVIDENCE.labels(namespace, name, monitor).set(min(evidence, 1.0))
    ALARM.labels(namespace, name, monitor).set(1.0 if alarm else 0.0)


def _announce(
    body: kopf.Body, key: tuple[str, str], monitor: str, reason: str, view: Any, logger: Any
) -> None:
    """A monitor found something: counted, an Event, a log line."""
    ALARMS.labels(*key, monitor).inc()
    kopf.warn(body, reason=reason, message=view[0]["message"])
    logger.warning(view[0]["message"])


async def _look_for_drift(
    memo: kopf.Memo, key: tuple[str, str], body: kopf.Body, spec: ModelDeploymentSpec,
    version: str, selector: str, now: float, logger: Any,
) -> tuple[dict[str, Any], Any]:  # fmt: skip
    # The monitors' statistics need numpy and scipy: imported by the first look, so that an
    # operator with no monitored model never loads them (28 MiB; see gating/__init__.py).
    from ..monitoring.live import DriftWatch, drift_view
    from ..monitoring.reading import grown, read_reference, read_totals

    namespace, name = key
    alarm_every = _alarm_every(spec.monitoring.drift.alarm_every, len(memo.drift_watches))
    watch: DriftWatch | None = memo.drift_watches.get(key)
    problem = ""
    try:
        if watch is None or watch.version != version:
            watch = None
            reference = await read_reference(memo.prometheus, selector, now)
            if reference is None:
                problem = "no profile series from the champion's sidecars yet"
            else:
                watch = DriftWatch(version, reference, alarm_every, INTERVAL_SECONDS, since=now)
                watch.resume(body.get("status"))
                memo.drift_watches[key] = watch
        elif watch.last_look is None or now - watch.last_look >= MIN_LOOK_SECONDS:
            # The first look after (re)starting reads the counters it will count from.
            totals = await read_totals(memo.prometheus, selector, watch.reference, now)
            counts = grown(watch.totals, totals, watch.reference)
            watch.totals, watch.alarm_every_seconds = totals, alarm_every
            rows_before = watch.rows
            found = watch.look(counts, now)
            ROWS.labels(namespace, name).inc(watch.rows - rows_before)
            if found:
                _announce(body, key, "drift", "DataDrift", drift_view(watch, version), logger)
    except PrometheusUnavailable as error:
        problem = f"Prometheus unavailable: {error}"
        count_error("monitoring")
    if watch is not None:
        _show(namespace, name, "drift", watch.evidence, watch.drifted_at is not None)
    return drift_view(watch, version, problem=problem)


async def _look_at_accuracy(
    memo: kopf.Memo, key: tuple[str, str], body: kopf.Body, spec: ModelDeploymentSpec,
    version: str, selector: str, now: float, logger: Any,
) -> tuple[dict[str, Any], Any] | None:  # fmt: skip
    """None when the monitor does not apply (no labels accepted)."""
    from ..monitoring.live import AccuracyWatch, accuracy_view
    from ..monitoring.reading import outcome_growth, read_holdout, read_outcomes

    if not spec.monitoring.feedback.enabled:
        memo.accuracy_watches.pop(key, None)
        return None
    namespace, name = key
    settings = spec.monitoring.accuracy
    alarm_every = _alarm_every(settings.alarm_every, len(memo.accuracy_watches))
    watch: AccuracyWatch | None = memo.accuracy_watches.get(key)
    problem = ""
    try:
        if watch is None or watch.version != version or watch.margin != settings.margin:
            watch = None
            holdout = await read_holdout(memo.prometheus, selector, now)
            if holdout is None:
                problem = "the profile has no holdout accuracy (modelops profile --label)"
            else:
                watch = AccuracyWatch(version, holdout[0], holdout[1], settings.margin,
                                      alarm_every, INTERVAL_SECONDS, since=now)  # fmt: skip
                watch.resume(body.get("status"))
                memo.accuracy_watches[key] = watch
        elif watch.last_look is None or now - watch.last_look >= MIN_LOOK_SECONDS:
            totals = await read_outcomes(memo.prometheus, selector, now)
            wrong, labelled = outcome_growth(watch.totals, totals)
            watch.totals, watch.alarm_every_seconds = totals, alarm_every
            if watch.look(wrong, labelled, now):
                degraded = accuracy_view(watch, version)
                _announce(body, key, "accuracy", "AccuracyDegraded", degraded, logger)
    except PrometheusUnavailable as error:
        problem = f"Prometheus unavailable: {error}"
        count_error("monitoring")
    if watch is not None:
        _show(namespace, name, "accuracy", watch.evidence, watch.degraded_at is not None)
    return accuracy_view(watch, version, problem=problem)


async def _look_at_humility(
    memo: kopf.Memo, key: tuple[str, str], body: kopf.Body, spec: ModelDeploymentSpec,
    version: str, selector: str, now: float, logger: Any,
) -> tuple[dict[str, Any], Any]:  # fmt: skip
    from ..monitoring.live import HumilityWatch, humility_view
    from ..monitoring.reading import humility_growth, read_humility

    namespace, name = key
    settings = spec.monitoring.humility
    assert settings is not None
    rules = tuple(rule.name for rule in settings.rules)
    alarm_every = _alarm_every(settings.alarm_every, len(memo.humility_watches))
    watch: HumilityWatch | None = memo.humility_watches.get(key)
    problem = ""
    try:
        if watch is None or (watch.version, watch.rules, watch.max_share) != (
            version, rules, settings.max_share
        ):
            watch = HumilityWatch(version, rules, settings.max_share, alarm_every,
                                  INTERVAL_SECONDS, since=now)  # fmt: skip
            watch.resume(body.get("status"))
            memo.humility_watches[key] = watch
            # This look reads the counters the next one counts from.
            watch.totals = await read_humility(memo.prometheus, selector, rules, now)
        elif watch.last_look is None or now - watch.last_look >= MIN_LOOK_SECONDS:
            totals = await read_humility(memo.prometheus, selector, rules, now)
            fired, checked = humility_growth(watch.totals, totals, len(rules))
            watch.totals, watch.alarm_every_seconds = totals, alarm_every
            if watch.look(fired, checked, now):
                _announce(body, key, "humility", "Uncertain", humility_view(watch, version),
                          logger)
    except PrometheusUnavailable as error:
        problem = f"Prometheus unavailable: {error}"
        count_error("monitoring")
    if watch is not None:
        _show(namespace, name, "humility", watch.evidence, watch.uncertain_at is not None)
    return humility_view(watch, version, problem=problem)


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
    version = _live_version(spec, body.get("status"))
    selector = label_selector({
        memo.prometheus.settings.namespace_label: namespace,
        "deployment": name,
        "role": ROLE_CHAMPION,
        "version": version,
    })  # fmt: skip
    now = time.time()
    views: dict[str, Any] = {"drift": None, "accuracy": None, "humility": None}
    if spec.model.profile is not None:
        views["drift"] = await _look_for_drift(
            memo, key, body, spec, version, selector, now, logger)
        views["accuracy"] = await _look_at_accuracy(
            memo, key, body, spec, version, selector, now, logger)
    if spec.monitoring.humility is not None:
        views["humility"] = await _look_at_humility(
            memo, key, body, spec, version, selector, now, logger)
    if spec.monitoring.retraining is not None:
        retraining = await _maybe_retrain(memo, key, body, spec, views, now, logger)
        if retraining is not None:
            views["retraining"] = (retraining, None)
    if memo.monitor_views.get(key) != views:
        memo.monitor_views[key] = views
        _wake(memo, key)


async def _maybe_retrain(
    memo: kopf.Memo, key: tuple[str, str], body: kopf.Body, spec: ModelDeploymentSpec,
    views: dict[str, Any], now: float, logger: Any,
) -> dict[str, Any] | None:  # fmt: skip
    """Start a retraining when a condition of spec.monitoring.retraining.on stands and the
    cooldown has passed; the retraining status to show (None: nothing to show yet)."""
    policy = spec.monitoring.retraining
    assert policy is not None
    namespace, name = key
    status = body.get("status") or {}
    last = memo.retrainings.get(key) or (status.get("monitoring") or {}).get("retraining")
    trigger = standing(policy, views, RETRAINING_MONITORS)
    if trigger is None or not due(policy, last, now):
        return dict(last) if last else None
    created, delivered, problems = "", "", []
    if policy.template is not None:
        manifest = retraining_object(
            policy.template, namespace, name, body["metadata"]["uid"], trigger, now
        )
        try:
            generated = await create_generated(
                memo.k8s, manifest, resource_plural(manifest["kind"])
            )
            created = f"{manifest['kind']}/{generated}"
        except (ApiError, httpx2.HTTPError, ValueError, TypeError) as error:
            problems.append(f"could not create the {manifest.get('kind')}: {_why(error)}")
    if policy.cloud_event is not None:
        headers, event = cloud_event(namespace, name, trigger, now)
        try:
            async with httpx.AsyncClient(timeout=CLOUD_EVENT_TIMEOUT_SECONDS) as client:
                answer = await client.post(policy.cloud_event.url, content=event, headers=headers)
            delivered = "delivered" if answer.is_success else f"failed: HTTP {answer.status_code}"
        except httpx.HTTPError as error:
            delivered = f"failed: {type(error).__name__}"
        if delivered != "delivered":
            problems.append(f"the CloudEvent {delivered}")
    if not created and delivered != "delivered":
        count_error("retraining")
        message = "; ".join(problems) + " (tried again at the next look)"
        if (last or {}).get("message") != message:
            kopf.warn(body, reason="RetrainingFailed", message=message)
            logger.warning(message)
        failed = {**(last or {}), "message": message}
        memo.retrainings[key] = failed
        return failed
    message = "; ".join(
        [f"started for {trigger.condition} on version {trigger.version}"]
        + ([f"created {created}"] if created else [])
        + problems
    )
    started = {
        "triggeredAt": format_time(datetime.fromtimestamp(now, UTC)),
        "trigger": trigger.condition,
        "version": trigger.version,
        "object": created,
        "cloudEvent": delivered,
        "count": int((last or {}).get("count") or 0) + 1,
        "message": message,
    }
    memo.retrainings[key] = started
    model = (status.get("champion") or {}) | {"name": spec.model.name}
    await write_records(
        memo.k8s, [retraining_record(namespace, name, model, trigger, created, now)]
    )
    notify(body, reason="RetrainingTriggered", message=message)
    logger.info(message)
    return started


def _why(error: Exception) -> str:
    if isinstance(error, ApiError):
        return f"{error.status.code} {error.status.message}"
    return str(error) or type(error).__name__


@kopf.on.event(*MDEP, when=lambda event, **_: event.get("type") == "DELETED")
async def forget_monitors(name: str, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    """A deleted ModelDeployment's monitors and series go with it."""
    key = (namespace or "", name)
    for watches in (
        memo.drift_watches,
        memo.accuracy_watches,
        memo.humility_watches,
        memo.monitor_views,
        memo.retrainings,
    ):
        watches.pop(key, None)
    for monitor in ("drift", "accuracy", "humility"):
        for family in (EVIDENCE, ALARM, ALARMS):
            with contextlib.suppress(KeyError):
                family.remove(namespace, name, monitor)
    with contextlib.suppress(KeyError):
        ROWS.remove(namespace, name)
