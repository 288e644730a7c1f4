"""Humility rules: the spec (validated once, errors naming the field), the sidecar's
--humility-rules, and the Uncertain monitor over how often each rule fires (pure watch,
counter reading, status and condition)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from modelops_operator.api.modeldeployment import ModelDeploymentSpec
from modelops_operator.builders.workload import build_model_deployment
from modelops_operator.monitoring.live import HumilityWatch, humility_view
from modelops_operator.monitoring.reading import humility_growth, read_humility
from modelops_operator.observe import DeploymentObservation
from modelops_operator.promsource.counts import Sample
from modelops_operator.status import ReconcileOutcome, compute_status, status_patch

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
RULES = [
    {"name": "outlying", "when": {"outlyingInput": {"features": ["amount"]}}, "action": "flag"},
    {"name": "unsure", "when": {"confidenceBelow": 0.6}, "action": "override",
     "overrideValue": 0},
]


def _spec(rules: list[dict[str, Any]] | None = None, profile: bool = True,
          **humility: Any) -> ModelDeploymentSpec:
    model: dict[str, Any] = {"name": "fraud", "version": "1.0.0", "uri": "s3://b/m.skops",
                             "format": "sklearn", "digest": "sha256:" + "cd" * 32}
    if profile:
        model["profile"] = {"uri": "s3://b/profile.json", "digest": "sha256:" + "ef" * 32}
    monitoring = {"humility": {"rules": RULES if rules is None else rules, **humility}}
    return ModelDeploymentSpec.model_validate({"model": model, "monitoring": monitoring})


def _error(**kwargs: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        _spec(**kwargs)
    return str(caught.value)


def test_rules_are_validated_with_errors_naming_the_field() -> None:
    assert "exactly one of outlyingInput and confidenceBelow" in _error(rules=[
        {"name": "a", "when": {}, "action": "flag"}])
    assert "exactly one" in _error(rules=[
        {"name": "a", "when": {"outlyingInput": {}, "confidenceBelow": 0.5}}])
    assert "overrideValue is required with action override" in _error(rules=[
        {"name": "a", "when": {"confidenceBelow": 0.5}, "action": "override"}])
    assert "only with it" in _error(rules=[
        {"name": "a", "when": {"confidenceBelow": 0.5}, "action": "flag", "overrideValue": 1}])
    assert "overrideValue" in _error(rules=[
        {"name": "a", "when": {"confidenceBelow": 0.5}, "action": "override",
         "overrideValue": "yes"}])
    assert "names must be unique" in _error(rules=[RULES[1], RULES[1]])
    assert "rules.0.name" in _error(rules=[{"name": "Bad_Name", "when": {"confidenceBelow": 1}}])
    assert "confidenceBelow" in _error(rules=[{"name": "a", "when": {"confidenceBelow": 0}}])
    assert "outlyingInput needs spec.model.profile" in _error(profile=False)
    # Confidence rules need no profile; at most 16 rules.
    assert _spec(rules=[RULES[1]], profile=False).monitoring.humility is not None
    many = [{"name": f"r{i}", "when": {"confidenceBelow": 0.5}} for i in range(17)]
    assert "rules" in _error(rules=many)


def test_the_sidecar_gets_the_rules_as_its_flag() -> None:
    pod = build_model_deployment("fraud", "ml", _spec(), "champion")["spec"]["template"]["spec"]
    sidecar = next(c for c in pod["containers"] if c["name"] == "metrics-sidecar")
    flag = sidecar["args"].index("--humility-rules")
    assert json.loads(sidecar["args"][flag + 1]) == {"rules": [
        {"name": "outlying", "when": {"outlyingInput": {"features": ["amount"]}},
         "action": "flag"},
        # Only confidence rules name their output (the sidecar refuses it on the others).
        {"name": "unsure", "when": {"confidenceBelow": 0.6, "confidenceOutput": "predict_proba"},
         "action": "override", "overrideValue": 0},
    ]}
    plain = _spec().model_copy(update={"monitoring": _spec().monitoring.model_copy(
        update={"humility": None})})
    pod = build_model_deployment("fraud", "ml", plain, "champion")["spec"]["template"]["spec"]
    sidecar = next(c for c in pod["containers"] if c["name"] == "metrics-sidecar")
    assert "--humility-rules" not in sidecar["args"]


def _watch(max_share: float = 0.05) -> HumilityWatch:
    # c = 1 day / 1 minute per rule, times two rules.
    return HumilityWatch("1.0.0", ("outlying", "unsure"), max_share, 86400.0, 60.0,
                         since=T0.timestamp())


def test_rules_firing_within_their_share_raise_nothing_and_one_firing_too_often_does() -> None:
    rng = np.random.default_rng(3)
    watch = _watch()
    for minute in range(24 * 60):  # a day at 300 predictions a minute, both rules at 3 %
        fired = rng.binomial(300, [0.03, 0.03]).astype(float)
        assert not watch.look(fired, 300.0, T0.timestamp() + 60 * minute)
    status, condition = humility_view(watch, "1.0.0")
    assert (status["state"], condition.type, condition.status) == ("Watching", "Uncertain",
                                                                   "False")
    found = None
    for minute in range(24 * 60, 25 * 60):  # "unsure" now fires on 10 %
        fired = rng.binomial(300, [0.03, 0.10]).astype(float)
        if watch.look(fired, 300.0, T0.timestamp() + 60 * minute):
            found = minute - 24 * 60
            break
    assert found is not None and found < 30
    status, condition = humility_view(watch, "1.0.0")
    assert (status["state"], condition.status, condition.reason) == (
        "Uncertain", "True", "RulesFireTooOften")
    assert [r["name"] for r in status["rules"]] == ["unsure"]
    assert "unsure" in status["message"] and "5.0% allowed" in status["message"]
    # Kept for this version across an operator restart, not for another.
    previous = {"monitoring": {"humility": status}}
    restarted = _watch()
    restarted.resume(previous)
    assert humility_view(restarted, "1.0.0")[1].status == "True"
    other = HumilityWatch("2.0.0", ("outlying", "unsure"), 0.05, 86400.0, 60.0, since=0.0)
    other.resume(previous)
    assert other.uncertain_at is None


def test_no_checked_rows_is_no_data_and_no_watch_says_why() -> None:
    watch = _watch()
    watch.look(np.zeros(2), 0.0, T0.timestamp())
    assert humility_view(watch, "1.0.0")[1].status == "Unknown"
    status, condition = humility_view(None, "1.0.0", problem="Prometheus unavailable: down")
    assert (status["state"], condition.status) == ("Unavailable", "Unknown")


class Answers:
    """Prometheus's answers: the checked rows first, then the fired rows."""

    def __init__(self, checked: dict[str, float], fired: dict[tuple[str, str], float]) -> None:
        self.answers = [
            [Sample({"pod": pod}, value, 0.0) for pod, value in checked.items()],
            [Sample({"pod": pod, "rule": rule}, value, 0.0)
             for (pod, rule), value in fired.items()],
        ]

    async def instant(self, query: str, at: float | None = None) -> list[Sample]:
        return self.answers["modelops_humility_rows_total" in query]


