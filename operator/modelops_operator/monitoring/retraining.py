"""Retraining started by the live-model monitors: when, what is created, what is sent.

Level-triggered: at every look, when a condition named in ``spec.monitoring.retraining.on``
stands True for the live version and the cooldown has passed since the last retraining
started (read back from status, so a restart changes nothing), one retraining starts: an
object from the template, a CloudEvent, or both. A failure leaves the cooldown untouched, so
the next look tries again. What the pipeline produces comes back as a new ``spec.model`` (a
Git commit or a patch) and is gated like any change.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..api.lineagerecord import LineageRecordSpec, RecordedModel
from ..api.modeldeployment import RetrainingPolicy
from ..conditions import format_time, parse_time
from ..constants import LABEL_DEPLOYMENT
from ..gating.config import parse_duration
from ..lineage.records import manifest as record_manifest

EVENT_TYPE = "io.modelops.retraining.requested"
ANNOTATION_PREFIX = "modelops.io/retraining-"
LABEL_TRIGGER = "modelops.io/retraining-trigger"
MAX_EVIDENCE_BYTES = 4096


@dataclass(frozen=True)
class Trigger:
    """Why a retraining starts: the condition, the live version and what the monitor said."""

    condition: str
    version: str
    message: str
    evidence: Mapping[str, Any]


def standing(
    policy: RetrainingPolicy, views: Mapping[str, Any], conditions: Mapping[str, str]
) -> Trigger | None:
    """The first condition of ``policy.on`` that stands True, with its monitor's status."""
    for condition in policy.on:
        monitor = conditions[condition]
        view = views.get(monitor)
        if view is not None and view[1].status == "True":
            status = view[0]
            return Trigger(
                condition, str(status.get("version", "")), status.get("message", ""), status
            )
    return None


def due(policy: RetrainingPolicy, last: Mapping[str, Any] | None, now: float) -> bool:
    """The cooldown has passed since the last retraining started (or none started)."""
    stamp = (last or {}).get("triggeredAt")
    if not stamp:
        return True
    cooldown = parse_duration(policy.cooldown) or 86400.0
    return now - parse_time(stamp) >= cooldown


def retraining_object(
    template: Mapping[str, Any],
    namespace: str,
    deployment: str,
    uid: str,
    trigger: Trigger,
    now: float,
) -> dict[str, Any]:
    """The template as an object of its own: named by the API server, owned by the
    ModelDeployment (deleted with it), labelled and annotated with the evidence."""
    manifest = copy.deepcopy(dict(template))
    metadata = dict(manifest.get("metadata") or {})
    metadata.pop("name", None)
    metadata["generateName"] = f"{deployment[:40]}-retrain-"
    metadata["namespace"] = namespace
    metadata["labels"] = {
        **(metadata.get("labels") or {}),
        LABEL_DEPLOYMENT: deployment,
        LABEL_TRIGGER: trigger.condition,
    }
    evidence = json.dumps(trigger.evidence, sort_keys=True, default=str)
    metadata["annotations"] = {
        **(metadata.get("annotations") or {}),
        f"{ANNOTATION_PREFIX}trigger": trigger.condition,
        f"{ANNOTATION_PREFIX}version": trigger.version,
        f"{ANNOTATION_PREFIX}at": format_time(datetime.fromtimestamp(now, UTC)),
        f"{ANNOTATION_PREFIX}evidence": evidence[:MAX_EVIDENCE_BYTES],
    }
    metadata["ownerReferences"] = [{
        "apiVersion": "modelops.io/v1alpha1",
        "kind": "ModelDeployment",
        "name": deployment,
        "uid": uid,
    }]  # fmt: skip
    manifest["metadata"] = metadata
    pod = (manifest.get("spec") or {}).get("template")
    if manifest.get("kind") == "Job" and isinstance(pod, dict):
        # A Job's container reads them through the downward API from its pod's annotations.
        pod_meta = dict(pod.get("metadata") or {})
        pod_meta["annotations"] = {
            **(pod_meta.get("annotations") or {}),
            **{k: v for k, v in metadata["annotations"].items() if k.startswith(ANNOTATION_PREFIX)},
        }
        pod["metadata"] = pod_meta
    return manifest


def cloud_event(
    namespace: str, deployment: str, trigger: Trigger, now: float, event_id: str | None = None
) -> tuple[dict[str, str], bytes]:
    """Headers and body of the CloudEvent (1.0, structured JSON mode)."""
    event = {
        "specversion": "1.0",
        "type": EVENT_TYPE,
        "source": f"/apis/modelops.io/v1alpha1/namespaces/{namespace}"
        f"/modeldeployments/{deployment}",
        "id": event_id or str(uuid.uuid4()),
        "time": format_time(datetime.fromtimestamp(now, UTC)),
        "subject": trigger.version,
        "datacontenttype": "application/json",
        "data": {
            "namespace": namespace,
            "deployment": deployment,
            "condition": trigger.condition,
            "version": trigger.version,
            "message": trigger.message,
            "evidence": trigger.evidence,
        },
    }
    body = json.dumps(event, sort_keys=True, default=str).encode()
    return {"Content-Type": "application/cloudevents+json"}, body


def retraining_record(
    namespace: str, deployment: str, model: Mapping[str, Any], trigger: Trigger, created: str,
    now: float,
) -> dict[str, Any]:  # fmt: skip
    """The RetrainingTriggered lineage record (once per retraining started)."""
    reason = f"{trigger.condition}: {trigger.message}"
    if created:
        reason += f"; created {created}"
    spec = LineageRecordSpec.model_validate({
        "event": "RetrainingTriggered",
        "deployment": deployment,
        "model": RecordedModel.model_validate({
            "name": model.get("name", ""),
            "version": trigger.version,
            "digest": model.get("digest", ""),
            "uri": model.get("uri", ""),
        }).to_wire(),
        "outcome": trigger.version,
        "reason": reason[:4096],
        "decidedBy": "modelops",
        "decidedAt": format_time(datetime.fromtimestamp(now, UTC)),
    })  # fmt: skip
    return record_manifest(namespace, spec, trigger.version, trigger.condition, str(int(now)))


def resource_plural(kind: str) -> str:
    """The usual plural of a kind (Job -> jobs, PipelineRun -> pipelineruns, Policy ->
    policies), for kinds the client does not know."""
    lower = kind.lower()
    if lower.endswith(("s", "x", "ch", "sh")):
        return lower + "es"
    if lower.endswith("y") and lower[-2:-1] not in "aeiou":
        return lower[:-1] + "ies"
    return lower + "s"
