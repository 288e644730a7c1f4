"""Retraining started by the monitors: once per cooldown while a named condition stands, the
template made an owned, labelled object, the CloudEvent well-formed, the lineage record valid."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from modelops_operator.api.lineagerecord import LineageRecordSpec
from modelops_operator.api.modeldeployment import RetrainingPolicy
from modelops_operator.conditions import ConditionState
from modelops_operator.monitoring.retraining import (
    Trigger,
    cloud_event,
    due,
    resource_plural,
    retraining_object,
    retraining_record,
    standing,
)

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC).timestamp()
MONITORS = {"DataDrift": "drift", "AccuracyDegraded": "accuracy"}
JOB = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {"name": "ignored", "labels": {"team": "risk"}},
    "spec": {
        "template": {
            "spec": {"restartPolicy": "Never", "containers": [{"name": "t", "image": "trainer"}]}
        }
    },
}


def _policy(**fields: Any) -> RetrainingPolicy:
    return RetrainingPolicy.model_validate({"template": JOB, **fields})


def _views(drift: str, accuracy: str) -> dict[str, Any]:
    return {
        "drift": (
            {"version": "1.0.0", "message": "x0 moved", "state": "Drifted"},
            ConditionState("DataDrift", drift, "r"),
        ),
        "accuracy": (
            {"version": "1.0.0", "message": "worse"},
            ConditionState("AccuracyDegraded", accuracy, "r"),
        ),
    }


def test_a_standing_condition_named_in_on_starts_once_per_cooldown() -> None:
    assert standing(_policy(), _views("False", "Unknown"), MONITORS) is None
    found = standing(_policy(), _views("True", "False"), MONITORS)
    assert found is not None and (found.condition, found.version) == ("DataDrift", "1.0.0")
    assert standing(_policy(on=["AccuracyDegraded"]), _views("True", "False"), MONITORS) is None
    assert due(_policy(), None, NOW)
    last = {"triggeredAt": "2026-12-03T00:00:00Z"}
    assert not due(_policy(), last, NOW)  # 12 h after, cooldown 24h
    assert due(_policy(cooldown="6h"), last, NOW)
    assert due(_policy(), {"message": "a failure, nothing started"}, NOW)


def test_the_template_becomes_an_owned_object_carrying_the_evidence() -> None:
    trigger = Trigger(
        "DataDrift", "1.0.0", "x0 moved", {"state": "Drifted", "features": [{"name": "x0"}]}
    )
    made = retraining_object(JOB, "ml", "fraud", "uid-1", trigger, NOW)
    meta = made["metadata"]
    assert (
        "name" not in meta
        and meta["generateName"] == "fraud-retrain-"
        and meta["namespace"] == "ml"
    )
    assert meta["labels"] == {
        "team": "risk",
        "modelops.io/deployment": "fraud",
        "modelops.io/retraining-trigger": "DataDrift",
    }
    assert meta["ownerReferences"][0]["uid"] == "uid-1"
    assert (
        json.loads(meta["annotations"]["modelops.io/retraining-evidence"])["features"][0]["name"]
        == "x0"
    )
    # A Job's pods carry the annotations too, for the downward API.
    pod_annotations = made["spec"]["template"]["metadata"]["annotations"]
    assert pod_annotations["modelops.io/retraining-trigger"] == "DataDrift"
    assert made["spec"]["template"]["spec"] == JOB["spec"]["template"]["spec"]
    assert "metadata" not in JOB["spec"]["template"] and JOB["metadata"]["name"] == "ignored"


def test_the_cloud_event_and_the_lineage_record() -> None:
    trigger = Trigger("AccuracyDegraded", "1.0.0", "worse", {"observedError": 0.4})
    headers, body = cloud_event("ml", "fraud", trigger, NOW, event_id="e-1")
    event = json.loads(body)
    assert headers["Content-Type"] == "application/cloudevents+json"
    assert (event["specversion"], event["type"], event["id"]) == (
        "1.0",
        "io.modelops.retraining.requested",
        "e-1",
    )
    assert event["source"] == "/apis/modelops.io/v1alpha1/namespaces/ml/modeldeployments/fraud"
    assert event["data"]["evidence"] == {"observedError": 0.4}
    record = retraining_record(
        "ml",
        "fraud",
        {"name": "fraud", "digest": "sha256:" + "a" * 64},
        trigger,
        "Job/fraud-retrain-x",
        NOW,
    )
    spec = LineageRecordSpec.model_validate(record["spec"])
    assert spec.event == "RetrainingTriggered" and "Job/fraud-retrain-x" in spec.reason
    assert record["metadata"]["labels"]["modelops.io/event"] == "RetrainingTriggered"


def test_plural_of_kinds_the_client_does_not_know() -> None:
    kinds = ("Job", "Workflow", "PipelineRun", "Policy", "Ingress")
    plurals = ["jobs", "workflows", "pipelineruns", "policies", "ingresses"]
    assert [resource_plural(k) for k in kinds] == plurals
