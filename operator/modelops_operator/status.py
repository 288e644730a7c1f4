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
from .conditions import format_time
from .constants import ROLE_CHAMPION
from .observe import DeploymentObservation, PodFailure, rollout_complete

HISTORY_LIMIT = 20
# The status keys this controller owns; others (challenger) belong to the ChampionChallenger.
OWNED_KEYS = (
    "observedGeneration",
    "conditions",
    "champion",
    "endpoint",
    "replicas",
    "readyReplicas",
    "selector",
    "history",
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


def _champion_and_history(
    spec: ModelDeploymentSpec,
    previous: Mapping[str, Any],
    complete: bool,
    now: datetime,
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    champion = previous.get("champion")
    history = list(previous.get("history") or [])
    if not complete:
        return champion, history  # the previous version keeps serving until the new one is up
    live = {"name": spec.model.name, "version": spec.model.version, "digest": spec.model.digest}
    if champion and all(champion.get(k) == v for k, v in live.items()):
        return champion, history
    if champion:
        history.append(
            {
                "time": format_time(now),
                "action": "RolledOut",
                "fromVersion": champion.get("version", ""),
                "toVersion": spec.model.version,
                "reason": "DirectRollout",
                "message": "spec.model changed and no ChampionChallenger gates this deployment",
                "evidence": [],
            }
        )
    return {**live, "since": format_time(now)}, history[-HISTORY_LIMIT:]


def compute_status(
    name: str,
    namespace: str,
    spec: ModelDeploymentSpec,
    outcome: ReconcileOutcome,
    observed: DeploymentObservation | None,
    previous: Mapping[str, Any] | None,
    now: datetime,
    failures: Sequence[PodFailure] = (),
) -> dict[str, Any]:
    """The status (owned keys only) for `outcome.generation`."""
    previous = previous or {}
    wanted, complete = _conditions_for(name, spec, outcome, observed, failures)
    champion, history = _champion_and_history(spec, previous, complete, now)
    status: dict[str, Any] = {
        "observedGeneration": outcome.generation,
        "conditions": cond.merge_conditions(
            previous.get("conditions"), wanted, outcome.generation, now
        ),
        "endpoint": endpoint_url(name, namespace),
        "replicas": observed.replicas if observed else 0,
        "readyReplicas": observed.ready_replicas if observed else 0,
        "selector": selector_string(name, ROLE_CHAMPION),
        "history": history,
    }
    if champion:
        status["champion"] = champion
    return status


def status_patch(previous: Mapping[str, Any] | None, wanted: Mapping[str, Any]) -> dict[str, Any]:
    """A merge patch of all owned keys if any of them differs, else an empty dict.

    Absent, null, 0 and [] count as equal: the API server drops empty values, and writing
    them again would be a write that changes nothing.
    """
    previous = previous or {}
    changed = any((previous.get(k) or None) != (wanted.get(k) or None) for k in OWNED_KEYS)
    return {k: wanted.get(k) for k in OWNED_KEYS} if changed else {}