def test_rows_are_counted_from_the_counters_growth_per_pod() -> None:
    rules = ("outlying", "unsure")

    def read(checked: dict[str, float], fired: dict[tuple[str, str], float]) -> Any:
        return asyncio.run(read_humility(Answers(checked, fired), '{a="b"}', rules, 0))

    before = read({"a": 100}, {("a", "outlying"): 4, ("a", "unsure"): 3})
    # Pod a restarted (its counters went down), pod b is new; an unknown rule is ignored.
    after = read({"a": 30, "b": 50},
                 {("a", "unsure"): 2, ("b", "outlying"): 5, ("b", "removed-rule"): 9})
    fired, checked = humility_growth(before, after, len(rules))
    assert checked == 80.0 and fired.tolist() == [5.0, 2.0]
    assert humility_growth(None, after, 2)[1] == 0.0


def test_status_carries_the_monitor_and_drops_it_with_the_rules() -> None:
    watch = _watch()
    watch.look(np.array([1.0, 2.0]), 300.0, T0.timestamp())
    observed = DeploymentObservation(3, 3, 1, 1, 1, 1, 1, "1.0.0", False, "")

    def status(spec: ModelDeploymentSpec, previous: Any, views: Any) -> dict[str, Any]:
        return compute_status("fraud", "ml", spec, ReconcileOutcome(1), observed, previous, T0,
                              monitoring=views)

    # Humility alone, without a profile: the monitor stands, drift and accuracy do not.
    spec = _spec(rules=[RULES[1]], profile=False)
    shown = status(spec, None, {"drift": None, "accuracy": None,
                                "humility": humility_view(watch, "1.0.0")})
    assert shown["monitoring"]["humility"]["state"] == "Watching"
    assert {c["type"]: c["status"] for c in shown["conditions"]}["Uncertain"] == "False"
    assert status_patch(shown, status(spec, shown, None)) == {}
    without = _spec(rules=[RULES[1]], profile=False).model_copy(
        update={"monitoring": spec.monitoring.model_copy(update={"humility": None})})
    gone = status(without, shown, None)
    assert "monitoring" not in gone
    assert "Uncertain" not in {c["type"] for c in gone["conditions"]}
