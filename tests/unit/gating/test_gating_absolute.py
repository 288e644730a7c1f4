# ruff: noqa: RUF002, RUF003  (mathematical notation: α, θ, τ, Δ, ×, − are intended)
"""absoluteMargin: rate gates that can pass while neither model has events, without losing the
false-promotion guarantee, and without rolling back more readily than the ratio test alone."""

from __future__ import annotations

import math

import numpy as np
import pytest

from modelops_operator.gating import Action, GateConfig, Traffic, betting, evaluate, plan_gate
from modelops_operator.gating.simulate import SimConfig, generate, replay_engine, run_modelops

PER_LOOK = 1000  # requests per arm per one-minute look


def _looks_until_decision(gate: dict, rate_a: float, rate_b: float, looks: int = 40, seed: int = 0):
    """Run evaluate() look by look on seeded Bernoulli counts; (action, look)."""
    rng = np.random.default_rng(seed)
    counts = {"champion": {"requests": 0, "errors": 0}, "challenger": {"requests": 0, "errors": 0}}
    state = None
    for t in range(1, looks + 1):
        for arm, p in (("champion", rate_a), ("challenger", rate_b)):
            counts[arm]["requests"] += PER_LOOK
            counts[arm]["errors"] += int(rng.binomial(PER_LOOK, p))
        d = evaluate([gate], counts, 60 * t, state)
        state = d.state.to_dict()
        if d.action is not Action.WAIT:
            return d.action, t, d
    return Action.WAIT, looks, d


@pytest.mark.parametrize(("absolute", "max_looks"), [(0.001, 8), (0.002, 5), (0.005, 3), (0.01, 2)])
def test_zero_errors_on_both_arms_pass(absolute: float, max_looks: int) -> None:
    gate = {"name": "errors", "type": "errorRate", "margin": 0.2, "absoluteMargin": absolute}
    action, look, d = _looks_until_decision(gate, 0.0, 0.0)
    assert action is Action.PROMOTE and look <= max_looks
    assert "difference upper <" in d.gates[0].message
    # The first interval only seeds the guess of the champion's rate; then ≈ 5 / absoluteMargin
    # challenger requests with no events.
    assert look * PER_LOOK >= 4.8 / absolute


def test_default_absolute_margin_for_error_gates_and_off_without_it() -> None:
    gate = {"name": "errors", "type": "errorRate", "margin": 0.2}
    assert GateConfig.from_dict(gate).absolute_margin == 0.001
    assert _looks_until_decision(gate, 0.0, 0.0)[0] is Action.PROMOTE
    off = {**gate, "absoluteMargin": 0}
    action, _, d = _looks_until_decision(off, 0.0, 0.0, looks=10)
    assert action is Action.WAIT and "difference" not in d.gates[0].message  # the old behaviour


def test_config_parsing_and_fingerprint() -> None:
    base = {"name": "e", "type": "errorRate", "margin": 0.2}
    snake = GateConfig.from_dict({**base, "absolute_margin": 0.005})
    camel = GateConfig.from_dict({**base, "absoluteMargin": 0.005})
    assert snake == camel and snake.effective_absolute_margin == 0.005
    assert camel.fingerprint() != GateConfig.from_dict(base).fingerprint()
    assert GateConfig.from_dict({"name": "p", "type": "prometheus"}).absolute_margin is None
    assert GateConfig.from_dict({"name": "a", "type": "accuracy"}).absolute_margin is None
    with pytest.raises(ValueError, match="absoluteMargin"):
        GateConfig.from_dict({"name": "a", "type": "accuracy", "absoluteMargin": 0.01})
    with pytest.raises(ValueError, match="absoluteMargin"):
        GateConfig.from_dict({**base, "absoluteMargin": 1.5})


def test_clearly_worse_challenger_still_rolls_back() -> None:
    gate = {"name": "errors", "type": "errorRate", "margin": 0.2, "absoluteMargin": 0.001}
    action, look, d = _looks_until_decision(gate, 0.005, 0.02, seed=3)
    assert action is Action.ROLLBACK and look <= 10
    assert d.gates[0].verdict == "Fail" and d.gates[0].statistic["absoluteFailed"]


