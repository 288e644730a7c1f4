"""The demo's scenario as data: manifests, and how API objects become timeline entries.

Pure functions only (no cluster, no clock), so the orchestration in ``__main__`` stays a thin
loop and these rules are unit-tested: which status sample belongs to which challenge, when a
challenge counts as decided, and what makes the demo a success.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from .models import DemoModel

NAMESPACE = "demo"
TARGET = "fraud"  # the ModelDeployment, its Service, and the model name in inference URLs
POLICY = "fraud-canary"  # the ChampionChallenger
API = "/apis/modelops.io/v1alpha1"
# (challenge name, model in build_demo_models, the outcome the evidence must lead to)
CHALLENGES: tuple[tuple[str, str, str], ...] = (
    ("better", "better", "Promoted"),
    ("worse", "worse", "RolledBack"),
)
# Then the inputs drift; the retraining the monitors start produces this version, gated too.
RETRAINED = ("retrained", "2.0.0", "Promoted")
EXPECTED = {name: outcome for name, _, outcome in CHALLENGES} | {RETRAINED[0]: RETRAINED[2]}
REPLICAS = 2  # of the champion and of each challenger
# The operator, installed by Helm with the chart's defaults except these values.
RELEASE = "modelops"
RELEASE_NAMESPACE = "modelops-system"
OPERATOR_DEPLOYMENT = "modelops"  # the chart's fullname for release "modelops"
HELM_TIMEOUT = "4m"
# Labels arrive 1-3 s after the answer: 10 s of grace keeps every one of them for a retired
# challenger, and the demo need not wait the default 30 s.
# The live-model monitors look every 5 s (default 60 s), so the drift act fits the demo.
HELM_VALUES = {"feedbackGraceSeconds": "10", "liveMonitoring.intervalSeconds": "5"}
# Production's rate of false alarms, not a demo's: the drift is strong enough to show anyway.
ALARM_EVERY = "30d"
RETRAIN_SCRIPT = "retrain-script"  # the ConfigMap holding the retraining Job's program
FRESH_DATA = "fresh/rows.csv"  # under the model files: the drifted traffic's rows and labels
UPLOADS = "uploads"  # where the retraining Job PUTs its result
# What the live-model act must show, in this order (seconds after the drift began).
LIVE_FINDINGS = ("DataDrift", "AccuracyDegraded", "RetrainingTriggered")
TERMINAL_PHASES = ("Promoted", "RolledBack")
# Event timestamps have whole seconds: an event a moment after a challenge began can carry a
# time up to a second before it.
EVENT_SLACK_SECONDS = 1.5


def model_uri(model: DemoModel, base_url: str) -> str:
    """Where pods fetch ``model``: the demo serves each model's directory from the host, at
    ``base_url`` as the node sees it (a model registry outside the cluster)."""
    return f"{base_url.rstrip('/')}/{model.path.parent.name}/{model.path.name}"


def model_source(model: DemoModel, base_url: str) -> dict[str, Any]:
    """spec.model for one demo model: one file over HTTP (the server verifies one file
    against the digest, never a directory)."""
    source: dict[str, Any] = {"name": TARGET, "version": model.version,
                              "uri": model_uri(model, base_url), "format": "sklearn",
                              "digest": model.digest}
    if model.profile is not None:
        source["profile"] = {"uri": f"{base_url.rstrip('/')}/{model.path.parent.name}/"
                                    f"{model.profile.name}", "digest": model.profile_digest}
    return source


def retraining_job(base_url: str) -> dict[str, Any]:
    """The Job the monitors start (spec.monitoring.retraining.template): retrain_job.py, from
    the ConfigMap RETRAIN_SCRIPT, in the serving image, on the fresh data the host serves; it
    uploads its model to the host, where the release step picks it up."""
    from modelops_operator.constants import DEFAULT_SERVING_IMAGE

    base = base_url.rstrip("/")
    trigger = {"fieldRef": {"fieldPath": "metadata.annotations['modelops.io/retraining-trigger']"}}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"labels": {"app": "retrain"}},
        "spec": {
            "backoffLimit": 1,
            "activeDeadlineSeconds": 300,
            "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{
                    "name": "train",
                    "image": DEFAULT_SERVING_IMAGE,
                    "imagePullPolicy": "Never",
                    "command": ["python3", "/pipeline/train.py"],
                    "env": [{"name": "FRESH_DATA_URL", "value": f"{base}/{FRESH_DATA}"},
                            {"name": "UPLOAD_URL", "value": f"{base}/{UPLOADS}"},
                            {"name": "MODELOPS_TRIGGER", "valueFrom": trigger}],
                    "resources": {"requests": {"cpu": "50m", "memory": "128Mi"},
                                  "limits": {"memory": "512Mi"}},
                    "volumeMounts": [{"name": "pipeline", "mountPath": "/pipeline"}],
                }],
                "volumes": [{"name": "pipeline", "configMap": {"name": RETRAIN_SCRIPT}}],
            }},
        },
    }



def retrain_script_manifest(program: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": RETRAIN_SCRIPT, "namespace": NAMESPACE},
            "data": {"train.py": program}}


def modeldeployment_manifest(champion: DemoModel, base_url: str) -> dict[str, Any]:
    return {
        "apiVersion": "modelops.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": TARGET, "namespace": NAMESPACE},
        "spec": {
            "model": model_source(champion, base_url),
            "runtime": {
                # Two of each, as in production: the Service spreads requests over both, so
                # every label must still reach the replica that answered.
                "replicas": REPLICAS,
                # Small: two champions, two challengers and the router share a 2-core machine
                # with the control plane, the node, Prometheus and the operator.
                "resources": {"requests": {"cpu": "50m", "memory": "128Mi"},
                              "limits": {"memory": "512Mi"}},
            },
            "monitoring": {
                # The models answer 0/1 labels; one edge splits the prediction histogram there.
                "predictionBuckets": [0.5],
                "feedback": {"enabled": True},
                "drift": {"alarmEvery": ALARM_EVERY},
                "accuracy": {"alarmEvery": ALARM_EVERY, "margin": 2},
                # Drift alone is a warning; a model that got less accurate is retrained.
                "retraining": {"on": ["AccuracyDegraded"], "cooldown": "1h",
                               "template": retraining_job(base_url)},
            },
        },
    }


def championchallenger_manifest() -> dict[str, Any]:
    return {
        "apiVersion": "modelops.io/v1alpha1",
        "kind": "ChampionChallenger",
        "metadata": {"name": POLICY, "namespace": NAMESPACE},
        "spec": {
            "targetRef": {"name": TARGET},
            "strategy": {"type": "canary", "steps": [10, 50]},
            "gates": [
                # Neither model fails, so the error ratio says nothing; the absolute margin
                # (at most one point more errors) is what lets this gate pass in demo time.
                {"name": "errors", "type": "errorRate", "test": "nonInferiority",
                 "margin": 0.5, "absoluteMargin": 0.01},
                # The gate that separates the models: at most two points less accurate.
                {"name": "accuracy", "type": "accuracy", "test": "nonInferiority",
                 "margin": 0.02},
            ],
            # A short warm-up (default 2m) keeps the demo short; the models load in seconds.
            "decision": {"alpha": 0.05, "interval": "5s", "minSamples": 150,
                         "maxDuration": "10m", "warmUp": "10s"},
        },
    }


def model_patch(model: DemoModel, base_url: str) -> dict[str, Any]:
    """The merge patch a GitOps commit would make: a new version, URI and digest."""
    return {"spec": {"model": model_source(model, base_url)}}


def helm_install_args(chart: Path) -> list[str]:
    """``helm`` arguments installing the operator: the chart's defaults but for HELM_VALUES."""
    args = ["install", RELEASE, str(chart), "-n", RELEASE_NAMESPACE, "--create-namespace",
            "--wait", "--timeout", HELM_TIMEOUT]
    for key, value in HELM_VALUES.items():
        args += ["--set", f"{key}={value}"]
    return args


