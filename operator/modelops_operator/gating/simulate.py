# ruff: noqa: RUF002, RUF003  (mathematical notation: α, θ, τ, Δ, ×, − are intended)
"""Seeded, vectorised simulation of the gating engine and of two baselines on the same data.

The generator emits exactly what Prometheus would give per look-interval and arm: request
counts (Poisson around the configured traffic, so the realised split varies), error counts
(binomial), labelled feedback (binomial) and, in shadow mode, paired outcomes (multinomial over
both / champion-only / challenger-only / neither correct, with a given discordance).

Methods, run on identical data (common random numbers):

* ``modelops`` — the engine's rule, vectorised over runs with the same functions
  (:mod:`.rateratio`, :mod:`.betting`) and the same stickiness, alpha split and
  exposure rule as :func:`.engine.evaluate` (``replay_engine`` checks they agree exactly);
* ``flagger_threshold`` — Flagger-style: every look, the challenger's *interval* error rate is
  compared with an absolute threshold (and its interval accuracy with the champion's known
  accuracy minus the margin); a look outside counts as a failed check; roll back at
  ``flagger_failures`` failed checks, promote after ``flagger_iterations`` passing looks;
* ``naive_repeated`` — a fixed-horizon one-sided z-test (Wald on the log rate ratio, difference
  of proportions for accuracy) at level alpha, re-run on the cumulative data at every look.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import norm

from . import betting, mixture, rateratio
from .config import DecisionPolicy, GateConfig
from .gates import accuracy_nulls
from .rategate import absolute_nulls

METHODS = ("modelops", "flagger_threshold", "naive_repeated")


@dataclass(frozen=True)
class SimConfig:
    """One simulated scenario (one look = one evaluation interval)."""

    runs: int = 2000
    looks: int = 100
    seed: int = 0
    interval_requests: float = 300.0  # challenger requests per look (at the last split step)
    split: tuple[float, ...] = (0.5,)  # challenger share(s); a list steps through equal thirds…
    mode: str = "split"  # split | shadow
    champion_error_rate: float = 0.005
    challenger_error_rate: float = 0.005
    margin_ratio: float = 1.5  # challenger's error rate may be at most this × the champion's
    absolute_margin: float = 0.0  # …or at most this much above it (0: ratio only, as in docs)
    alpha: float = 0.05
    errors: bool = True  # include the error-rate gate
    champion_accuracy: float | None = None  # set both accuracies to add an accuracy gate
    challenger_accuracy: float | None = None
    accuracy_margin_points: float = 1.0
    label_fraction: float = 1.0
    discordance: float = 0.05  # shadow: P(exactly one model right) on a labelled pair
    paired: bool = True  # shadow: use the paired test (False: unpaired test on shadow data)
    min_samples: int = 0  # per arm before promotion (the engine's minSamples)
    flagger_max_error_rate: float | None = None  # default: champion rate × margin_ratio
    flagger_failures: int = 2
    flagger_iterations: int = 10

    def __post_init__(self) -> None:
        if self.mode not in ("split", "shadow"):
            raise ValueError("mode must be split or shadow")
        if any(not 0 < w < 1 for w in self.split):
            raise ValueError("split shares must be in (0, 1)")
        if (self.champion_accuracy is None) != (self.challenger_accuracy is None):
            raise ValueError("give both accuracies or neither")
        if not self.errors and self.champion_accuracy is None:
            raise ValueError("nothing to gate: enable errors or give accuracies")

    @property
    def has_accuracy(self) -> bool:
        return self.champion_accuracy is not None

    def gates(self) -> list[GateConfig]:
        """The engine gate configs this scenario corresponds to."""
        out = []
        if self.errors:
            m, am = self.margin_ratio - 1.0, self.absolute_margin
            out.append(GateConfig("errors", "errorRate", margin=m, absolute_margin=am))
        if self.has_accuracy:
            out.append(GateConfig("accuracy", "accuracy", margin=self.accuracy_margin_points / 100))
        return out

    def policy(self) -> DecisionPolicy:
        return DecisionPolicy(alpha=self.alpha, min_samples=self.min_samples, max_duration=None)


@dataclass
class SimData:
    """Per-look increments, arrays of shape (runs, looks)."""

    n_a: np.ndarray
    n_b: np.ndarray
    y_a: np.ndarray
    y_b: np.ndarray
    lab_a: np.ndarray | None = None
    cor_a: np.ndarray | None = None
    lab_b: np.ndarray | None = None
    cor_b: np.ndarray | None = None
    pairs: np.ndarray | None = None  # (runs, looks, 4): both, A only, B only, neither


def split_schedule(cfg: SimConfig) -> np.ndarray:
    """Challenger share at each look: the listed shares in equal consecutive blocks."""
    blocks = np.array_split(np.arange(cfg.looks), len(cfg.split))
    w = np.empty(cfg.looks)
    for share, idx in zip(cfg.split, blocks, strict=True):
        w[idx] = share
    return w


def generate(cfg: SimConfig) -> SimData:
    rng = np.random.default_rng(cfg.seed)
    r, looks = cfg.runs, cfg.looks
    if cfg.mode == "shadow":
        n = rng.poisson(cfg.interval_requests, (r, looks)).astype(float)
        n_a, n_b = n, n.copy()
    else:
        w = split_schedule(cfg)
        total = cfg.interval_requests / cfg.split[-1]
        n_a = rng.poisson(total * (1 - w), (r, looks)).astype(float)
        n_b = rng.poisson(total * w, (r, looks)).astype(float)
    y_a = rng.binomial(n_a.astype(np.int64), cfg.champion_error_rate).astype(float)
    y_b = rng.binomial(n_b.astype(np.int64), cfg.challenger_error_rate).astype(float)
    data = SimData(n_a, n_b, y_a, y_b)
    if not cfg.has_accuracy:
        return data
    acc_a, acc_b = float(cfg.champion_accuracy), float(cfg.challenger_accuracy)  # type: ignore[arg-type]
    if cfg.mode == "shadow":
        d = acc_b - acc_a
        p_b_only, p_a_only = (cfg.discordance + d) / 2, (cfg.discordance - d) / 2
        p_both = acc_a - p_a_only
        probs = np.array([p_both, p_a_only, p_b_only, 1 - p_both - p_a_only - p_b_only])
        if np.any(probs < -1e-12):
            raise ValueError("discordance too small for this accuracy difference")
        labelled = rng.binomial(n_a.astype(np.int64), cfg.label_fraction)
        pairs = rng.multinomial(labelled, np.clip(probs, 0, 1) / np.clip(probs, 0, 1).sum())
        data.pairs = pairs.astype(float)
        data.lab_a = data.lab_b = labelled.astype(float)
        data.cor_a = (pairs[..., 0] + pairs[..., 1]).astype(float)
        data.cor_b = (pairs[..., 0] + pairs[..., 2]).astype(float)
    else:
        lab_a = rng.binomial(n_a.astype(np.int64), cfg.label_fraction)
        lab_b = rng.binomial(n_b.astype(np.int64), cfg.label_fraction)
        data.lab_a, data.lab_b = lab_a.astype(float), lab_b.astype(float)
        data.cor_a = rng.binomial(lab_a, acc_a).astype(float)
        data.cor_b = rng.binomial(lab_b, acc_b).astype(float)
    return data


@dataclass
class MethodResult:
    """Per-run outcome: +1 promote, −1 rollback, 0 undecided; look of the decision (1-based)."""

    outcome: np.ndarray
    look: np.ndarray

    def summary(self) -> dict[str, Any]:
        decided = self.outcome != 0
        looks = self.look[decided]
        return {
            "promote": float(np.mean(self.outcome == 1)),
            "rollback": float(np.mean(self.outcome == -1)),
            "undecided": float(np.mean(~decided)),
            "median_looks": float(np.median(looks)) if looks.size else None,
        }


def _record(res: MethodResult, t: int, promote: np.ndarray, rollback: np.ndarray) -> None:
    open_ = res.outcome == 0
    rb = open_ & rollback
    pr = open_ & promote & ~rollback
    res.outcome[rb], res.look[rb] = -1, t + 1
    res.outcome[pr], res.look[pr] = 1, t + 1


def _naive_accuracy_stats(cfg: SimConfig, c: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    """(Δ̂, V) of the fixed-horizon baseline, from cumulative accuracy counts."""
    if cfg.mode == "shadow" and cfg.paired:
        n = c["pairs"].sum(axis=-1)
        return mixture.paired_proportions(c["pairs"][:, 2], c["pairs"][:, 1], n)
    return mixture.unpaired_proportions(c["cor_a"], c["lab_a"], c["cor_b"], c["lab_b"])


def run_modelops(cfg: SimConfig, data: SimData) -> MethodResult:
    """The engine's rule on every run at once, with the engine's own functions."""
    r, looks = data.n_a.shape
    res = MethodResult(np.zeros(r, int), np.zeros(r, int))
    gates = cfg.gates()
    k = len(gates)
    a_p, a_h = cfg.alpha, cfg.alpha / k
    thr_p, thr_h = math.log(1 / a_p), math.log(1 / a_h)
    cum = {key: np.zeros(r) for key in ("n_a", "n_b", "y_a", "y_b")}
    delta = cfg.absolute_margin if cfg.errors else 0.0
    thr_ps = {g.name: thr_p for g in gates}
    if delta > 0:  # the engine's union bound: the ratio route gets alpha/2 (rategate.py)
        thr_ps["errors"] = math.log(2 / a_p)
    abs_p, abs_f = np.zeros(r, bool), np.zeros(r, bool)
    max_p = {g.name: np.full(r, -np.inf) for g in gates}
    max_h = {g.name: np.full(r, -np.inf) for g in gates}
    if cfg.errors:
        j_ni = rateratio.grid_index(math.log(cfg.margin_ratio), round_up=False)
        j_h = rateratio.grid_index(math.log(cfg.margin_ratio), round_up=True)
        win = rateratio.window_for(j_ni, j_h)
        loglik = np.zeros((r, win.stop - win.start))
        if delta > 0:
            abs_wealth = betting.Wealth.start(absolute_nulls(gates[0]), (r,))
    if cfg.has_accuracy:
        acc_gate = next(g for g in gates if g.type == "accuracy")
        acc_wealth = betting.Wealth.start(accuracy_nulls(acc_gate), (r,))
    for t in range(looks):
        new = (data.n_a[:, t] + data.n_b[:, t]) > 0  # a look without new data is stale: skipped
        for key in cum:
            cum[key] += getattr(data, key)[:, t]
        if cfg.errors:
            loglik += rateratio.loglik_increment(
                data.n_a[:, t], data.n_b[:, t], data.y_a[:, t], data.y_b[:, t], win
            )
            lp = rateratio.log_e_value(loglik, j_ni, upper=False, window=win)
            lh = rateratio.log_e_value(loglik, j_h, upper=True, window=win)
            max_p["errors"] = np.where(new, np.maximum(max_p["errors"], lp), max_p["errors"])
            max_h["errors"] = np.where(new, np.maximum(max_h["errors"], lh), max_h["errors"])
            if delta > 0:
                betting.update_two_arms(
                    abs_wealth, data.n_a[:, t], data.y_a[:, t], data.n_b[:, t], data.y_b[:, t]
                )
                below, above = abs_wealth.log_e()
                abs_p |= new & (below[:, 0] >= math.log(2 / a_p))
                abs_f |= new & (above[:, 1] >= thr_h)
        if cfg.has_accuracy:
            assert data.lab_a is not None and data.lab_b is not None
            assert data.cor_a is not None and data.cor_b is not None
            if data.pairs is not None and cfg.paired:
                pairs = data.pairs[:, t]
                betting.update_paired(acc_wealth, pairs[:, 1], pairs[:, 2], pairs.sum(axis=-1))
            else:
                betting.update_two_arms(
                    acc_wealth,
                    data.lab_a[:, t],
                    data.lab_a[:, t] - data.cor_a[:, t],
                    data.lab_b[:, t],
                    data.lab_b[:, t] - data.cor_b[:, t],
                )
            below, above = acc_wealth.log_e()
            lp, lh = below[:, 0], above[:, 1]
            max_p["accuracy"] = np.where(new, np.maximum(max_p["accuracy"], lp), max_p["accuracy"])
            max_h["accuracy"] = np.where(new, np.maximum(max_h["accuracy"], lh), max_h["accuracy"])
        rollback = np.zeros(r, bool)
        promote = np.minimum(cum["n_a"], cum["n_b"]) >= cfg.min_samples
        for g in gates:
            both = abs_f | (delta <= 0) if g.name == "errors" else True
            rollback |= (max_h[g.name] >= thr_h) & both
            either = abs_p if g.name == "errors" else False
            promote &= (max_p[g.name] >= thr_ps[g.name]) | either
        _record(res, t, promote & new, rollback & new)
    return res


def run_flagger(cfg: SimConfig, data: SimData) -> MethodResult:
    r, looks = data.n_a.shape
    res = MethodResult(np.zeros(r, int), np.zeros(r, int))
    thr = cfg.flagger_max_error_rate
    if thr is None:
        thr = cfg.champion_error_rate * cfg.margin_ratio
    failed = np.zeros(r, int)
    passed = np.zeros(r, int)
    for t in range(looks):
        nb = data.n_b[:, t]
        with np.errstate(divide="ignore", invalid="ignore"):
            bad = np.zeros(r, bool)
            if cfg.errors:
                bad |= ~(data.y_b[:, t] / nb <= thr)  # no requests = "no values found" = failure
            if cfg.has_accuracy:
                assert data.lab_b is not None and data.cor_b is not None
                floor = float(cfg.champion_accuracy) - cfg.accuracy_margin_points / 100  # type: ignore[arg-type]
                bad |= ~(data.cor_b[:, t] / data.lab_b[:, t] >= floor)
        failed += bad
        passed += ~bad
        _record(res, t, passed >= cfg.flagger_iterations, failed >= cfg.flagger_failures)
    return res


def run_naive(cfg: SimConfig, data: SimData) -> MethodResult:
    r, looks = data.n_a.shape
    res = MethodResult(np.zeros(r, int), np.zeros(r, int))
    k = int(cfg.errors) + int(cfg.has_accuracy)
    z_p, z_h = norm.ppf(1 - cfg.alpha), norm.ppf(1 - cfg.alpha / k)
    c = {key: np.zeros(r) for key in ("n_a", "n_b", "y_a", "y_b")}
    acc_cum = {
        key: np.zeros((r, 4)) if key == "pairs" else np.zeros(r)
        for key in ("lab_a", "cor_a", "lab_b", "cor_b", "pairs")
    }
    log_r0 = math.log(cfg.margin_ratio)
    for t in range(looks):
        for key in c:
            c[key] += getattr(data, key)[:, t]
        promote = np.ones(r, bool)
        rollback = np.zeros(r, bool)
        if cfg.errors:
            with np.errstate(divide="ignore", invalid="ignore"):
                est = np.log((c["y_b"] + 0.5) / c["n_b"]) - np.log((c["y_a"] + 0.5) / c["n_a"])
                z = (est - log_r0) / np.sqrt(1 / (c["y_a"] + 0.5) + 1 / (c["y_b"] + 0.5))
            promote &= z < -z_p
            rollback |= z > z_h
        if cfg.has_accuracy:
            for key in ("lab_a", "cor_a", "lab_b", "cor_b"):
                acc_cum[key] += getattr(data, key)[:, t]
            if data.pairs is not None:
                acc_cum["pairs"] += data.pairs[:, t]
            d, v = _naive_accuracy_stats(cfg, acc_cum)
            with np.errstate(divide="ignore", invalid="ignore"):
                z = (d + cfg.accuracy_margin_points / 100) / np.sqrt(v)
            ok = v > 0
            promote &= ok & (z > z_p)
            rollback |= ok & (z < -z_h)
        _record(res, t, promote, rollback)
    return res


@dataclass
class SimResult:
    config: SimConfig
    results: dict[str, MethodResult] = field(default_factory=dict)

    def summary(self) -> dict[str, dict[str, Any]]:
        """The CLI's JSON shape: {method: {promote, rollback, undecided, median_looks}}."""
        return {m: self.results[m].summary() for m in METHODS}


