"""The pure half of the ChampionChallenger controller: what the daemon sees, in and out.

- `parse_policy` validates the ChampionChallenger's spec once into the API model and builds the
  gating configuration from it (or says which field is wrong);
- `observe` turns the live objects (the ChampionChallenger, its target, the Deployments, the
  route's state, the gates' verdict) into the state machine's `Observation`;
- `plan_objects` turns the machine's status into the objects that must exist (challenger
  Deployment, per-arm Services, router or HTTPRoute) and the ones that must go;
- `render_status` turns a transition into the ChampionChallenger's status.

The kopf daemon in `handlers/championchallenger.py` only gathers inputs and applies outputs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf
from pydantic import ValidationError

from .. import conditions as cond
from ..api.championchallenger import ChampionChallengerSpec, Strategy
from ..api.modeldeployment import ModelDeploymentSpec
from ..builders.workload import build_model_deployment
from ..conditions import format_time
from ..constants import (
    ANNOTATION_APPROVED_BY,
    ANNOTATION_APPROVED_VERSION,
    ANNOTATION_COMMAND,
    ANNOTATION_COMMAND_BY,
    API_VERSION,
    CC_KIND,
    ROLE_CHALLENGER,
    ROLE_CHAMPION,
)
from ..gating import GatingConfig
from ..observe import DeploymentObservation
from .machine import GATED_PHASES, desired_topology
from .model import (
    Command,
    GateSignal,
    ModelRef,
    Observation,
    Phase,
    Status,
    StrategyView,
    Topology,
    Transition,
)
from .providers import provider_for
from .rejection import rejected_in_spec, standing_rejection
from .workloads import build_arm_service, model_ref, spec_with_model

HISTORY_LIMIT = 20
IN_FLIGHT = (Phase.PROGRESSING, Phase.AWAITING_APPROVAL, Phase.PROMOTING, Phase.ROLLING_BACK)


# ----------------------------------------------------------------------------- the spec
@dataclass(frozen=True)
class ChallengePolicy:
    """A ChampionChallenger's spec, validated once, and the gating configuration built from it."""

    spec: ChampionChallengerSpec
    gating: GatingConfig


def _field_path(location: Sequence[int | str]) -> str:
    path = "spec"
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def parse_policy(raw_spec: Mapping[str, Any] | None) -> ChallengePolicy | str:
    """The policy, or a configuration error whose message starts with the field at fault."""
    try:
        spec = ChampionChallengerSpec.model_validate(dict(raw_spec or {}))
    except ValidationError as error:
        problems = [
            f"{_field_path(e['loc'])}: {e['msg']}"
            for e in error.errors(include_url=False, include_context=False)
        ]
        return "; ".join(problems)
    try:
        gating = GatingConfig.from_spec(spec)
    except ValueError as error:
        return f"spec.gates: {error}"
    return ChallengePolicy(spec, gating)


# ----------------------------------------------------------------------------- observing
def strategy_view(strategy: Strategy) -> StrategyView:
    return StrategyView(
        type=strategy.type,
        steps=tuple(strategy.steps or ()),
        weight=strategy.weight or 0,
        mirror_percent=strategy.mirror_percent_in_force,
    )


def rollout_done(observed: DeploymentObservation | None) -> str | None:
    """The version a Deployment runs once every wanted replica is updated and available and
    no old pod is still shutting down: a terminating pod that still answers is where
    kube-proxy sends a Service's traffic while the new pods' endpoints are not yet in its
    rules, and the labels of what it answers then find it gone."""
    if observed is None or observed.wanted_replicas < 1:
        return None
    done = (
        observed.observed_generation >= observed.generation
        and observed.updated_replicas >= observed.wanted_replicas
        and observed.available_replicas >= observed.wanted_replicas
        and observed.replicas == observed.updated_replicas
        and observed.terminating_replicas == 0
    )
    return observed.template_version if done else None


def command_from(annotations: Mapping[str, str], challenge_id: str) -> Command | None:
    """`promote/<challenge id>` or `rollback/<challenge id>`, only for the running challenge."""
    value = annotations.get(ANNOTATION_COMMAND, "")
    action, _, target = value.partition("/")
    if not challenge_id or target != challenge_id or action not in ("promote", "rollback"):
        return None
    return Command(action, annotations.get(ANNOTATION_COMMAND_BY, "unknown"))  # type: ignore[arg-type]


def live_champion_of(
    md_status: Mapping[str, Any], champion: DeploymentObservation | None
) -> ModelRef | None:
    """The champion the ModelDeployment reports, once its Deployment has fully rolled it out."""
    reported = md_status.get("champion") or {}
    version = reported.get("version")
    if not version or rollout_done(champion) != version:
        return None
    return ModelRef.reported(reported)


