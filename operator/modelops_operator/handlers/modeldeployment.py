"""Thin kopf handlers for ModelDeployment: they gather inputs, call the pure core, write.

- `reconcile` (create, update of spec, resume) and `resync` (slow timer) share one idempotent
  path that applies only what differs from the children kopf's indices observe.
- `publish_status` (one daemon per object) is the single writer of the status; it wakes when
  a reconcile finishes or a child Deployment changes, and writes only a changed status.
All handlers return None: a return value would be written to status and pruned by the schema.
"""

from __future__ import annotations

import asyncio
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
from ..kube import patch_modeldeployment_status
from ..lineage.records import rolled_out
from ..lineage.store import prune, write_records
from ..observe import (
    DeploymentObservation,
    PodHealth,
    child_key,
    observe_deployment,
    observe_pod,
    slim_manifest,
)
from ..opmetrics import count_error
from ..reconcile import ReconcileReport, champion_spec_of, reconcile_modeldeployment
from ..status import ReconcileOutcome, compute_status, status_patch
from . import first_indexed

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
    memo.wakeups.setdefault(key, asyncio.Event()).set()


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
    """Have the owner's daemon re-apply its children now (not at the next resync)."""
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
    """A child deleted by hand is re-created at once by the owner's daemon, not at resync."""
    key = child_key(body)
    if key is not None:
        # A challenge's child (challenger, arm Service, router) is re-applied by its daemon on
        # the next tick once it is no longer remembered as applied.
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


def _post_events(
    body: kopf.Body, report: ReconcileReport, previous: ReconcileOutcome | None
) -> None:
    """One event per reconcile that changed something, one per new blocker."""
    created = [f"{c.kind} {c.name}" for c in report.applied if c.created]
    if created:
        kopf.info(body, reason="Created", message="created " + ", ".join(created))
    for child in (c for c in report.applied if not c.created):
        if any(".spec.template" in path for path in child.fields):
            kopf.info(body, reason="RollingOut", message=f"updated {child.kind} {child.name}")
        else:
            changed = ", ".join(child.fields[:3])
            kopf.info(body, reason="Updated", message=f"{child.kind} {child.name}: {changed}")
    blocker = report.outcome.blocker
    if blocker and (previous is None or previous.blocker != blocker):
        kopf.warn(body, reason=blocker.reason, message=blocker.message)


async def _reconcile(
    *, name: str, namespace: str, body: kopf.Body, memo: kopf.Memo, logger: Any, **indices: Any
) -> None:
    key = (namespace, name)
    async with memo.locks[key], memo.api_slots:
        observed = _observed_children(
            name, namespace, indices["model_deployments"], indices["model_services"]
        )
        try:
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
    _wake(memo, key)


@kopf.on.resume(*MDEP)
@kopf.on.create(*MDEP)
@kopf.on.update(*MDEP, field="spec")
async def reconcile(**kwargs: Any) -> None:
    await _reconcile(**kwargs)


@kopf.timer(*MDEP, interval=RESYNC_SECONDS, initial_delay=RESYNC_SECONDS)
async def resync(**kwargs: Any) -> None:
    await _reconcile(**kwargs)


def _post_status_events(
    body: kopf.Body, before: Mapping[str, Any], after: Mapping[str, Any]
) -> None:
    was_ready = find_condition(before.get("conditions"), READY).get("status") == "True"
    now_ready = find_condition(after.get("conditions"), READY)
    if now_ready.get("status") == "True" and not was_ready:
        kopf.info(body, reason=now_ready["reason"], message=now_ready["message"])
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
    if not patch:
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


@kopf.daemon(*MDEP, cancellation_timeout=5)
async def publish_status(**kwargs: Any) -> None:
    await _publish_loop(**kwargs)


async def _publish_loop(
    *,
    name: str,
    namespace: str,
    body: kopf.Body,
    memo: kopf.Memo,
    stopped: Any,
    logger: Any,
    model_deployments: kopf.Index,
    **kwargs: Any,
) -> None:
    key = (namespace, name)
    wakeup = memo.wakeups.setdefault(key, asyncio.Event())
    last_written: Mapping[str, Any] | None = None
    while not stopped:
        wakeup.clear()
        if key in memo.repairs and not body["metadata"].get("deletionTimestamp"):
            memo.repairs.discard(key)
            logger.info("re-applying children (a child was deleted, or a challenge moved on)")
            try:
                await _reconcile(
                    name=name, namespace=namespace, body=body, memo=memo, logger=logger,
                    model_deployments=model_deployments, **kwargs,
                )  # fmt: skip
            except kopf.TemporaryError as error:
                logger.warning(f"re-creating a deleted child failed, retrying: {error}")
                memo.repairs.add(key)
                await stopped.wait(5)
                continue
        try:
            last_written = await _publish_once(
                name,
                namespace,
                body,
                memo,
                model_deployments,
                kwargs["model_pods"],
                last_written,
                _challenge_of(kwargs["challenges"], namespace, name, body),
            )
        except (ApiError, httpx2.HTTPError) as error:
            logger.warning(f"status write failed, retrying: {error!r}")
            count_error("status")
            await stopped.wait(2)
            continue
        waiter = asyncio.ensure_future(wakeup.wait())
        stopper = asyncio.ensure_future(_until(stopped))
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for task in (waiter, stopper):
            task.cancel()
        await stopped.wait(DEBOUNCE_SECONDS)
    memo.wakeups.pop(key, None)
    memo.outcomes.pop(key, None)
    memo.repairs.discard(key)


async def _until(stopped: Any) -> None:
    await stopped.wait()
