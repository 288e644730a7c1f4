"""metav1.Condition helpers with kstatus semantics (Ready, Reconciling, Stalled).

kstatus (the library behind Flux `wait`, Helm's watcher and cli-utils) reads an object as:
Reconciling=True -> InProgress, Stalled=True -> Failed, else Ready. So every reconcile sets all
three, each with the generation it was computed from.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"
KSTATUS_TYPES = (READY, RECONCILING, STALLED)
# The live-model monitors' conditions (monitoring/live.py), named here so that what only shows
# them needs not import the statistics behind them.
DATA_DRIFT = "DataDrift"
ACCURACY_DEGRADED = "AccuracyDegraded"
UNCERTAIN = "Uncertain"

Status = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class ConditionState:
    """What a condition should say now; the transition time is decided by `merge_conditions`."""

    type: str
    status: Status
    reason: str
    message: str = ""


def utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a Z, as the API server writes metav1.Time."""
    return moment.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(stamp: str) -> float:
    """Seconds since the epoch of a time `format_time` wrote."""
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def merge_conditions(
    previous: Iterable[Mapping[str, Any]] | None,
    wanted: Iterable[ConditionState],
    generation: int,
    now: datetime,
) -> list[dict[str, Any]]:
    """The new conditions list: `wanted` replaces same-type entries, others are kept.

    lastTransitionTime changes only when status changes (as meta.SetStatusCondition does), so a
    resync that finds nothing new produces an identical list, and therefore no write.
    """
    by_type = {c["type"]: dict(c) for c in previous or () if "type" in c}
    for state in wanted:
        old = by_type.get(state.type)
        moved = old is None or old.get("status") != state.status
        by_type[state.type] = {
            "type": state.type,
            "status": state.status,
            "observedGeneration": generation,
            "lastTransitionTime": format_time(now)
            if moved or old is None
            else old["lastTransitionTime"],
            "reason": state.reason,
            "message": state.message,
        }
    order = {t: i for i, t in enumerate(KSTATUS_TYPES)}
    return sorted(by_type.values(), key=lambda c: (order.get(c["type"], len(order)), c["type"]))


def find_condition(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> dict[str, Any]:
    """The condition of that type, or an empty dict."""
    for condition in conditions or ():
        if condition.get("type") == type_:
            return dict(condition)
    return {}


# A new object's status until the operator's first report: the CRD's default for `status`,
# which the API server fills in on every read (as Gateway API's CRDs do), so `kubectl get`,
# kstatus (Reconciling=True: InProgress) and Argo CD show the object in progress from its first
# second. The operator then writes once there is something to report (status.reportable).
PENDING_REASON = "Pending"
PENDING_MESSAGE = (
    "waiting for the first rollout: the operator reports here once the model serves, "
    "or what stops it"
)
PENDING_STATUS: dict[str, Any] = {
    "conditions": [
        {"type": type_, "status": status, "reason": PENDING_REASON, "message": PENDING_MESSAGE,
         "lastTransitionTime": "1970-01-01T00:00:00Z"}
        for type_, status in ((READY, "Unknown"), (RECONCILING, "True"))
    ]
}  # fmt: skip


def ready(reason: str, message: str) -> list[ConditionState]:
    """Everything is live as specified."""
    return [
        ConditionState(READY, "True", reason, message),
        ConditionState(RECONCILING, "False", reason, message),
        ConditionState(STALLED, "False", reason, message),
    ]


def progressing(reason: str, message: str) -> list[ConditionState]:
    """Work is under way and expected to finish by itself."""
    return [
        ConditionState(READY, "False", reason, message),
        ConditionState(RECONCILING, "True", reason, message),
        ConditionState(STALLED, "False", reason, message),
    ]


def stalled(reason: str, message: str) -> list[ConditionState]:
    """The operator cannot make progress until a person changes something."""
    return [
        ConditionState(READY, "False", reason, message),
        ConditionState(RECONCILING, "False", reason, message),
        ConditionState(STALLED, "True", reason, message),
    ]
