"""Leader election for several operator replicas, through kopf peering.

`kopf run --peering=NAME --all-namespaces` makes every replica write a keep-alive into the
ClusterKopfPeering NAME; the replica with the highest priority works and the others pause until
it is gone (kopf's docs/peering.rst). kopf leaves two things to the operator, done at startup:

- distinct priorities: replicas of equal priority all pause, and kopf's default is 0 for
  everyone, so a replica started without `--priority` draws a random one;
- the peering object: with `--peering` kopf pauses until it exists, and a Helm chart cannot
  create it in the release that installs its CRD, so the first replica creates it.

A shard (`--namespace=A --namespace=B`, the chart's `watchNamespaces`) still elects through
its one ClusterKopfPeering: kopf would otherwise keep a KopfPeering in each served namespace
(objects the chart has no CRD for), and the fleet's workers follow the cluster one.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping

import kopf
from lightkube import AsyncClient
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_global_resource
from lightkube.models.meta_v1 import ObjectMeta

ClusterKopfPeering = create_global_resource(
    "kopf.dev", "v1", "ClusterKopfPeering", "clusterkopfpeerings"
)
# Room enough that two replicas practically never draw the same priority (p ~ 5e-10).
MAX_PRIORITY = 2**31 - 1
LIFETIME_ENV = "MODELOPS_PEERING_LIFETIME_SECONDS"


def peering_requested(settings: kopf.OperatorSettings) -> bool:
    """True under `--peering=NAME`; False with `--standalone` or kopf's auto-detection."""
    return bool(settings.peering.mandatory and not settings.peering.standalone)


def configure_peering(
    settings: kopf.OperatorSettings, environ: Mapping[str, str] = os.environ
) -> None:
    """A random priority unless one was given; the keep-alive lifetime from the environment."""
    if not peering_requested(settings):
        return
    # Read by kopf's orchestrator after the startup handlers, so this choice holds.
    settings.peering.clusterwide = True
    if settings.peering.priority == 0:
        settings.peering.priority = 1 + secrets.randbelow(MAX_PRIORITY)
    lifetime = environ.get(LIFETIME_ENV)
    if lifetime:
        settings.peering.lifetime = int(lifetime)


async def ensure_peering_object(client: AsyncClient, settings: kopf.OperatorSettings) -> bool:
    """Create the ClusterKopfPeering if it is missing; True when this call created it.

    Read first, so a restart of a replica writes nothing when the object is there.
    """
    if not peering_requested(settings):
        return False
    name = settings.peering.name
    try:
        await client.get(ClusterKopfPeering, name)
        return False
    except ApiError as error:
        if error.status.code != 404:
            raise
    try:
        await client.create(ClusterKopfPeering(metadata=ObjectMeta(name=name)))
    except ApiError as error:
        if error.status.code == 404:  # the kind itself is unknown
            raise kopf.PermanentError(
                "--peering needs kopf's ClusterKopfPeering CRD (clusterkopfpeerings.kopf.dev): "
                "install the chart with crds.install=true, or apply kopf's peering.yaml"
            ) from error
        if error.status.code != 409:  # 409: another replica created it first, just as good
            raise
        return False
    return True
