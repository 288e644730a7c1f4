"""Several operator replicas: kopf peering priority and lifetime, the peering object."""

from __future__ import annotations

from typing import Any

import kopf
import pytest
from lightkube.core.exceptions import ApiError
from lightkube.models.meta_v1 import Status

from modelops_operator.peering import (
    ClusterKopfPeering,
    configure_peering,
    ensure_peering_object,
)


def settings(*, peering: str | None = None, priority: int = 0) -> kopf.OperatorSettings:
    """Settings as `kopf run --all-namespaces` leaves them: --peering=NAME or --standalone."""
    result = kopf.OperatorSettings()
    result.peering.clusterwide = True
    result.peering.priority = priority
    if peering is None:
        result.peering.standalone = True
    else:
        result.peering.name, result.peering.mandatory = peering, True
    return result


def test_each_peering_replica_draws_its_own_priority() -> None:
    drawn = set()
    for _ in range(20):
        configured = settings(peering="modelops")
        configure_peering(configured, {})
        drawn.add(configured.peering.priority)
    assert len(drawn) == 20 and all(p > 0 for p in drawn)  # equal priorities would all pause


def test_a_given_priority_and_lifetime_are_kept_or_set() -> None:
    configured = settings(peering="modelops", priority=100)
    configure_peering(configured, {"MODELOPS_PEERING_LIFETIME_SECONDS": "20"})
    assert (configured.peering.priority, configured.peering.lifetime) == (100, 20)


def test_a_shard_elects_through_its_cluster_peering_object() -> None:
    """`kopf run --peering=NAME --namespace=a --namespace=b` would keep a KopfPeering in each
    namespace, objects the chart has no CRD for; the shard's replicas share the one
    ClusterKopfPeering the fleet's workers follow."""
    shard = settings(peering="modelops-shard-a")
    shard.peering.clusterwide = False  # what kopf sets for --namespace
    configure_peering(shard, {})
    assert shard.peering.clusterwide


def test_standalone_operator_is_left_alone() -> None:
    configured = settings()
    configure_peering(configured, {"MODELOPS_PEERING_LIFETIME_SECONDS": "20"})
    assert (configured.peering.priority, configured.peering.lifetime) == (0, 60)


class FakeClient:
    def __init__(self, *, exists: bool, create_status: int | None = None) -> None:
        self.exists, self.create_status = exists, create_status
        self.created: list[Any] = []

    async def get(self, resource: Any, name: str) -> Any:
        assert resource is ClusterKopfPeering
        if not self.exists:
            raise ApiError(status=Status(code=404, message="not found"))
        return object()

    async def create(self, obj: Any) -> Any:
        if self.create_status:
            raise ApiError(status=Status(code=self.create_status, message="no"))
        self.created.append(obj)
        return obj


async def test_missing_peering_object_is_created_once() -> None:
    client = FakeClient(exists=False)
    assert await ensure_peering_object(client, settings(peering="modelops"))  # type: ignore[arg-type]
    (created,) = client.created
    assert created.metadata.name == "modelops"


@pytest.mark.parametrize(
    ("client", "configured"),
    [
        (FakeClient(exists=True), settings(peering="modelops")),  # a restart writes nothing
        (FakeClient(exists=False, create_status=409), settings(peering="modelops")),  # a race
        (FakeClient(exists=False), settings()),  # --standalone
    ],
)
async def test_nothing_is_created_when_not_needed(
    client: FakeClient, configured: kopf.OperatorSettings
) -> None:
    assert not await ensure_peering_object(client, configured)  # type: ignore[arg-type]
    assert client.created == []


async def test_missing_peering_crd_stops_the_operator_saying_so() -> None:
    with pytest.raises(kopf.PermanentError, match=r"crds\.install=true"):
        await ensure_peering_object(
            FakeClient(exists=False, create_status=404),  # type: ignore[arg-type]
            settings(peering="modelops"),
        )


async def test_other_api_errors_fail_the_startup() -> None:
    with pytest.raises(ApiError):
        await ensure_peering_object(
            FakeClient(exists=False, create_status=403),  # type: ignore[arg-type]
            settings(peering="modelops"),
        )
