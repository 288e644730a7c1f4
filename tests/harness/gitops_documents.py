"""ModelDeployment and ChampionChallenger objects whose status the operator's own code wrote.

`ChallengeRun` walks the real state machine (`step`) and renders each status with the same
pure functions the daemon uses (`challenge_conditions`, `merge_conditions`, `render_status`);
`deployment_object` builds the ModelDeployment's status with `compute_status` from a
challenge's view, as the ModelDeployment daemon does. Every status is parsed by the API model
and written back with `to_wire()`, the shape the API server stores and Argo CD reads. Only
the gates' evidence and Prometheus are left out: no gate list is needed to tell a phase.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from modelops_operator.api.championchallenger import (
    ChampionChallengerSpec,
    ChampionChallengerStatus,
)
from modelops_operator.api.modeldeployment import ModelDeploymentSpec, ModelDeploymentStatus
from modelops_operator.challenge import GateSignal, Observation, Status, step
from modelops_operator.challenge.controller import (
    Evaluation,
    challenge_conditions,
    history_entry,
    render_status,
    strategy_view,
)
from modelops_operator.challenge.view import challenge_view
from modelops_operator.challenge.workloads import model_ref
from modelops_operator.conditions import merge_conditions
from modelops_operator.constants import API_VERSION, CC_KIND, MDEP_KIND
from modelops_operator.observe import DeploymentObservation, PodFailure
from modelops_operator.reconcile import champion_spec_of
from modelops_operator.status import Blocker, ReconcileOutcome, compute_status

NAMESPACE = "fraud"
TARGET = "fraud"
CHALLENGE = "fraud-canary"
START = 1_800_000_000.0
PROMOTE = GateSignal("PROMOTE", "all gates pass", fresh=True)
ROLLBACK = GateSignal("ROLLBACK", "errors: challenger worse than the margin", fresh=True)


def model_spec(version: str) -> ModelDeploymentSpec:
    digit = version.rsplit(".", 1)[-1]
    return ModelDeploymentSpec.model_validate(
        {
            "model": {
                "name": "fraud",
                "version": version,
                "uri": f"s3://models/fraud-{version}.skops",
                "format": "sklearn",
                "digest": "sha256:" + digit * 64,
            },
            "runtime": {"replicas": 2},
        }
    )


V1, V2, V3 = "1.0.1", "1.0.2", "1.0.3"


def challenge_spec(*, approval: bool = False, paused: bool = False) -> ChampionChallengerSpec:
    return ChampionChallengerSpec.model_validate(
        {
            "targetRef": {"name": TARGET},
            "strategy": {"type": "canary", "steps": [10, 50]},
            "gates": [{"name": "errors", "type": "errorRate"}],
            "approval": {"required": approval},
            "paused": paused,
        }
    )


@dataclass
class ChallengeRun:
    """One ChampionChallenger driven through the machine, tick by tick, like its daemon."""

    spec: ChampionChallengerSpec = field(default_factory=challenge_spec)
    desired: str = V1  # the target's spec.model.version
    champion: str = V1  # the version the target's status reports, rolled out
    generation: int = 1
    machine: Status = field(default_factory=Status)
    status: dict[str, Any] = field(default_factory=dict)
    now: float = START

    def tick(self, gates: GateSignal | None = None, **seen: Any) -> ChallengeRun:
        """One step of the machine with what the daemon would have observed, rendered."""
        self.now += 10
        observed: dict[str, Any] = {
            "live_champion": model_ref(model_spec(self.champion)),
            "gates": gates or GateSignal("WAIT", "not enough data yet", fresh=True),
            "step_interval_seconds": 60,
            "approval_required": self.spec.approval.required,
            "paused": self.spec.paused,
            **seen,
        }
        observation = Observation(
            now=self.now,
            desired=model_ref(model_spec(self.desired)),
            strategy=strategy_view(self.spec.strategy),
            **observed,
        )
        transition = step(self.machine, observation)
        evaluation = Evaluation(at=self.now, decision="Continue")
        moment = datetime.fromtimestamp(self.now, tz=UTC)
        self.status = render_status(
            generation=self.generation,
            transition=transition,
            evaluation=evaluation,
            history_added=history_entry(transition, evaluation),
            previous=self.status,
            conditions=merge_conditions(
                self.status.get("conditions"),
                challenge_conditions(transition.status, True, None),
                self.generation,
                moment,
            ),
            router_ready=True,
            approval=None,
            target_model=observation.desired,
        )
        self.machine = transition.status
        return self

    def edit_spec(self, spec: ChampionChallengerSpec) -> ChallengeRun:
        """A new spec from Git: a new generation, not yet seen by the daemon."""
        self.spec, self.generation = spec, self.generation + 1
        return self

    def body(self) -> dict[str, Any]:
        """The object as the API server returns it."""
        status = ChampionChallengerStatus.model_validate(self.status).to_wire()
        return {
            "apiVersion": API_VERSION,
            "kind": CC_KIND,
            "metadata": {"name": CHALLENGE, "namespace": NAMESPACE, "generation": self.generation},
            "spec": self.spec.to_wire(),
            "status": status,
        }

    # ------------------------------------------------------------------ to each phase
    def started(self, version: str = V2) -> ChallengeRun:
        """Git names `version`: the challenger starts and takes its first canary step."""
        self.desired = version
        return self.tick(challenger_ready=False).tick(challenger_ready=True)

    def gates_passed(self, version: str = V2) -> ChallengeRun:
        """Through every canary step to the gates' verdict PROMOTE."""
        self.started(version)
        for _ in range(len(self.spec.strategy.steps or ())):
            self.now += 60
            self.tick(PROMOTE, challenger_ready=True)
        return self

    def promoting(self, version: str = V2) -> ChallengeRun:
        self.gates_passed(version)
        if self.spec.approval.required:
            self.tick(PROMOTE, challenger_ready=True,
                      approved_version=self.machine.challenge_id, approved_by="alice")  # fmt: skip
        return self

    def promoted(self, version: str = V2) -> ChallengeRun:
        self.promoting(version)
        self.tick(route_applied=True)  # all traffic on the challenger (no feedback grace)
        self.tick(route_applied=True)  # the champion Deployment rolls to `version`
        self.tick(route_applied=True, champion_ready_version=version)  # traffic back to it
        self.tick(route_applied=True, champion_ready_version=version)  # the challenger retires
        self.champion = version
        return self.tick(
            route_applied=True, champion_ready_version=version, challenger_removed=True
        )

    def rolling_back(self) -> ChallengeRun:
        return self.started().tick(ROLLBACK, challenger_ready=True)

    def rolled_back(self) -> ChallengeRun:
        self.rolling_back()
        self.tick(route_applied=True)  # traffic withdrawn, grace 0
        return self.tick(route_applied=True, challenger_removed=True)

    def failed(self) -> ChallengeRun:
        return self.tick(config_error="spec.targetRef.name: ModelDeployment 'fraud' not found")


