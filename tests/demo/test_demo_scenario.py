"""The demo's pure rules: manifests, samples, event ownership, when a challenge has ended."""

from __future__ import annotations

from pathlib import Path

from modelops_demo import scenario as sc
from modelops_demo.models import DemoModel
from modelops_demo.progress import progress_line
from modelops_demo.timeline import Timeline
from modelops_operator.api.championchallenger import ChampionChallengerSpec
from modelops_operator.api.modeldeployment import ModelDeploymentSpec

MODEL = DemoModel("better", "1.1.0", Path("/models/better/model.skops"), "sha256:" + "a" * 64,
                  0.93)


def test_manifests_are_valid_specs() -> None:
    md = sc.modeldeployment_manifest(MODEL)
    spec = ModelDeploymentSpec.model_validate(md["spec"])
    assert spec.model.uri == "file:///models/better/model.skops"
    assert spec.monitoring.feedback.enabled
    policy = ChampionChallengerSpec.model_validate(sc.championchallenger_manifest()["spec"])
    assert policy.target_ref.name == md["metadata"]["name"]
    assert policy.strategy.steps == [10, 50]
    assert sc.model_patch(MODEL)["spec"]["model"] == md["spec"]["model"]


def test_sample_carries_status_margins_and_counts() -> None:
    status = {"phase": "Progressing", "currentStep": 1, "trafficPercent": 50,
              "decision": "Continue",
              "gates": [{"name": "accuracy", "type": "accuracy", "verdict": "Pending",
                         "estimate": 0.1, "lower": 0.02, "upper": 0.2,
                         "samples": {"champion": 300, "challenger": 200}}]}
    load = {"target": "http://x", "requests": {"sent": 10, "ok": 9, "failed": 1},
            "feedback": {"sent": 5, "failed": 0}}
    margins = sc.gate_margins(sc.championchallenger_manifest())
    sample = sc.build_sample(12.345, "better", status, margins, load)
    Timeline().add_sample(sample)
    assert sample["gates"][0]["margin"] == 0.02
    assert sample["requests"]["failed"] == 1 and sample["step"] == 1
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
    good = {"better": "Promoted", "worse": "RolledBack"}
    assert sc.problems(good, sc.EXPECTED, 0, "1.1.0", "1.1.0") == []
    found = sc.problems({"better": "Promoted"}, sc.EXPECTED, 3, "1.0.0", "1.1.0")
    assert len(found) == 3
    assert any("worse" in p and "not run" in p for p in found)


def test_pids_with_env_matches_the_exact_variable(tmp_path: Path) -> None:
    for pid, environ in ((11, b"A=1\0KUBECONFIG=/w/op.kubeconfig\0"),
                         (12, b"KUBECONFIG=/w/op.kubeconfig.old\0"), (13, b"")):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "environ").write_bytes(environ)
    (tmp_path / "self").mkdir()
    assert sc.pids_with_env("KUBECONFIG", "/w/op.kubeconfig", tmp_path) == [11]
