"""Thin kopf handlers for ModelDeployment: they gather inputs, call the pure core, write.

- `modeldeployment_event` queues the object on every event; the fleet's workers
  (`handlers/fleet.py`) call `process`, which reconciles (new spec, a deleted child, resync:
  one idempotent path that applies only what differs from the children kopf's indices
  observe) and then writes the status if it changed: the single writer of the status.
- The children's indices queue their owner when a child Deployment or Pod changes.
All handlers return None: a return value would be written to status and pruned by the schema.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping
from typing import Any

import httpx2
import kopf
from lightkube.core.exceptions import ApiError
from pydantic import ValidationError

from ..api.modeldeployment import ModelDeploymentSpec
from ..builders.workload import workload_name
from ..challenge.model import ModelRef
from ..challenge.view import ChallengeView, challenge_view, governing
from ..challenge.workloads import model_ref
from ..conditions import READY, STALLED, find_condition, utc_now
from ..constants import (
    CC_PLURAL,
    GROUP,
    LABEL_MANAGED_BY,
    MANAGED_BY,
    MDEP_PLURAL,
    ROLE_CHAMPION,
    VERSION,
)
from ..kube import patch_modeldeployment_status, read_object
from ..lineage.records import rolled_out
from ..lineage.store import prune, write_records
from ..observe import (
    DeploymentObservation,
    PodHealth,
    child_key,
    observe_deployment,
    observe_pod,
    slim_manifest,
    slim_modeldeployment,
)
from ..opmetrics import count_error
from ..reconcile import ReconcileReport, champion_spec_of, reconcile_modeldeployment
from ..status import ReconcileOutcome, compute_status, reportable, reported, status_patch
from . import first_indexed, fleet, notify

MDEP = (GROUP, VERSION, MDEP_PLURAL)
CC = (GROUP, VERSION, CC_PLURAL)
MANAGED = {LABEL_MANAGED_BY: MANAGED_BY}
# The kinds of children the operator watches; each child carries the MANAGED label.
DEPLOYMENTS = ("apps", "v1", "deployments")
SERVICES = ("", "v1", "services")
PODS = ("", "v1", "pods")
# Drift correction and retry of blocked specs; children changes are seen at once via watches.
RESYNC_SECONDS = float(os.environ.get("MODELOPS_RESYNC_SECONDS", "300"))
# Let a burst of child events settle into one status write.
DEBOUNCE_SECONDS = 0.2


def _wake(memo: kopf.Memo, key: tuple[str, str]) -> None:
    """Have the fleet's workers look at the object soon (a burst of events makes one look)."""
    memo.queue.add(key, DEBOUNCE_SECONDS)


