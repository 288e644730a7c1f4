"""The pure half of the ChampionChallenger controller: observation, object plan, status."""

from __future__ import annotations

import dataclasses
import json

from modelops_operator.api.championchallenger import ChampionChallengerSpec
from modelops_operator.api.modeldeployment import ModelDeploymentSpec
from modelops_operator.challenge import ModelRef, Phase, Status, Topology, Transition
from modelops_operator.challenge.controller import (
    Evaluation,
    challenge_conditions,
    command_from,
    live_champion_of,
    plan_objects,
    render_status,
    rollout_done,
)
from modelops_operator.challenge.view import challenge_view
from modelops_operator.observe import DeploymentObservation

V1 = ModelRef("1.0.0", "s3://models/fraud-1.skops", "sha256:" + "1" * 64)
V2 = ModelRef("1.1.0", "s3://models/fraud-2.skops", "sha256:" + "2" * 64)
MD_SPEC = ModelDeploymentSpec.model_validate(
    {
        "model": {
            "name": "fraud",
            "version": V1.version,
            "uri": V1.uri,
            "format": "sklearn",
            "digest": V1.digest,
        }
    }
)


def deployment(
    version: str,
    *,
    wanted: int = 2,
    updated: int = 2,
    available: int = 2,
    replicas: int = 2,
    generation: int = 3,
    observed: int = 3,
) -> DeploymentObservation:
    return DeploymentObservation(generation, observed, wanted, replicas, updated, available,
                                 available, version, False, "")  # fmt: skip


def test_a_rollout_counts_as_done_only_when_every_replica_runs_the_new_template() -> None:
    assert rollout_done(deployment("v2")) == "v2"
    assert rollout_done(deployment("v2", available=1)) is None
    assert rollout_done(deployment("v2", replicas=3)) is None  # an old pod still runs
    assert rollout_done(deployment("v2", observed=2)) is None  # status of an older spec
    # An old pod still shutting down may still take traffic meant for the new ones.
    leaving = dataclasses.replace(deployment("v2"), terminating_replicas=1)
    assert rollout_done(leaving) is None
    assert rollout_done(None) is None


def test_commands_apply_only_to_the_challenge_they_name() -> None:
    annotations = {"modelops.io/command": "rollback/1.1.0-100", "modelops.io/command-by": "erin"}
    command = command_from(annotations, "1.1.0-100")
    assert command is not None and (command.action, command.user) == ("rollback", "erin")
    # An order for an earlier challenge of the same version is not carried out on this one.
    assert command_from(annotations, "1.1.0-900") is None
    assert command_from({"modelops.io/command": "delete/1.1.0-100"}, "1.1.0-100") is None
    assert command_from(annotations, "") is None


def test_the_live_champion_is_trusted_once_its_deployment_has_rolled_it_out() -> None:
    status = {"champion": {"name": "fraud", "version": "1.0.0", "uri": V1.uri,
                           "digest": V1.digest}}  # fmt: skip
    assert live_champion_of(status, deployment("1.0.0")) == V1
    assert live_champion_of(status, deployment("1.1.0")) is None
    assert live_champion_of({}, deployment("1.0.0")) is None


def cc_spec(**fields: object) -> ChampionChallengerSpec:
    return ChampionChallengerSpec.model_validate(
        {
            "targetRef": {"name": "fraud"},
            "strategy": {"type": "canary", "steps": [10]},
            "gates": [{"name": "accuracy", "type": "accuracy"}],
            **fields,
        }
    )


def plan(topology: Topology, provider: str = "router") -> dict[tuple[str, str], dict]:
    traffic: dict[str, object] = {"provider": provider}
    if provider == "gatewayAPI":
        traffic["parentRefs"] = [{"name": "public"}]
    spec = cc_spec(traffic=traffic)
    made = plan_objects(cc_name="gate", cc_uid="uid-1", namespace="risk", target="fraud",
                        spec=spec, md_spec=MD_SPEC, topology=topology,
                        serving_image="img")  # fmt: skip
    return {(o["kind"], o["metadata"]["name"]): o for o in made.apply}, made.delete