def service_address(service: Mapping[str, Any]) -> tuple[str, int]:
    """(ClusterIP, port) of a Service's ``http`` port (else its first port)."""
    spec = service.get("spec") or {}
    ports = spec.get("ports") or []
    if not spec.get("clusterIP") or not ports:
        raise ValueError(f"Service without a ClusterIP or ports: {dict(spec)}")
    port = next((p for p in ports if p.get("name") == "http"), ports[0])
    return str(spec["clusterIP"]), int(port["port"])


def gate_margins(policy: Mapping[str, Any]) -> dict[str, float]:
    """Gate name -> margin from the ChampionChallenger's spec (the report draws it)."""
    margins = {}
    for gate in (policy.get("spec") or {}).get("gates") or []:
        if isinstance(gate.get("margin"), int | float):
            margins[str(gate.get("name"))] = float(gate["margin"])
    return margins


def build_sample(t: float, challenge: str, status: Mapping[str, Any],
                 margins: Mapping[str, float], load: Mapping[str, Any],
                 target: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One timeline sample from the policy's status, the load generator's snapshot and the
    ModelDeployment (its monitors)."""
    gates = []
    for gate in status.get("gates") or []:
        entry = {key: gate.get(key) for key in ("name", "type", "verdict", "estimate", "lower",
                                                "upper", "samples", "message")}
        if gate.get("name") in margins:
            entry["margin"] = margins[gate["name"]]
        gates.append(entry)
    requests = load.get("requests") or {}
    feedback = load.get("feedback") or {}
    return {
        "t": round(t, 2),
        "challenge": challenge,
        "phase": status.get("phase") or "Idle",
        "step": status.get("currentStep"),
        "trafficPercent": status.get("trafficPercent"),
        "decision": status.get("decision") or "",
        "message": status.get("message") or "",
        "gates": gates,
        "requests": {key: requests.get(key, 0) for key in ("sent", "ok", "failed")}
        | {"byVersion": dict(requests.get("byVersion") or {})},
        "feedback": {key: feedback.get(key, 0)
                     for key in ("sent", "failed", "unmatched", "dropped")}
        # Per version: the accuracy the clients saw, over any stretch of the timeline.
        | {key: dict(feedback.get(key) or {}) for key in ("labelledByVersion", "correctByVersion")},
        "target": load.get("target"),
        "live": live_state(target or {}),
    }


# The monitors' Events on the ModelDeployment that the timeline keeps.
LIVE_REASONS = ("DataDrift", "AccuracyDegraded", "RetrainingTriggered", "RetrainingFailed")


def live_state(target: Mapping[str, Any]) -> dict[str, Any]:
    """What the ModelDeployment's monitors say, for the report's live-model plot."""
    status = target.get("status") or {}
    monitoring = status.get("monitoring") or {}
    state: dict[str, Any] = {
        "champion": (status.get("champion") or {}).get("version"),
        "conditions": {kind: condition(target, kind).get("status")
                       for kind in ("DataDrift", "AccuracyDegraded")},
        "retrainings": (monitoring.get("retraining") or {}).get("count", 0),
    }
    for monitor, keys in (("drift", ("state", "version", "evidence")),
                          ("accuracy", ("state", "version", "evidence", "holdout",
                                        "allowedError", "observedError"))):
        found = monitoring.get(monitor) or {}
        state[monitor] = {key: found.get(key) for key in keys if key in found}
    return state


def parse_time(stamp: str) -> float:
    """Seconds since the epoch of an RFC 3339 time as the API server writes it."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def owner_at(t: float, starts: Sequence[tuple[str, float]]) -> str | None:
    """The challenge running at demo time ``t`` (None before the first one began)."""
    owner = None
    for name, start in starts:
        if start <= t + EVENT_SLACK_SECONDS:
            owner = name
    return owner


def event_entry(item: Mapping[str, Any], wall_start: float,
                starts: Sequence[tuple[str, float]]) -> dict[str, Any] | None:
    """A Kubernetes Event of the policy as a timeline event; None for one from before the
    first challenge (setup, not evidence) or without a time."""
    metadata = item.get("metadata") or {}
    stamp = (item.get("eventTime") or item.get("lastTimestamp") or item.get("firstTimestamp")
             or metadata.get("creationTimestamp"))
    if not stamp or not item.get("reason"):
        return None
    t = parse_time(stamp) - wall_start
    owner = owner_at(t, starts)
    if owner is None:
        return None
    entry = {"t": round(t, 2), "type": item.get("type") or "Normal", "reason": item["reason"],
             "message": item.get("message") or "", "challenge": owner}
    if metadata.get("uid"):
        entry["uid"] = metadata["uid"]
    return entry


def condition(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    """The status condition of type ``kind``; empty when absent."""
    for item in (obj.get("status") or {}).get("conditions") or []:
        if item.get("type") == kind:
            return item
    return {}


def last_history(status: Mapping[str, Any]) -> Any:
    history = status.get("history") or []
    return history[-1] if history else None


def concluded(status: Mapping[str, Any], version: str, before: Any) -> str | None:
    """The outcome of the challenge of ``version``, or None while it runs.

    A terminal phase alone is not enough: right after the next patch the status still shows
    the previous challenge's ending. Only a new history entry naming this version decides.
    ``before`` is the last history entry from before the patch."""
    phase = status.get("phase")
    if phase == "Failed":
        return "Failed"
    if phase not in TERMINAL_PHASES:
        return None
    entry = last_history(status)
    if not entry or entry == before or entry.get("version") != version:
        return None
    return str(entry.get("action") or phase)


def problems(outcomes: Mapping[str, str], expected: Mapping[str, str],
             load: Mapping[str, Any], champion_version: str | None,
             expected_champion: str) -> list[str]:
    """Why the demo did not show what it promises; empty when it did.

    ``load`` is the load generator's snapshot: no client request may fail, and every label
    must reach a model that scores it (none failed, none unmatched)."""
    found = []
    for name, want in expected.items():
        got = outcomes.get(name, "not run")
        if got != want:
            found.append(f"challenge '{name}' ended {got}, expected {want}")
    requests = load.get("requests") or {}
    feedback = load.get("feedback") or {}
    if not requests.get("ok"):
        found.append("no client request was answered")
    if requests.get("failed"):
        found.append(f"{requests['failed']} client requests failed (expected none)")
    if feedback.get("failed"):
        found.append(f"{feedback['failed']} labels failed (expected none)")
    if feedback.get("unmatched"):
        found.append(f"{feedback['unmatched']} labels unmatched: the pod they reached had no "
                     "record of the prediction (expected none)")
    if champion_version is not None and champion_version != expected_champion:
        found.append(f"the ModelDeployment's champion is {champion_version}, "
                     f"expected {expected_champion}")
    return found


def live_model_problems(findings: Mapping[str, float | None], retrainings: int) -> list[str]:
    """Why the live-model act did not show what it promises: each of LIVE_FINDINGS seen
    (seconds after the drift began, None when not), and exactly one retraining started."""
    found = [f"{what} was not seen after the inputs drifted"
             for what in LIVE_FINDINGS if findings.get(what) is None]
    if retrainings != 1:
        found.append(f"{retrainings} retraining objects were created (expected one, within "
                     "the cooldown)")
    return found