@kopf.on.startup()
def watch_only_managed_children(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Have the API server send only our children, not every Pod, Deployment and Service.

    kopf's `labels=` filters below run in the operator, after the whole cluster's objects of
    the kind were listed and streamed to it; `settings.watching.label_selectors` (kopf 1.45)
    puts the same selector on the LIST and WATCH requests. The filters stay as they are: they
    say what each handler expects, whatever the settings.
    """
    selector = ",".join(f"{key}={value}" for key, value in MANAGED.items())
    for kind in (DEPLOYMENTS, SERVICES, PODS):
        settings.watching.label_selectors[kind] = selector


@kopf.index(*DEPLOYMENTS, labels=MANAGED)
async def model_deployments(body: kopf.Body, memo: kopf.Memo, **_: Any) -> Any:
    """(namespace, mdep, role) -> slim observation of each Deployment we manage."""
    key = child_key(body)
    if key is None:
        return None
    _wake(memo, key[:2])
    return {key: observe_deployment(body)}


@kopf.index(*SERVICES, labels=MANAGED)
async def model_services(body: kopf.Body, **_: Any) -> Any:
    """(namespace, mdep) -> slim manifest of the `<mdep>` Service (not the per-arm ones)."""
    key = child_key(body)
    if key is None or body.get("metadata", {}).get("name") != key[1]:
        return None
    return {key[:2]: slim_manifest(body)}


@kopf.index(*PODS, labels=MANAGED)
async def model_pods(body: kopf.Body, memo: kopf.Memo, **_: Any) -> Any:
    """(namespace, mdep, role) -> health of each model pod, so status can say why it fails."""
    key = child_key(body)
    if key is None:
        return None
    _wake(memo, key[:2])
    return {key: observe_pod(body)}


def _request_reconcile(memo: kopf.Memo, key: tuple[str, str]) -> None:
    """Have the workers re-apply the owner's children now (not at the next resync)."""
    memo.repairs.add(key)
    _wake(memo, key)


@kopf.index(*CC)
async def challenges(
    body: kopf.Body, namespace: str | None, memo: kopf.Memo, **_: Any
) -> Any:
    """(namespace, target mdep) -> ChallengeView: which model the champion runs, and routing."""
    target = (body.get("spec") or {}).get("targetRef", {}).get("name")
    if not target or namespace is None:
        return None
    view = challenge_view(body)
    key = (namespace, target)
    if memo.challenge_views.get(key) != view:
        memo.challenge_views[key] = view
        _request_reconcile(memo, key)
    return {key: view}


@kopf.on.event(*CC, when=lambda event, **_: event.get("type") == "DELETED")
async def challenge_deleted(
    body: kopf.Body, namespace: str | None, memo: kopf.Memo, **_: Any
) -> None:
    """Without its ChampionChallenger the deployment serves spec.model directly again."""
    target = (body.get("spec") or {}).get("targetRef", {}).get("name")
    if target and namespace:
        memo.challenge_views.pop((namespace, target), None)
        _request_reconcile(memo, (namespace, target))


def _challenge_of(
    index: kopf.Index, namespace: str, name: str, body: Mapping[str, Any]
) -> ChallengeView | None:
    view = governing(index.get((namespace, name)) or ())
    live = (body.get("status") or {}).get("champion") or {}
    if view is not None and view.champion is None and live.get("version"):
        # The challenge has not adopted the live champion yet: while a ChampionChallenger
        # exists, a new spec.model must never roll out directly, so the live one stays.
        champion = ModelRef.reported(live)
        view = dataclasses.replace(view, champion=champion)
    return view


def _is_deletion(event: Mapping[str, Any], **_: Any) -> bool:
    return event.get("type") == "DELETED"


@kopf.on.event(*DEPLOYMENTS, labels=MANAGED, when=_is_deletion)
@kopf.on.event(*SERVICES, labels=MANAGED, when=_is_deletion)
async def child_deleted(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A child deleted by hand is re-created at once, not at the next resync."""
    key = child_key(body)
    if key is not None:
        # A challenge's child (challenger, arm Service, router) is re-applied by the challenge's
        # daemon on its next tick once it is no longer remembered as applied.
        metadata = body.get("metadata", {})
        memo.applied.pop((body.get("kind"), metadata.get("namespace"), metadata.get("name")), None)
        _request_reconcile(memo, key[:2])


def _observed_children(
    name: str, namespace: str, deployments: kopf.Index, services: kopf.Index
) -> dict[tuple[str, str], Mapping[str, Any]]:
    observed: dict[tuple[str, str], Mapping[str, Any]] = {}
    champion: DeploymentObservation | None = first_indexed(
        deployments, (namespace, name, ROLE_CHAMPION)
    )
    if champion is not None:
        observed[("Deployment", champion.manifest["metadata"]["name"])] = champion.manifest
    service = first_indexed(services, (namespace, name))
    if service is not None:
        observed[("Service", service["metadata"]["name"])] = service
    return observed


async def _read_unindexed_children(
    client: Any, name: str, namespace: str, observed: dict[tuple[str, str], Mapping[str, Any]]
) -> None:
    """The children the indices do not hold yet, read from the API server. After a pause
    (another replica led) kopf lists the children anew but, unlike at start, does not wait for
    those lists before handlers run: a child missing from an index may only be unlisted yet,
    and applying it as new would announce it as re-created."""
    for api_version, kind, child in (
        ("apps/v1", "Deployment", workload_name(name, ROLE_CHAMPION)),
        ("v1", "Service", name),
    ):
        if (kind, child) not in observed:
            found = await read_object(client, api_version, kind, namespace, child)
            if found is not None:
                observed[(kind, child)] = slim_manifest(found)


def _post_events(
    body: kopf.Body, report: ReconcileReport, previous: ReconcileOutcome | None
) -> None:
    """One event per reconcile that changed something, one per new blocker. A new object's
    children are not announced (nor is its first Ready): its status says they are there."""
    created = [f"{c.kind} {c.name}" for c in report.applied if c.created]
    if created and reported(body.get("status")):
        notify(body, reason="Created", message="re-created " + ", ".join(created))
    for child in (c for c in report.applied if not c.created):
        if any(".spec.template" in path for path in child.fields):
            notify(body, reason="RollingOut", message=f"updated {child.kind} {child.name}")
        else:
            changed = ", ".join(child.fields[:3])
            notify(body, reason="Updated", message=f"{child.kind} {child.name}: {changed}")
    blocker = report.outcome.blocker
    if blocker and (previous is None or previous.blocker != blocker):
        kopf.warn(body, reason=blocker.reason, message=blocker.message)


async def _reconcile(
    *, name: str, namespace: str, body: kopf.Body, memo: kopf.Memo, logger: Any, **indices: Any
) -> None:
    key = (namespace, name)
    # One reconcile at a time per object: the work queue never hands a key to two workers.
    async with memo.api_slots:
        observed = _observed_children(
            name, namespace, indices["model_deployments"], indices["model_services"]
        )
        try:
            if reported(body.get("status")):  # reconciled before
                await _read_unindexed_children(memo.k8s, name, namespace, observed)
            report = await reconcile_modeldeployment(
                memo.k8s,
                name,
                namespace,
                body["metadata"]["uid"],
                int(body["metadata"].get("generation") or 0),
                body.get("spec") or {},
                observed,
                memo.serving_image,
                _challenge_of(indices["challenges"], namespace, name, body),
            )
        except (ApiError, httpx2.HTTPError) as error:
            count_error("reconcile")
            # Retried soon (kopf's default backoff for other errors is a minute).
            raise kopf.TemporaryError(
                f"API error while applying children: {error!r}", delay=5
            ) from error
        _post_events(body, report, memo.outcomes.get(key))
        memo.outcomes[key] = report.outcome
    applied = ", ".join(f"{c.kind}/{c.name}" for c in report.applied) or "nothing"
    logger.info(f"reconciled generation {report.outcome.generation}: applied {applied}")


@kopf.on.event(*MDEP)
async def modeldeployment_event(
    event: Mapping[str, Any], body: kopf.Body, name: str, namespace: str | None,
    memo: kopf.Memo, **indices: Any,
) -> None:
    """Every event of a ModelDeployment queues it; the fleet's workers do the rest.

    An event handler, not create/update handlers: kopf keeps no progress or diff-base
    annotations and adds no finalizer for it, so a new object costs kopf no write.
    """
    if namespace is None:
        return
    key = (namespace, name)
    if event.get("type") == "DELETED":
        fleet.forget(memo, key)
        return
    # Updated in place: kopf hands each object a shallow copy of the memo.
    memo.indices.update((index, indices[index]) for index in fleet.INDICES)
    memo.bodies[key] = slim_modeldeployment(body)
    memo.queue.add(key)
    fleet.ensure_running(memo)


def _post_status_events(
    body: kopf.Body, before: Mapping[str, Any], after: Mapping[str, Any]
) -> None:
    was_ready = find_condition(before.get("conditions"), READY).get("status") == "True"
    now_ready = find_condition(after.get("conditions"), READY)
    # A new object's first Ready is no news to anyone: who applied it reads its status (or
    # `kubectl wait`s for it). Ready again after a failure, or a new version rolled out, is.
    first_rollout = not before.get("champion")
    if now_ready.get("status") == "True" and not was_ready and not first_rollout:
        notify(body, reason=now_ready["reason"], message=now_ready["message"])
    was_stalled = find_condition(before.get("conditions"), STALLED).get("status") == "True"
    stalled = find_condition(after.get("conditions"), STALLED)
    if (
        stalled.get("status") == "True"
        and not was_stalled
        and stalled["reason"] in ("RolloutStalled", "VersionRejected")
    ):
        kopf.warn(body, reason=stalled["reason"], message=stalled["message"])


async def _publish_once(
    name: str,
    namespace: str,
    body: kopf.Body,
    memo: kopf.Memo,
    deployments: kopf.Index,
    pods: kopf.Index,
    last_written: Mapping[str, Any] | None,
    challenge: ChallengeView | None = None,
) -> Mapping[str, Any] | None:
    """Write the status if it changed; returns what was written (or the last write)."""
    outcome: ReconcileOutcome | None = memo.outcomes.get((namespace, name))
    generation = int(body["metadata"].get("generation") or 0)
    if outcome is None or outcome.generation != generation:
        return last_written  # the reconcile of this generation has not finished yet
    try:
        spec = ModelDeploymentSpec.model_validate(dict(body.get("spec") or {}))
    except ValidationError:
        spec = None
    current = dict(body.get("status") or {})
    if (
        last_written
        and int(current.get("observedGeneration") or 0) <= last_written["observedGeneration"]
    ):
        # Our last write may not have come back through the watch yet: compare with it.
        current = {**current, **last_written}
    if spec is None:
        return last_written
    observed = first_indexed(deployments, (namespace, name, ROLE_CHAMPION))
    health: list[PodHealth] = list(pods.get((namespace, name, ROLE_CHAMPION)) or ())
    failures = [h.failure for h in health if h.failure is not None]
    wanted = compute_status(
        name,
        namespace,
        champion_spec_of(spec, challenge),
        outcome,
        observed,
        current,
        utc_now(),
        failures,
        challenge,
        challenge.rejection_of(model_ref(spec)) if challenge is not None else None,
        memo.monitor_views.get((namespace, name)),
    )
    patch = status_patch(current, wanted)
    if not patch or not reportable(current, wanted):
        return last_written
    record = rolled_out(namespace, name, body, current.get("champion"), wanted.get("champion"),
                        challenge, time.time())  # fmt: skip
    if record is not None:
        # Before the status that reports it; a retry writes the same record once.
        await write_records(memo.k8s, [record])
        await prune(memo.k8s, namespace, name, memo.lineage_keep)
    await patch_modeldeployment_status(memo.k8s, namespace, name, patch)
    _post_status_events(body, current, patch)
    return patch


async def process(memo: kopf.Memo, key: tuple[str, str]) -> None:
    """One look at one ModelDeployment: reconcile its children when its spec is new, a child
    went missing or a resync is due; then write its status if it changed."""
    body = memo.bodies.get(key)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return
    namespace, name = key
    logger = fleet.object_logger(key)
    indices = memo.indices
    outcome: ReconcileOutcome | None = memo.outcomes.get(key)
    generation = int(body["metadata"].get("generation") or 0)
    stale = outcome is None or outcome.generation != generation
    repair, resync = key in memo.repairs, key in memo.resyncs
    if stale or repair or resync:
        if repair:
            logger.info("re-applying children (a child was deleted, or a challenge moved on)")
        memo.repairs.discard(key)
        memo.resyncs.discard(key)
        try:
            await _reconcile(name=name, namespace=namespace, body=body, memo=memo,
                             logger=logger, **indices)  # fmt: skip
        except Exception:
            # The worker retries the key: without its marks the retry would find the same
            # generation reconciled and leave a deleted child missing until the next resync.
            if repair:
                memo.repairs.add(key)
            if resync:
                memo.resyncs.add(key)
            raise
    memo.last_written[key] = await _publish_once(
        name,
        namespace,
        body,
        memo,
        indices["model_deployments"],
        indices["model_pods"],
        memo.last_written.get(key),
        _challenge_of(indices["challenges"], namespace, name, body),
    )
