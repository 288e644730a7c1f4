"""Plain data the state machine reads and writes: status, observations, transitions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from enum import Enum, StrEnum
from typing import Any, Literal

# What a decision taken by the gating engine is recorded as having been taken by.
GATES = "modelops"


class Phase(StrEnum):
    IDLE = "Idle"
    PROGRESSING = "Progressing"
    AWAITING_APPROVAL = "AwaitingApproval"
    PROMOTING = "Promoting"
    PROMOTED = "Promoted"
    ROLLING_BACK = "RollingBack"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"


class PromotionStage(StrEnum):
    SHIFT = "ShiftTraffic"  # all traffic to the warm challenger
    CONVERGE = "RollChampion"  # champion Deployment rolls to the new version, no traffic on it
    SETTLE = "Settle"  # traffic back to the champion Deployment, challenger removed


@dataclass(frozen=True)
class ModelRef:
    version: str
    uri: str = ""
    digest: str = ""
    # How the version is served (format and server setup, `workloads.serving_of`): it travels
    # with the version, so a challenger may run another server than its champion.
    serving: str = ""

    @classmethod
    def reported(cls, live: Mapping[str, Any]) -> ModelRef:
        """The model a ModelDeployment's status reports (status.champion)."""
        return cls(live["version"], live.get("uri", ""), live.get("digest", ""),
                   live.get("serving", ""))

    def same_model(self, other: ModelRef | None) -> bool:
        return other is not None and (self.version, self.uri, self.digest) == (
            other.version,
            other.uri,
            other.digest,
        )


@dataclass(frozen=True)
class TrafficSplit:
    challenger_percent: int
    mirror_percent: int

    def describe(self) -> str:
        if self.mirror_percent:
            return f"mirroring {self.mirror_percent}% of traffic to the challenger"
        return f"{self.challenger_percent}% of traffic to the challenger"


@dataclass(frozen=True)
class StrategyView:
    """spec.strategy, reduced to the traffic each step gets."""

    type: Literal["canary", "ab", "shadow"]
    steps: tuple[int, ...] = ()
    weight: int = 0
    mirror_percent: int = 100

    @property
    def last_step(self) -> int:
        return max(len(self.steps) - 1, 0) if self.type == "canary" else 0

    def traffic_at(self, step: int) -> TrafficSplit:
        if self.type == "shadow":
            return TrafficSplit(0, self.mirror_percent)
        if self.type == "ab":
            return TrafficSplit(self.weight, 0)
        return TrafficSplit(self.steps[min(step, self.last_step)], 0)


@dataclass(frozen=True)
class GateSignal:
    """What the gating engine said this tick; action None when it could not be asked."""

    action: Literal["PROMOTE", "ROLLBACK", "WAIT"] | None = None
    reason: str = "gates not evaluated yet"
    fresh: bool = False  # evaluated on data that was present and recent


@dataclass(frozen=True)
class Command:
    """A person's order, taken from an admission-verified record (never a bare annotation)."""

    action: Literal["promote", "rollback"]
    user: str


@dataclass(frozen=True)
class Observation:
    now: float
    desired: ModelRef  # the ModelDeployment's spec.model
    strategy: StrategyView
    live_champion: ModelRef | None = None  # the ModelDeployment's status.champion
    challenger_ready: bool = False
    gates: GateSignal = field(default_factory=GateSignal)
    step_interval_seconds: float = 60.0
    approval_required: bool = False
    approved_version: str | None = None  # the challenge id a person approved
    approved_by: str = ""
    command: Command | None = None
    paused: bool = False
    config_error: str | None = None
    route_applied: bool = False  # the live route matches desired_topology(status)
    champion_ready_version: str | None = None  # version the champion Deployment runs, Ready
    challenger_removed: bool = False
    # How long a challenger with no traffic left stays up for labels of requests it answered.
    feedback_grace_seconds: float = 0.0


@dataclass(frozen=True)
class Status:
    """The machine's part of ChampionChallenger.status (camelCase via to_dict)."""

    phase: Phase = Phase.IDLE
    champion: ModelRef | None = None
    challenger: ModelRef | None = None
    step: int = 0
    challenger_percent: int = 0
    mirror_percent: int = 0
    started_at: float | None = None  # when the challenger first took traffic
    step_started_at: float | None = None
    promotion_stage: PromotionStage | None = None
    traffic_withdrawn: bool = False
    retire_at: float | None = None  # when a challenger without traffic may be removed
    rejected: ModelRef | None = None  # the last version rolled back
    # Names this challenge (version and start): approvals and commands carry it, so an order
    # given for one challenge is never carried out on a later one of the same version.
    challenge_id: str = ""
    # Traffic is being withdrawn because spec.model moved on: no verdict, nothing rejected.
    withdrawing: bool = False
    last_outcome: Phase | None = None  # Promoted or RolledBack: where the machine rests
    outcome_reason: str = ""
    # Who took the decision under way: GATES, or the user whose order is carried out.
    decided_by: str = ""
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Enum):
                value = value.value
            elif isinstance(value, ModelRef):
                value = asdict(value)
            out[_camel(f.name)] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Status:
        data = data or {}
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            value = data.get(_camel(f.name))
            if value is None:
                continue
            if f.name in ("champion", "challenger", "rejected"):
                value = ModelRef(**value)
            elif f.name in ("phase", "last_outcome"):
                value = Phase(value)
            elif f.name == "promotion_stage":
                value = PromotionStage(value)
            kwargs[f.name] = value
        return cls(**kwargs)


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class HistoryEntry:
    kind: Literal["Promoted", "RolledBack"]
    version: str
    previous: str
    at: float
    reason: str
    decided_by: str = ""
    started_at: float | None = None


@dataclass(frozen=True)
class Transition:
    status: Status
    events: tuple[Event, ...] = ()
    history: HistoryEntry | None = None
    reset_evidence: bool = False  # a new challenger (or none): discard the gating state


@dataclass(frozen=True)
class Topology:
    """Which version each Deployment runs and how the route splits traffic."""

    champion: ModelRef | None
    challenger: ModelRef | None
    challenger_percent: int
    mirror_percent: int


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)
