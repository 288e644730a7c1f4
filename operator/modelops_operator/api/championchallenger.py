"""ChampionChallenger: the policy that gates changes of one ModelDeployment (docs/api.md)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import ConfigDict, Field

from .base import DNS1035_LABEL, DURATION, KubeModel, ObservedStatus, cel, validations

StrategyType = Literal["shadow", "canary", "ab"]
GateType = Literal["errorRate", "latency", "accuracy", "predictionDrift", "prometheus"]
Phase = Literal[
    "Idle",
    "Progressing",
    "AwaitingApproval",
    "Promoting",
    "Promoted",
    "RollingBack",
    "RolledBack",
    "Failed",
]
# The same values as tuples, for code that iterates (a test ties the state machine to them).
GATE_TYPES: tuple[str, ...] = get_args(GateType)
PHASES: tuple[str, ...] = get_args(Phase)


@dataclass(frozen=True)
class GateTypeDefaults:
    """What a gate of one type means when it leaves `margin` or `absoluteMargin` out."""

    margin: float
    reads: str  # how the margin reads for this type (for the field's description)
    absolute_margin: float | None = None


# The one place the per-type defaults live: the runtime (Gate.margin_in_force) and the CRD's
# descriptions (`kubectl explain cc.spec.gates.margin`) both read this table.
GATE_DEFAULTS: dict[str, GateTypeDefaults] = {
    "errorRate": GateTypeDefaults(
        0.2, "a relative increase of the error rate: 0.2 = 20% more", absolute_margin=0.001
    ),
    "latency": GateTypeDefaults(
        0.2,
        "a relative increase of the share of requests slower than latencyThreshold",
        absolute_margin=0.001,
    ),
    "accuracy": GateTypeDefaults(
        0.01,
        "an absolute drop: 0.01 = one point of accuracy; with regression feedback, an increase "
        "of the mean loss in its units",
    ),
    "predictionDrift": GateTypeDefaults(
        0.1, "the largest acceptable CDF distance between the prediction distributions, 0..1"
    ),
    "prometheus": GateTypeDefaults(
        0.2, "a relative increase, for queries giving each model's rate; unused by thresholdRange"
    ),
}
assert set(GATE_DEFAULTS) == set(GATE_TYPES)
# shadow: the share of requests mirrored to the challenger when mirrorPercent is unset.
DEFAULT_MIRROR_PERCENT = 100


def _margin_defaults() -> str:
    return "; ".join(f"{t} {d.margin:g} ({d.reads})" for t, d in GATE_DEFAULTS.items())


def _absolute_margin_defaults() -> str:
    return ", ".join(
        f"{t} {d.absolute_margin:g}" for t, d in GATE_DEFAULTS.items() if d.absolute_margin
    )


def _duration_at_least(minimum: str, field: str) -> dict[str, str]:
    return cel(
        f"duration(self) >= duration('{minimum}')",
        f"{field} must be a duration of at least {minimum}, like 30s, 5m or 1h30m",
    )


class TargetRef(KubeModel):
    """The ModelDeployment whose changes this policy gates."""

    name: str = Field(
        description="Name of a ModelDeployment in the same namespace. Immutable.",
        min_length=1,
        max_length=52,
        pattern=DNS1035_LABEL,
    )

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel("self == oldSelf", "spec.targetRef is immutable: create a new ChampionChallenger")
        )
    )


class Strategy(KubeModel):
    """How the challenger receives traffic while it is evaluated."""

    type: StrategyType = Field(
        description="shadow: the challenger gets a mirrored copy of requests and its answers are "
        "recorded, never returned. canary: a weighted split that grows through steps. ab: a "
        "fixed split, optionally sticky per user."
    )
    mirror_percent: int | None = Field(
        None,
        ge=1,
        le=100,
        description="shadow only: percentage of requests mirrored to the challenger (default "
        f"{DEFAULT_MIRROR_PERCENT}).",
    )
    steps: list[int] | None = Field(
        None,
        min_length=1,
        max_length=20,
        description="canary only: challenger traffic percentages, strictly increasing, each in "
        "1..100, for example [5, 25, 50]. The next step starts when the gates allow it.",
        json_schema_extra=validations(
            cel(
                "self.all(s, s >= 1 && s <= 100)",
                "spec.strategy.steps are percentages in 1..100",
            ),
            cel(
                "self.isSorted() && self.all(s, self.filter(t, t == s).size() == 1)",
                "spec.strategy.steps must be strictly increasing, like [5, 25, 50]",
            ),
        ),
    )
    weight: int | None = Field(
        None,
        ge=1,
        le=99,
        description="ab only: percentage of requests answered by the challenger (1..99).",
    )
    sticky_header: str | None = Field(
        None,
        max_length=256,
        pattern=r"^[A-Za-z0-9-]+$",
        description="ab only: request header whose value pins a user to one model, for example "
        "X-User-Id.",
    )

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.type != 'canary' || has(self.steps)",
                "spec.strategy.steps is required when spec.strategy.type is canary",
                field_path=".steps",
            ),
            cel(
                "self.type == 'canary' || !has(self.steps)",
                "spec.strategy.steps is only allowed when spec.strategy.type is canary",
                field_path=".steps",
            ),
            cel(
                "self.type != 'ab' || has(self.weight)",
                "spec.strategy.weight is required when spec.strategy.type is ab",
                field_path=".weight",
            ),
            cel(
                "self.type == 'ab' || (!has(self.weight) && !has(self.stickyHeader))",
                "spec.strategy.weight and spec.strategy.stickyHeader are only allowed when "
                "spec.strategy.type is ab",
                field_path=".weight",
            ),
            cel(
                "self.type == 'shadow' || !has(self.mirrorPercent)",
                "spec.strategy.mirrorPercent is only allowed when spec.strategy.type is shadow",
                field_path=".mirrorPercent",
            ),
        )
    )

    @property
    def mirror_percent_in_force(self) -> int:
        """shadow: the share of requests mirrored, mirrorPercent or its default."""
        return DEFAULT_MIRROR_PERCENT if self.mirror_percent is None else self.mirror_percent


class ThresholdRange(KubeModel):
    """Bounds a Prometheus query result must stay within (Flagger's thresholdRange)."""

    min: float | None = Field(None, description="Lowest acceptable value.")
    max: float | None = Field(None, description="Highest acceptable value.")

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "has(self.min) || has(self.max)",
                "spec.gates[].thresholdRange needs min, max or both",
            ),
            cel(
                "!has(self.min) || !has(self.max) || self.min <= self.max",
                "spec.gates[].thresholdRange.min must not exceed max",
            ),
        )
    )


