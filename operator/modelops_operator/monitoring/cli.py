"""``modelops monitoring simulate``: false alarms on a healthy model and detection delay after a
shift, for modelops' detector and two fixed-threshold checks, on the same simulated traffic."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..gating.config import parse_duration
from .profile import (
    DEFAULT_BINS,
    ProfileError,
    build_profile,
    digest,
    encode,
    model_predictor,
    read_table,
)
from .simulate import MINUTES_PER_DAY, DriftWorld, run, summary

LABELS = {
    "modelops": "modelops (e-detector)",
    "psi": "PSI > 0.1, last hour",
    "chi2": "chi2 at equal rate",
}


def _days(text: str) -> float:
    seconds = parse_duration(text)
    if seconds is None or seconds <= 0:
        raise argparse.ArgumentTypeError("give a positive duration such as 90d or 12h")
    return seconds / 86400


def add_monitoring(subparsers: Any) -> None:
    monitoring = subparsers.add_parser(
        "monitoring",
        help="the live-model monitors: simulate false alarms and detection delay",
        description="Drift monitors calibrated to an expected time between false alarms.",
    )
    sub = monitoring.add_subparsers(dest="monitoring_command", metavar="COMMAND", required=True)
    sim = sub.add_parser(
        "simulate",
        help="false alarms per day on a healthy model and detection delay after a shift",
        description=(
            "Simulate live deployments (bursty, diurnal traffic with missed scrapes, a profile "
            "estimated from a finite training sample) and report, for modelops' drift detector "
            "and two fixed-threshold checks on the same data, false alarms per day on a healthy "
            "model and how soon a shift of one feature is found."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    sim.add_argument(
        "--healthy-days", type=float, default=30.0, help="simulated days per healthy run"
    )
    sim.add_argument("--healthy-runs", type=int, default=5)
    sim.add_argument("--shift-runs", type=int, default=50)
    sim.add_argument(
        "--shift-sd", type=float, default=0.3, help="shift of one feature's mean, in SDs"
    )
    sim.add_argument("--features", type=int, default=20)
    sim.add_argument("--requests-per-minute", type=float, default=300.0)
    sim.add_argument(
        "--reference-rows", type=int, default=5000, help="rows the profile is built from"
    )
    sim.add_argument(
        "--alarm-every",
        type=_days,
        default=90.0,
        metavar="DURATION",
        help="expected time between false alarms on a healthy model (e.g. 90d)",
    )
    sim.add_argument("--fleet", type=int, default=1, help="deployments sharing that rate")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--json", action="store_true", help="print JSON only")
    sim.set_defaults(func=_cmd_simulate)


def simulate(args: argparse.Namespace, progress: Any = None) -> dict[str, Any]:
    """Both scenarios of ``modelops monitoring simulate``, as one JSON-able document."""
    world = DriftWorld(
        features=args.features,
        requests_per_minute=args.requests_per_minute,
        reference_rows=args.reference_rows,
        alarm_every_days=args.alarm_every,
        fleet=args.fleet,
    )
    healthy_minutes = int(args.healthy_days * MINUTES_PER_DAY)
    healthy = summary(
        world, healthy_minutes, run(world, healthy_minutes, args.healthy_runs, args.seed, progress)
    )
    # The shift comes after a healthy day, so every plug-in estimate has settled.
    shifted_world = replace(world, shift_sd=args.shift_sd, shift_at=MINUTES_PER_DAY)
    shifted_minutes = MINUTES_PER_DAY + 180
    shifted = summary(
        shifted_world,
        shifted_minutes,
        run(shifted_world, shifted_minutes, args.shift_runs, args.seed + 1),
    )
    return {"healthy": healthy, "shift": shifted}


def render(result: dict[str, Any]) -> str:
    healthy, shift = result["healthy"], result["shift"]
    world = healthy["world"]
    days = healthy["minutes"] / MINUTES_PER_DAY
    lines = [
        f"{world['features']} features, {world['requests_per_minute']:g} requests/min "
        f"(bursts, diurnal, missed scrapes), profile from {world['reference_rows']:,} rows, "
        f"alarmEvery {world['alarm_every_days']:g}d "
        f"(≤ {healthy['configured_alarms_per_day']:.4f} a day)",
        f"{'method':<24}{'false alarms/day':>18}{'found ≤ 1 h':>14}{'median delay':>14}",
    ]
    for method, label in LABELS.items():
        calm, moved = healthy["methods"][method], shift["methods"][method]
        delay = moved["median_delay_minutes"]
        lines.append(
            f"{label:<24}{calm['alarms_per_day']:>18.4f}{moved['detected_within_hour']:>13.0%} "
            f"{'never' if delay is None else f'{delay:.0f} min':>13}"
        )
    lines.append(
        f"healthy: {healthy['runs']} runs of {days:g} days; shift of "
        f"{shift['world']['shift_sd']:g} SD in one feature: {shift['runs']} runs"
    )
    return "\n".join(lines)


def _cmd_simulate(args: argparse.Namespace) -> int:
    started = time.monotonic()

    def progress(done: int, total: int, alarms: dict[str, int]) -> None:
        day, days = done // MINUTES_PER_DAY, total // MINUTES_PER_DAY
        if args.json or (day % max(days // 10, 1) and done != total):
            return
        elapsed = time.monotonic() - started
        print(
            f"  healthy: day {day} of {days} ({elapsed:.0f} s), alarms so far {alarms}",
            file=sys.stderr,
        )

    result = simulate(args, progress)
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


def add_profile(subparsers: Any) -> None:
    profile = subparsers.add_parser(
        "profile",
        help="build a model version's training profile from a training or holdout table",
        description=(
            "Write the training profile the monitors compare a live model against: per-feature "
            "bins and frequencies, input ranges, the prediction and confidence distributions "
            "and, with --label, the holdout's accuracy or mean absolute error. Prints the "
            "digest to put in spec.model.profile."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    profile.add_argument("table", type=Path, help="CSV (header row first) or Parquet file")
    profile.add_argument("-o", "--output", type=Path, default=Path("profile.json"))
    profile.add_argument("--model", type=Path, help="the model file or directory")
    profile.add_argument("--format", default="sklearn", help="the model's format, as in spec.model")
    profile.add_argument(
        "--allow-unsafe-pickle",
        action="store_true",
        help="load a pickled model (only one you trust)",
    )
    profile.add_argument("--label", help="the column holding the true label or value")
    profile.add_argument(
        "--features",
        help="feature columns in the model's input order "
        "(comma-separated; default: every column but the label)",
    )
    profile.add_argument("--bins", type=int, default=DEFAULT_BINS, help="bins per feature")
    profile.set_defaults(func=_cmd_profile)


def _cmd_profile(args: argparse.Namespace) -> int:
    try:
        columns = read_table(args.table)
        predict = None
        if args.model is not None:
            predict = model_predictor(args.format, args.model, args.allow_unsafe_pickle)
        features = [f.strip() for f in args.features.split(",")] if args.features else None
        built = build_profile(
            columns, label=args.label, features=features, predict=predict, bins=args.bins
        )
    except (OSError, ProfileError, ValueError) as exc:
        print(f"modelops profile: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    data = encode(built)
    args.output.write_bytes(data)
    holdout = built.get("holdout")
    summary_line = f"{len(built['features'])} features, {built['rows']:,} rows"
    if holdout:
        summary_line += f", holdout {holdout['metric']} {holdout['value']:.4f}"
    print(f"wrote {args.output} ({summary_line})")
    print(f"digest: {digest(data)}")
    return 0
