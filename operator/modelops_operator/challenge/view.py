"""What a ChampionChallenger tells the ModelDeployment controller about its target.

The ModelDeployment controller stays the only writer of the champion Deployment and the `<md>`
Service; while a ChampionChallenger gates the deployment, the champion's model comes from the
challenge (`desired_topology`), not from spec.model, and the Service points at the router.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from ..api.championchallenger import ChampionChallengerSpec
from .machine import desired_topology
from .model import ModelRef, Phase, Status
from .providers import provider_for
from .rejection import Rejection, rollback_reason, standing_rejection


@dataclass(frozen=True)
class ChallengeView:
    name: str
    champion: Any = None  # ModelRef the champion Deployment runs; None: spec.model
    challenger: Any = None  # ModelRef under evaluation, while a challenge runs
    routed: bool = False  # the `<md>` Service selects the built-in router's pods
    rejected: ModelRef | None = None  # rolled back, and not being challenged again
    history: tuple[Mapping[str, Any], ...] = field(default=(), compare=False)
    promoting: Mapping[str, Any] | None = field(default=None, compare=False)

    def promotion_of(self, version: str) -> Mapping[str, Any] | None:
        """The promotion that made `version` the champion, if any: the one under way (the
        champion Deployment rolls before the challenge concludes) or one in the history."""
        if self.promoting is not None and self.promoting.get("version") == version:
            return self.promoting
        for entry in reversed(self.history):
            if entry.get("action") == "Promoted" and entry.get("version") == version:
                return entry
        return None

    def rejection_of(self, desired: ModelRef) -> Rejection | None:
        """Why the ModelDeployment cannot be Ready: its spec.model (`desired`) names the
        version this challenge rejected."""
        if self.rejected is None or not desired.same_model(self.rejected):
            return None
        version = self.rejected.version
        serving = self.champion.version if self.champion is not None else "the champion"
        return Rejection(version, self.name, serving, rollback_reason(self.history, version))


def governing(views: Iterable[ChallengeView]) -> ChallengeView | None:
    """With two policies on one deployment, the first by name governs (the other is Failed)."""
    return min(views, key=lambda v: v.name, default=None)


def challenge_view(body: Mapping[str, Any]) -> ChallengeView:
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    machine = Status.from_dict(status.get("machine"))
    topology = desired_topology(machine)
    running = machine.phase not in (Phase.IDLE, Phase.PROMOTED, Phase.ROLLED_BACK, Phase.FAILED)
    try:
        fronts_service = provider_for(ChampionChallengerSpec.model_validate(spec)).fronts_service
    except ValidationError:
        fronts_service = False  # an invalid policy is Failed: its router never takes the Service
    return ChallengeView(
        name=str(body.get("metadata", {}).get("name", "")),
        champion=topology.champion,
        challenger=machine.challenger if running else None,
        # Only once the router is up: the Service must never point at pods that do not exist.
        routed=fronts_service and bool(status.get("routerReady")),
        rejected=standing_rejection(machine),
        history=tuple(status.get("history") or ()),
        promoting=_promotion_under_way(machine, status),
    )


def _promotion_under_way(machine: Status, status: Mapping[str, Any]) -> dict[str, Any] | None:
    if machine.phase is not Phase.PROMOTING or machine.challenger is None:
        return None
    return {
        "action": "Promoted",
        "version": machine.challenger.version,
        "reason": machine.outcome_reason,
        "evidence": [
            {k: g.get(k) for k in ("name", "verdict", "estimate", "lower", "upper")}
            for g in status.get("gates") or ()
        ],
    }
