"""One typed schema: the ChampionChallenger spec as the API server stores it (the generated CRD's
pruning and defaults) is validated once into the API models, and the gating configuration,
traffic and steps are built from them, each gate type's defaults coming from one table."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelops_operator.api import crdgen
from modelops_operator.api.championchallenger import GATE_TYPES, Decision, Gate
from modelops_operator.challenge import GateSignal, Phase, Status, step
from modelops_operator.challenge.controller import (
    ChallengePolicy,
    LiveState,
    observe,
    parse_policy,
    strategy_view,
)
from modelops_operator.gating import DecisionPolicy, GateConfig

REPO = Path(__file__).resolve().parents[3]
SPEC_SCHEMA = crdgen.championchallenger_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"][
    "properties"
]["spec"]
GATE_SCHEMA = SPEC_SCHEMA["properties"]["gates"]["items"]

# What each gate type means without margin / absoluteMargin (docs/gating.md, "Defaults").
TYPE_DEFAULTS = {
    "errorRate": (0.2, 0.001),
    "latency": (0.2, 0.001),
    "accuracy": (0.01, None),
    "predictionDrift": (0.1, None),
    "prometheus": (0.2, None),
}
# The fields a gate of each type needs besides name and type (CEL rules of the CRD).
REQUIRED = {
    "latency": {"latencyThreshold": "250ms"},
    "prometheus": {"query": "up", "thresholdRange": {"max": 1}},
}


def admitted(schema: dict[str, Any], value: Any) -> Any:
    """What the API server stores: unknown fields pruned, then schema defaults filled in
    (a defaulted object gets its own properties' defaults too)."""
    if schema.get("type") == "object" and isinstance(value, dict):
        properties = schema.get("properties")
        if properties is None:
            return value  # free-form (x-kubernetes-preserve-unknown-fields)
        out = {k: v for k, v in value.items() if k in properties}
        for name, child in properties.items():
            if name not in out and "default" in child:
                out[name] = copy.deepcopy(child["default"])
            if name in out:
                out[name] = admitted(child, out[name])
        return out
    if schema.get("type") == "array" and isinstance(value, list):
        return [admitted(schema["items"], item) for item in value]
    return value


def spec_with(*gates: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "targetRef": {"name": "fraud"},
        "strategy": {"type": "canary", "steps": [10, 50]},
        "gates": list(gates),
        **fields,
    }


def policy_of(spec: dict[str, Any]) -> ChallengePolicy:
    """The handler's parse of what the API server would store for `spec`."""
    parsed = parse_policy(admitted(SPEC_SCHEMA, spec))
    assert isinstance(parsed, ChallengePolicy), parsed
    return parsed


def leaves(value: Any, path: str = "spec") -> dict[str, Any]:
    """Every scalar (or list of scalars) of a spec by its path, like spec.gates[0].margin."""
    children: list[tuple[str, Any]] = []
    if isinstance(value, dict):
        children = [(f"{path}.{name}", child) for name, child in value.items()]
    elif isinstance(value, list) and value and isinstance(value[0], dict):
        children = [(f"{path}[{i}]", child) for i, child in enumerate(value)]
    else:
        return {path: value}
    return {k: v for at, child in children for k, v in leaves(child, at).items()}


# --------------------------------------------------------------------------- gate defaults
def test_an_accuracy_gate_without_margin_tolerates_one_point_not_twenty() -> None:
    # The CRD no longer gives every gate the errorRate default: the API server stores no margin.
    assert "default" not in GATE_SCHEMA["properties"]["margin"]
    stored = admitted(SPEC_SCHEMA, spec_with({"name": "accuracy", "type": "accuracy"}))
    assert "margin" not in stored["gates"][0]
    # At runtime the handler's parse gives the accuracy gate its own default: one point.
    policy = policy_of(spec_with({"name": "accuracy", "type": "accuracy"}))
    (gate,) = policy.gating.gates
    assert (gate.type, gate.margin, gate.absolute_margin) == ("accuracy", 0.01, None)
    assert policy.spec.gates[0].margin is None  # the spec itself is never rewritten


@pytest.mark.parametrize("gate_type", GATE_TYPES)
def test_each_gate_type_has_its_own_default_and_kubectl_explain_states_it(gate_type: str) -> None:
    margin, absolute = TYPE_DEFAULTS[gate_type]
    policy = policy_of(spec_with({"name": "g", "type": gate_type, **REQUIRED.get(gate_type, {})}))
    (gate,) = policy.gating.gates
    assert (gate.margin, gate.absolute_margin) == (margin, absolute)
    explained = " ".join(GATE_SCHEMA["properties"]["margin"]["description"].split())
    assert f"{gate_type} {margin:g} (" in explained
    if absolute is not None:
        explained = " ".join(GATE_SCHEMA["properties"]["absoluteMargin"]["description"].split())
        assert f"{gate_type} {absolute:g}" in explained


def test_a_margin_given_is_the_margin_used() -> None:
    policy = policy_of(
        spec_with(
            {"name": "accuracy", "type": "accuracy", "margin": 0.05},
            {"name": "errors", "type": "errorRate", "margin": 0.5, "absoluteMargin": 0},
        )
    )
    accuracy, errors = policy.gating.gates
    assert accuracy.margin == 0.05
    assert (errors.margin, errors.absolute_margin) == (0.5, 0.0)


def test_the_python_interface_reads_a_gate_through_the_same_model() -> None:
    assert GateConfig.from_dict({"name": "a", "type": "accuracy"}).margin == 0.01
    assert GateConfig.from_dict({"name": "d", "type": "predictionDrift"}).margin == 0.1


# --------------------------------------------------------------------------- every field
def _documented_spec() -> dict[str, Any]:
    """The ChampionChallenger manifest docs/api.md shows, with every field it advertises."""
    text = (REPO / "docs/api.md").read_text()
    section = text.split("\n## ChampionChallenger\n", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None, "docs/api.md: no yaml block under ## ChampionChallenger"
    manifest = yaml.safe_load(block.group(1))
    assert manifest["kind"] == "ChampionChallenger"
    return manifest["spec"]


@pytest.mark.parametrize(
    "path",
    [
        "docs/api.md",
        "examples/championchallenger-canary.yaml",
        "examples/championchallenger-shadow.yaml",
    ],
)
def test_no_advertised_field_is_pruned_or_dropped_on_the_way_to_the_engine(path: str) -> None:
    if path.endswith(".md"):
        spec = _documented_spec()
    else:
        spec = yaml.safe_load((REPO / path).read_text())["spec"]
    sent = leaves(spec)
    stored = leaves(admitted(SPEC_SCHEMA, spec))
    assert {k: stored.get(k) for k in sent} == sent, "the CRD prunes or changes a field"
    parsed = leaves(policy_of(spec).spec.to_wire())
    assert {k: parsed.get(k) for k in sent} == sent, "the typed spec loses a field"


def test_the_documented_fields_reach_the_gating_engine() -> None:
    policy = policy_of(_documented_spec())
    gates = {g.name: g for g in policy.gating.gates}
    assert gates["errors"].absolute_margin == 0.001 and gates["errors"].harm_margin == 0.5
    assert gates["slow-requests"].latency_threshold == 0.25
    assert (gates["accuracy"].margin, gates["accuracy"].tau) == (0.01, 0.02)
    assert gates["p99"].threshold_range == (None, 0.5)
    assert policy.gating.policy == DecisionPolicy(
        alpha=0.05,
        rollback_alpha=0.01,
        interval=60.0,
        min_samples=500,
        min_duration=3600.0,
        max_duration=6 * 3600.0,
        on_timeout="rollback",
    )


# Values different from each field's default (a new field of Gate or Decision must be added
# here, and so be shown to change what the engine is given).
GATE_CHANGES: dict[str, dict[str, Any]] = {
    "name": {"name": "other"},
    "type": {"type": "errorRate"},
    "test": {"test": "superiority"},
    "margin": {"margin": 0.03},
    "harm_margin": {"harmMargin": 0.05},
    "absolute_margin": {"type": "errorRate", "absoluteMargin": 0.01},
    "tau": {"tau": 0.05},
    "latency_threshold": {"type": "latency", "latencyThreshold": "1s"},
    "query": {"type": "prometheus", "query": "up", "thresholdRange": {"max": 1}},
    "threshold_range": {"type": "prometheus", "query": "up", "thresholdRange": {"min": 1}},
}
DECISION_CHANGES: dict[str, dict[str, Any]] = {
    "alpha": {"alpha": 0.01},
    "rollback_alpha": {"rollbackAlpha": 0.01},
    "interval": {"interval": "30s"},
    "min_samples": {"minSamples": 10},
    "min_duration": {"minDuration": "1h"},
    "max_duration": {"maxDuration": "2h"},
    "on_timeout": {"onTimeout": "hold"},
    "warm_up": {"warmUp": "5m"},
}


def test_every_gate_and_decision_field_the_crd_accepts_changes_what_the_engine_runs() -> None:
    assert set(GATE_CHANGES) == set(Gate.model_fields)
    assert set(DECISION_CHANGES) == set(Decision.model_fields)
    base = {"name": "g", "type": "accuracy"}
    (plain,) = policy_of(spec_with(base)).gating.gates
    for field, change in GATE_CHANGES.items():
        changed = policy_of(spec_with({**base, **change}))
        (gate,) = changed.gating.gates
        if field == "query":
            # Read where the query runs (challenge.evaluation), from the typed gate.
            assert changed.spec.gates[0].query == "up"
            continue
        assert gate != plain, f"spec.gates[].{change} changes nothing the engine runs"
    default = policy_of(spec_with(base)).gating.policy
    for field, change in DECISION_CHANGES.items():
        policy = policy_of(spec_with(base, decision=change)).gating.policy
        assert policy != default, f"spec.decision.{field} changes nothing the engine runs"


def test_strategy_approval_and_pause_come_from_the_typed_spec() -> None:
    shadow = policy_of(spec_with({"name": "a", "type": "accuracy"}, strategy={"type": "shadow"}))
    assert strategy_view(shadow.spec.strategy).traffic_at(0).mirror_percent == 100  # default
    ab = policy_of(
        spec_with(
            {"name": "a", "type": "accuracy"},
            strategy={"type": "ab", "weight": 30, "stickyHeader": "X-User-Id"},
            approval={"required": True},
            decision={"interval": "30s"},
            paused=True,
        )
    )
    seen = observe(Status(), live(ab))
    assert seen.strategy.traffic_at(0).challenger_percent == 30
    assert (seen.approval_required, seen.paused, seen.step_interval_seconds) == (True, True, 30.0)


# --------------------------------------------------------------------------- errors
def live(policy: ChallengePolicy | None, config_error: str | None = None) -> LiveState:
    return LiveState(
        now=100.0,
        policy=policy,
        annotations={},
        md_spec=None,
        md_status={},
        champion=None,
        challenger=None,
        gates=GateSignal(),
        route_applied=False,
        config_error=config_error,
    )


def test_a_spec_that_does_not_validate_fails_the_policy_naming_the_field() -> None:
    problem = parse_policy(spec_with({"name": "accuracy", "type": "accuracy", "margin": -1}))
    assert isinstance(problem, str) and problem.startswith("spec.gates[0].margin: ")
    failed = step(Status(), observe(Status(), live(None, problem)))
    assert failed.status.phase is Phase.FAILED
    assert failed.status.message == f"configuration error: {problem}"
    assert [e.reason for e in failed.events] == ["ConfigError"]
    unknown = parse_policy(spec_with({"name": "a", "type": "accuracy", "mode": "superiority"}))
    assert isinstance(unknown, str) and unknown.startswith("spec.gates[0].mode: ")


def test_a_gate_the_engine_cannot_run_is_a_configuration_error_too() -> None:
    # The CRD's CEL refuses absoluteMargin on an accuracy gate; without the CRD, the engine does.
    problem = parse_policy(
        spec_with({"name": "accuracy", "type": "accuracy", "absoluteMargin": 0.01})
    )
    assert isinstance(problem, str) and problem.startswith("spec.gates: gate 'accuracy': ")
    assert "absoluteMargin" in problem