def test_relatively_worse_but_within_tolerance_does_not_roll_back() -> None:
    """Champion 0 errors, challenger 0.03%: the ratio alone would roll back (all events are the
    challenger's); the policy says up to +0.1 points is fine, so it must not."""
    gate = {"name": "errors", "type": "errorRate", "margin": 0.2, "absoluteMargin": 0.001}
    action, _, _ = _looks_until_decision(gate, 0.0, 0.0003, looks=30, seed=5)
    assert action is not Action.ROLLBACK


@pytest.mark.parametrize("side", ["below", "above"])
def test_the_betting_e_process_at_the_true_difference_stays_below_one_over_alpha(side) -> None:
    """Both arms' rates move together (a burst, a daily swing) and the split ramps: at the
    true difference, neither side's e-value reaches 1/alpha at any of 60 looks in more than
    alpha of the runs (Ville's inequality, checked against the world, not against itself)."""
    rng = np.random.default_rng(7 if side == "below" else 8)
    runs, alpha, diff = 2000, 0.05, 0.002
    wealth = betting.Wealth.start(betting.nulls_for(diff, diff), (runs,))
    reached = np.zeros(runs, bool)
    for look in range(60):
        base = 0.2 if look in (3, 4) else 0.004 + 0.003 * math.sin(look / 5)
        share = 0.05 if look < 10 else 0.25 if look < 30 else 0.5
        n_a = rng.poisson(2000 * (1 - share), runs)
        n_b = rng.poisson(2000 * share, runs)
        betting.update_two_arms(
            wealth, n_a, rng.binomial(n_a, base), n_b, rng.binomial(n_b, base + diff)
        )
        below, above = wealth.log_e()
        reached |= (below[:, 0] if side == "below" else above[:, 1]) >= math.log(1 / alpha)
    assert np.mean(reached) <= alpha + 2 * math.sqrt(alpha * (1 - alpha) / runs)


@pytest.mark.parametrize(
    ("rate_a", "split", "per_look"),
    [(0.0, (0.5,), 1000.0), (0.001, (0.5,), 1000.0), (0.0005, (0.1,), 3000.0)],
)
def test_false_promotion_bounded_when_worse_than_both_margins(rate_a, split, per_look) -> None:
    """Challenger exactly at max(1.2 × champion, champion + 0.1 points) — the worst case of the
    null — looked at every interval for 100 looks: false promotions ≤ alpha + 2 SE."""
    runs, alpha = 1500, 0.05
    rate_b = max(1.2 * rate_a, rate_a + 0.001)
    cfg = SimConfig(
        runs=runs,
        looks=100,
        seed=11,
        interval_requests=per_look,
        split=split,
        champion_error_rate=rate_a,
        challenger_error_rate=rate_b,
        margin_ratio=1.2,
        absolute_margin=0.001,
        alpha=alpha,
    )
    promoted = float(np.mean(run_modelops(cfg, generate(cfg)).outcome == 1))
    assert promoted <= alpha + 2 * math.sqrt(alpha * (1 - alpha) / runs)


def test_vectorised_simulation_is_the_engine_with_absolute_margin() -> None:
    for rate_a, rate_b, seed in ((0.0, 0.0, 1), (0.002, 0.012, 2), (0.001, 0.0015, 3)):
        cfg = SimConfig(
            runs=3,
            looks=25,
            seed=seed,
            interval_requests=800,
            split=(0.5,),
            champion_error_rate=rate_a,
            challenger_error_rate=rate_b,
            margin_ratio=1.2,
            absolute_margin=0.001,
        )
        data = generate(cfg)
        res = run_modelops(cfg, data)
        for i in range(cfg.runs):
            assert replay_engine(cfg, data, i)[:2] == (res.outcome[i], res.look[i])


def test_planner_is_sensible_for_zero_event_arms() -> None:
    gate = GateConfig.from_dict({"name": "errors", "type": "errorRate", "margin": 0.2})
    off = GateConfig.from_dict({"name": "errors", "type": "errorRate", "absoluteMargin": 0})
    traffic = Traffic(10.0, 10.0, champion_rate=0.5 / 4584)  # 0 errors seen: half a pseudo-event
    plan = plan_gate(gate, traffic)
    assert plan.decision == "promote" and plan.samples is not None
    assert 4_000 < plan.samples < 15_000  # ≈ 4.9/0.001 if the rate is truly ~0
    old = plan_gate(off, traffic).samples
    assert old is not None and old > 100 * plan.samples
