"""Slim projections of the children the operator watches, kept in kopf in-memory indices.

Whole bodies would hold managedFields and status noise for every Deployment in the cluster;
these projections keep what the reconcile and the status need, and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .constants import LABEL_DEPLOYMENT, LABEL_MODEL_VERSION, LABEL_ROLE

# Top-level metadata the drift comparison looks at; the rest (managedFields, uid...) is noise.
_KEPT_METADATA = ("name", "namespace", "labels", "annotations", "ownerReferences")


@dataclass(frozen=True)
class DeploymentObservation:
    """What a child Deployment says about its rollout."""

    generation: int
    observed_generation: int
    wanted_replicas: int
    replicas: int
    updated_replicas: int
    ready_replicas: int
    available_replicas: int
    template_version: str
    deadline_exceeded: bool
    progress_message: str
    manifest: Mapping[str, Any] = field(repr=False, compare=False, default_factory=dict)
    # Old pods still shutting down (status.terminatingReplicas, Kubernetes 1.35+; 0 before).
    terminating_replicas: int = 0


def child_key(body: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """(namespace, ModelDeployment name, role) of a child we manage, else None."""
    metadata = body.get("metadata", {})
    labels = metadata.get("labels") or {}
    owner = labels.get(LABEL_DEPLOYMENT)
    if not owner:
        return None
    return (metadata.get("namespace", ""), owner, labels.get(LABEL_ROLE, ""))


def slim_manifest(body: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of an object the drift comparison reads: metadata subset and spec."""
    metadata = body.get("metadata", {})
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {k: metadata[k] for k in _KEPT_METADATA if k in metadata},
        "spec": body.get("spec", {}),
    }


# Metadata of a ModelDeployment its handlers read: identity (Events, owner references),
# generation and deletion, and labels, annotations and spec.model's field manager (lineage).
_KEPT_MODELDEPLOYMENT_METADATA = (
    "name", "namespace", "uid", "generation", "resourceVersion", "deletionTimestamp", "labels",
)  # fmt: skip
# kubectl's copy of the whole last applied manifest: a second spec nobody here reads.
_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def owns_model(entry: Mapping[str, Any]) -> bool:
    """A managedFields entry by which a manager set spec.model (what a lineage record names)."""
    fields = entry.get("fieldsV1")
    spec = fields.get("f:spec") if isinstance(fields, Mapping) else None
    return (
        entry.get("operation") in ("Apply", "Update")
        and isinstance(spec, Mapping)
        and "f:model" in spec
    )


def model_owners(managed_fields: list[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """The managedFields entries that own spec.model, each cut to what `owns_model` and the
    lineage read: a cache of ModelDeployments then holds a few strings each, not every field
    manager's field set."""
    return [
        {
            "manager": entry.get("manager"),
            "operation": entry.get("operation"),
            "time": entry.get("time"),
            "fieldsV1": {"f:spec": {"f:model": {}}},
        }
        for entry in managed_fields or ()
        if owns_model(entry)
    ]


def slim_modeldeployment(body: Mapping[str, Any]) -> dict[str, Any]:
    """A ModelDeployment as the operator keeps it in memory, for a thousand of them: without
    managedFields other than spec.model's owner, and without kubectl's last-applied copy."""
    metadata = body.get("metadata") or {}
    kept: dict[str, Any] = {
        k: metadata[k] for k in _KEPT_MODELDEPLOYMENT_METADATA if k in metadata
    }
    kept["annotations"] = {
        k: v for k, v in (metadata.get("annotations") or {}).items() if k != _LAST_APPLIED
    }
    kept["managedFields"] = model_owners(metadata.get("managedFields"))
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": kept,
        "spec": dict(body.get("spec") or {}),
        "status": dict(body.get("status") or {}),
    }


def observe_deployment(body: Mapping[str, Any]) -> DeploymentObservation:
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    progressing: Mapping[str, Any] = next(
        (c for c in status.get("conditions") or () if c.get("type") == "Progressing"), {}
    )
    return DeploymentObservation(
        generation=int(body.get("metadata", {}).get("generation") or 0),
        observed_generation=int(status.get("observedGeneration") or 0),
        wanted_replicas=int(spec["replicas"]) if spec.get("replicas") is not None else 1,
        replicas=int(status.get("replicas") or 0),
        updated_replicas=int(status.get("updatedReplicas") or 0),
        ready_replicas=int(status.get("readyReplicas") or 0),
        available_replicas=int(status.get("availableReplicas") or 0),
        template_version=str(template_labels.get(LABEL_MODEL_VERSION, "")),
        deadline_exceeded=progressing.get("reason") == "ProgressDeadlineExceeded",
        progress_message=str(progressing.get("message", "")),
        manifest=slim_manifest(body),
        terminating_replicas=int(status.get("terminatingReplicas") or 0),
    )


# Waiting reasons that will not clear by themselves.
_STUCK_WAITING = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError"}
)


@dataclass(frozen=True)
class PodFailure:
    """Why one model pod cannot serve, as its container statuses tell it."""

    pod: str
    version: str
    container: str
    reason: str
    message: str


@dataclass(frozen=True)
class PodHealth:
    """One model pod, with its failure if it has one (the index keeps healthy pods too, so a
    recovered pod replaces its old failure)."""

    pod: str
    failure: PodFailure | None


def observe_pod(body: Mapping[str, Any]) -> PodHealth:
    """The first failed container (init containers first) of a pod, from its status.

    Our programs write why they stopped (e.g. a digest mismatch) to the termination log, which
    the kubelet copies into `state.terminated.message`.
    """
    metadata = body.get("metadata", {})
    name = metadata.get("name", "")
    version = (metadata.get("labels") or {}).get(LABEL_MODEL_VERSION, "")
    status = body.get("status") or {}
    for kind in ("initContainerStatuses", "containerStatuses"):
        for container in status.get(kind) or ():
            state = container.get("state") or {}
            for current in (state, container.get("lastState") or {}):
                terminated = current.get("terminated") or {}
                if terminated and int(terminated.get("exitCode") or 0) != 0:
                    return PodHealth(
                        name,
                        PodFailure(
                            name,
                            version,
                            container.get("name", ""),
                            terminated.get("reason") or "Error",
                            str(terminated.get("message") or "").strip(),
                        ),
                    )
            waiting = state.get("waiting") or {}
            if waiting.get("reason") in _STUCK_WAITING:
                return PodHealth(
                    name,
                    PodFailure(
                        name,
                        version,
                        container.get("name", ""),
                        waiting["reason"],
                        str(waiting.get("message") or "").strip(),
                    ),
                )
    return PodHealth(name, None)


def rollout_complete(observed: DeploymentObservation, replicas: int, version: str) -> bool:
    """The Deployment runs exactly `replicas` pods of `version`, all available, none older."""
    return (
        observed.observed_generation >= observed.generation
        and observed.wanted_replicas == replicas
        and observed.template_version == version
        and observed.updated_replicas >= replicas
        and observed.available_replicas >= replicas
        and observed.replicas == replicas
    )
