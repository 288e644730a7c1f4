"""Writing LineageRecords (create once, never update) and the retention policy.

A record is written before the status that reports its event: if the write fails the tick
fails and is retried, and the record's name (a digest of what it records) makes the retry
write nothing twice. Retention deletes the oldest records of a deployment beyond
`MODELOPS_LINEAGE_KEEP` (0 keeps all); deletion is the only change a record ever sees.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from lightkube import AsyncClient, Client
from lightkube.core.exceptions import ApiError

from ..constants import LABEL_DEPLOYMENT
from ..kube import create_once
from ..resources import LineageRecordResource

DEFAULT_KEEP = 500


def _decided_at(record: Any) -> str:
    return str((record.get("spec") or {}).get("decidedAt") or "")


async def write_records(client: AsyncClient, manifests: Iterable[Mapping[str, Any]]) -> int:
    """Create each record; one that exists already (a retried tick) is left as it is."""
    created = 0
    for manifest in manifests:
        created += await create_once(client, manifest)
    return created


async def prune(client: AsyncClient, namespace: str, deployment: str, keep: int) -> int:
    """Delete the oldest records of a deployment beyond `keep`; returns how many went."""
    if keep <= 0:
        return 0
    records = [
        record
        async for record in client.list(
            LineageRecordResource, namespace=namespace, labels={LABEL_DEPLOYMENT: deployment}
        )
    ]
    if len(records) <= keep:
        return 0
    records.sort(key=lambda r: (_decided_at(r), r["metadata"]["name"]))
    removed = 0
    for record in records[: len(records) - keep]:
        try:
            await client.delete(
                LineageRecordResource, record["metadata"]["name"], namespace=namespace
            )
            removed += 1
        except ApiError as error:
            if error.status.code != 404:
                raise
    return removed


def list_records(
    client: Client, namespace: str | None, deployment: str | None = None
) -> list[dict[str, Any]]:
    """The records (oldest first) of one deployment, or of a namespace (None: all)."""
    labels: dict[str, Any] | None = {LABEL_DEPLOYMENT: deployment} if deployment else None
    found = client.list(LineageRecordResource, namespace=namespace or "*", labels=labels)
    records = [record.to_dict() if hasattr(record, "to_dict") else dict(record) for record in found]
    records.sort(key=lambda r: (_decided_at(r), r["metadata"]["name"]))
    return records