def test_a_challenge_adds_the_challenger_its_services_and_the_router_all_owned_by_the_cc() -> None:
    objects, delete = plan(Topology(V1, V2, 10, 0))
    assert set(objects) == {
        ("Service", "fraud-champion"),
        ("Service", "fraud-challenger"),
        ("Deployment", "fraud-challenger"),
        ("ConfigMap", "fraud-router"),
        ("Deployment", "fraud-router"),
        ("PodDisruptionBudget", "fraud-router"),
    }
    assert delete == []
    for manifest in objects.values():
        (owner,) = manifest["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["uid"]) == ("ChampionChallenger", "uid-1")
    challenger = objects[("Deployment", "fraud-challenger")]
    args = challenger["spec"]["template"]["spec"]["containers"][0]["args"]
    assert V2.uri in json.dumps(challenger) and "1.1.0" in args
    config = json.loads(objects[("ConfigMap", "fraud-router")]["data"]["router.json"])
    assert config["challengerWeight"] == 10 and config["revision"]


def test_without_a_challenger_it_is_deleted_and_gateway_api_gets_a_route_not_a_router() -> None:
    objects, delete = plan(Topology(V1, None, 0, 0), provider="gatewayAPI")
    assert objects[("HTTPRoute", "fraud")]["spec"]["parentRefs"] == [{"name": "public"}]
    assert ("Deployment", "fraud-router") not in objects
    assert delete == [("Deployment", "fraud-challenger")]


def test_status_shows_the_challenge_and_keeps_the_machine_state_to_resume() -> None:
    machine = Status(phase=Phase.PROGRESSING, champion=V1, challenger=V2, step=1,
                     challenger_percent=50, started_at=1_800_000_000.0,
                     message="step 2/2")  # fmt: skip
    gates = ({"name": "accuracy", "verdict": "Pending", "estimate": 0.1},)
    status = render_status(
        generation=4,
        transition=Transition(machine),
        evaluation=Evaluation(at=1_800_000_060.0, decision="Continue", gates=gates, state={"x": 1}),
        history_added=None,
        previous={},
        conditions=[],
        router_ready=True,
        approval=None,
    )
    assert (status["phase"], status["trafficPercent"], status["currentStep"]) == (
        "Progressing",
        50,
        1,
    )
    assert status["challenger"] == {"version": "1.1.0", "digest": V2.digest}
    assert status["decision"] == "Continue" and status["gates"] == [dict(gates[0])]
    assert Status.from_dict(status["machine"]) == machine
    assert Evaluation.from_status(status).state == {"x": 1}
    # The ModelDeployment controller reads the same status: champion stays v1, router in use.
    body = {"metadata": {"name": "gate"}, "spec": cc_spec().to_wire(), "status": status}
    view = challenge_view(body)
    assert (view.champion, view.challenger, view.routed) == (V1, V2, True)
    # A policy whose spec does not validate never routes the Service through its router.
    assert not challenge_view({**body, "spec": {"targetRef": {"name": "fraud"}}}).routed


def test_ready_holds_while_a_challenge_waits_and_falls_only_on_configuration_errors() -> None:
    waiting = Status(phase=Phase.AWAITING_APPROVAL, champion=V1, challenger=V2,
                     started_at=1.0, message="awaits approval")  # fmt: skip
    ready = {c.type: c.status for c in challenge_conditions(waiting, True, None)}
    assert ready["Ready"] == "True" and ready["MetricsAvailable"] == "True"
    blind = {c.type: c.status for c in challenge_conditions(waiting, True, "Prometheus down")}
    assert blind["Ready"] == "True" and blind["MetricsAvailable"] == "False"
    failed = Status(phase=Phase.FAILED, message="configuration error: spec.targetRef.name")
    broken = {c.type: c.status for c in challenge_conditions(failed, True, None)}
    assert (broken["Ready"], broken["Stalled"]) == ("False", "True")
