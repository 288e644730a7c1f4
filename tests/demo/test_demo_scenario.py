"""The demo's pure rules: manifests, samples, event ownership, when a challenge has ended."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from modelops_demo import scenario as sc
from modelops_demo.models import DemoModel
from modelops_demo.progress import progress_line
from modelops_demo.timeline import Timeline
from modelops_operator.api.championchallenger import ChampionChallengerSpec
from modelops_operator.api.modeldeployment import ModelDeploymentSpec

MODEL = DemoModel("better", "1.1.0", Path("/work/models/better/model.skops"),
                  "sha256:" + "a" * 64, 0.93)
BASE = "http://10.245.0.2:40123"  # the host's model files as the node sees them
CHART = Path(__file__).resolve().parents[2] / "charts" / "modelops"


def test_manifests_are_valid_specs_with_two_replicas_and_models_over_http() -> None:
    md = sc.modeldeployment_manifest(MODEL, BASE + "/")
    spec = ModelDeploymentSpec.model_validate(md["spec"])
    assert spec.model.uri == "http://10.245.0.2:40123/better/model.skops"
    assert spec.model.digest == MODEL.digest
    assert spec.runtime.replicas == 2
    assert spec.monitoring.feedback.enabled
    policy = ChampionChallengerSpec.model_validate(sc.championchallenger_manifest()["spec"])
    assert policy.target_ref.name == md["metadata"]["name"]
    assert policy.strategy.steps == [10, 50]
    assert sc.model_patch(MODEL, BASE)["spec"]["model"] == md["spec"]["model"]


def test_helm_installs_the_chart_with_defaults_but_values_the_chart_declares() -> None:
    args = sc.helm_install_args(CHART)
    assert args[:3] == ["install", "modelops", str(CHART)]
    assert args[3:5] == ["-n", "modelops-system"] and "--create-namespace" in args
    assert args[args.index("--timeout") + 1] == "4m" and "--wait" in args
    sets = [args[i + 1] for i, arg in enumerate(args) if arg == "--set"]
    assert sets == ["feedbackGraceSeconds=10", "liveMonitoring.intervalSeconds=5"]
    # The chart refuses unknown values (additionalProperties: false); these exist and type.
    schema = json.loads((CHART / "values.schema.json").read_text())
    for assignment in sets:
        key, value = assignment.split("=", 1)
        declared = schema
        for part in key.split("."):
            declared = declared["properties"][part]
        assert declared["type"] in ("integer", "number") and float(value) >= 0


def test_the_load_goes_to_the_services_http_port() -> None:
    service = {"spec": {"clusterIP": "10.0.0.42", "ports": [
        {"name": "metrics", "port": 9090}, {"name": "http", "port": 80}]}}
    assert sc.service_address(service) == ("10.0.0.42", 80)
    service["spec"]["ports"] = [{"port": 8000}]
    assert sc.service_address(service) == ("10.0.0.42", 8000)
    with pytest.raises(ValueError):
        sc.service_address({"spec": {"ports": [{"port": 80}]}})


def test_sample_carries_status_margins_and_counts() -> None:
    status = {"phase": "Progressing", "currentStep": 1, "trafficPercent": 50,
              "decision": "Continue",
              "gates": [{"name": "accuracy", "type": "accuracy", "verdict": "Pending",
                         "estimate": 0.1, "lower": 0.02, "upper": 0.2,
                         "samples": {"champion": 300, "challenger": 200}}]}
    load = {"target": "http://x", "requests": {"sent": 10, "ok": 9, "failed": 1},
            "feedback": {"sent": 5, "failed": 0, "unmatched": 3}}
    margins = sc.gate_margins(sc.championchallenger_manifest())
    sample = sc.build_sample(12.345, "better", status, margins, load)
    Timeline().add_sample(sample)
    assert sample["gates"][0]["margin"] == 0.02
    assert sample["requests"]["failed"] == 1 and sample["step"] == 1
    assert sample["feedback"] == {"sent": 5, "failed": 0, "unmatched": 3, "dropped": 0,
                                  "labelledByVersion": {}, "correctByVersion": {}}
    assert "labels 5 ok 0 failed 3 unmatched" in progress_line(sample)
    assert "accuracy Pending +0.100" in progress_line(sample)
    assert sc.build_sample(0, "better", {}, {}, {})["phase"] == "Idle"


def test_events_belong_to_the_challenge_running_then() -> None:
    starts = [("better", 10.0), ("worse", 100.0)]
    wall = sc.parse_time("2024-05-01T10:00:00Z")
    item = {"metadata": {"uid": "u1"}, "reason": "ChallengeStarted", "message": "m",
            "lastTimestamp": "2024-05-01T10:00:09Z"}
    # One second "early": whole-second timestamps, still the first challenge.
    assert sc.event_entry(item, wall, starts)["challenge"] == "better"
    item["lastTimestamp"] = "2024-05-01T10:01:39Z"
    assert sc.event_entry(item, wall, starts)["challenge"] == "worse"
    item["lastTimestamp"] = "2024-05-01T10:00:01Z"
    assert sc.event_entry(item, wall, starts) is None  # setup, before any challenge


def test_only_a_new_history_entry_of_this_version_ends_a_challenge() -> None:
    promoted = {"version": "1.1.0", "action": "Promoted"}
    status = {"phase": "Promoted", "history": [promoted]}
    assert sc.concluded(status, "1.1.0", None) == "Promoted"
    # Right after the next patch the status still shows the last ending.
    assert sc.concluded(status, "1.2.0", promoted) is None
    assert sc.concluded(status, "1.1.0", promoted) is None
    rolled = {"version": "1.2.0", "action": "RolledBack"}
    status = {"phase": "RolledBack", "history": [promoted, rolled]}
    assert sc.concluded(status, "1.2.0", promoted) == "RolledBack"
    assert sc.concluded({"phase": "Progressing"}, "1.2.0", promoted) is None
    assert sc.concluded({"phase": "Failed"}, "1.2.0", promoted) == "Failed"


def test_problems_name_every_shortfall() -> None:
    good = {"better": "Promoted", "worse": "RolledBack", "retrained": "Promoted"}
    clean = {"requests": {"ok": 900, "failed": 0},
             "feedback": {"sent": 880, "failed": 0, "unmatched": 0, "dropped": 20}}
    assert sc.problems(good, sc.EXPECTED, clean, "1.1.0", "1.1.0") == []
    found = sc.problems({"better": "Promoted"}, sc.EXPECTED,
                        {"requests": {"ok": 900, "failed": 3}}, "1.0.0", "1.1.0")
    assert len(found) == 4
    assert any("worse" in p and "not run" in p for p in found)


def test_a_failed_or_unmatched_label_fails_the_demo_and_so_does_no_traffic() -> None:
    good = {"better": "Promoted", "worse": "RolledBack", "retrained": "Promoted"}
    unmatched = {"requests": {"ok": 900, "failed": 0},
                 "feedback": {"sent": 450, "failed": 0, "unmatched": 430}}
    (problem,) = sc.problems(good, sc.EXPECTED, unmatched, "1.1.0", "1.1.0")
    assert problem.startswith("430 labels unmatched")
    failed = {"requests": {"ok": 900}, "feedback": {"sent": 880, "failed": 2}}
    assert sc.problems(good, sc.EXPECTED, failed, "1.1.0", "1.1.0") == [
        "2 labels failed (expected none)"]
    assert sc.problems(good, sc.EXPECTED, {}, "1.1.0", "1.1.0") == [
        "no client request was answered"]


def test_every_version_is_monitored_and_a_decayed_one_retrained_by_a_job() -> None:
    profiled = dataclasses.replace(MODEL, profile=MODEL.path.parent / "profile.json",
                                   profile_digest="sha256:" + "ab" * 32)
    md = sc.modeldeployment_manifest(profiled, BASE)
    spec = ModelDeploymentSpec.model_validate(md["spec"])
    assert spec.model.profile is not None
    assert spec.model.profile.uri == f"{BASE}/better/profile.json"
    retraining = spec.monitoring.retraining
    assert retraining is not None and retraining.on == ["AccuracyDegraded"]
    job = retraining.template or {}
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["FRESH_DATA_URL"] == f"{BASE}/{sc.FRESH_DATA}"
    assert env["UPLOAD_URL"] == f"{BASE}/{sc.UPLOADS}"
    volume = job["spec"]["template"]["spec"]["volumes"][0]
    assert volume["configMap"]["name"] == sc.RETRAIN_SCRIPT
    # Without a profile (a model from before monitoring) spec.model has none.
    assert "profile" not in sc.modeldeployment_manifest(MODEL, BASE)["spec"]["model"]


def test_live_state_reads_the_monitors_and_problems_want_every_finding_once() -> None:
    target = {"status": {
        "champion": {"version": "1.1.0"},
        "conditions": [{"type": "DataDrift", "status": "True"},
                       {"type": "AccuracyDegraded", "status": "False"}],
        "monitoring": {"drift": {"state": "Drifted", "evidence": 1.0, "features": []},
                       "accuracy": {"state": "Watching", "evidence": 0.3, "holdout": 0.93,
                                    "allowedError": 0.09},
                       "retraining": {"count": 1}}}}
    live = sc.live_state(target)
    assert live["champion"] == "1.1.0" and live["retrainings"] == 1
    assert live["conditions"] == {"DataDrift": "True", "AccuracyDegraded": "False"}
    assert live["drift"] == {"state": "Drifted", "evidence": 1.0}
    assert live["accuracy"]["allowedError"] == 0.09
    assert sc.live_state({})["drift"] == {}
    seen = {"DataDrift": 20.0, "AccuracyDegraded": 41.0, "RetrainingTriggered": 41.5}
    assert sc.live_model_problems(seen, 1) == []
    found = sc.live_model_problems(seen | {"AccuracyDegraded": None}, 2)
    assert len(found) == 2 and "AccuracyDegraded was not seen" in found[0]
