"""`modelops gating replay`: counter series in, the operator's own decisions out."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from modelops_operator.challenge.replay import PolicyError, Replayer, load_policy
from modelops_operator.cli import main

T0 = 1_700_000_000.0


def policy_doc(steps: list[int] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "modelops.io/v1alpha1",
        "kind": "ChampionChallenger",
        "metadata": {"name": "fraud"},
        "spec": {
            "targetRef": {"name": "fraud"},
            "strategy": {"type": "canary", "steps": steps or [5, 25, 50]},
            "gates": [{"name": "errors", "type": "errorRate"}],
            "decision": {"interval": "1m"},
            **spec,
        },
    }


def replayer(doc: dict[str, Any] | None = None) -> Replayer:
    return Replayer(load_policy(doc or policy_doc()))


def line(run: str, t: float, series: list[dict[str, Any]]) -> str:
    return json.dumps({"run": run, "t": t, "series": series})


def closed_loop(
    rep: Replayer,
    run: str,
    *,
    per_minute: int,
    champion_rate: float,
    challenger_rate: float,
    seed: int,
    looks: int = 120,
    record: list[str] | None = None,
    delivered: float = 1.0,
) -> list[dict[str, Any]]:
    """Traffic split as the replay answers, one look a minute, until a decision. `delivered`:
    the router sends that many times the configured challenger share (1.0: routing works)."""
    rng = np.random.default_rng(seed)
    totals = {"champion": [0, 0], "challenger": [0, 0]}
    rates = {"champion": champion_rate, "challenger": challenger_rate}
    percent = 0
    answers = []
    for k in range(looks):
        to_challenger = int(rng.binomial(per_minute, delivered * percent / 100)) if k else 0
        for arm, n in (("challenger", to_challenger), ("champion", per_minute - to_challenger)):
            totals[arm][0] += n
            totals[arm][1] += int(rng.binomial(n, rates[arm]))
        series = [
            {"arm": arm, "pod": f"{arm}-0", "podStart": T0 - 3600, "requests": r, "errors": e}
            for arm, (r, e) in totals.items()
        ]
        text = line(run, T0 + 60 * k, series)
        if record is not None:
            record.append(text)
        answer = rep.answer_obj(text)
        answers.append(answer)
        percent = answer["challengerPercent"]
        if answer["decision"] != "wait":
            break
    return answers


def test_equal_arms_at_a_high_rate_are_promoted() -> None:
    answers = closed_loop(
        replayer(), "equal", per_minute=200_000, champion_rate=0.005, challenger_rate=0.005,
        seed=1,
    )
    assert answers[-1]["decision"] == "promote", answers[-1]
    assert answers[-1]["phase"] == "Promoting"
    assert answers[-1]["challengerPercent"] == 100  # the hot swap's first stage


def test_twice_the_error_rate_is_rolled_back() -> None:
    answers = closed_loop(
        replayer(), "worse", per_minute=200_000, champion_rate=0.005, challenger_rate=0.01,
        seed=2,
    )
    assert answers[-1]["decision"] == "rollback", answers[-1]
    assert answers[-1]["phase"] == "RollingBack"
    assert answers[-1]["challengerPercent"] == 0
    # A concluded run keeps answering its outcome.
    rep = replayer()
    for a in closed_loop(rep, "w", per_minute=200_000, champion_rate=0.005,
                         challenger_rate=0.01, seed=2):
        last = a
    again = rep.answer_obj(line("w", last["t"] + 60, []))
    assert (again["decision"], again["challengerPercent"]) == ("rollback", 0)


def test_challenger_percent_follows_the_policy_steps() -> None:
    answers = closed_loop(
        replayer(policy_doc([10, 30, 60])), "steps", per_minute=200_000,
        champion_rate=0.005, challenger_rate=0.005, seed=3,
    )
    progressing = [a["challengerPercent"] for a in answers if a["phase"] == "Progressing"]
    assert list(dict.fromkeys(progressing)) == [10, 30, 60]
    assert progressing == sorted(progressing)


def test_approval_required_stays_awaiting_approval() -> None:
    rep = replayer(policy_doc(approval={"required": True}))
    answers = closed_loop(rep, "appr", per_minute=200_000, champion_rate=0.005,
                          challenger_rate=0.005, seed=1, looks=60)
    waiting = [a for a in answers if a["phase"] == "AwaitingApproval"]
    assert waiting and all(a["decision"] == "wait" for a in waiting)
    assert answers[-1]["phase"] == "AwaitingApproval"
    assert answers[-1]["challengerPercent"] == 50


def deterministic(
    looks: int, change: Callable[[int, list[dict[str, Any]]], list[dict[str, Any]]] | None = None
) -> list[dict[str, Any]]:
    """Both arms 1,000 requests a minute, 0.5 % errors: evidence grows, no decision yet.

    No warm-up: these runs check that counting neither creates nor loses a request."""
    rep = replayer(policy_doc(decision={"interval": "1m", "warmUp": "0s"}))
    out = []
    for k in range(looks):
        series = [
            {"arm": "champion", "pod": "champ", "podStart": T0 - 10, "requests": 50_000 + 1000 * k,
             "errors": 250 + 5 * k},
            {"arm": "challenger", "pod": "chal", "podStart": T0 - 10, "requests": 1000 * k,
             "errors": 5 * k},
        ]
        if change is not None:
            series = change(k, series)
        out.append(rep.answer_obj(line("r", T0 + 60 * k, series)))
    rep.close()
    return out


def test_a_pod_restart_neither_creates_nor_loses_evidence() -> None:
    plain = deterministic(12)
    assert {a["decision"] for a in plain} == {"wait"}
    # Every request since the first line counted once, on both arms.
    assert "challenger 0.500% (55/11000) vs champion 0.500% (55/11000)" in plain[-1]["reason"]

    def restart_at_4(k: int, series: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if k < 4:
            return series
        # The challenger restarted between looks 3 and 4: its counters begin again at zero.
        chal = dict(series[1], podStart=T0 + 60 * 3 + 30)
        chal["requests"] -= 3000
        chal["errors"] -= 15
        return [series[0], chal]

    assert deterministic(12, restart_at_4) == plain

    def unmarked_restart(k: int, series: list[dict[str, Any]]) -> list[dict[str, Any]]:
        changed = restart_at_4(k, series)
        return [changed[0], dict(changed[1], podStart=T0 - 10)]

    # Control: a drop with the old start time reads as a lagging answer, so evidence is held.
    assert deterministic(12, unmarked_restart) != plain


def test_a_series_of_a_pod_older_than_the_challenge_counts_nothing() -> None:
    plain = deterministic(12)

    def old_pod(start: float) -> Callable[[int, list[dict[str, Any]]], list[dict[str, Any]]]:
        def change(k: int, series: list[dict[str, Any]]) -> list[dict[str, Any]]:
            if k < 3:
                return series
            # Appears at look 3 with a large history and no growth afterwards.
            extra = {"arm": "challenger", "pod": "old", "podStart": start,
                     "requests": 1_000_000, "errors": 0}
            return [*series, extra]
        return change

    assert deterministic(12, old_pod(T0 - 600)) == plain
    # Control: the same series from a pod started after the challenge counts whole.
    assert deterministic(12, old_pod(T0 + 120)) != plain


def test_interleaved_runs_stay_independent() -> None:
    alone: dict[str, list[dict[str, Any]]] = {}
    inputs: dict[str, list[str]] = {}
    for run, rate, seed in (("a", 0.005, 5), ("b", 0.01, 6)):
        inputs[run] = []
        alone[run] = closed_loop(replayer(), run, per_minute=200_000, champion_rate=0.005,
                                 challenger_rate=rate, seed=seed, looks=15, record=inputs[run])
    rep = replayer()
    together: dict[str, list[dict[str, Any]]] = {"a": [], "b": []}
    for i in range(max(map(len, inputs.values()))):
        for run in ("b", "a"):
            if i < len(inputs[run]):
                together[run].append(rep.answer_obj(inputs[run][i]))
    assert together == alone
    assert alone["a"][-1] != alone["b"][-1]


def test_a_malformed_line_gets_an_error_and_the_next_is_answered() -> None:
    rep = replayer()
    ok = [{"arm": "champion", "pod": "p", "podStart": T0, "requests": 10, "errors": 0},
          {"arm": "challenger", "pod": "q", "podStart": T0, "requests": 10, "errors": 0}]
    assert rep.answer_obj(line("r", T0, ok))["phase"] == "Progressing"
    assert "error" in rep.answer_obj("{not json")
    bad = rep.answer_obj(json.dumps({"run": "r", "t": T0 + 60, "series": [{"arm": "x"}]}))
    assert bad["run"] == "r" and "series[0].arm" in bad["error"]
    assert "errors" in rep.answer_obj(line("r", T0 + 60, [dict(ok[0], errors=11)]))["error"]
    assert "not after" in rep.answer_obj(line("r", T0, ok))["error"]
    answer = rep.answer_obj(line("r", T0 + 60, ok))
    assert "error" not in answer and answer["phase"] == "Progressing"


def test_policy_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = policy_doc()
    doc["spec"]["gates"][0]["margin"] = -1
    path = tmp_path / "cc.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert main(["gating", "replay", "--policy", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "spec.gates[0].margin" in err[0]
    drift = policy_doc()
    drift["spec"]["gates"] = [{"name": "preds", "type": "predictionDrift"}]
    with pytest.raises(PolicyError, match=r"spec.gates\[0\] \(preds\).*predictionDrift"):
        load_policy(drift)


def test_cli_reads_stdin_and_writes_one_line_per_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "cc.yaml"
    path.write_text(yaml.safe_dump(policy_doc()))
    ok = [{"arm": "champion", "pod": "p", "podStart": T0, "requests": 10, "errors": 0},
          {"arm": "challenger", "pod": "q", "podStart": T0, "requests": 10, "errors": 0}]
    text = "\n".join([line("a", T0, ok), "oops", line("b", T0, ok), line("a", T0 + 60, ok)])
    monkeypatch.setattr("sys.stdin", io.StringIO(text + "\n"))
    assert main(["gating", "replay", "--policy", str(path)]) == 0
    out = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [o.get("run") for o in out] == ["a", None, "b", "a"]
    assert "error" in out[1]
    assert {o["decision"] for o in out if "error" not in o} == {"wait"}
    assert out[0]["challengerPercent"] == 5


def test_a_router_delivering_half_the_configured_share_trips_the_sample_ratio_alarm() -> None:
    doc = policy_doc([10, 50], decision={"interval": "1m", "minDuration": "30m"})
    def split_run(run: str, delivered: float) -> list[dict[str, Any]]:
        return closed_loop(replayer(doc), run, per_minute=20_000, champion_rate=0.005,
                           challenger_rate=0.005, seed=11, looks=40, delivered=delivered)

    broken = split_run("broken", delivered=0.5)
    assert broken[-1]["decision"] == "wait"
    assert any("sample ratio mismatch" in a["reason"] for a in broken), broken[-1]
    # The same steps with working routing: the split changes at every step, no alarm.
    working = split_run("working", delivered=1.0)
    assert not any("sample ratio mismatch" in a["reason"] for a in working)
    assert {a["challengerPercent"] for a in working} >= {10, 50}
