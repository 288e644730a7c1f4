"""Shared building blocks of the API models: the base class, CEL rules and the Condition shape.

The pydantic models in this package are the single source of truth for the CRDs: `crdgen` turns
them into OpenAPI v3 schemas, so every constraint, description and CEL rule lives here once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

# Kubernetes name shapes, reused by several fields.
DNS1035_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
LABEL_VALUE = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
# A Go-style duration as the operator accepts it: 30s, 5m, 1h30m, 250ms.
DURATION = r"^([0-9]+(ms|s|m|h))+$"


def cel(rule: str, message: str, *, field_path: str | None = None) -> dict[str, str]:
    """One `x-kubernetes-validations` entry; the message must name the field it is about."""
    entry = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


def validations(*rules: dict[str, str], **extra: Any) -> dict[str, Any]:
    """`json_schema_extra` carrying CEL rules (and any other OpenAPI extension keys)."""
    return {"x-kubernetes-validations": list(rules), **extra}


class KubeModel(BaseModel):
    """Base of every API object: camelCase on the wire, snake_case in Python, immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase keys, unset optionals left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class Condition(KubeModel):
    """One aspect of the object's current state, in the metav1.Condition shape (kstatus style)."""

    type: str = Field(
        description="Condition type: Ready, Reconciling or Stalled.",
        max_length=316,
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
        r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
    )
    status: Literal["True", "False", "Unknown"] = Field(
        description="Whether the condition holds: True, False or Unknown."
    )
    observed_generation: int = Field(
        0,
        ge=0,
        description="The metadata.generation this condition was computed from; older than "
        "metadata.generation means the condition is out of date.",
    )
    last_transition_time: datetime = Field(
        description="When status last changed (not when the condition was last checked)."
    )
    reason: str = Field(
        description="A CamelCase word saying why, stable enough for tooling to match on.",
        max_length=1024,
        min_length=1,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
    )
    message: str = Field(
        "",
        description="A human-readable explanation, naming the field at fault when there is one.",
        max_length=32768,
    )


class ObservedStatus(KubeModel):
    """The kstatus part every status of ours starts with, so `kubectl wait`, Flux and Argo CD
    read both kinds the same way."""

    observed_generation: int = Field(
        0, ge=0, description="The metadata.generation the operator last acted on."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=16,
        description="Ready, Reconciling and Stalled, in the metav1.Condition shape (kstatus).",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    )
