# ruff: noqa: RUF001, RUF002, RUF003  (mathematical notation: α, θ, τ, Δ, ×, − are intended)
"""Gating benchmark: modelops' anytime-valid gate vs a Flagger-style threshold vs a naive
repeated fixed-horizon test, on the same seeded simulated data.

One look = one 1-minute evaluation interval; horizon 100 looks. For each cell it prints
P(promote) / P(rollback) / P(undecided) and the median looks (minutes) to a decision:

1. error rates — 10% canary, champion 0.5% errors, margin ×1.5, alpha 0.05; challenger
   traffic 30 / 300 / 3,000 requests/min; true ratio 1 (identical), 1.5 (exactly the margin:
   every promotion is false), 2 and 4; plus the 5% → 25% → 50% ramp. Margin cells use 10,000
   runs (the null cells, where the error rate is measured), the others 2,000.
2. accuracy — champion 0.90, margin 1 point: challenger equal, at the margin, 2 points worse;
   split (10% canary, even arms) and shadow (paired and unpaired tests on the same data).
3. paired vs unpaired speed-up in shadow mode at 3%, 5% and 10% discordance.
4. PSI on identical models vs the sample-size-aware drift gate.
5. cost of one evaluate() call (what the controller pays per interval).

Writes bench-results/gating.json, bench-results/gating.md (the tables) and
bench-results/gating_run.png (one run's estimates, intervals and e-values over time, with what
the two baselines saw). Set MODELOPS_BENCH_QUICK=1 for a 5× smaller run.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from modelops_operator.gating import drift, evaluate
from modelops_operator.gating.simulate import (
    METHODS,
    SimConfig,
    generate,
    replay_engine,
    run_modelops,
    simulate,
)

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench-results"
QUICK = os.environ.get("MODELOPS_BENCH_QUICK") == "1"
RUNS = 400 if QUICK else 2000
NULL_RUNS = 2000 if QUICK else 10000
SHORT = {"modelops": "modelops", "flagger_threshold": "flagger", "naive_repeated": "naive"}


def cell(s: dict[str, Any]) -> str:
    med = "–" if s["median_looks"] is None else f"{s['median_looks']:.0f}"
    return f"{s['promote']:.3f} / {s['rollback']:.3f} / {s['undecided']:.3f} ({med})"


def table(title: str, header: list[str], rows: list[list[str]]) -> str:
    lines = [
        f"### {title}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def error_table(results: dict[str, Any]) -> str:
    rows = []
    scenarios: list[tuple[str, str, SimConfig]] = []
    for rpm in (30, 300, 3000):
        for ratio in (1.0, 1.5, 2.0, 4.0):
            runs = NULL_RUNS if ratio == 1.5 else RUNS
            scenarios.append(
                (
                    f"{rpm}",
                    f"{ratio:g}",
                    SimConfig(
                        runs=runs,
                        looks=100,
                        seed=1000 + rpm + int(ratio * 10),
                        split=(0.1,),
                        interval_requests=rpm,
                        champion_error_rate=0.005,
                        challenger_error_rate=0.005 * ratio,
                        margin_ratio=1.5,
                    ),
                )
            )
    for ratio in (1.0, 1.5, 2.0):
        scenarios.append(
            (
                "ramp 5→25→50%, 300 at 50%",
                f"{ratio:g}",
                SimConfig(
                    runs=NULL_RUNS if ratio == 1.5 else RUNS,
                    looks=100,
                    seed=2000 + int(ratio * 10),
                    split=(0.05, 0.25, 0.5),
                    interval_requests=300,
                    champion_error_rate=0.005,
                    challenger_error_rate=0.005 * ratio,
                    margin_ratio=1.5,
                ),
            )
        )
    for rpm, ratio, cfg in scenarios:
        t = time.perf_counter()
        s = simulate(cfg).summary()
        results["errors"].append(
            {
                "challenger_rpm": rpm,
                "ratio": float(ratio),
                "runs": cfg.runs,
                **{m: s[m] for m in METHODS},
                "seconds": round(time.perf_counter() - t, 2),
            }
        )
        rows.append([rpm, ratio, str(cfg.runs)] + [cell(s[m]) for m in METHODS])
        print(
            f"  errors  B={rpm:>26}/min r={ratio:<4} "
            + "  ".join(f"{SHORT[m]} {cell(s[m])}" for m in METHODS),
            flush=True,
        )
    return table(
        "Error rate: 10% canary, champion 0.5% errors, margin ×1.5, α = 0.05, 100 one-minute "
        "looks — P(promote) / P(rollback) / P(undecided) (median minutes to decision)",
        [
            "challenger req/min",
            "true ratio",
            "runs",
            "modelops",
            "Flagger-style threshold",
            "naive repeated test",
        ],
        rows,
    )


def accuracy_table(results: dict[str, Any]) -> str:
    rows = []
    designs = [
        ("split 10% canary, 300/min on challenger", dict(split=(0.1,))),
        ("split even, 300/min each", dict()),
        ("shadow, paired test (5% discordance)", dict(mode="shadow")),
        ("shadow, unpaired test (same data)", dict(mode="shadow", paired=False)),
    ]
    for name, kw in designs:
        for delta in (0.0, -1.0, -2.0):
            runs = NULL_RUNS if delta == -1.0 else RUNS
            cfg = SimConfig(
                runs=runs,
                looks=100,
                seed=3000 + int(-delta * 10),
                errors=False,
                interval_requests=300,
                champion_accuracy=0.9,
                challenger_accuracy=0.9 + delta / 100,
                accuracy_margin_points=1.0,
                **kw,
            )
            s = simulate(cfg).summary()
            results["accuracy"].append(
                {
                    "design": name,
                    "difference_points": delta,
                    "runs": runs,
                    **{m: s[m] for m in METHODS},
                }
            )
            rows.append([name, f"{delta:+g}", str(runs)] + [cell(s[m]) for m in METHODS])
            print(
                f"  accuracy {name:<40} Δ={delta:+g} "
                + "  ".join(f"{SHORT[m]} {cell(s[m])}" for m in METHODS),
                flush=True,
            )
    return table(
        "Accuracy: champion 0.90, margin 1 point, α = 0.05, 100 looks — P(promote) / "
        "P(rollback) / P(undecided) (median minutes)",
        [
            "design",
            "challenger − champion (points)",
            "runs",
            "modelops",
            "Flagger-style threshold",
            "naive repeated test",
        ],
        rows,
    )


def paired_table(results: dict[str, Any]) -> str:
    rows = []
    for disc in (0.03, 0.05, 0.10):
        for delta in (0.0, -2.0):
            base = dict(
                runs=RUNS,
                looks=200,
                seed=4000 + int(disc * 100),
                errors=False,
                mode="shadow",
                interval_requests=300,
                champion_accuracy=0.9,
                challenger_accuracy=0.9 + delta / 100,
                discordance=disc,
            )
            data = generate(SimConfig(**base))
            p = run_modelops(SimConfig(**base), data).summary()
            u = run_modelops(SimConfig(**base, paired=False), data).summary()
            speed = (
                u["median_looks"] / p["median_looks"]
                if p["median_looks"] and u["median_looks"]
                else float("nan")
            )
            results["paired"].append(
                {
                    "discordance": disc,
                    "difference_points": delta,
                    "paired": p,
                    "unpaired": u,
                    "speedup": speed,
                }
            )
            rows.append([f"{disc:.0%}", f"{delta:+g}", cell(p), cell(u), f"{speed:.1f}×"])
            print(
                f"  shadow disc={disc:.0%} Δ={delta:+g}: paired {cell(p)}  unpaired {cell(u)}"
                f"  speed-up {speed:.1f}×",
                flush=True,
            )
    return table(
        "Shadow mode, 300 labelled pairs/min, champion 0.90, margin 1 point, 200 looks: paired "
        "vs unpaired test on the same data",
        ["discordance", "Δ (points)", "paired", "unpaired", "speed-up (median)"],
        rows,
    )


def drift_table(results: dict[str, Any]) -> str:
    rng = np.random.default_rng(5)
    edges = [0.1 * i for i in range(1, 10)]
    probs = np.full(10, 0.1)
    rows = []

    def cum(n: int) -> dict[float, float]:
        c = np.cumsum(rng.multinomial(n, probs))
        return {**{e: float(x) for e, x in zip(edges, c[:-1], strict=False)}, math.inf: n}

    for n in (50, 100, 200, 1000):
        reps = 2000
        psi10 = psi25 = fail = chi = 0
        for _ in range(reps):
            s = drift.compare(cum(n), cum(n), alpha_upper=0.05, alpha_lower=0.05)
            psi10 += s.psi >= 0.10
            psi25 += s.psi >= 0.25
            fail += s.lower > 0.1
            chi += (s.chi2_p_value or 1) < 0.05
        row = {
            "n": n,
            "psi_ge_0.10": psi10 / reps,
            "psi_ge_0.25": psi25 / reps,
            "gate_fail_margin_0.1": fail / reps,
            "chi2_fixed_n_type1": chi / reps,
        }
        results["drift"].append(row)
        rows.append(
            [
                str(n),
                f"{psi10 / reps:.3f}",
                f"{psi25 / reps:.3f}",
                f"{chi / reps:.3f}",
                f"{fail / reps:.3f}",
            ]
        )
    return table(
        "Prediction drift, identical models, 10 equal buckets, 2,000 reps: false alarms",
        [
            "n per arm",
            "PSI ≥ 0.10",
            "PSI ≥ 0.25",
            "χ² p < 0.05 (one look)",
            "drift gate fails (margin 0.1)",
        ],
        rows,
    )


def engine_cost(results: dict[str, Any]) -> str:
    gates = [
        {"name": "errors", "type": "errorRate", "margin": 0.2},
        {"name": "latency", "type": "latency", "latencyThreshold": "250ms", "margin": 0.2},
        {"name": "accuracy", "type": "accuracy", "margin": 0.01},
        {"name": "drift", "type": "predictionDrift", "margin": 0.1},
    ]
    state = None
    times = []
    for i in range(1, 61):
        arm = {
            "requests": 3000 * i,
            "errors": 15 * i,
            "latencyBuckets": {"0.1": 2500 * i, "0.25": 2970 * i, "+Inf": 3000 * i},
            "feedbackCorrect": 2700 * i,
            "feedbackTotal": 3000 * i,
            "predictionBuckets": {"0.5": 1500 * i, "+Inf": 3000 * i},
        }
        t = time.perf_counter()
        d = evaluate(
            gates,
            {"champion": arm, "challenger": arm, "timestamp": i},
            60 * i,
            state,
            {"minSamples": 10**9},
        )
        state = d.state.to_dict()
        times.append(time.perf_counter() - t)
    size = len(json.dumps(state))
    results["engine"] = {
        "median_ms": 1000 * float(np.median(times[1:])),
        "state_bytes_4_gates": size,
    }
    return (
        f"evaluate() with 4 gates: median {1000 * np.median(times[1:]):.1f} ms per call; "
        f"persisted state {size:,} bytes of JSON.\n"
    )


def _trace(cfg: SimConfig, data: Any) -> dict[str, Any]:
    """Follow one run through evaluate() for every look (also after the decision)."""
    from modelops_operator.gating.simulate import run_counts

    outcome, look, _ = replay_engine(cfg, data, 0)
    state = None
    rows: dict[str, list[Any]] = {"est": [], "lo": [], "hi": [], "ep": [], "eh": []}
    for t in range(1, cfg.looks + 1):
        d = evaluate(cfg.gates(), run_counts(cfg, data, 0, t), 60 * t, state, cfg.policy())
        state = d.state.to_dict()
        g = d.gates[0]
        rows["est"].append(np.nan if g.estimate is None else g.estimate)
        rows["lo"].append(0.0 if g.lower is None else g.lower)
        rows["hi"].append(10.0 if g.upper is None else g.upper)
        rows["ep"].append(g.statistic.get("eValuePromote") or 1e-3)
        rows["eh"].append(g.statistic.get("eValueRollback") or 1e-3)
    return {"outcome": outcome, "look": look, **{k: np.array(v) for k, v in rows.items()}}


def _baselines(cfg: SimConfig, data: Any) -> dict[str, Any]:
    res = simulate(cfg, data).results
    out = {}
    for m in ("flagger_threshold", "naive_repeated"):
        o, t = int(res[m].outcome[0]), int(res[m].look[0])
        out[m] = (o, t)
    return out


def _word(outcome: int) -> str:
    return {1: "PROMOTE", -1: "ROLLBACK", 0: "undecided"}[outcome]


def plot_run(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = [
        ("identical challenger", 1.0, 8),
        ("2× the champion's errors", 2.0, 7),
    ]
    fig, axes = plt.subplots(2, 3, figsize=(17, 9.5), constrained_layout=True)
    for row, (title, ratio, seed) in enumerate(scenarios):
        cfg = SimConfig(
            runs=1,
            looks=100,
            seed=seed,
            split=(0.1,),
            interval_requests=300,
            champion_error_rate=0.005,
            challenger_error_rate=0.005 * ratio,
            margin_ratio=1.5,
        )
        data = generate(cfg)
        tr = _trace(cfg, data)
        base = _baselines(cfg, data)
        x = np.arange(1, cfg.looks + 1)
        decided = tr["outcome"] != 0
        verdict = (
            f"modelops {_word(tr['outcome'])} at {tr['look']} min"
            if decided
            else "modelops: undecided"
        )

        a = axes[row, 0]
        a.fill_between(
            x,
            tr["lo"],
            tr["hi"],
            color="tab:blue",
            alpha=0.2,
            label="anytime-valid interval (running)",
        )
        a.plot(x, tr["est"], color="tab:blue", label="estimate (conditional MLE)")
        a.axhline(1.5, color="tab:red", ls="--", label="margin ×1.5")
        a.axhline(ratio, color="grey", ls=":", label=f"truth ×{ratio:g}")
        if decided:
            a.axvline(tr["look"], color="k", lw=1.2, label=verdict)
        a.set_ylim(0, 4)
        a.set(
            title=f"{title}: error-rate ratio, interval",
            xlabel="minutes (looks)",
            ylabel="error-rate ratio",
        )
        a.legend(loc="upper right", fontsize=8)

        a = axes[row, 1]
        a.semilogy(x, tr["ep"], color="tab:green", label="promotion e-process (upper < 1.5?)")
        a.semilogy(x, tr["eh"], color="tab:red", label="rollback e-process (lower > 1.5?)")
        a.axhline(1 / cfg.alpha, color="k", ls="--", label="threshold 1/α = 20")
        if decided:
            a.axvline(tr["look"], color="k", lw=1.2)
        a.set_ylim(1e-2, 1e5)
        a.set(
            title=f"{title}: e-values (running max), act at ≥ 1/α",
            xlabel="minutes (looks)",
            ylabel="e-value",
        )
        a.legend(loc="upper left", fontsize=8)

        a = axes[row, 2]
        per_look = data.y_b[0] / data.n_b[0]
        thr = cfg.champion_error_rate * cfg.margin_ratio
        a.bar(x, 100 * per_look, width=0.9, color=np.where(per_look > thr, "tab:red", "tab:gray"))
        a.axhline(
            100 * thr,
            color="k",
            ls="--",
            label="Flagger-style threshold 0.75% (red = failed check)",
        )
        fo, ft = base["flagger_threshold"]
        no, nt = base["naive_repeated"]
        if fo:
            a.axvline(ft, color="tab:purple", lw=2, label=f"Flagger-style {_word(fo)} at {ft} min")
        if no:
            a.axvline(
                nt,
                color="tab:orange",
                lw=2,
                ls="-.",
                label=f"naive repeated z-test {_word(no)} at {nt} min",
            )
        if decided:
            a.axvline(tr["look"], color="k", lw=1.2, label=verdict)
        a.set_ylim(0, 3)
        a.set(
            title=f"{title}: what the baselines do",
            xlabel="minutes (looks)",
            ylabel="challenger errors in that minute (%)",
        )
        a.legend(loc="upper right", fontsize=8)
    fig.suptitle(
        "Two simulated challenges (10% canary, 300 req/min on the challenger, champion "
        "0.5% errors, margin ×1.5, α = 0.05; seeds 8 and 7)",
        fontsize=12,
    )
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> int:
    OUT.mkdir(exist_ok=True)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "errors": [],
        "accuracy": [],
        "paired": [],
        "drift": [],
        "runs": RUNS,
        "null_runs": NULL_RUNS,
        "looks": 100,
    }
    parts = [
        "# Gating benchmark (`make bench`, benchmarks/bench_gating.py)\n",
        "Cells: P(promote) / P(rollback) / P(undecided) (median looks to a decision, "
        "one look = one 1-minute interval). Same seeded data for all three methods. "
        "Flagger-style: interval error rate > 0.75% (or interval accuracy < champion − "
        "margin) is a failed check; rollback at 2 failed checks, promote after 10 passing. "
        "Naive: one-sided 5% z-test on cumulative data at every look.\n",
    ]
    print(">> error-rate cells", flush=True)
    parts.append(error_table(results))
    print(">> accuracy cells", flush=True)
    parts.append(accuracy_table(results))
    print(">> paired vs unpaired", flush=True)
    parts.append(paired_table(results))
    print(">> drift", flush=True)
    parts.append(drift_table(results))
    parts.append(engine_cost(results))
    plot = OUT / "gating_run.png"
    plot_run(plot)
    results["seconds"] = round(time.perf_counter() - started, 1)
    (OUT / "gating.json").write_text(json.dumps(results, indent=2))
    text = "\n".join(parts)
    (OUT / "gating.md").write_text(text)
    print()
    print(text)
    print(f"wrote {OUT / 'gating.md'}, {OUT / 'gating.json'}, {plot} in {results['seconds']:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