class Gate(KubeModel):
    """One check the challenger must pass before it is promoted."""

    name: str = Field(
        description="Gate name, unique in the list.",
        min_length=1,
        max_length=63,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
    )
    type: GateType = Field(
        description="errorRate: share of failed requests. latency: share of requests slower "
        "than latencyThreshold. accuracy: share of correct predictions, from feedback labels. "
        "predictionDrift: distance between the challenger's and champion's prediction "
        "distributions. prometheus: any PromQL query with a thresholdRange."
    )
    test: Literal["nonInferiority", "superiority"] = Field(
        "nonInferiority",
        description="nonInferiority: the challenger is not worse than the champion by more "
        "than margin. superiority: the challenger is better.",
    )
    margin: float | None = Field(
        None,
        ge=0,
        le=10,
        description="How much worse the challenger may be and still pass nonInferiority, in "
        "the units of the gate's type. Unset, the type's default: " + _margin_defaults() + ".",
    )
    harm_margin: float | None = Field(
        None,
        ge=0,
        le=10,
        description="How much worse the challenger must be shown to be before it is rolled "
        "back, in margin's units (default: margin). A larger harmMargin leaves a zone where a "
        "challenger neither passes nor fails (maxDuration then decides).",
    )
    absolute_margin: float | None = Field(
        None,
        ge=0,
        le=1,
        description="errorRate, latency and rate-style prometheus gates: an absolute tolerance "
        "on the rate difference challenger minus champion, in [0, 1] (0.001 = 0.1 percentage "
        "points). nonInferiority passes when the challenger's rate is shown to be at most the "
        "larger of (1 + margin) times the champion's and the champion's plus absoluteMargin, "
        "so a gate can pass while neither model has errors; rollback needs the challenger "
        "shown worse than both. Unset: " + _absolute_margin_defaults() + ", none for "
        "prometheus (its scale is unknown); 0 turns it off (ratio only).",
    )
    tau: float | None = Field(
        None,
        gt=0,
        le=10,
        description="accuracy only: scale of the normal-mixture prior of the sequential test, "
        "in margin's units (default: the margin). It changes how fast a decision comes, "
        "never the error rate.",
    )
    latency_threshold: str | None = Field(
        None,
        max_length=32,
        pattern=DURATION,
        description="latency only: the bound a request must beat, like 250ms (best an exact "
        "histogram bucket edge of the sidecar).",
    )
    query: str | None = Field(
        None,
        max_length=4096,
        description="prometheus only: PromQL returning one number. {{namespace}}, "
        "{{deployment}}, {{role}} and {{version}} are substituted.",
    )
    threshold_range: ThresholdRange | None = Field(
        None, description="prometheus only: bounds the query result must stay within."
    )

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "self.type != 'latency' || has(self.latencyThreshold)",
                "spec.gates[].latencyThreshold is required for a latency gate",
                field_path=".latencyThreshold",
            ),
            cel(
                "self.type != 'prometheus' || (has(self.query) && has(self.thresholdRange))",
                "spec.gates[].query and spec.gates[].thresholdRange are required for a prometheus "
                "gate",
                field_path=".query",
            ),
            cel(
                "!has(self.absoluteMargin) || self.type in ['errorRate', 'latency', 'prometheus']",
                "spec.gates[].absoluteMargin is only allowed for errorRate, latency and "
                "prometheus gates",
                field_path=".absoluteMargin",
            ),
            cel(
                "self.type == 'prometheus' || (!has(self.query) && !has(self.thresholdRange))",
                "spec.gates[].query and thresholdRange are only allowed for a prometheus gate",
                field_path=".query",
            ),
            cel(
                "!has(self.tau) || self.type == 'accuracy'",
                "spec.gates[].tau is only allowed for an accuracy gate",
                field_path=".tau",
            ),
        )
    )

    @property
    def margin_in_force(self) -> float:
        """margin, or the default of the gate's type (GATE_DEFAULTS)."""
        return GATE_DEFAULTS[self.type].margin if self.margin is None else self.margin

    @property
    def absolute_margin_in_force(self) -> float | None:
        """absoluteMargin, or the default of the gate's type (None: the ratio test alone)."""
        if self.absolute_margin is not None:
            return self.absolute_margin
        return GATE_DEFAULTS[self.type].absolute_margin


