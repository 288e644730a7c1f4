"""What each view shows, from objects as the API server returns them."""

from __future__ import annotations

from modelops_operator.dashboard.views import (
    challenge_view,
    deployment_detail,
    deployment_view,
    history_view,
    monitoring_view,
    sort_challenges,
)

from .samples import CC, MDEP, RECORD, fresh


def test_a_deployment_row_shows_what_is_live_and_who_gates_it() -> None:
    row = deployment_view(MDEP, [CC])
    assert row["champion"]["version"] == "1.0.0" and row["specVersion"] == "1.1.0"
    assert row["challenger"] == "1.1.0"
    assert (row["readyReplicas"], row["replicas"]) == (2, 2)
    assert row["endpoint"] == "http://iris.ml.svc.cluster.local"
    assert (row["ready"], row["readyReason"]) == ("True", "Serving")
    assert row["challenges"] == [{"name": "iris-canary", "phase": "Progressing"}]


def test_a_challenge_in_another_namespace_does_not_gate_a_deployment_of_the_same_name() -> None:
    elsewhere = fresh(CC)
    elsewhere["metadata"]["namespace"] = "other"
    assert deployment_view(MDEP, [elsewhere])["challenges"] == []


def test_a_new_deployment_without_status_shows_unknown_not_an_error() -> None:
    bare = {"metadata": {"name": "x", "namespace": "n"}, "spec": {"model": {"name": "x"}}}
    row = deployment_view(bare)
    assert row["ready"] == "Unknown" and row["champion"]["version"] == ""
    assert row["replicas"] == 1


def test_a_live_challenge_shows_its_split_and_each_gate_with_interval_and_samples() -> None:
    view = challenge_view(CC)
    assert view["live"] and view["phase"] == "Progressing"
    assert (view["champion"], view["challenger"], view["trafficPercent"]) == ("1.0.0", "1.1.0", 10)
    assert view["strategy"] == "canary 10% → 50%"
    accuracy, errors = view["gates"]
    assert (accuracy["name"], accuracy["verdict"], accuracy["unit"]) == (
        "accuracy", "Pending", "difference")
    assert accuracy["samples"] == {"champion": 900, "challenger": 100}
    assert [line["label"] for line in accuracy["bar"]["lines"]] == ["no difference", "margin -0.02"]
    assert errors["unit"] == "ratio" and errors["bar"]["openUpper"]


def test_before_the_first_evaluation_the_policys_gates_are_listed_without_numbers() -> None:
    cc = fresh(CC)
    cc["status"] = {"phase": "Idle"}
    view = challenge_view(cc)
    assert not view["live"]
    assert [(g["name"], g["verdict"], g["bar"]) for g in view["gates"]] == [
        ("accuracy", "NoData", None), ("errors", "NoData", None)]


def test_live_challenges_come_first() -> None:
    done = fresh(CC)
    done["metadata"]["name"] = "a-done"
    done["status"]["phase"] = "Promoted"
    ordered = sort_challenges([challenge_view(done), challenge_view(CC)])
    assert [v["name"] for v in ordered] == ["iris-canary", "a-done"]


def test_history_newest_first_with_each_concluded_challenges_evidence_and_the_records() -> None:
    history = history_view(MDEP, [CC], [RECORD])
    assert [c["action"] for c in history["changes"]] == ["RolledOut"]
    (outcome,) = history["challenges"]
    assert (outcome["action"], outcome["version"], outcome["previous"]) == (
        "RolledBack", "0.9.0", "1.0.0")
    assert outcome["evidence"][0]["verdict"] == "Fail"
    assert outcome["evidence"][0]["bar"]["lines"][1]["value"] == -0.02  # the spec's margin
    (record,) = history["records"]
    assert (record["event"], record["version"], record["decidedBy"]) == (
        "RolledBack", "0.9.0", "modelops")
    assert record["source"] == "argocd iris-app abc123"


def test_records_that_could_not_be_read_are_none_not_an_empty_trail() -> None:
    assert history_view(MDEP, [], None)["records"] is None


def test_monitoring_shows_what_status_reports_whatever_its_shape() -> None:
    mdep = fresh(MDEP)
    mdep["status"]["monitoring"] = {
        "drift": {"statistic": 0.12, "features": ["a", "b"]},
        "accuracy": {"estimate": 0.91},
        "note": "x" * 1000,
    }
    view = monitoring_view(mdep)
    rows = {r["field"]: r["value"] for r in view["reported"]}
    assert rows["drift.statistic"] == "0.12"
    assert rows["drift.features"] == '["a", "b"]'
    assert rows["accuracy.estimate"] == "0.91"
    assert len(rows["note"]) == 300 and rows["note"].endswith("…")
    assert [c["type"] for c in view["conditions"]] == ["DataDrift"]
    assert view["recording"]["feedback"] is True


def test_monitoring_of_a_deployment_nobody_watches_yet_is_empty() -> None:
    assert monitoring_view(MDEP)["reported"] == []


def test_the_deployment_page_gathers_its_challenges_monitoring_and_history() -> None:
    detail = deployment_detail(MDEP, [CC], [RECORD])
    assert detail["deployment"]["name"] == "iris"
    assert [c["name"] for c in detail["challenges"]] == ["iris-canary"]
    assert detail["history"]["records"][0]["event"] == "RolledBack"