def simulate(cfg: SimConfig, data: SimData | None = None) -> SimResult:
    """Generate data (unless given) and run all three methods on it."""
    data = generate(cfg) if data is None else data
    out = SimResult(cfg)
    out.results["modelops"] = run_modelops(cfg, data)
    out.results["flagger_threshold"] = run_flagger(cfg, data)
    out.results["naive_repeated"] = run_naive(cfg, data)
    return out


# ------------------------------------------------------------------- engine replay (one run)


def run_counts(cfg: SimConfig, data: SimData, run: int, upto: int) -> dict[str, Any]:
    """Cumulative counts dict (the engine's input) of one simulated run after ``upto`` looks."""
    s = slice(0, upto)

    def tot(a: np.ndarray | None) -> float:
        return float(a[run, s].sum()) if a is not None else 0.0

    champion: dict[str, Any] = {"requests": tot(data.n_a), "errors": tot(data.y_a)}
    challenger: dict[str, Any] = {"requests": tot(data.n_b), "errors": tot(data.y_b)}
    out: dict[str, Any] = {"champion": champion, "challenger": challenger, "timestamp": upto}
    if cfg.has_accuracy:
        if cfg.mode == "shadow" and cfg.paired:
            assert data.pairs is not None
            p = data.pairs[run, s].sum(axis=0)
            out["paired"] = {
                "both": p[0],
                "championOnly": p[1],
                "challengerOnly": p[2],
                "neither": p[3],
            }
        else:
            champion.update(feedbackCorrect=tot(data.cor_a), feedbackTotal=tot(data.lab_a))
            challenger.update(feedbackCorrect=tot(data.cor_b), feedbackTotal=tot(data.lab_b))
    return out


def replay_engine(
    cfg: SimConfig,
    data: SimData,
    run: int,
    *,
    interval_seconds: float = 60.0,
    keep_trace: bool = False,
) -> tuple[int, int, list[dict[str, Any]]]:
    """Run :func:`.engine.evaluate` look by look on one simulated run, persisting the state
    through JSON as the controller would. Returns (outcome, look, trace)."""
    from .engine import Action, evaluate

    gates, policy = cfg.gates(), cfg.policy()
    state: dict[str, Any] | None = None
    trace: list[dict[str, Any]] = []
    for t in range(1, cfg.looks + 1):
        counts = run_counts(cfg, data, run, t)
        d = evaluate(gates, counts, t * interval_seconds, state, policy)
        state = json.loads(json.dumps(d.state.to_dict()))
        if keep_trace:
            trace.append(
                {"look": t, "action": d.action.value, "gates": [g.to_dict() for g in d.gates]}
            )
        if d.action is not Action.WAIT:
            return (1 if d.action is Action.PROMOTE else -1), t, trace
    return 0, 0, trace