class Decision(KubeModel):
    """How evidence turns into a decision, and the error rate guaranteed."""

    alpha: float = Field(
        0.05,
        gt=0,
        lt=0.5,
        description="Largest probability of promoting a challenger that is in truth worse than "
        "the margin allows, in (0, 0.5). Checking every interval does not inflate it.",
    )
    interval: str = Field(
        "1m",
        max_length=32,
        pattern=DURATION,
        description="How often the gates are evaluated, at least 5s.",
        json_schema_extra=validations(_duration_at_least("5s", "spec.decision.interval")),
    )
    rollback_alpha: float | None = Field(
        None,
        gt=0,
        lt=0.5,
        description="Largest probability of rolling back a challenger that is in truth within "
        "the margins, in (0, 0.5), split over the gates that can roll back (default: alpha).",
    )
    min_samples: int = Field(
        200,
        ge=1,
        le=100_000_000,
        description="Requests each model must have answered before a promotion is possible.",
    )
    min_duration: str | None = Field(
        None,
        max_length=32,
        pattern=DURATION,
        description="Shortest time a challenge runs before a promotion is possible, like 1h "
        "(default: none). When traffic varies over the day, a full day keeps a promotion from "
        "resting on a few quiet hours. A rollback is never delayed.",
    )
    warm_up: str = Field(
        "2m",
        max_length=32,
        pattern=DURATION,
        description="How long each pod's counts are left out of the evidence after it starts, "
        "like 2m or 0s: cold caches, lazy loading and JIT warm-up are not the model. Applies "
        "to every pod of both models (a pod restarted mid-challenge warms up again).",
    )
    max_duration: str = Field(
        "24h",
        max_length=32,
        pattern=DURATION,
        description="Longest a challenge may run; then onTimeout applies.",
        json_schema_extra=validations(_duration_at_least("1m", "spec.decision.maxDuration")),
    )
    on_timeout: Literal["rollback", "hold"] = Field(
        "rollback",
        description="What happens at maxDuration without a decision: rollback (reject the "
        "challenger, keep the champion) or hold (keep both running until a person decides).",
    )

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                # has(): the rule also runs on the `{}` default, before nested defaults apply.
                "!has(self.maxDuration) || !has(self.interval) "
                "|| duration(self.maxDuration) > duration(self.interval)",
                "spec.decision.maxDuration must be longer than spec.decision.interval",
                field_path=".maxDuration",
            ),
            cel(
                "!has(self.minDuration) || !has(self.maxDuration) "
                "|| duration(self.minDuration) < duration(self.maxDuration)",
                "spec.decision.minDuration must be shorter than spec.decision.maxDuration",
                field_path=".minDuration",
            ),
        )
    )


