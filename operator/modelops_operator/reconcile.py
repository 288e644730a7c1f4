"""The one idempotent reconcile of a ModelDeployment: desired children, compared, applied.

`plan_children` and `find_blocker` are pure; `reconcile_modeldeployment` adds the few API
calls (existence checks, server-side applies). Create, update, resume and the drift timer all
call the same function, so there is no "create ran exactly once" assumption anywhere.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf
from lightkube import AsyncClient
from pydantic import ValidationError

from .api.modeldeployment import ModelDeploymentSpec
from .builders.keys import (
    RECEIPT_KEYS_ITEM,
    ReceiptKeyPolicy,
    build_keys_secret,
    encode_receipt_keys,
    keys_secret_name,
    receipt_keys_of,
    rotated_receipt_keys,
)
from .builders.pod import feedback_max_delay_seconds, plan_model_fetch
from .builders.workload import build_model_deployment, build_service
from .challenge.view import ChallengeView
from .challenge.workloads import spec_with_model
from .constants import API_VERSION, DEFAULT_SERVING_IMAGE, MDEP_KIND, ROLE_CHAMPION
from .kube import (
    apply_manifest,
    claim_exists,
    create_once,
    patch_secret_item,
    read_object,
    secret_exists,
)
from .manifestdiff import differences
from .status import Blocker, ReconcileOutcome

# How often each ModelDeployment's receipt key is replaced (the old one still verifies for
# spec.monitoring.feedback.maxDelay).
RECEIPT_KEY_ROTATION_SECONDS = float(os.environ.get("MODELOPS_RECEIPT_KEY_ROTATION_SECONDS",
                                                    str(7 * 86400)))


@dataclass(frozen=True)
class AppliedChild:
    kind: str
    name: str
    created: bool
    fields: tuple[str, ...]


@dataclass
class ReconcileReport:
    outcome: ReconcileOutcome
    applied: list[AppliedChild] = field(default_factory=list)


def plan_children(
    name: str,
    namespace: str,
    uid: str,
    spec: ModelDeploymentSpec,
    serving_image: str = DEFAULT_SERVING_IMAGE,
    challenge: ChallengeView | None = None,
) -> list[dict[str, Any]]:
    """The champion Deployment and the Service, owned by the ModelDeployment.

    While a ChampionChallenger gates this deployment, the champion runs the model the challenge
    says is live (a new spec.model waits as the challenger) and the Service selects the router.
    """
    champion_spec = champion_spec_of(spec, challenge)
    children = [
        build_model_deployment(name, namespace, champion_spec, ROLE_CHAMPION, serving_image),
        build_service(name, namespace, routed=bool(challenge and challenge.routed)),
    ]
    return [_owned(child, name, uid) for child in children]


def _owned(child: dict[str, Any], name: str, uid: str) -> dict[str, Any]:
    owner = kopf.Body(
        {"metadata": {"name": name, "uid": uid}, "apiVersion": API_VERSION, "kind": MDEP_KIND}
    )
    kopf.append_owner_reference(child, owner=owner)
    return child


def receipt_key_policy(spec: ModelDeploymentSpec) -> ReceiptKeyPolicy:
    return ReceiptKeyPolicy(
        rotate_every=RECEIPT_KEY_ROTATION_SECONDS, max_delay=feedback_max_delay_seconds(spec)
    )


def needs_keys(spec: ModelDeploymentSpec, challenge: ChallengeView | None) -> bool:
    """Does any pod mount the keys Secret? The sidecars when they take feedback (receipt keys),
    the router of a challenge (sticky key and receipt keys). Without either the Secret is not
    written, nor read at each reconcile. It is created before the first pod that mounts it:
    by this reconcile before the model pods, by the challenge's tick before its router."""
    return spec.monitoring.feedback.enabled or challenge is not None


