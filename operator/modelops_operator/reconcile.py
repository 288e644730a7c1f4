"""The one idempotent reconcile of a ModelDeployment: desired children, compared, applied.

`plan_children` and `find_blocker` are pure; `reconcile_modeldeployment` adds the few API
calls (existence checks, server-side applies). Create, update, resume and the drift timer all
call the same function, so there is no "create ran exactly once" assumption anywhere.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf
from lightkube import AsyncClient
from pydantic import ValidationError

from .api.modeldeployment import ModelDeploymentSpec
from .builders.pod import plan_model_fetch
from .builders.workload import build_model_deployment, build_service
from .challenge.view import ChallengeView
from .challenge.workloads import spec_with_model
from .constants import API_VERSION, DEFAULT_SERVING_IMAGE, MDEP_KIND, ROLE_CHAMPION
from .kube import apply_manifest, claim_exists, secret_exists
from .manifestdiff import differences
from .status import Blocker, ReconcileOutcome


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
    owner = kopf.Body(
        {"metadata": {"name": name, "uid": uid}, "apiVersion": API_VERSION, "kind": MDEP_KIND}
    )
    for child in children:
        kopf.append_owner_reference(child, owner=owner)
    return children


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
    for child in plan_children(name, namespace, uid, spec, serving_image, challenge):
        kind, child_name = child["kind"], child["metadata"]["name"]
        current = observed.get((kind, child_name))
        diffs = differences(child, current) if current is not None else ["(absent)"]
        if diffs:
            await apply_manifest(client, child)
            report.applied.append(AppliedChild(kind, child_name, current is None, tuple(diffs)))
    return report
