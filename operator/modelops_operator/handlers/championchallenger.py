"""Thin kopf daemon per ChampionChallenger: gather, call the pure core, apply, write status.

Each tick: apply the objects the machine's status asks for (idempotent, cached), see whether
the route is live, evaluate the gates when an interval has passed, take one step of the state
machine, apply what the new status asks for, then write status, Events and metrics. All state
lives in status, so a restarted operator resumes in the same phase and step.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import httpx2
import kopf
from lightkube.core.exceptions import ApiError
from pydantic import ValidationError

from ..api.modeldeployment import ModelDeploymentSpec
from ..builders.keys import keys_secret_name
from ..challenge import metrics
from ..challenge.controller import (
    ChallengePolicy,
    Evaluation,
    LiveState,
    challenge_conditions,
    history_entry,
    observe,
    parse_policy,
    plan_objects,
    render_status,
    rollout_done,
)
from ..challenge.evaluation import evaluate_challenge, router_revisions
from ..challenge.machine import GATED_PHASES, desired_topology, step
from ..challenge.model import GateSignal, Phase, Status, Transition
from ..challenge.providers import provider_for, unsupported
from ..challenge.view import governing
from ..challenge.workloads import model_ref
from ..conditions import format_time, merge_conditions, utc_now
from ..constants import (
    ANNOTATION_APPROVED_BY,
    ANNOTATION_APPROVED_VERSION,
    CC_PLURAL,
    GROUP,
    MDEP_PLURAL,
    ROLE_CHALLENGER,
    ROLE_CHAMPION,
    ROLE_ROUTER,
    VERSION,
)
from ..kube import apply_manifest, delete_deployment, patch_challenge_status, read_object
from ..lineage.records import ChallengeTickFacts, Deployment, challenge_records
from ..lineage.store import prune, write_records
from ..observe import slim_modeldeployment
from ..opmetrics import count_error
from ..promsource import PrometheusUnavailable
from ..reconcile import ensure_keys_secret
from . import first_indexed

CC = (GROUP, VERSION, CC_PLURAL)
MDEP = (GROUP, VERSION, MDEP_PLURAL)
# Short ticks while something moves (readiness, swaps); gates are evaluated once per interval.
FAST_TICK = 1.0
SLOW_TICK = 3.0


@kopf.index(*MDEP)
async def modeldeployment_bodies(
    body: kopf.Body, name: str, namespace: str | None, **_: Any
) -> Any:
    """(namespace, name) -> the target's spec and status, for the challenge daemons, and the
    metadata its lineage records read the change's source from."""
    slim = slim_modeldeployment(body)
    metadata = slim["metadata"]
    return {
        (namespace, name): {
            "spec": slim["spec"],
            "status": slim["status"],
            "metadata": {
                key: metadata.get(key)
                for key in ("uid", "labels", "annotations", "managedFields", "generation")
            },
        }
    }


