"""Objects as the API server returns them, for the dashboard's tests: a deployment whose canary
challenge is live (two gates evaluated, one interval still open), and the iris model's V2
metadata as our model server reports it."""

from __future__ import annotations

import copy
from typing import Any

MDEP: dict[str, Any] = {
    "apiVersion": "modelops.io/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "iris", "namespace": "ml"},
    "spec": {
        "model": {"name": "iris", "version": "1.1.0", "uri": "http://models/iris-1.1.0.skops",
                  "format": "sklearn"},
        "runtime": {"replicas": 2},
        "monitoring": {"predictionBuckets": [0.5, 1.5], "feedback": {"enabled": True}},
    },
    "status": {
        "champion": {"name": "iris", "version": "1.0.0", "digest": "sha256:aaa",
                     "since": "2025-01-01T10:00:00Z"},
        "challenger": {"name": "iris", "version": "1.1.0"},
        "endpoint": "http://iris.ml.svc.cluster.local",
        "readyReplicas": 2,
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Serving", "message": "2 of 2 ready",
             "lastTransitionTime": "2025-01-01T10:01:00Z"},
            {"type": "DataDrift", "status": "False", "reason": "NoDrift", "message": "",
             "lastTransitionTime": "2025-01-01T10:01:00Z"},
        ],
        "history": [
            {"time": "2025-01-01T10:00:00Z", "action": "RolledOut", "fromVersion": "",
             "toVersion": "1.0.0", "reason": "NewModel", "message": "first version"},
        ],
    },
}

CC: dict[str, Any] = {
    "apiVersion": "modelops.io/v1alpha1",
    "kind": "ChampionChallenger",
    "metadata": {"name": "iris-canary", "namespace": "ml"},
    "spec": {
        "targetRef": {"name": "iris"},
        "strategy": {"type": "canary", "steps": [10, 50]},
        "gates": [
            {"name": "accuracy", "type": "accuracy", "margin": 0.02},
            {"name": "errors", "type": "errorRate", "margin": 0.2, "absoluteMargin": 0.01},
        ],
        "decision": {"alpha": 0.05, "interval": "5s", "minSamples": 150},
    },
    "status": {
        "phase": "Progressing",
        "champion": {"version": "1.0.0"},
        "challenger": {"version": "1.1.0"},
        "trafficPercent": 10,
        "decision": "Continue",
        "message": "gates pending",
        "gates": [
            {"name": "accuracy", "type": "accuracy", "verdict": "Pending", "estimate": 0.01,
             "lower": -0.03, "upper": 0.05, "samples": {"champion": 900, "challenger": 100},
             "message": "accuracy difference +0.01"},
            {"name": "errors", "type": "errorRate", "verdict": "Pass", "estimate": 1.0,
             "lower": 0.2, "samples": {"champion": 900, "challenger": 100}},
        ],
        "history": [
            {"time": "2024-12-01T09:00:00Z", "action": "RolledBack", "version": "0.9.0",
             "previous": "1.0.0", "reason": "accuracy failed",
             "evidence": [{"name": "accuracy", "verdict": "Fail", "estimate": -0.06,
                           "lower": -0.09, "upper": -0.03}]},
        ],
    },
}

RECORD: dict[str, Any] = {
    "apiVersion": "modelops.io/v1alpha1",
    "kind": "LineageRecord",
    "metadata": {"name": "iris-rolledback-1", "namespace": "ml",
                 "labels": {"modelops.io/deployment": "iris"}},
    "spec": {
        "event": "RolledBack", "deployment": "iris", "challenge": "iris-canary",
        "model": {"name": "iris", "version": "0.9.0", "digest": "sha256:bbb"},
        "previous": {"version": "1.0.0"}, "outcome": "1.0.0", "reason": "accuracy failed",
        "decidedBy": "modelops", "decidedAt": "2024-12-01T09:00:00Z",
        "source": {"tool": "argocd", "application": "iris-app", "revision": "abc123"},
    },
}

IRIS_METADATA: dict[str, Any] = {
    "name": "iris",
    "versions": ["1.0.0"],
    "platform": "sklearn",
    "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}],
    "outputs": [{"name": "predict", "datatype": "FP64", "shape": [-1]},
                {"name": "predict_proba", "datatype": "FP64", "shape": [-1, -1]}],
}


def fresh(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy a test may change."""
    return copy.deepcopy(obj)