class Approval(KubeModel):
    """A person's sign-off after the gates pass."""

    required: bool = Field(
        False,
        description="Stop at AwaitingApproval after the gates pass, until a person runs "
        "`kubectl modelops approve`.",
    )


class ParentRef(KubeModel):
    """A Gateway (or other parent) the HTTPRoute attaches to."""

    name: str = Field(description="Name of the Gateway.", min_length=1, max_length=253)
    namespace: str | None = Field(
        None, max_length=63, description="Namespace of the Gateway (default: this one)."
    )
    section_name: str | None = Field(
        None, max_length=253, description="Listener of the Gateway to attach to."
    )


class Traffic(KubeModel):
    """Which data plane splits and mirrors traffic."""

    provider: Literal["router", "gatewayAPI"] = Field(
        "router",
        description="router: the built-in router (any cluster; the ModelDeployment's Service "
        "points at it). gatewayAPI: an HTTPRoute with weighted backendRefs and a RequestMirror "
        "filter, for clusters with a Gateway API implementation.",
    )
    parent_refs: list[ParentRef] | None = Field(
        None,
        min_length=1,
        max_length=16,
        description="gatewayAPI only: the Gateways the HTTPRoute attaches to.",
    )

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                # has(): the rule also runs on the `{}` default, before nested defaults apply.
                "!has(self.provider) || self.provider != 'gatewayAPI' || has(self.parentRefs)",
                "spec.traffic.parentRefs is required when spec.traffic.provider is gatewayAPI",
                field_path=".parentRefs",
            ),
        )
    )


class ChampionChallengerSpec(KubeModel):
    """How a change of the target ModelDeployment becomes live."""

    target_ref: TargetRef = Field(description="The ModelDeployment this policy gates.")
    strategy: Strategy = Field(description="How the challenger receives traffic.")
    gates: list[Gate] = Field(
        min_length=1,
        max_length=16,
        description="Checks the challenger must pass; all must pass to promote, any clear "
        "failure rolls back.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    decision: Decision = Field(
        default_factory=lambda: Decision.model_validate({}),
        description="Error rate, evaluation interval and limits.",
        json_schema_extra={"default": {}},
    )
    approval: Approval = Field(
        default_factory=lambda: Approval.model_validate({}),
        description="Whether a person must approve the promotion.",
        json_schema_extra={"default": {}},
    )
    traffic: Traffic = Field(
        default_factory=lambda: Traffic.model_validate({}),
        description="Which data plane carries the split (default: the built-in router).",
        json_schema_extra={"default": {}},
    )
    paused: bool = Field(False, description="Stop evaluating and changing traffic while true.")


class Samples(KubeModel):
    """Observations counted for each model."""

    champion: int = Field(0, ge=0, description="Observations of the champion.")
    challenger: int = Field(0, ge=0, description="Observations of the challenger.")


class GateStatus(KubeModel):
    """A gate's result at the last evaluation."""

    name: str = Field(description="Gate name.")
    type: str = Field(description="Gate type.")
    verdict: Literal["Pending", "Pass", "Fail", "NoData"] = Field(
        description="Pending (undecided yet), Pass, Fail or NoData (missing or stale metrics)."
    )
    estimate: float | None = Field(None, description="Estimated effect, challenger vs champion.")
    lower: float | None = Field(None, description="Lower end of the anytime-valid interval.")
    upper: float | None = Field(None, description="Upper end of the anytime-valid interval.")
    samples: Samples = Field(
        default_factory=lambda: Samples.model_validate({}), description="Observations so far."
    )
    message: str = Field("", max_length=4096, description="Human-readable detail.")