@dataclass(frozen=True)
class LiveState:
    """Everything the daemon gathered this tick."""

    now: float
    policy: ChallengePolicy | None  # None: the spec is invalid (config_error says why)
    annotations: Mapping[str, str]
    md_spec: ModelDeploymentSpec | None
    md_status: Mapping[str, Any]
    champion: DeploymentObservation | None
    challenger: DeploymentObservation | None
    gates: GateSignal
    route_applied: bool
    config_error: str | None = None
    feedback_grace_seconds: float = 0.0


def observe(status: Status, live: LiveState) -> Observation:
    if live.policy is None:
        # The machine fails the challenge on the error before it reads anything of the spec.
        assert live.config_error, "an invalid spec is a configuration error"
        return Observation(live.now, ModelRef(""), StrategyView("canary"),
                           config_error=live.config_error)  # fmt: skip
    spec = live.policy.spec
    desired = model_ref(live.md_spec) if live.md_spec is not None else ModelRef("")
    topology = desired_topology(status)
    challenger_version = status.challenger.version if status.challenger else None
    ready_version = rollout_done(live.challenger)
    return Observation(
        now=live.now,
        desired=desired,
        strategy=strategy_view(spec.strategy),
        live_champion=live_champion_of(live.md_status, live.champion),
        challenger_ready=challenger_version is not None and ready_version == challenger_version,
        gates=live.gates,
        step_interval_seconds=live.policy.gating.policy.interval,
        approval_required=spec.approval.required,
        approved_version=live.annotations.get(ANNOTATION_APPROVED_VERSION),
        approved_by=live.annotations.get(ANNOTATION_APPROVED_BY, ""),
        command=command_from(live.annotations, status.challenge_id),
        paused=spec.paused,
        config_error=live.config_error,
        route_applied=live.route_applied,
        champion_ready_version=rollout_done(live.champion),
        challenger_removed=topology.challenger is None and live.challenger is None,
        feedback_grace_seconds=live.feedback_grace_seconds,
    )


# ----------------------------------------------------------------------------- planning
@dataclass(frozen=True)
class ObjectPlan:
    apply: list[dict[str, Any]] = field(default_factory=list)
    delete: list[tuple[str, str]] = field(default_factory=list)  # (kind, name)


def _owned(manifest: dict[str, Any], cc_name: str, cc_uid: str) -> dict[str, Any]:
    owner = kopf.Body(
        {"metadata": {"name": cc_name, "uid": cc_uid}, "apiVersion": API_VERSION, "kind": CC_KIND}
    )
    kopf.append_owner_reference(manifest, owner=owner)
    return manifest


def plan_objects(
    *,
    cc_name: str,
    cc_uid: str,
    namespace: str,
    target: str,
    spec: ChampionChallengerSpec,
    md_spec: ModelDeploymentSpec,
    topology: Topology,
    serving_image: str,
) -> ObjectPlan:
    """What must exist beside the champion for this topology (owned by the ChampionChallenger,
    so deleting it cleans up)."""
    objects = [
        build_arm_service(target, namespace, ROLE_CHAMPION),
        build_arm_service(target, namespace, ROLE_CHALLENGER),
    ]
    delete: list[tuple[str, str]] = []
    if topology.challenger is not None:
        challenger_spec = spec_with_model(md_spec, topology.challenger)
        objects.append(
            build_model_deployment(
                target, namespace, challenger_spec, ROLE_CHALLENGER, serving_image
            )
        )
    else:
        delete.append(("Deployment", f"{target}-{ROLE_CHALLENGER}"))
    objects += provider_for(spec).objects(target, namespace, topology, serving_image)
    return ObjectPlan([_owned(o, cc_name, cc_uid) for o in objects], delete)