def champion_deployment(version: str, *, available: int = 2) -> DeploymentObservation:
    """The champion Deployment as the ModelDeployment daemon's index observes it."""
    return DeploymentObservation(
        generation=4,
        observed_generation=4,
        wanted_replicas=2,
        replicas=2,
        updated_replicas=2,
        ready_replicas=available,
        available_replicas=available,
        template_version=version,
        deadline_exceeded=False,
        progress_message="",
    )


def deployment_object(
    version: str,
    *,
    challenge: ChallengeRun | None = None,
    generation: int = 3,
    observed: DeploymentObservation | None = None,
    failures: tuple[PodFailure, ...] = (),
    blocker: Blocker | None = None,
) -> dict[str, Any]:
    """A ModelDeployment whose spec names `version`, its status computed by the operator
    (with the view of `challenge` when one gates it), as the API server returns it."""
    spec = model_spec(version)
    view = None
    if challenge is not None:
        view = challenge_view(challenge.body())
        if view.champion is None:  # what the handler does before the challenge adopts it
            view = replace(view, champion=model_ref(model_spec(challenge.champion)))
    live_spec = champion_spec_of(spec, view)
    status = compute_status(
        TARGET,
        NAMESPACE,
        live_spec,
        ReconcileOutcome(generation, blocker),
        observed,
        None,
        datetime.fromtimestamp(START, tz=UTC),
        failures,
        view,
        view.rejection_of(model_ref(spec)) if view is not None else None,
    )
    return {
        "apiVersion": API_VERSION,
        "kind": MDEP_KIND,
        "metadata": {"name": TARGET, "namespace": NAMESPACE, "generation": generation},
        "spec": spec.to_wire(),
        "status": ModelDeploymentStatus.model_validate(status).to_wire(),
    }
