# ruff: noqa: RUF002, RUF003  (mathematical notation: α, θ, τ, Δ, ×, − are intended)
"""Acceptance by simulation: validity under the null at 100 looks, power, paired vs unpaired.

Each cell is ≥ 2,000 seeded runs × 100 looks, vectorised (a few seconds each). "Valid at α"
means the false-promotion (and false-rollback) rate is at most α + 2 Monte-Carlo standard errors.
The null for promotion is the challenger sitting exactly at the margin (the
worst case of the composite null), and for rollback the same point seen from the other side.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelops_operator.gating.simulate import (
    SimConfig,
    generate,
    replay_engine,
    run_modelops,
    simulate,
)

pytestmark = pytest.mark.slow

RUNS, LOOKS, ALPHA = 2000, 100, 0.05


def mc_limit(alpha: float, runs: int = RUNS) -> float:
    return alpha + 2 * math.sqrt(alpha * (1 - alpha) / runs)


def at_margin(**kw) -> SimConfig:
    base = dict(runs=RUNS, looks=LOOKS, alpha=ALPHA, margin_ratio=1.5)
    base.update(kw)
    pa = base.get("champion_error_rate", 0.005)
    base.setdefault("challenger_error_rate", pa * base["margin_ratio"])
    return SimConfig(**base)


@pytest.mark.parametrize(
    ("label", "cfg"),
    [
        ("rare errors 0.5%, 10% split, 300/min", at_margin(seed=11, split=(0.1,))),
        (
            "low traffic: 30 requests/min on the challenger, 10% split",
            at_margin(seed=12, split=(0.1,), interval_requests=30),
        ),
        ("low traffic: 30 requests/min each arm", at_margin(seed=13, interval_requests=30)),
        ("split ramp 5% → 25% → 50%", at_margin(seed=14, split=(0.05, 0.25, 0.5))),
        (
            "split ramp, 2% errors, 3000/min",
            at_margin(
                seed=15, split=(0.05, 0.25, 0.5), interval_requests=3000, champion_error_rate=0.02
            ),
        ),
        (
            "non-rare 10% errors (Bernoulli, conservative)",
            at_margin(seed=16, champion_error_rate=0.10),
        ),
    ],
)
def test_error_gate_false_decisions_at_the_margin(label: str, cfg: SimConfig) -> None:
    out = simulate(cfg).summary()
    assert out["modelops"]["promote"] <= mc_limit(ALPHA), label
    assert out["modelops"]["rollback"] <= mc_limit(ALPHA), label
    # The baseline the issue complains about really does inflate.
    assert out["naive_repeated"]["promote"] > 0.10, label


@pytest.mark.parametrize(
    ("label", "cfg"),
    [
        (
            "accuracy split, even arms, 300/min",
            SimConfig(
                runs=RUNS,
                looks=LOOKS,
                seed=21,
                errors=False,
                champion_accuracy=0.9,
                challenger_accuracy=0.89,
            ),
        ),
        (
            "accuracy split, 30/min on the challenger",
            SimConfig(
                runs=RUNS,
                looks=LOOKS,
                seed=22,
                errors=False,
                split=(0.1,),
                interval_requests=30,
                champion_accuracy=0.9,
                challenger_accuracy=0.89,
            ),
        ),
        (
            "accuracy paired shadow, 30/min",
            SimConfig(
                runs=RUNS,
                looks=LOOKS,
                seed=23,
                errors=False,
                mode="shadow",
                interval_requests=30,
                champion_accuracy=0.9,
                challenger_accuracy=0.89,
            ),
        ),
        (
            "accuracy paired shadow, 300/min, 3% discordance",
            SimConfig(
                runs=RUNS,
                looks=LOOKS,
                seed=24,
                errors=False,
                mode="shadow",
                discordance=0.03,
                champion_accuracy=0.9,
                challenger_accuracy=0.89,
            ),
        ),
        (
            "two gates (errors + accuracy), ramp",
            SimConfig(
                runs=RUNS,
                looks=LOOKS,
                seed=25,
                split=(0.05, 0.25, 0.5),
                challenger_error_rate=0.0075,
                champion_accuracy=0.9,
                challenger_accuracy=0.89,
            ),
        ),
    ],
)
def test_accuracy_gate_false_decisions_at_the_margin(label: str, cfg: SimConfig) -> None:
    out = simulate(cfg).summary()["modelops"]
    assert out["promote"] <= mc_limit(ALPHA), label
    assert out["rollback"] <= mc_limit(ALPHA), label


@settings(max_examples=5, deadline=None, derandomize=True)
@given(
    base_rate=st.sampled_from([0.002, 0.005, 0.02, 0.05]),
    challenger_per_look=st.sampled_from([20, 60, 300, 1000]),
    split=st.lists(st.sampled_from([0.05, 0.1, 0.25, 0.5]), min_size=1, max_size=3),
    margin=st.sampled_from([1.2, 1.5, 2.0]),
    alpha=st.sampled_from([0.05, 0.1]),
    seed=st.integers(0, 2**16),
)
def test_property_false_promotion_bounded_for_any_scenario(
    base_rate, challenger_per_look, split, margin, alpha, seed
) -> None:
    """Whatever the base rate, traffic, split schedule, margin and alpha: P(false promote) ≤ α."""
    cfg = SimConfig(
        runs=RUNS,
        looks=LOOKS,
        seed=seed,
        split=tuple(split),
        interval_requests=challenger_per_look,
        champion_error_rate=base_rate,
        challenger_error_rate=base_rate * margin,
        margin_ratio=margin,
        alpha=alpha,
    )
    res = run_modelops(cfg, generate(cfg))
    assert np.mean(res.outcome == 1) <= mc_limit(alpha)
    assert np.mean(res.outcome == -1) <= mc_limit(alpha)


def test_power_twice_the_error_rate_at_300_per_minute() -> None:
    # Canary at 10%: 300 requests/min on the challenger, 2,700 on the champion, 0.5% errors.
    cfg = SimConfig(
        runs=RUNS,
        looks=LOOKS,
        seed=31,
        split=(0.1,),
        interval_requests=300,
        champion_error_rate=0.005,
        challenger_error_rate=0.01,
    )
    out = simulate(cfg).summary()["modelops"]
    assert out["rollback"] >= 0.80
    assert out["promote"] <= 0.01


def test_power_two_points_less_accuracy_at_300_per_minute() -> None:
    # Within 4 hours (the issue asks 24): betting pays for its exactness at small samples with
    # a slower start than the plug-in mSPRT it replaced (77 % at 100 looks).
    cfg = SimConfig(
        runs=RUNS,
        looks=240,
        seed=32,
        errors=False,
        interval_requests=300,
        champion_accuracy=0.9,
        challenger_accuracy=0.88,
    )
    out = simulate(cfg).summary()["modelops"]
    assert out["rollback"] >= 0.80
    assert out["promote"] <= 0.01


@pytest.mark.parametrize("challenger_accuracy", [0.90, 0.88])
def test_paired_shadow_decides_at_least_three_times_faster(challenger_accuracy) -> None:
    base = dict(
        runs=RUNS,
        looks=LOOKS,
        seed=33,
        errors=False,
        mode="shadow",
        interval_requests=300,
        champion_accuracy=0.9,
        challenger_accuracy=challenger_accuracy,
        discordance=0.05,
    )
    data = generate(SimConfig(**base))  # the same shadow data for both tests
    paired = run_modelops(SimConfig(**base), data).summary()
    unpaired = run_modelops(SimConfig(**base, paired=False), data).summary()
    assert paired["undecided"] <= 0.01
    assert unpaired["median_looks"] >= 3 * paired["median_looks"]


def test_vectorised_simulation_is_the_engine() -> None:
    """evaluate() with JSON-persisted state makes the same decision at the same look."""
    for cfg in (
        SimConfig(
            runs=4,
            looks=40,
            seed=41,
            split=(0.05, 0.25, 0.5),
            interval_requests=600,
            challenger_error_rate=0.0125,
            champion_accuracy=0.9,
            challenger_accuracy=0.9,
        ),
        SimConfig(
            runs=4,
            looks=40,
            seed=42,
            errors=False,
            mode="shadow",
            champion_accuracy=0.9,
            challenger_accuracy=0.885,
        ),
    ):
        data = generate(cfg)
        res = run_modelops(cfg, data)
        for i in range(cfg.runs):
            outcome, look, _ = replay_engine(cfg, data, i)
            assert (outcome, look) == (res.outcome[i], res.look[i])
        assert np.any(res.outcome != 0)  # the comparison covers decisions, not only waiting