class ApprovalRecord(KubeModel):
    """Who approved which challenger, and when."""

    approved_by: str = Field(description="User who approved.")
    approved_at: datetime = Field(description="When.")
    version: str = Field(description="The challenger version approved.")


class ChallengeModel(KubeModel):
    """A model version taking part in the challenge."""

    version: str = Field(description="Model version.")
    digest: str = Field("", description="SHA-256 digest of the model file.")


class RejectedModel(KubeModel):
    """The version the last rollback rejected, shown while no challenge is under way (a
    promotion clears it)."""

    version: str = Field(description="Model version.")
    digest: str = Field("", description="SHA-256 digest of the model file.")
    named_by_target: bool = Field(
        False,
        description="The target ModelDeployment's spec.model still names this model: it is "
        "not live, and nothing restarts it until Git names another version (Argo CD shows the "
        "ChampionChallenger Degraded, the ModelDeployment is Stalled with VersionRejected).",
    )


class GateEvidence(KubeModel):
    """One gate's result when a decision was taken."""

    name: str = Field(description="Gate name.")
    verdict: str = Field(description="Pass, Fail, Pending or NoData.")
    estimate: float | None = Field(None, description="Estimated effect, challenger vs champion.")
    lower: float | None = Field(None, description="Lower end of the anytime-valid interval.")
    upper: float | None = Field(None, description="Upper end of the anytime-valid interval.")


class ChallengeHistoryEntry(KubeModel):
    """How one challenge ended."""

    time: datetime = Field(description="When it ended.")
    action: Literal["Promoted", "RolledBack"] = Field(description="Promoted or RolledBack.")
    version: str = Field(description="The challenger version.")
    previous: str = Field("", description="The champion version it challenged.")
    reason: str = Field("", max_length=4096, description="Why, in words.")
    evidence: list[GateEvidence] = Field(
        default_factory=list, max_length=16, description="Each gate's result at the decision."
    )


class ChampionChallengerStatus(ObservedStatus):
    """Where the challenge stands, written by the operator only."""

    phase: Phase = Field("Idle", description="Display phase; the conditions carry the truth.")
    champion: ChallengeModel | None = Field(None, description="The serving model.")
    challenger: ChallengeModel | None = Field(None, description="The model under evaluation.")
    traffic_percent: int = Field(
        0, ge=0, le=100, description="Share of requests the challenger answers (or mirrors)."
    )
    current_step: int = Field(0, ge=0, description="Index of the current canary step.")
    started_at: datetime | None = Field(None, description="When the current challenge began.")
    last_evaluation_time: datetime | None = Field(None, description="Last gate evaluation.")
    decision: Literal["", "Continue", "Promote", "RollBack", "AwaitApproval", "Hold"] = Field(
        "", description="The last decision taken."
    )
    message: str = Field("", max_length=4096, description="Why, in words.")
    gates: list[GateStatus] = Field(
        default_factory=list,
        max_length=16,
        description="Each gate's estimate, interval, samples and verdict at the last evaluation.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    approval: ApprovalRecord | None = Field(None, description="The approval, when one was given.")
    rejected: RejectedModel | None = Field(
        None, description="The version the last rollback rejected, and whether Git still names it."
    )
    router_ready: bool = Field(
        False,
        description="The built-in router is ready; the ModelDeployment's Service points at it.",
    )
    history: list[ChallengeHistoryEntry] = Field(
        default_factory=list,
        max_length=20,
        description="Outcomes of the last challenges, newest last, with their evidence.",
    )
    machine: dict[str, Any] | None = Field(
        None,
        description="Where the state machine stands, so a restarted operator resumes there "
        "(internal; read phase and conditions instead).",
    )
    evidence: dict[str, Any] | None = Field(
        None,
        description="The gating engine's accumulated evidence for the current challenger "
        "(internal; read gates instead).",
    )
