"""The ModelDeployment status as a pure function of what the operator knows.

Inputs: the object's generation and spec, the outcome of the last reconcile (did it apply the
children, or is something blocking it), the observed champion Deployment and the previous
status. Output: the status the object should carry. Equal inputs give an equal status, so a
resync that finds nothing new writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from . import conditions as cond
from .api.modeldeployment import ModelDeploymentSpec
from .builders.workload import endpoint_url, selector_string, workload_name
from .challenge.rejection import Rejection
from .challenge.view import ChallengeView
from .challenge.workloads import serving_of
from .conditions import ACCURACY_DEGRADED, DATA_DRIFT, UNCERTAIN, format_time
from .constants import ROLE_CHAMPION
from .observe import DeploymentObservation, PodFailure, rollout_complete

HISTORY_LIMIT = 20
# The live-model monitors and the condition each one sets (docs/monitoring.md).
MONITOR_CONDITIONS = {"drift": DATA_DRIFT, "accuracy": ACCURACY_DEGRADED, "humility": UNCERTAIN}
# The status keys this controller owns (all of them: the ChampionChallenger's progress reaches
# this status through the ChallengeView the controller reads, so there is one writer).
OWNED_KEYS = (
    "observedGeneration",
    "conditions",
    "champion",
    "challenger",
    "endpoint",
    "replicas",
    "readyReplicas",
    "selector",
    "history",
    "monitoring",
)


@dataclass(frozen=True)
class Blocker:
    """Why the operator cannot act on a spec; `field` is the path a person has to fix."""

    reason: str
    field: str
    message: str


@dataclass(frozen=True)
class ReconcileOutcome:
    """What the last reconcile of one generation concluded."""

    generation: int
    blocker: Blocker | None = None


def _pod_failure_message(failure: PodFailure) -> tuple[str, str]:
    """Reason and message of a failed model pod, naming the fields a person should check."""
    if failure.container == "model-fetch":
        reason, fields = "ModelFetchFailed", "spec.model.uri, spec.model.digest"
    elif failure.container == "model":
        reason, fields = "ModelServerFailed", "spec.model.format, spec.runtime"
    else:
        reason, fields = "PodFailed", "spec.runtime"
    detail = failure.message or "no message"
    message = (
        f"pod {failure.pod} (version {failure.version}): container {failure.container} "
        f"{failure.reason}: {detail} (check {fields})"
    )
    return reason, message[:4000]


def _conditions_for(
    name: str,
    spec: ModelDeploymentSpec,
    outcome: ReconcileOutcome,
    observed: DeploymentObservation | None,
    failures: Sequence[PodFailure] = (),
) -> tuple[list[cond.ConditionState], bool]:
    """The kstatus conditions and whether the wanted version is fully rolled out."""
    want, version = spec.runtime.replicas, spec.model.version
    child = workload_name(name, ROLE_CHAMPION)
    if outcome.blocker:
        return cond.stalled(outcome.blocker.reason, outcome.blocker.message), False
    if observed is None:
        return cond.progressing("Creating", f"waiting for Deployment {child} to appear"), False
    if rollout_complete(observed, want, version):
        message = (
            f"{observed.ready_replicas}/{want} replicas ready, serving {spec.model.name} {version}"
        )
        return cond.ready("RolloutComplete", message), True
    order = {"model-fetch": 0, "model": 1}  # the first thing that broke explains the rest
    failed = sorted(
        (f for f in failures if f.version == version),
        key=lambda f: (order.get(f.container, 2), f.pod),
    )
    if failed:
        return cond.stalled(*_pod_failure_message(failed[0])), False
    if observed.deadline_exceeded:
        message = (
            f"Deployment {child} made no progress rolling out version {version}: "
            f"{observed.progress_message} (check its pods' events and spec.model / spec.runtime)"
        )
        return cond.stalled("RolloutStalled", message), False
    message = (
        f"rolling out {spec.model.name} {version}: {observed.updated_replicas}/{want} updated, "
        f"{observed.available_replicas}/{want} available"
    )
    return cond.progressing("RollingOut", message), False


def _unless_rejected(
    wanted: list[cond.ConditionState], rejection: Rejection | None
) -> list[cond.ConditionState]:
    """spec.model names a version a challenge rolled back: the deployment is not what Git
    asks for and will not become it until a person changes Git, so it is Stalled, whatever
    the champion's rollout says (kstatus: Failed; Argo CD: Degraded). A stall already found
    (the champion itself failing) is the more urgent one and stays."""
    if rejection is None or any(c.type == cond.STALLED and c.status == "True" for c in wanted):
        return wanted
    return cond.stalled("VersionRejected", rejection.message())


def _evidence(entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        {k: g[k] for k in ("gate", "verdict", "estimate", "lower", "upper") if g.get(k) is not None}
        for g in ({**e, "gate": e.get("name", "")} for e in entry.get("evidence") or ())
    ]


def _change_entry(
    previous_version: str,
    live: Mapping[str, Any],
    challenge: ChallengeView | None,
    now: datetime,
) -> dict[str, Any]:
    promotion = challenge.promotion_of(live["version"]) if challenge else None
    if promotion is not None:
        assert challenge is not None
        return {
            "time": promotion.get("time") or format_time(now),
            "action": "Promoted",
            "fromVersion": previous_version,
            "toVersion": live["version"],
            "reason": "ChallengePassed",
            "message": f"ChampionChallenger {challenge.name}: {promotion.get('reason', '')}"[:4096],
            "evidence": _evidence(promotion),
        }
    return {
        "time": format_time(now),
        "action": "RolledOut",
        "fromVersion": previous_version,
        "toVersion": live["version"],
        "reason": "DirectRollout",
        "message": "spec.model changed and no ChampionChallenger gates this deployment",
        "evidence": [],
    }


def _rollbacks(challenge: ChallengeView | None, history: list[dict[str, Any]]) -> list[dict]:
    """The challenge's rollbacks not yet in this history: the live model did not change, but
    the version Git asked for was rejected, and this is where people look for why."""
    if challenge is None:
        return []
    seen = {(h.get("action"), h.get("fromVersion"), h.get("time")) for h in history}
    added = []
    for entry in challenge.history:
        if entry.get("action") != "RolledBack":
            continue
        key = ("RolledBack", entry.get("version", ""), entry.get("time"))
        if key in seen:
            continue
        added.append(
            {
                "time": entry.get("time"),
                "action": "RolledBack",
                "fromVersion": entry.get("version", ""),
                "toVersion": entry.get("previous", ""),
                "reason": "ChallengeFailed",
                "message": f"ChampionChallenger {challenge.name}: {entry.get('reason', '')}"[
                    :4096
                ],
                "evidence": _evidence(entry),
            }
        )
    return added


def _champion_and_history(
    spec: ModelDeploymentSpec,
    previous: Mapping[str, Any],
    complete: bool,
    now: datetime,
    challenge: ChallengeView | None = None,
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    champion = previous.get("champion")
    history = list(previous.get("history") or [])
    history += _rollbacks(challenge, history)
    if not complete:
        # The previous version keeps serving until the new one is up.
        return champion, history[-HISTORY_LIMIT:]
    live = {
        "name": spec.model.name,
        "version": spec.model.version,
        "uri": spec.model.uri,
        "digest": spec.model.digest,
    }
    serving = serving_of(spec)
    if champion and all(champion.get(k) == v for k, v in live.items()):
        # The same model; how it is served may be recorded now (older statuses lack it).
        return {**champion, "serving": serving}, history[-HISTORY_LIMIT:]
    if champion:
        history.append(_change_entry(champion.get("version", ""), live, challenge, now))
    return {**live, "serving": serving, "since": format_time(now)}, history[-HISTORY_LIMIT:]


def compute_status(
    name: str,
    namespace: str,
    spec: ModelDeploymentSpec,
    outcome: ReconcileOutcome,
    observed: DeploymentObservation | None,
    previous: Mapping[str, Any] | None,
    now: datetime,
    failures: Sequence[PodFailure] = (),
    challenge: ChallengeView | None = None,
    rejection: Rejection | None = None,
    monitoring: Mapping[str, tuple[dict[str, Any], cond.ConditionState | None] | None]
    | None = None,
) -> dict[str, Any]:
    """The status (owned keys only) for `outcome.generation`.

    `spec` is the spec the champion Deployment was built from: with a ChampionChallenger, its
    model is the one the challenge made live, not necessarily the one spec.model names.
    `rejection`: spec.model names a version the challenge rolled back (`rejection_of`).
    `monitoring`: per monitor ("drift", "accuracy", "humility"), its status and condition
    (`monitoring.live`), or None when it does not apply; a monitor missing from it keeps what
    the status says (until its first look after a restart). Without a profile there is no
    drift or accuracy monitor; without humility rules no humility monitor.
    """
    previous = previous or {}
    wanted, complete = _conditions_for(name, spec, outcome, observed, failures)
    wanted = _unless_rejected(wanted, rejection)
    champion, history = _champion_and_history(spec, previous, complete, now, challenge)
    conditions = cond.merge_conditions(previous.get("conditions"), wanted, outcome.generation, now)
    watched = dict(previous.get("monitoring") or {})
    views = dict(monitoring or {})
    if spec.model.profile is None:  # drift and accuracy need one, and so retraining does
        views |= dict.fromkeys(["drift", "accuracy", "retraining"])
    if spec.monitoring.humility is None:
        views["humility"] = None
    for part, view in views.items():  # a monitor, or the last retraining (no condition)
        condition_type = MONITOR_CONDITIONS.get(part)
        if view is None:
            watched.pop(part, None)
            conditions = [c for c in conditions if c["type"] != condition_type]
        else:
            watched[part] = view[0]
            if view[1] is not None:
                conditions = cond.merge_conditions(conditions, [view[1]], outcome.generation, now)
    status: dict[str, Any] = {
        "observedGeneration": outcome.generation,
        "conditions": conditions,
        "endpoint": endpoint_url(name, namespace),
        "replicas": observed.replicas if observed else 0,
        "readyReplicas": observed.ready_replicas if observed else 0,
        "selector": selector_string(name, ROLE_CHAMPION),
        "history": history,
    }
    if watched:
        status["monitoring"] = watched
    if champion:
        status["champion"] = champion
    if challenge is not None and challenge.challenger is not None:
        status["challenger"] = {
            "name": spec.model.name,
            "version": challenge.challenger.version,
            "uri": challenge.challenger.uri,
            "digest": challenge.challenger.digest,
        }
    return status


def reported(status: Mapping[str, Any] | None) -> bool:
    """Has the operator written this object's status? (Not yet: none, or the CRD's pending
    default, neither of which has an observedGeneration.)"""
    return bool((status or {}).get("observedGeneration"))


def reportable(previous: Mapping[str, Any] | None, wanted: Mapping[str, Any]) -> bool:
    """Is the status worth its write? Always once the operator has reported on the object.
    Before that its status is the CRD's pending default (Ready=Unknown, Reconciling=True),
    which already says that a new object is on its way: a first rollout going well is no
    news until it serves (Ready) or stops (Stalled). The Deployment shows its progress."""
    if reported(previous):
        return True
    conditions = wanted.get("conditions")
    return any(
        cond.find_condition(conditions, type_).get("status") == "True"
        for type_ in (cond.READY, cond.STALLED)
    )


def status_patch(previous: Mapping[str, Any] | None, wanted: Mapping[str, Any]) -> dict[str, Any]:
    """A merge patch of all owned keys if any of them differs, else an empty dict.

    Absent, null, 0 and [] count as equal: the API server drops empty values, and writing
    them again would be a write that changes nothing.
    """
    previous = previous or {}
    changed = any((previous.get(k) or None) != (wanted.get(k) or None) for k in OWNED_KEYS)
    return {k: wanted.get(k) for k in OWNED_KEYS} if changed else {}