# ----------------------------------------------------------------------------- status
def _time(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return format_time(datetime.fromtimestamp(seconds, tz=UTC))


def _model(ref: ModelRef | None) -> dict[str, str] | None:
    return None if ref is None else {"version": ref.version, "digest": ref.digest}


def _decision_word(status: Status, gate_decision: str) -> str:
    if status.phase is Phase.AWAITING_APPROVAL:
        return "AwaitApproval"
    if status.phase in (Phase.PROMOTING, Phase.PROMOTED):
        return "Promote"
    if status.phase in (Phase.ROLLING_BACK, Phase.ROLLED_BACK):
        return "RollBack"
    if status.phase is Phase.PROGRESSING:
        return gate_decision or "Continue"
    return ""


@dataclass(frozen=True)
class Evaluation:
    """The last gate evaluation, as kept in status."""

    at: float | None = None
    decision: str = ""  # Continue / Promote / RollBack / Hold
    gates: tuple[Mapping[str, Any], ...] = ()
    state: Mapping[str, Any] | None = None  # the gating engine's state, to resume
    # The counters' last values per series and their totals (promsource.CounterLedger), so the
    # next look takes increments from them, even after an operator restart.
    counters: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        # One JSON string: a merge patch of a nested object would keep keys the engine dropped
        # (a gate's passed flag, say), and a restarted operator would resume from that mix.
        state = json.dumps(self.state, sort_keys=True) if self.state is not None else None
        counters = None
        if self.counters is not None:
            counters = json.dumps(self.counters, sort_keys=True, separators=(",", ":"))
        return {"at": self.at, "decision": self.decision, "state": state, "counters": counters}

    @classmethod
    def from_status(cls, status: Mapping[str, Any]) -> Evaluation:
        evidence = status.get("evidence") or {}
        state = evidence.get("state")
        counters = evidence.get("counters")
        return cls(
            at=evidence.get("at"),
            decision=evidence.get("decision", ""),
            gates=tuple(status.get("gates") or ()),
            state=json.loads(state) if isinstance(state, str) else state,
            counters=json.loads(counters) if isinstance(counters, str) else counters,
        )


def history_entry(transition: Transition, evaluation: Evaluation) -> dict[str, Any] | None:
    entry = transition.history
    if entry is None:
        return None
    return {
        "time": _time(entry.at),
        "action": entry.kind,
        "version": entry.version,
        "previous": entry.previous,
        "reason": entry.reason[:4096],
        "evidence": [
            {k: g.get(k) for k in ("name", "verdict", "estimate", "lower", "upper")}
            for g in evaluation.gates
        ],
    }


def render_status(
    *,
    generation: int,
    transition: Transition,
    evaluation: Evaluation,
    history_added: Mapping[str, Any] | None,
    previous: Mapping[str, Any],
    conditions: Sequence[Mapping[str, Any]],
    router_ready: bool,
    approval: Mapping[str, Any] | None,
    target_model: ModelRef | None = None,
) -> dict[str, Any]:
    """The status for a transition; `target_model` is what the target's spec.model names."""
    status = transition.status
    in_flight = status.phase in IN_FLIGHT
    history = list(previous.get("history") or [])
    if history_added is not None:
        history = [*history, dict(history_added)][-HISTORY_LIMIT:]
    traffic = status.mirror_percent or status.challenger_percent
    gated = status.phase in GATED_PHASES
    return {
        "observedGeneration": generation,
        "conditions": list(conditions),
        "phase": status.phase.value,
        "champion": _model(status.champion),
        "challenger": _model(status.challenger) if in_flight else None,
        "trafficPercent": traffic if in_flight else 0,
        "currentStep": status.step if in_flight else 0,
        "startedAt": _time(status.started_at) if in_flight else None,
        "lastEvaluationTime": _time(evaluation.at),
        "decision": _decision_word(status, evaluation.decision),
        "message": status.message[:4096],
        "gates": [dict(g) for g in evaluation.gates],
        "approval": dict(approval) if approval else None,
        "rejected": _rejected(status, target_model),
        "history": history,
        "routerReady": router_ready,
        "machine": status.to_dict(),
        "evidence": evaluation.to_dict() if gated else None,
    }


def _rejected(status: Status, target_model: ModelRef | None) -> dict[str, Any] | None:
    rejected = standing_rejection(status)
    if rejected is None:
        return None
    named = target_model is not None and rejected_in_spec(status, target_model) is not None
    return {"version": rejected.version, "digest": rejected.digest, "namedByTarget": named}


def challenge_conditions(
    status: Status, router_ready: bool, metrics_problem: str | None, evaluated: bool = True
) -> list[cond.ConditionState]:
    """kstatus conditions: Ready means the policy is in force, whatever phase a challenge is in
    (so `kubectl wait --for=condition=Ready` never flips because a challenge waits)."""
    if status.phase is Phase.FAILED:
        states = cond.stalled("ConfigError", status.message)
    elif not router_ready:
        states = cond.progressing("RouterStarting", "waiting for the router to become ready")
    elif status.champion is None:
        # Not in force until it knows what is live: only then can it hold a change back.
        states = cond.progressing("WaitingForChampion", status.message or "adopting the champion")
    else:
        states = cond.ready(status.phase.value, status.message or status.phase.value)
    if metrics_problem:
        states.append(
            cond.ConditionState("MetricsAvailable", "False", "NoMetrics", metrics_problem)
        )
    elif status.phase in GATED_PHASES and status.started_at is not None and evaluated:
        states.append(
            cond.ConditionState("MetricsAvailable", "True", "Scraped", "both arms report metrics")
        )
    elif status.phase not in GATED_PHASES:
        states.append(
            cond.ConditionState("MetricsAvailable", "Unknown", "NotEvaluating", "no gates to read")
        )
    return states
