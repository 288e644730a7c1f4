# ruff: noqa: RUF001, RUF003  (mathematical notation: α, θ, τ, Δ, ×, − are intended)
"""The ``modelops`` command line.

Subcommands are groups (``modelops <group> <command>``). To add a group, write a function that
takes the top-level ``subparsers`` object, adds its parser(s) and sets ``func`` (a callable taking
the parsed ``argparse.Namespace`` and returning an exit code) with ``set_defaults``, then append
it to :data:`COMMAND_GROUPS`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from .monitoring.cli import add_monitoring, add_profile


def _shares(text: str) -> tuple[float, ...]:
    """ "0.1" or "5,25,50" (percent when > 1) → challenger shares in (0, 1)."""
    out = []
    for part in text.split(","):
        v = float(part)
        out.append(v / 100 if v > 1 else v)
    if any(not 0 < v < 1 for v in out):
        raise argparse.ArgumentTypeError("split shares must be in (0, 1) or (1, 100) percent")
    return tuple(out)


def _add_gating(subparsers: Any) -> None:
    gating = subparsers.add_parser(
        "gating",
        help="the anytime-valid gating engine: simulate, plan and replay",
        description="Anytime-valid promotion decisions: simulate them, plan their duration.",
    )
    sub = gating.add_subparsers(dest="gating_command", metavar="COMMAND", required=True)

    sim = sub.add_parser(
        "simulate",
        help="simulate modelops vs Flagger-style thresholds vs a naive repeated test",
        description=(
            "Simulate a challenge many times and report, for modelops' anytime-valid gate and "
            "for two baselines run on the same data, P(promote), P(rollback), P(undecided) "
            "and the median number of looks to a decision."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    sim.add_argument("--runs", type=int, default=2000, help="simulated challenges")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--looks", type=int, default=100, help="evaluations (the horizon)")
    sim.add_argument(
        "--interval-requests",
        type=float,
        default=300.0,
        help="requests each arm receives between two looks (with --split: the challenger's, "
        "at the last split step; the champion gets the rest of the traffic)",
    )
    sim.add_argument(
        "--split",
        type=_shares,
        default=None,
        help="challenger share of traffic, e.g. 0.1, or a ramp 5,25,50 (equal blocks of "
        "looks, total traffic constant); default: even arms",
    )
    sim.add_argument("--mode", choices=("split", "shadow"), default="split")
    sim.add_argument(
        "--absolute-margin",
        type=float,
        default=0.0,
        help="error gate's absoluteMargin as in the CRD: the challenger may also pass at most "
        "this much above the champion's error rate (0.001 = 0.1 points; 0: ratio only)",
    )
    sim.add_argument("--champion-error-rate", type=float, default=0.005)
    sim.add_argument("--challenger-error-rate", type=float, default=0.005)
    sim.add_argument(
        "--margin-ratio",
        type=float,
        default=1.5,
        help="the challenger's error rate may be at most this many times the champion's",
    )
    sim.add_argument("--alpha", type=float, default=0.05)
    sim.add_argument("--no-errors", action="store_true", help="drop the error-rate gate")
    sim.add_argument(
        "--champion-accuracy",
        type=float,
        default=None,
        help="adds an accuracy gate (give both accuracies, 0-1)",
    )
    sim.add_argument("--challenger-accuracy", type=float, default=None)
    sim.add_argument(
        "--accuracy-margin",
        type=float,
        default=1.0,
        help="accuracy margin in points (1.0 = one percentage point)",
    )
    sim.add_argument(
        "--label-fraction",
        type=float,
        default=1.0,
        help="share of requests that receive a feedback label",
    )
    sim.add_argument(
        "--discordance",
        type=float,
        default=0.05,
        help="shadow: share of labelled pairs where exactly one model is right",
    )
    sim.add_argument(
        "--unpaired",
        action="store_true",
        help="shadow: use the unpaired accuracy test (to compare with paired)",
    )
    sim.add_argument(
        "--min-samples", type=int, default=0, help="requests per arm before modelops may promote"
    )
    sim.add_argument(
        "--flagger-max-error-rate",
        type=float,
        default=None,
        help="Flagger baseline threshold (default: champion rate × margin ratio)",
    )
    sim.add_argument(
        "--flagger-failures",
        type=int,
        default=2,
        help="Flagger baseline: failed checks before rollback",
    )
    sim.add_argument(
        "--flagger-iterations",
        type=int,
        default=10,
        help="Flagger baseline: passing checks before promotion",
    )
    sim.add_argument("--json", action="store_true", help="print JSON only")
    sim.set_defaults(func=_cmd_simulate)

    plan = sub.add_parser(
        "plan",
        help="how long until a decision is likely, given traffic and margin",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    plan.add_argument(
        "--gate",
        choices=("errorRate", "latency", "accuracy", "predictionDrift"),
        default="errorRate",
    )
    plan.add_argument(
        "--challenger-rpm", type=float, default=300.0, help="challenger requests per minute"
    )
    plan.add_argument(
        "--champion-rpm",
        type=float,
        default=None,
        help="champion requests per minute (default: same as the challenger)",
    )
    plan.add_argument(
        "--margin",
        type=float,
        default=None,
        help="gate margin as in the CRD (relative for rates: 0.5 = 1.5×; "
        "absolute for accuracy: 0.01 = one point); default per gate type",
    )
    plan.add_argument(
        "--absolute-margin",
        type=float,
        default=None,
        help="rate gates' absoluteMargin as in the CRD (0.001 = 0.1 points; 0: ratio only); "
        "default as the operator's",
    )
    plan.add_argument("--test", choices=("nonInferiority", "superiority"), default="nonInferiority")
    plan.add_argument(
        "--base-rate",
        type=float,
        default=0.005,
        help="champion's error rate (or share of slow requests)",
    )
    plan.add_argument("--accuracy", type=float, default=0.9, help="champion's accuracy")
    plan.add_argument(
        "--effect",
        type=float,
        default=None,
        help="assumed truth: ratio (rates), difference (accuracy); default equal",
    )
    plan.add_argument("--shadow", action="store_true", help="paired shadow-mode accuracy")
    plan.add_argument("--discordance", type=float, default=0.1)
    plan.add_argument("--label-fraction", type=float, default=1.0)
    plan.add_argument("--alpha", type=float, default=0.05)
    plan.add_argument("--power", type=float, default=0.8)
    plan.add_argument("--json", action="store_true")
    plan.set_defaults(func=_cmd_plan)

    rep = sub.add_parser(
        "replay",
        help="replay counter series through the operator's gating and state machine",
        description=(
            "Reads JSON lines on standard input, each {\"run\": ID, \"t\": SECONDS, "
            "\"series\": [{\"arm\": \"champion\"|\"challenger\", \"pod\": NAME, "
            "\"podStart\": SECONDS, \"requests\": N, \"errors\": N, \"slow\": N, "
            "\"correct\": N, \"incorrect\": N}, ...]} (cumulative counters per series at t; "
            "a regression model's series carry \"scored\", \"absoluteError\" and "
            "\"squaredError\" instead of correct and incorrect), "
            "and answers one JSON line per input line: {\"run\", \"t\", \"phase\", "
            "\"decision\": wait|promote|rollback, \"challengerPercent\", \"reason\"}. "
            "Runs are independent; a bad line gets an {\"error\"} line. With --prometheus, "
            "the series are read from a Prometheus between --start and --end instead, one look "
            "per spec.decision.interval. See docs/gating.md."
        ),
    )
    rep.add_argument(
        "--policy",
        required=True,
        help="a ChampionChallenger manifest (or its spec) in YAML or JSON",
    )
    rep.add_argument(
        "--loss-bound",
        type=float,
        default=None,
        help="the target's spec.monitoring.feedback.lossBound (regression: the bound each "
        "label's error was counted with)",
    )
    rep.add_argument("--prometheus", metavar="URL",
                     help="read the sidecars' series from this Prometheus, not standard input")
    rep.add_argument("--start", help="with --prometheus: when the challenge began (unix "
                     "seconds or ISO 8601, e.g. 2026-11-25T09:00:00Z)")
    rep.add_argument("--end", help="with --prometheus: the last look (same forms)")
    rep.add_argument("--namespace", help="with --prometheus: the ModelDeployment's namespace")
    rep.add_argument("--deployment", help="with --prometheus: the ModelDeployment (default: "
                     "the policy's spec.targetRef.name)")
    rep.add_argument("--champion-version", help="with --prometheus: the champion's version "
                     "(default: the only one in the span)")
    rep.add_argument("--challenger-version", help="with --prometheus: the challenger's version "
                     "(default: the only one in the span)")
    rep.add_argument("--namespace-label", default="namespace",
                     help="with --prometheus: the label holding the pod's namespace")
    rep.set_defaults(func=_cmd_replay)


def _sim_config(args: argparse.Namespace) -> Any:
    from .gating.simulate import SimConfig

    return SimConfig(
        runs=args.runs,
        looks=args.looks,
        seed=args.seed,
        interval_requests=args.interval_requests,
        split=args.split or (0.5,),
        mode=args.mode,
        champion_error_rate=args.champion_error_rate,
        challenger_error_rate=args.challenger_error_rate,
        margin_ratio=args.margin_ratio,
        absolute_margin=args.absolute_margin,
        alpha=args.alpha,
        errors=not args.no_errors,
        champion_accuracy=args.champion_accuracy,
        challenger_accuracy=args.challenger_accuracy,
        accuracy_margin_points=args.accuracy_margin,
        label_fraction=args.label_fraction,
        discordance=args.discordance,
        paired=not args.unpaired,
        min_samples=args.min_samples,
        flagger_max_error_rate=args.flagger_max_error_rate,
        flagger_failures=args.flagger_failures,
        flagger_iterations=args.flagger_iterations,
    )


def format_table(summary: dict[str, dict[str, Any]]) -> str:
    rows = [f"{'method':<20}{'promote':>9}{'rollback':>10}{'undecided':>11}{'median looks':>14}"]
    for method, s in summary.items():
        med = "-" if s["median_looks"] is None else f"{s['median_looks']:g}"
        rows.append(
            f"{method:<20}{s['promote']:>9.3f}{s['rollback']:>10.3f}{s['undecided']:>11.3f}"
            f"{med:>14}"
        )
    return "\n".join(rows)


def _cmd_simulate(args: argparse.Namespace) -> int:
    from .gating.simulate import simulate

    try:
        cfg = _sim_config(args)
    except ValueError as exc:
        print(f"modelops gating simulate: {exc}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    summary = simulate(cfg).summary()
    if args.json:
        print(json.dumps(summary))
        return 0
    split = (
        "shadow (both arms see every request)"
        if cfg.mode == "shadow"
        else ("challenger share " + " → ".join(f"{w:.0%}" for w in cfg.split))
    )
    print(
        f"{cfg.runs} runs × {cfg.looks} looks, {cfg.interval_requests:g} challenger requests per "
        f"look, {split}; error rates {cfg.champion_error_rate:g} vs "
        f"{cfg.challenger_error_rate:g} (margin ×{cfg.margin_ratio:g}"
        + (f" or +{cfg.absolute_margin:g}" if cfg.absolute_margin else "") + ")"
        + (
            f"; accuracy {cfg.champion_accuracy:g} vs {cfg.challenger_accuracy:g} "
            f"(margin {cfg.accuracy_margin_points:g} pt)"
            if cfg.has_accuracy
            else ""
        )
        + f"; alpha {cfg.alpha:g}"
    )
    print(format_table(summary))
    print(f"({time.perf_counter() - started:.1f}s; seed {cfg.seed})")
    return 0


def _cmd_plan(args: argparse.Namespace) -> int:
    from .api.championchallenger import GATE_DEFAULTS
    from .gating import GateConfig, Traffic, plan_gate

    defaults = GATE_DEFAULTS[args.gate]
    margin = defaults.margin if args.margin is None else args.margin
    absolute = (defaults.absolute_margin if args.absolute_margin is None
                else args.absolute_margin)
    try:
        gate = GateConfig(
            name=args.gate,
            type=args.gate,
            margin=margin,
            test=args.test,
            latency_threshold=1.0 if args.gate == "latency" else None,
            absolute_margin=absolute,
        )
    except ValueError as exc:
        print(f"modelops gating plan: {exc}", file=sys.stderr)
        return 2
    champ = args.challenger_rpm if args.champion_rpm is None else args.champion_rpm
    traffic = Traffic(
        challenger_per_second=args.challenger_rpm / 60,
        champion_per_second=champ / 60,
        champion_rate=args.base_rate,
        champion_accuracy=args.accuracy,
        discordance=args.discordance,
        label_fraction=args.label_fraction,
        paired=args.shadow,
    )
    plan = plan_gate(
        gate,
        traffic,
        alpha=args.alpha,
        rollback_alpha=args.alpha,
        power=args.power,
        effect=args.effect,
    )
    if args.json:
        print(json.dumps(plan.to_dict()))
        return 0
    if plan.samples is None:
        print(f"no decision is likely: {plan.note}")
        return 0
    secs = plan.seconds if plan.seconds is not None else math.nan
    print(
        f"{args.gate} ({args.test}, margin {margin:g}"
        + (f", absolute margin {absolute:g}" if absolute else "")
        + f"): a {plan.decision} decision is likely "
        f"({args.power:.0%}) after ≈ {math.ceil(plan.samples):,} challenger {plan.unit}, "
        f"≈ {secs / 60:.1f} min at {args.challenger_rpm:g} challenger requests/min"
    )
    return 0


def _when(value: str | None, flag: str) -> float:
    """Unix seconds, or an ISO 8601 time (UTC unless it says otherwise)."""
    from datetime import UTC, datetime

    from .challenge.replay import PolicyError

    if not value:
        raise PolicyError(f"{flag}: required with --prometheus")
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as error:
        raise PolicyError(f"{flag}: {value!r} is neither unix seconds nor ISO 8601") from error
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _cmd_replay(args: argparse.Namespace) -> int:
    import yaml

    from .challenge.replay import PolicyError, load_policy, replay
    from .challenge.replay_prometheus import PrometheusReplay, replay_prometheus

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    try:
        with open(args.policy, encoding="utf-8") as handle:
            document = yaml.safe_load(handle)
        policy = load_policy(document, args.loss_bound, lines=args.prometheus is None)
        if args.prometheus is None:
            replay(policy, sys.stdin, write)
            return 0
        if not args.namespace:
            raise PolicyError("--namespace: required with --prometheus")
        replay_prometheus(policy, PrometheusReplay(
            url=args.prometheus,
            start=_when(args.start, "--start"),
            end=_when(args.end, "--end"),
            namespace=args.namespace,
            deployment=args.deployment or policy.policy.spec.target_ref.name,
            champion_version=args.champion_version,
            challenger_version=args.challenger_version,
            namespace_label=args.namespace_label,
        ), write)  # fmt: skip
    except (OSError, yaml.YAMLError, PolicyError) as exc:
        problem = " ".join(str(exc).split())
        print(f"modelops gating replay: {problem}", file=sys.stderr)
        return 2
    return 0


#: Functions that register one command group each on the top-level subparsers.
COMMAND_GROUPS: list[Callable[[Any], None]] = [_add_gating, add_monitoring, add_profile]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelops",
        description="modelops: promote models only on anytime-valid evidence.",
    )
    sub = parser.add_subparsers(dest="command", metavar="GROUP", required=True)
    for register in COMMAND_GROUPS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
