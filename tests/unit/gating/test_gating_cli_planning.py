# ruff: noqa: RUF003  (mathematical notation: α, θ, τ, Δ, ×, − are intended)
"""`modelops gating simulate|plan` and the planning helper."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from modelops_operator.cli import build_parser, main
from modelops_operator.gating import GateConfig, Traffic, plan_gate
from modelops_operator.gating.simulate import SimConfig, generate, run_modelops

KEYS = {"promote", "rollback", "undecided", "median_looks"}


def test_simulate_json_shape(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(
        [
            "gating",
            "simulate",
            "--json",
            "--runs",
            "200",
            "--looks",
            "30",
            "--seed",
            "1",
            "--interval-requests",
            "300",
            "--split",
            "0.1",
            "--champion-error-rate",
            "0.005",
            "--challenger-error-rate",
            "0.02",
            "--margin-ratio",
            "1.5",
            "--alpha",
            "0.05",
            "--mode",
            "split",
            "--champion-accuracy",
            "0.9",
            "--challenger-accuracy",
            "0.9",
            "--accuracy-margin",
            "1",
        ]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"modelops", "flagger_threshold", "naive_repeated"}
    for method in out.values():
        assert set(method) == KEYS
        assert method["promote"] + method["rollback"] + method["undecided"] == pytest.approx(1)
    assert out["modelops"]["rollback"] > 0.9  # 4× the champion's error rate


def test_simulate_is_seeded(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["gating", "simulate", "--json", "--runs", "100", "--looks", "20", "--seed", "7"]
    main(args)
    first = capsys.readouterr().out
    main(args)
    assert capsys.readouterr().out == first


def test_simulate_table_and_ramp(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "gating",
                "simulate",
                "--runs",
                "100",
                "--looks",
                "12",
                "--split",
                "5,25,50",
                "--mode",
                "shadow",
                "--champion-accuracy",
                "0.9",
                "--challenger-accuracy",
                "0.9",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "modelops" in text and "flagger_threshold" in text and "median looks" in text


def test_simulate_rejects_bad_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gating", "simulate", "--champion-accuracy", "0.9"]) == 2
    with pytest.raises(SystemExit):
        build_parser().parse_args(["gating", "simulate", "--split", "1.5,0"])


def test_console_script_entry_point() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from modelops_operator.cli import main; main()",
            "gating",
            "plan",
            "--json",
            "--gate",
            "accuracy",
            "--shadow",
            "--discordance",
            "0.05",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    plan = json.loads(out.stdout)
    assert plan["decision"] == "promote" and plan["unit"] == "pairs" and plan["seconds"] > 0


def test_plan_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "gating",
                "plan",
                "--challenger-rpm",
                "300",
                "--champion-rpm",
                "2700",
                "--margin",
                "0.5",
            ]
        )
        == 0
    )
    assert "promote decision is likely" in capsys.readouterr().out


def test_plan_scales_with_traffic_and_effect() -> None:
    gate = GateConfig("errors", "errorRate", margin=0.5)
    slow = plan_gate(gate, Traffic(30 / 60, 270 / 60))
    fast = plan_gate(gate, Traffic(300 / 60, 2700 / 60))
    assert slow.samples == pytest.approx(fast.samples, rel=0.01)
    assert slow.seconds == pytest.approx(10 * fast.seconds, rel=0.01)
    bad = plan_gate(gate, Traffic(5, 45), effect=2.0)
    assert bad.decision == "rollback"
    assert plan_gate(gate, Traffic(5, 45), effect=4.0).samples < bad.samples
    at_margin = plan_gate(gate, Traffic(5, 45), effect=1.5)
    assert at_margin.decision is None and at_margin.samples is None
    sup = plan_gate(
        GateConfig("errors", "errorRate", margin=0.5, test="superiority"), Traffic(5, 45)
    )
    assert sup.decision is None  # an equal challenger never proves superiority
    drift = plan_gate(GateConfig("d", "predictionDrift", margin=0.1), Traffic(5, 5))
    assert drift.samples is not None and drift.samples > 1000


def test_paired_plan_is_faster_than_unpaired() -> None:
    gate = GateConfig("acc", "accuracy", margin=0.01)
    paired = plan_gate(gate, Traffic(5, 5, paired=True, discordance=0.05))
    unpaired = plan_gate(gate, Traffic(5, 5, champion_accuracy=0.9))
    assert unpaired.samples / paired.samples > 3


@pytest.mark.slow
@pytest.mark.parametrize(
    ("cfg", "gate", "traffic", "effect"),
    [
        (
            SimConfig(runs=2000, looks=400, seed=51, split=(0.1,), challenger_error_rate=0.005),
            GateConfig("errors", "errorRate", margin=0.5),
            Traffic(300, 2700),
            None,
        ),
        (
            SimConfig(runs=2000, looks=400, seed=52, split=(0.1,), challenger_error_rate=0.01),
            GateConfig("errors", "errorRate", margin=0.5),
            Traffic(300, 2700),
            2.0,
        ),
        (
            SimConfig(
                runs=2000,
                looks=200,
                seed=53,
                errors=False,
                mode="shadow",
                champion_accuracy=0.9,
                challenger_accuracy=0.9,
            ),
            GateConfig("acc", "accuracy", margin=0.01),
            Traffic(300, 300, paired=True, discordance=0.05),
            None,
        ),
    ],
)
def test_plan_matches_simulated_time_to_decision(cfg, gate, traffic, effect) -> None:
    """The planned 80%-likely time lies between the simulated median and 90th percentile looks."""
    plan = plan_gate(gate, traffic, effect=effect)  # traffic per look, so seconds = looks
    res = run_modelops(cfg, generate(cfg))
    decided = res.look[res.outcome != 0]
    assert np.mean(res.outcome != 0) > 0.8
    median, p90 = np.percentile(decided, [50, 90])
    assert 0.7 * median <= plan.seconds <= 1.3 * p90


def test_absolute_margin_from_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    # With no errors on either side only the absolute route can decide: each challenger request
    # gains about the margin in log wealth, against log(10 bets / 0.025): about 6 / margin.
    zero = ["gating", "plan", "--gate", "errorRate", "--base-rate", "0", "--json"]
    assert main([*zero, "--absolute-margin", "0.001"]) == 0
    default = json.loads(capsys.readouterr().out)
    assert main([*zero, "--absolute-margin", "0.01"]) == 0
    wider = json.loads(capsys.readouterr().out)
    assert main([*zero, "--absolute-margin", "0"]) == 0
    ratio_only = json.loads(capsys.readouterr().out)
    assert default["samples"] == pytest.approx(6000, rel=0.1)
    assert wider["samples"] == pytest.approx(default["samples"] / 10, rel=0.1)
    assert ratio_only["samples"] is None
    assert main(["gating", "plan", "--gate", "accuracy", "--absolute-margin", "0.01"]) == 2
    assert "absoluteMargin applies to" in capsys.readouterr().err

    simulate = ["gating", "simulate", "--runs", "100", "--looks", "20", "--interval-requests",
                "1000", "--champion-error-rate", "0", "--challenger-error-rate", "0", "--json"]
    assert main([*simulate, "--absolute-margin", "0.001"]) == 0
    assert json.loads(capsys.readouterr().out)["modelops"]["promote"] == 1.0
    assert main(simulate) == 0
    assert json.loads(capsys.readouterr().out)["modelops"]["promote"] == 0.0