def _digest(manifest: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()


async def _apply_plan(memo: kopf.Memo, plan: Any, namespace: str, observed: Any) -> None:
    """Apply what changed since our last apply (a restart re-applies once), delete leftovers."""
    for manifest in plan.apply:
        key = (manifest["kind"], namespace, manifest["metadata"]["name"])
        digest = _digest(manifest)
        if memo.applied.get(key) == digest:
            continue
        await apply_manifest(memo.k8s, manifest)
        memo.applied[key] = digest
    for kind, name in plan.delete:
        if kind == "Deployment" and observed is not None:
            await delete_deployment(memo.k8s, namespace, name)
            memo.applied.pop((kind, namespace, name), None)


async def _ensure_keys(
    memo: kopf.Memo, namespace: str, target: str, md: Any, md_spec: ModelDeploymentSpec
) -> None:
    """The router mounts the target's keys Secret, which a deployment without feedback has
    not needed before its first challenge: made sure of once, before the router is applied
    (the target's reconcile makes it too, but may come second; a pod whose Secret is missing
    waits and warns)."""
    key = ("Secret", namespace, keys_secret_name(target))
    uid = ((md or {}).get("metadata") or {}).get("uid")
    if key in memo.applied or not uid:
        return
    await ensure_keys_secret(memo.k8s, target, namespace, uid, md_spec, time.time(), rotate=False)
    memo.applied[key] = "ensured"


@dataclass(frozen=True)
class _ClusterReads:
    """What a traffic provider reads to tell whether its split is in force (`ClusterReads`)."""

    memo: kopf.Memo
    router: Any  # the router Deployment's observation, or None

    async def router_revisions(self, namespace: str, deployment: str) -> list[str] | None:
        try:
            return await router_revisions(self.memo.prometheus, namespace, deployment)
        except PrometheusUnavailable:
            return None

    def router_ready_replicas(self) -> int:
        return self.router.ready_replicas if self.router is not None else 0

    async def object(
        self, api_version: str, kind: str, namespace: str, name: str
    ) -> Mapping[str, Any] | None:
        return await read_object(self.memo.k8s, api_version, kind, namespace, name)


def _config_error(
    policy: ChallengePolicy | str, namespace: str, name: str, md: Any, challenges: kopf.Index
) -> tuple[str | None, ModelDeploymentSpec | None]:
    if isinstance(policy, str):
        return policy, None  # the spec itself is invalid
    target = policy.spec.target_ref.name
    if md is None:
        return (
            f"spec.targetRef.name: ModelDeployment '{target}' not found in namespace "
            f"'{namespace}'",
            None,
        )
    ruling = governing(challenges.get((namespace, target)) or ())
    if ruling is not None and ruling.name != name:
        return (
            f"spec.targetRef.name: ModelDeployment '{target}' is already gated by "
            f"ChampionChallenger '{ruling.name}'; one policy per ModelDeployment",
            None,
        )
    try:
        md_spec = ModelDeploymentSpec.model_validate(md["spec"])
    except ValidationError as error:
        return f"the target's spec is invalid: {error.errors()[0]['msg']}", None
    return unsupported(policy.spec, md_spec), md_spec


def _due(evaluation: Evaluation, policy: ChallengePolicy, now: float) -> bool:
    """An evaluation is due: not paused, and an interval has passed since the last one."""
    if policy.spec.paused:
        return False
    interval = policy.gating.policy.interval
    return evaluation.at is None or now - evaluation.at >= interval


def _approval(
    before: Status, transition: Transition, annotations: Mapping[str, str], previous: Any, now: Any
) -> Any:
    after = transition.status
    if transition.reset_evidence and after.phase is Phase.PROGRESSING:
        return None  # a new challenge: the old approval was for another version
    approved = annotations.get(ANNOTATION_APPROVED_VERSION)
    if (
        after.phase is Phase.PROMOTING
        and before.phase in GATED_PHASES
        and after.challenger is not None
        and approved == after.challenge_id
    ):
        return {
            "approvedBy": annotations.get(ANNOTATION_APPROVED_BY, ""),
            "approvedAt": now,
            "version": after.challenger.version,
        }
    return previous


async def _record(
    memo: kopf.Memo,
    namespace: str,
    name: str,
    target: str,
    md: Mapping[str, Any],
    policy: ChallengePolicy,
    before: Status,
    transition: Transition,
    evaluation: Evaluation,
    approval_before: Any,
    approval_after: Any,
    now: float,
) -> None:
    """The lineage records of this tick (approvals, orders, outcomes), then retention."""
    facts = ChallengeTickFacts(
        challenge=name,
        deployment=Deployment(
            namespace, target, md.get("metadata") or {}, (md.get("spec") or {}).get("model") or {}
        ),
        gates=evaluation.gates,
        margins={gate.name: gate.margin_in_force for gate in policy.spec.gates},
        approval_before=approval_before,
        approval_after=approval_after,
        now=now,
    )
    records = challenge_records(before, transition, facts)
    if records and await write_records(memo.k8s, records):
        await prune(memo.k8s, namespace, target, memo.lineage_keep)


class ChallengeTick:
    """One daemon's memory between ticks: only what it wrote (state itself is in status)."""

    def __init__(self) -> None:
        self.last_written: dict[str, Any] | None = None
        self.metrics_problem: str | None = None


async def _tick(
    tick: ChallengeTick,
    *,
    name: str,
    namespace: str,
    body: kopf.Body,
    memo: kopf.Memo,
    logger: Any,
    model_deployments: kopf.Index,
    modeldeployment_bodies: kopf.Index,
    challenges: kopf.Index,
) -> float:
    now = time.time()
    # The spec is validated once per tick; everything below reads the typed policy.
    parsed = parse_policy(body.get("spec"))
    policy = parsed if isinstance(parsed, ChallengePolicy) else None
    target = policy.spec.target_ref.name if policy is not None else ""
    annotations = dict(body.get("metadata", {}).get("annotations") or {})
    current = tick.last_written or dict(body.get("status") or {})
    md = first_indexed(modeldeployment_bodies, (namespace, target))
    config_error, md_spec = _config_error(parsed, namespace, name, md, challenges)
    status = Status.from_dict(current.get("machine"))
    evaluation = Evaluation.from_status(current)
    champion = first_indexed(model_deployments, (namespace, target, ROLE_CHAMPION))
    challenger = first_indexed(model_deployments, (namespace, target, ROLE_CHALLENGER))
    router = first_indexed(model_deployments, (namespace, target, ROLE_ROUTER))
    provider = provider_for(policy.spec) if policy is not None else None
    routerless = provider is not None and not provider.fronts_service
    router_ready = routerless or rollout_done(router) is not None

    def plan_for(machine: Status) -> Any:
        assert policy is not None and md_spec is not None
        return plan_objects(
            cc_name=name,
            cc_uid=body["metadata"]["uid"],
            namespace=namespace,
            target=target,
            spec=policy.spec,
            md_spec=md_spec,
            topology=desired_topology(machine),
            serving_image=memo.serving_image,
        )

    route_applied = False
    if md_spec is not None:
        plan = plan_for(status)
        await _ensure_keys(memo, namespace, target, md, md_spec)
        await _apply_plan(memo, plan, namespace, challenger)
        if status.phase in (Phase.PROMOTING, Phase.ROLLING_BACK):
            # Only a swap waits for the route; at rest no query is spent on it.
            assert provider is not None
            route_applied = await provider.route_live(
                _ClusterReads(memo, router), namespace, plan.apply
            )

    signal = GateSignal(None, status.message or "gates not evaluated yet", False)
    gated = status.phase in GATED_PHASES and status.started_at is not None
    if policy is not None and md_spec is not None and gated and _due(evaluation, policy, now):
        signal, evaluation, tick.metrics_problem = await evaluate_challenge(
            memo.prometheus,
            namespace=namespace,
            deployment=target,
            policy=policy,
            status=status,
            previous=evaluation,
            now=now,
            loss_bound=md_spec.monitoring.feedback.loss_bound,
        )
        metrics.show_metrics_available(namespace, name, not tick.metrics_problem)
        if tick.metrics_problem:
            # Retry soon, not a whole interval later, but never decide on missing data.
            evaluation = replace(evaluation, at=None)
        else:
            metrics.count_decision(namespace, name, evaluation.decision)
            metrics.show_gates(namespace, name, evaluation.gates)
    elif not gated:
        tick.metrics_problem = None
        metrics.show_metrics_available(namespace, name, True)

    live = LiveState(
        now=now,
        policy=policy,
        annotations=annotations,
        md_spec=md_spec,
        md_status=(md or {}).get("status") or {},
        champion=champion,
        challenger=challenger,
        gates=signal,
        route_applied=route_applied,
        config_error=config_error,
        feedback_grace_seconds=memo.feedback_grace_seconds,
    )
    transition = step(status, observe(status, live))
    after = transition.status
    if md_spec is not None and desired_topology(after) != desired_topology(status):
        await _apply_plan(memo, plan_for(after), namespace, challenger)

    added = history_entry(transition, evaluation)
    approval = _approval(
        status, transition, annotations, current.get("approval"), format_time(utc_now())
    )
    if md is not None and policy is not None:
        # Before the status that reports them: a failed write fails the tick, which is
        # retried, and a record's name makes the retry write it once.
        await _record(memo, namespace, name, target, md, policy, status, transition,
                      evaluation, current.get("approval"), approval, now)  # fmt: skip
    if transition.reset_evidence:
        # Keep the final gates on show after a decision; a new challenge starts from nothing.
        evaluation = Evaluation(gates=evaluation.gates if added else ())
    wanted = render_status(
        generation=int(body["metadata"].get("generation") or 0),
        transition=transition,
        evaluation=evaluation,
        history_added=added,
        previous=current,
        conditions=merge_conditions(
            current.get("conditions"),
            challenge_conditions(
                after, router_ready, tick.metrics_problem, evaluated=evaluation.at is not None
            ),
            int(body["metadata"].get("generation") or 0),
            utc_now(),
        ),
        router_ready=router_ready,
        approval=approval,
        target_model=model_ref(md_spec) if md_spec is not None else None,
    )
    # Absent, null and empty are the same to the API server: comparing them as equal keeps a
    # tick that changes nothing from writing.
    if any((current.get(k) or None) != (v or None) for k, v in wanted.items()):
        await patch_challenge_status(memo.k8s, namespace, name, wanted)
        tick.last_written = {**current, **wanted}
    for event in transition.events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)
        logger.info(f"{event.reason}: {event.message}")
        if event.reason in ("GatesPassed", "Approved", "ForcedPromotion"):
            metrics.count_decision(namespace, name, "PromotionStarted")
        elif event.reason in ("GatesFailed", "ManualRollback"):
            metrics.count_decision(namespace, name, "RollbackStarted")
    metrics.show_phase(namespace, name, after.phase)
    moving = after.phase in (Phase.PROMOTING, Phase.ROLLING_BACK) or (
        after.phase is Phase.PROGRESSING and after.started_at is None
    )
    return FAST_TICK if moving or after != status else SLOW_TICK


@kopf.daemon(*CC, cancellation_timeout=10)
async def run_challenge(
    *, name: str, namespace: str | None, stopped: Any, logger: Any, **kwargs: Any
) -> None:
    assert namespace is not None  # ChampionChallengers are namespaced
    tick = ChallengeTick()
    while not stopped:
        try:
            delay = await _tick(
                tick,
                name=name,
                namespace=namespace,
                body=kwargs["body"],
                memo=kwargs["memo"],
                logger=logger,
                model_deployments=kwargs["model_deployments"],
                modeldeployment_bodies=kwargs["modeldeployment_bodies"],
                challenges=kwargs["challenges"],
            )
        except (ApiError, httpx2.HTTPError) as error:
            logger.warning(f"challenge tick failed, retrying: {error!r}")
            count_error("challenge")
            delay = 5.0
        except Exception:
            logger.exception("challenge tick failed unexpectedly, retrying")
            count_error("challenge")
            delay = 5.0
        await stopped.wait(delay)
    metrics.forget(namespace, name)
