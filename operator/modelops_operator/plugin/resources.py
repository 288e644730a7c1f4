"""The three kinds the plugin reads and writes, and reads that name what they asked for.

Objects travel as plain dicts (what the API server sent), so the plugin never refuses to show
an object written by a newer operator whose status has fields this build does not know.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightkube import Client
from lightkube.core.exceptions import ApiError
from lightkube.types import PatchType

from ..constants import (
    CC_KIND,
    CC_PLURAL,
    GROUP,
    MDEP_KIND,
    MDEP_PLURAL,
    RECORD_KIND,
    RECORD_PLURAL,
    VERSION,
)
from ..resources import ChampionChallengerResource as ChampionChallenger
from ..resources import LineageRecordResource as LineageRecord
from ..resources import ModelDeploymentResource as ModelDeployment
from .errors import Request, talking_to

KINDS: dict[str, tuple[Any, str]] = {
    CC_KIND: (ChampionChallenger, CC_PLURAL),
    MDEP_KIND: (ModelDeployment, MDEP_PLURAL),
    RECORD_KIND: (LineageRecord, RECORD_PLURAL),
}


def request(verb: str, kind: str, namespace: str | None, name: str = "", **extra: str) -> Request:
    return Request(verb, f"{KINDS[kind][1]}.{GROUP}", kind, namespace, name, **extra)


def as_dict(obj: Any) -> dict[str, Any]:
    found = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    return dict(found)


def get(client: Client, kind: str, name: str, namespace: str) -> dict[str, Any]:
    with talking_to(request("get", kind, namespace, name)):
        return as_dict(client.get(KINDS[kind][0], name, namespace=namespace))


def _list(
    client: Client, kind: str, namespace: str | None, labels: Mapping[str, str] | None
) -> list[dict[str, Any]]:
    selector: dict[str, Any] | None = dict(labels or {}) or None
    found = [
        as_dict(obj)
        for obj in client.list(KINDS[kind][0], namespace=namespace or "*", labels=selector)
    ]
    found.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
    return found


def list_objects(
    client: Client, kind: str, namespace: str | None, labels: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """Objects of one kind in a namespace (None: all namespaces), sorted by namespace and name."""
    with talking_to(request("list", kind, namespace)):
        return _list(client, kind, namespace, labels)


def merge_patch(
    client: Client, kind: str, name: str, namespace: str, patch: dict[str, Any], **extra: str
) -> dict[str, Any]:
    with talking_to(request("patch", kind, namespace, name, **extra)):
        patched = client.patch(
            KINDS[kind][0], name, patch, namespace=namespace, patch_type=PatchType.MERGE
        )
    return as_dict(patched)


def with_kind(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    """lightkube's generic objects carry apiVersion and kind; make sure output always does."""
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, **obj}


def find(client: Client, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
    """The object, or None when it does not exist (a kind the cluster lacks still raises)."""
    with talking_to(request("get", kind, namespace, name)):
        try:
            return as_dict(client.get(KINDS[kind][0], name, namespace=namespace))
        except ApiError as error:
            if error.status.code == 404 and error.status.details and error.status.details.name:
                return None
            raise


def list_if_served(
    client: Client, kind: str, namespace: str | None, labels: Mapping[str, str] | None = None
) -> list[dict[str, Any]] | None:
    """Like `list_objects`, but None when the cluster does not serve the kind (no CRD)."""
    with talking_to(request("list", kind, namespace)):
        try:
            return _list(client, kind, namespace, labels)
        except ApiError as error:
            if error.status.code == 404:
                return None
            raise
