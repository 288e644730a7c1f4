"""Fault campaign: the operator SIGKILLed at random moments of live challenges.

Challenges follow one another on the real node with the demo's load running: a challenger as
good as the champion (to be promoted, every other one behind an approval) and a worse one (to
be rolled back), each under a new version label. While each runs, the operator is SIGKILLed at
random moments (whatever it is doing: a step, an evaluation, a swap, waiting for approval) and
started again at once; every few trials the API server is restarted or the Prometheus pod is
deleted instead. Each trial
checks that nothing was rewound (phase, step, history), and the campaign that no challenge
was decided twice or stuck and that no client request failed.

Too long for every CI run (about 20-30 min for 50 trials): `make campaign`, which sets
MODELOPS_FAULT_CAMPAIGN to the number of trials; without it the module is skipped.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import time
from typing import Any

import pytest

from tests.harness.operator_process import OperatorProcess

from ..operator_fixtures import crds, get_json, kubectl_modelops, operator_identity, wait_until  # noqa: F401 - fixtures
from .test_challenge import (  # noqa: F401 - models is a fixture
    TARGET,
    assert_no_failed_request,
    cc_status,
    challenge,
    deploy,
    models,
    start_load,
)

TRIALS = int(os.environ.get("MODELOPS_FAULT_CAMPAIGN", "0") or 0)
SEED = int(os.environ.get("MODELOPS_FAULT_CAMPAIGN_SEED", "17"))
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(3600),  # 50 trials take about 20 min; pytest's default is 15
    pytest.mark.skipif(
        TRIALS <= 0,
        reason="the fault campaign runs with `make campaign` (MODELOPS_FAULT_CAMPAIGN)",
    ),
]
# A phase never goes back to an earlier one of its path within one challenge.
RANK = {"Idle": 0, "Progressing": 1, "AwaitingApproval": 2, "Promoting": 3, "RollingBack": 3,
        "Promoted": 4, "RolledBack": 4, "Failed": 4}  # fmt: skip
TERMINAL = {"Promoted", "RolledBack", "Failed"}
CHALLENGE_TIMEOUT = 600  # a challenge not decided by then is stuck
# Of every 10 trials, the 5th restarts the API server and the 10th Prometheus; the rest kill
# the operator.
FAULT_CYCLE = 10
FAULTS = {5: "apiserver", 0: "prometheus"}


@dataclasses.dataclass
class Trial:
    challenge: int
    fault: str
    phase: str  # when the fault struck
    step: int
    traffic: int
    rewound: str = ""


def snapshot(status: dict[str, Any]) -> dict[str, Any]:
    history = status.get("history") or []
    return {"phase": status.get("phase", ""), "step": int(status.get("currentStep") or 0),
            "traffic": int(status.get("trafficPercent") or 0),
            "decided": history[-1]["version"] if history else "",
            "version": (status.get("challenger") or {}).get("version", "")}  # fmt: skip


def decision_of(status: dict[str, Any], version: str) -> str:
    """The outcome the history records for `version`, or "" while it is undecided."""
    history = status.get("history") or []
    return next((h["action"] for h in reversed(history) if h["version"] == version), "")


def rewound(before: dict[str, Any], after: dict[str, Any]) -> str:
    """What went back between two looks at one challenge ("" when nothing did)."""
    if before["phase"] in TERMINAL | {"Idle"}:
        # Between challenges: the next one starting (any phase) is progress; only the last
        # decision must stay.
        return "" if after["decided"] in (before["decided"], after["version"], "") or (
            after["phase"] in TERMINAL
        ) else f"last decision {before['decided']} -> {after['decided']}"
    # A challenger that appears (the challenge starting) is progress; one replaced is not.
    if before["version"] and after["version"] != before["version"] and (
        after["phase"] not in TERMINAL
    ):
        return f"challenger {before['version']} -> {after['version']}"
    if RANK.get(after["phase"], 0) < RANK.get(before["phase"], 0):
        return f"phase {before['phase']} -> {after['phase']}"
    if after["phase"] == before["phase"] and after["step"] < before["step"]:
        return f"step {before['step']} -> {after['step']}"
    # The challenger being decided (Promoting -> Promoted clears it) is progress; any other
    # change of the last decision is not.
    if before["decided"] and after["decided"] not in (before["decided"], before["version"]) and (
        not after["version"]
    ):
        return f"last decision {before['decided']} -> {after['decided']}"
    return ""


def kill_and_restart(operator: OperatorProcess) -> None:
    operator.process.send_signal(signal.SIGKILL)
    operator.process.wait(10)
    operator.restart()


def restart_prometheus(cluster: Any) -> None:
    cluster.kubectl("delete", "pod", "-n", "monitoring", "-l", "app.kubernetes.io/name=prometheus",
                    "--wait=false")  # fmt: skip


def set_approval(cluster: Any, namespace: str, required: bool) -> None:
    cluster.kubectl("patch", "-n", namespace, f"cc/{TARGET}-gate", "--type=merge", "-p",
                    json.dumps({"spec": {"approval": {"required": required}}}))  # fmt: skip


def test_fault_campaign(
    real_cluster: Any,
    namespace: str,
    challenge_operator: OperatorProcess,
    models: Any,  # noqa: F811 - the fixture imported above
) -> None:
    cluster = real_cluster.cluster
    rng = random.Random(SEED)
    deploy(cluster, namespace, models["champion"])
    load = start_load(real_cluster, namespace)
    trials: list[Trial] = []
    outcomes: list[tuple[str, str, str]] = []  # (version, expected, decided)
    started = time.monotonic()
    number = 0
    try:
        while len(trials) < TRIALS:
            number += 1
            good = number % 2 == 1
            base = models["better"] if good else models["worse"]
            model = dataclasses.replace(base, version=f"{base.version}-c{number}")
            set_approval(cluster, namespace, good and number % 4 == 1)
            challenge(cluster, namespace, model)
            deadline = time.monotonic() + CHALLENGE_TIMEOUT
            while not decision_of(status := cc_status(cluster, namespace), model.version):
                assert time.monotonic() < deadline, f"challenge {number} stuck: {status}"
                if status.get("phase") == "AwaitingApproval" and rng.random() < 0.5:
                    kubectl_modelops(cluster, namespace, "approve", f"{TARGET}-gate")
                if len(trials) < TRIALS:  # after the last, the challenge finishes on its own
                    trials.append(strike(cluster, namespace, challenge_operator, number,
                                         len(trials) + 1))  # fmt: skip
                time.sleep(rng.uniform(3, 20))
            decided = decision_of(status, model.version)
            outcomes.append((model.version, "Promoted" if good else "RolledBack", decided))
            print(f"[campaign] challenge {number} ({model.version}): {decided}", flush=True)
    finally:
        final = load.stop()
    struck: dict[str, int] = {}
    for trial in trials:
        struck[trial.phase] = struck.get(trial.phase, 0) + 1
    print(f"[campaign] {len(trials)} trials over {number} challenges in "
          f"{time.monotonic() - started:.0f} s; faults struck during {struck}; requests "
          f"{final['requests']}; labels {final['feedback']}", flush=True)
    assert [t for t in trials if t.rewound] == []
    # Each challenge decided once (a second decision would be a second history entry for its
    # version), the way its challenger deserved.
    assert [(v, e) for v, e, d in outcomes if d != e] == []
    history = cc_status(cluster, namespace)["history"]
    versions = [h["version"] for h in history]
    assert len(versions) == len(set(versions)), f"a version decided twice: {versions}"
    assert_no_failed_request(cluster, namespace, final)
    mdep = get_json(cluster, "-n", namespace, f"mdep/{TARGET}")["status"]
    assert mdep["champion"]["version"] == [v for v, e, _ in outcomes if e == "Promoted"][-1]


def strike(cluster: Any, namespace: str, operator: OperatorProcess, challenge_number: int,
           number: int) -> Trial:
    """One fault now, whatever the challenge is doing; then check nothing went back."""
    before = snapshot(cc_status(cluster, namespace))
    fault = FAULTS.get(number % FAULT_CYCLE, "operator")
    if fault == "operator":
        kill_and_restart(operator)
    elif fault == "apiserver":
        away = cluster.restart_apiserver()
        print(f"[campaign] the API server was away {away:.1f} s", flush=True)
    else:
        restart_prometheus(cluster)
    time.sleep(6)  # the restarted operator's first ticks
    after = snapshot(cc_status(cluster, namespace))
    trial = Trial(challenge_number, fault, before["phase"], before["step"], before["traffic"],
                  rewound(before, after))  # fmt: skip
    print(f"[campaign] trial {number:>2}/{TRIALS} challenge {challenge_number} {fault:<10} "
          f"during "
          f"{before['phase']} step {before['step']} ({before['traffic']} %): "
          f"{trial.rewound or 'nothing went back'}", flush=True)
    return trial