async def ensure_keys_secret(
    client: AsyncClient, name: str, namespace: str, uid: str, spec: ModelDeploymentSpec,
    now: float, *, rotate: bool = True,
) -> AppliedChild | None:
    """Create the data plane's keys Secret, or rotate its receipt keys when due (and `rotate`:
    the ModelDeployment's reconcile is their one rotator); None when nothing was written. The
    sticky key is never rewritten (builders/keys.py)."""
    secret_name = keys_secret_name(name)
    policy = receipt_key_policy(spec)
    current = await read_object(client, "v1", "Secret", namespace, secret_name)
    if current is None:
        created = await create_once(
            client, _owned(build_keys_secret(name, namespace, now, policy), name, uid)
        )
        return AppliedChild("Secret", secret_name, True, ()) if created else None
    if not rotate:
        return None
    ring = rotated_receipt_keys(receipt_keys_of(current), now, policy)
    if ring is None:
        return None
    await patch_secret_item(client, namespace, secret_name, RECEIPT_KEYS_ITEM,
                            encode_receipt_keys(ring), current["metadata"]["resourceVersion"])
    return AppliedChild("Secret", secret_name, False, (f".data.{RECEIPT_KEYS_ITEM}",))


def champion_spec_of(
    spec: ModelDeploymentSpec, challenge: ChallengeView | None
) -> ModelDeploymentSpec:
    if challenge is None or challenge.champion is None:
        return spec
    return spec_with_model(spec, challenge.champion)


def spec_blocker(error: ValidationError) -> Blocker:
    """A spec the API server accepted but the operator cannot parse (e.g. an older CRD)."""
    first = error.errors()[0]
    path = "spec." + ".".join(str(p) for p in first["loc"])
    return Blocker("InvalidSpec", path, f"{path}: {first['msg']}")


async def find_blocker(
    spec: ModelDeploymentSpec,
    namespace: str,
    secret_found: Callable[[str], Awaitable[bool]],
    claim_found: Callable[[str], Awaitable[bool]],
) -> Blocker | None:
    """Referenced objects that must exist before pods can start."""
    secret = spec.model.credentials_secret
    if secret and not await secret_found(secret):
        return Blocker(
            "SecretNotFound",
            "spec.model.credentialsSecret",
            f"spec.model.credentialsSecret: Secret '{secret}' not found in namespace "
            f"'{namespace}'; create it or fix the name",
        )
    claim = plan_model_fetch(spec.model.uri).pvc_claim
    if claim and not await claim_found(claim):
        return Blocker(
            "PersistentVolumeClaimNotFound",
            "spec.model.uri",
            f"spec.model.uri: PersistentVolumeClaim '{claim}' not found in namespace '{namespace}'",
        )
    return None


async def reconcile_modeldeployment(
    client: AsyncClient,
    name: str,
    namespace: str,
    uid: str,
    generation: int,
    raw_spec: Mapping[str, Any],
    observed: Mapping[tuple[str, str], Mapping[str, Any]],
    serving_image: str = DEFAULT_SERVING_IMAGE,
    challenge: ChallengeView | None = None,
) -> ReconcileReport:
    """Apply whatever differs from the observed children; `observed` maps (kind, name) to a
    slim manifest from the operator's indices."""
    try:
        spec = ModelDeploymentSpec.model_validate(dict(raw_spec))
    except ValidationError as error:
        return ReconcileReport(ReconcileOutcome(generation, spec_blocker(error)))
    blocker = await find_blocker(
        spec,
        namespace,
        lambda secret: secret_exists(client, namespace, secret),
        lambda claim: claim_exists(client, namespace, claim),
    )
    if blocker:
        return ReconcileReport(ReconcileOutcome(generation, blocker))
    report = ReconcileReport(ReconcileOutcome(generation))
    if needs_keys(spec, challenge):
        keys = await ensure_keys_secret(client, name, namespace, uid, spec, time.time())
        if keys is not None:
            report.applied.append(keys)
    for child in plan_children(name, namespace, uid, spec, serving_image, challenge):
        kind, child_name = child["kind"], child["metadata"]["name"]
        current = observed.get((kind, child_name))
        diffs = differences(child, current) if current is not None else ["(absent)"]
        if diffs:
            await apply_manifest(client, child)
            report.applied.append(AppliedChild(kind, child_name, current is None, tuple(diffs)))
    return report
