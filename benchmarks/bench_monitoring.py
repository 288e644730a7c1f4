"""Drift monitoring benchmark: false alarms over a simulated year, detection delay, baselines.

Issue 15's acceptance scenario, through the same code as ``modelops monitoring simulate``
(:mod:`modelops_operator.monitoring.simulate`): 20 features, 300 requests a minute with a
diurnal cycle, bursts and missed scrapes, a profile built from 5,000 training rows,
``alarmEvery: 90d``, one look a minute:

1. a healthy model for a year (``MODELOPS_BENCH_YEAR_RUNS`` runs, default 10): false alarms
   per day of modelops' e-detector, of PSI > 0.1 over the last hour and of a chi-square test
   calibrated to the same rate;
2. a shift of 0.3 standard deviations in one feature after a healthy day (100 runs): share
   found within an hour and median delay, every method on the same counts;
3. a quiet model (2 requests a minute) for 30 days: where fixed PSI thresholds cry wolf;
4. Alibi Detect's online CVM detector beside the e-detector at an equal false-alarm rate it can
   be calibrated to here (an expected 10 minutes between false alarms), on the same raw rows:
   :mod:`benchmarks.alibi_comparison`, in a virtualenv of its own made on first use.

Set MODELOPS_BENCH_QUICK=1 for a 30-day first scenario (and a shorter fourth),
MODELOPS_BENCH_ALIBI=0 to skip the fourth. Results go to bench-results/monitoring.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from benchmarks import alibi_comparison
from modelops_operator.monitoring.cli import render, simulate

ROOT = Path(__file__).resolve().parent.parent
QUICK = os.environ.get("MODELOPS_BENCH_QUICK") == "1"
YEAR_RUNS = int(os.environ.get("MODELOPS_BENCH_YEAR_RUNS", "10"))
ALIBI = os.environ.get("MODELOPS_BENCH_ALIBI", "1") != "0"


def scenario(**overrides: float) -> argparse.Namespace:
    settings = {
        "healthy_days": 365.0,
        "healthy_runs": YEAR_RUNS,
        "shift_runs": 100,
        "shift_sd": 0.3,
        "features": 20,
        "requests_per_minute": 300.0,
        "reference_rows": 5000,
        "alarm_every": 90.0,
        "fleet": 1,
        "seed": 0,
        "json": False,
    }
    settings.update(overrides)
    return argparse.Namespace(**settings)


def compare_with_alibi() -> dict:
    plan = alibi_comparison.AlibiPlan(
        healthy_hours=1.0 if QUICK else 3.0, shift_runs=5 if QUICK else 20
    )
    print(
        f">> alibi: Alibi Detect's CVMDriftOnline and modelops at an equal rate, "
        f"{plan.ert_minutes:g} min between false alarms",
        flush=True,
    )
    result = alibi_comparison.compare(plan)
    print(alibi_comparison.render(result), flush=True)
    return result


def main() -> int:
    started = time.monotonic()

    def progress(done: int, total: int, alarms: dict[str, int]) -> None:
        day, days = done // 1440, total // 1440
        if day % max(days // 10, 1) == 0 or done == total:
            print(
                f"   day {day} of {days} ({time.monotonic() - started:.0f} s), "
                f"alarms so far {alarms}",
                flush=True,
            )

    results = {}
    plans = {
        "busy": scenario(healthy_days=30.0 if QUICK else 365.0),
        "quiet": scenario(
            healthy_days=30.0, healthy_runs=5, requests_per_minute=2.0, shift_runs=50
        ),
    }
    for name, args in plans.items():
        print(
            f">> {name}: {args.requests_per_minute:g} requests/min, healthy "
            f"{args.healthy_runs} runs of {args.healthy_days:g} days, shift runs "
            f"{args.shift_runs}",
            flush=True,
        )
        results[name] = simulate(args, progress)
        print(render(results[name]), flush=True)
    busy = results["busy"]
    ours = busy["healthy"]["methods"]["modelops"]
    found = busy["shift"]["methods"]["modelops"]["detected_within_hour"]
    configured = busy["healthy"]["configured_alarms_per_day"]
    print(">> targets")
    verdict = "met" if ours["alarms_per_day"] <= configured else "MISSED"
    print(
        f"   false alarms within alarmEvery on a healthy model: {ours['alarms_per_day']:.4f} "
        f"a day vs {configured:.4f} -> {verdict}"
    )
    print(
        f"   0.3 SD shift in 1 of 20 features found within an hour: {found:.0%} of runs "
        f"(target 90%) -> {'met' if found >= 0.9 else 'MISSED'}"
    )
    if ALIBI:
        results["alibi"] = compare_with_alibi()
    out = ROOT / "bench-results" / "monitoring.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f">> results: {out} ({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
