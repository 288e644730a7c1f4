"""A rejected version that Git still names: the one state GitOps tools must not call healthy.

After a rollback the machine remembers the rejected model (`Status.rejected`) and, while the
target's spec.model still names it, starts nothing: the champion keeps serving and Git and the
cluster disagree until a person changes Git. Both kinds say so in their status, from the rule
here: the ModelDeployment turns Stalled (reason `VersionRejected`), the ChampionChallenger
shows `status.rejected.namedByTarget`, and the Argo CD health checks read those.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .model import ModelRef, Phase, Status

# Phases in which a challenge is under way: where it ends decides whether a rejection stands
# (a promotion clears it, a re-challenge of the rejected model may reverse it).
_IN_MOTION = (Phase.PROGRESSING, Phase.AWAITING_APPROVAL, Phase.PROMOTING, Phase.ROLLING_BACK)


def standing_rejection(status: Status) -> ModelRef | None:
    """The model the last rollback rejected, while the machine rests (Idle, Promoted,
    RolledBack, Failed): at rest it starts nothing for that model."""
    return None if status.phase in _IN_MOTION else status.rejected


def rejected_in_spec(status: Status, desired: ModelRef) -> ModelRef | None:
    """The rejected model when spec.model (`desired`) still names it, else None."""
    rejected = standing_rejection(status)
    return rejected if rejected is not None and desired.same_model(rejected) else None


@dataclass(frozen=True)
class Rejection:
    """What a person reads on the ModelDeployment: which version, who rejected it, why."""

    version: str
    challenge: str  # the ChampionChallenger that rolled it back
    serving: str  # the champion version that serves instead
    reason: str = ""  # the rollback's reason, from the challenge's history

    def message(self) -> str:
        why = f" ({self.reason})" if self.reason else ""
        return (
            f"spec.model.version {self.version} was rolled back by ChampionChallenger "
            f"{self.challenge}{why}; {self.serving} keeps serving and nothing restarts while "
            f"spec.model names {self.version}. Fix it in Git: name another version (a new "
            f"one is challenged), or {self.serving} to accept the rollback; to challenge "
            f"{self.version} again, publish it under a new version"
        )[:4096]


def rollback_reason(history: Iterable[Mapping[str, Any]], version: str) -> str:
    """The reason of the newest rollback of `version` in a challenge's history."""
    for entry in reversed(list(history)):
        if entry.get("action") == "RolledBack" and entry.get("version") == version:
            return str(entry.get("reason") or "")
    return ""
