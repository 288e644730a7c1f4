"""`modelops gating replay`: a ChampionChallenger's decisions, replayed from counter series.

Each input line is one look of the operator's daemon at time `t`: the cumulative counters of
every series (one pod of one arm) as Prometheus would return them then. The path from series to
decision is the operator's own: a `PrometheusSource` whose only difference is where it reads
(`ReplaySource` answers `_snapshot` and `instant` from the line instead of over HTTP), so
`evaluate_challenge` runs unchanged — the counter ledger (per-series increments, resets, the
new-series rule), `arm_counts`, the gating engine and its kept state — and `machine.step` turns
its signal into the phase, the step and the traffic split, with the daemon's timing rule
(an evaluation is due once `spec.decision.interval` has passed since the last).

A run begins at its first line: the challenger is ready, takes the first step's traffic, and
every series of that line is a baseline (the challenge started then). The replay stops moving a
run once the machine starts a swap (`Promoting`, `RollingBack`): what follows needs a cluster.
With `spec.approval.required` the run stays in `AwaitingApproval` (nobody approves a replay).
Memory per run: the machine's status and what the operator keeps in status (the ledger is
bounded by `ledger.MAX_SERIES`); a concluded run keeps only its last answer.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from ..promsource import ArmSelector, CountsSource, PrometheusSettings, PrometheusSource
from ..promsource.counts import Sample
from ..promsource.ledger import MAX_SERIES, Snapshot
from .controller import ChallengePolicy, Evaluation, parse_policy, strategy_view
from .evaluation import evaluate_challenge
from .machine import GATED_PHASES, desired_topology, step
from .model import GateSignal, ModelRef, Observation, Phase, Status

ARMS = ("champion", "challenger")
CHAMPION = ModelRef("champion")
CHALLENGER = ModelRef("challenger")
COUNTERS = ("requests", "errors", "slow", "correct", "incorrect")
# Optional, for regression models: labels scored, Σ|error| and Σerror² (the sidecar's
# modelops_feedback_total{outcome="scored"}, _absolute_error_total, _squared_error_total).
LOSS_COUNTERS = ("scored", "absoluteError", "squaredError")
DECISIONS = {
    Phase.PROMOTING: "promote",
    Phase.PROMOTED: "promote",
    Phase.ROLLING_BACK: "rollback",
    Phase.ROLLED_BACK: "rollback",
}
MAX_LINE_CHARS = 4_000_000


class PolicyError(ValueError):
    """A policy the replay cannot run; the message starts with the field at fault."""


@dataclass(frozen=True)
class ReplayPolicy:
    policy: ChallengePolicy
    latency_bound: float | None  # the latency gate's bound (seconds), the `slow` field's meaning
    # The target's spec.monitoring.feedback.lossBound: the sidecars' bound on each regression
    # label's error, which the `absoluteError` sums were counted with.
    loss_bound: float | None = None


def load_policy(
    document: Any, loss_bound: float | None = None, lines: bool = True
) -> ReplayPolicy:
    """A ChampionChallenger manifest (or its bare spec), validated into the typed model the
    operator uses; with `lines` (series from JSON lines, not a Prometheus), gates those series
    cannot feed are refused by name."""
    if loss_bound is not None and not 0 < loss_bound < math.inf:
        raise PolicyError(f"--loss-bound: {loss_bound:g} is not a positive finite number")
    if not isinstance(document, Mapping):
        raise PolicyError("policy: not a mapping (a ChampionChallenger manifest or its spec)")
    raw = document.get("spec") if "spec" in document else document
    if not isinstance(raw, Mapping):
        raise PolicyError("spec: not a mapping")
    parsed = parse_policy(raw)
    if isinstance(parsed, str):
        raise PolicyError(parsed)
    bound: float | None = None
    shadow = parsed.spec.strategy.type == "shadow"
    for index, (gate, cfg) in enumerate(zip(parsed.spec.gates, parsed.gating.gates, strict=True)):
        if not lines:
            break  # a Prometheus has every series the operator reads
        where = f"spec.gates[{index}] ({gate.name})"
        if gate.type == "predictionDrift":
            raise PolicyError(f"{where}: a predictionDrift gate cannot be replayed: it needs the "
                              "prediction histogram, which the replay's series do not carry")
        if gate.type == "prometheus":
            raise PolicyError(f"{where}: a prometheus gate cannot be replayed: it needs its "
                              "query's values, which the replay's series do not carry")
        if gate.type == "accuracy" and shadow:
            raise PolicyError(f"{where}: accuracy under spec.strategy.type shadow is judged on "
                              "the router's paired feedback, which the replay's series do not "
                              "carry")
        if cfg.latency_threshold is not None:
            if bound is not None and not math.isclose(bound, cfg.latency_threshold):
                raise PolicyError(f"{where}: a second latencyThreshold cannot be replayed: the "
                                  "series' `slow` counts requests above one bound")
            bound = cfg.latency_threshold
    return ReplayPolicy(parsed, bound, loss_bound)


# ----------------------------------------------------------------------------- input lines
class LineError(ValueError):
    pass


def _number(item: Mapping[str, Any], name: str, where: str, default: float | None = None) -> float:
    value = item.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise LineError(f"{where}{name}: a finite number is required")
    return float(value)


def parse_line(data: Any, latency_bound: float | None) -> tuple[str, float, Snapshot, set[str]]:
    """(run, t, the snapshot Prometheus would give, the arms present) from one decoded line."""
    if not isinstance(data, Mapping):
        raise LineError("a line is one JSON object")
    run = data.get("run")
    if not isinstance(run, str | int) or isinstance(run, bool):
        raise LineError("run: a string or an integer is required")
    t = _number(data, "t", "")
    series = data.get("series")
    if not isinstance(series, list):
        raise LineError("series: a list is required")
    if len(series) > MAX_SERIES:
        raise LineError(f"series: at most {MAX_SERIES} entries")
    families: dict[str, list[Sample]] = {
        "requests": [], "latency": [], "feedback": [], "absoluteError": [], "squaredError": []
    }
    starts: list[Sample] = []
    seen: set[tuple[str, str]] = set()
    for index, item in enumerate(series):
        where = f"series[{index}]."
        if not isinstance(item, Mapping):
            raise LineError(f"series[{index}]: an object is required")
        arm, pod = item.get("arm"), item.get("pod")
        if arm not in ARMS:
            raise LineError(f"{where}arm: champion or challenger")
        if not isinstance(pod, str) or not pod:
            raise LineError(f"{where}pod: a non-empty string is required")
        if (arm, pod) in seen:
            raise LineError(f"{where}pod: {pod!r} appears twice for the {arm}")
        seen.add((arm, pod))
        start = _number(item, "podStart", where)
        n = {name: _number(item, name, where, 0.0) for name in (*COUNTERS, *LOSS_COUNTERS)}
        if any(v < 0 for v in n.values()):
            raise LineError(f"{where}: counters are never negative")
        if n["errors"] > n["requests"] or n["slow"] > n["requests"]:
            raise LineError(f"{where}: errors and slow are shares of requests")
        # The sidecar's labels (DESIGN): role and version name the arm, pod the process.
        labels = {"pod": pod, "role": arm, "version": arm}
        starts.append(Sample(labels, start, t))

        def sample(own: str, value: str, count: float, labels: dict[str, str] = labels) -> Sample:
            return Sample({**labels, own: value}, count, t)

        families["requests"] += [sample("code", "200", n["requests"] - n["errors"]),
                                 sample("code", "500", n["errors"])]  # fmt: skip
        if latency_bound is not None:
            families["latency"] += [sample("le", repr(latency_bound), n["requests"] - n["slow"]),
                                    sample("le", "+Inf", n["requests"])]  # fmt: skip
        families["feedback"] += [sample("outcome", "correct", n["correct"]),
                                 sample("outcome", "incorrect", n["incorrect"])]  # fmt: skip
        if n["scored"]:
            families["feedback"].append(sample("outcome", "scored", n["scored"]))
            families["absoluteError"].append(Sample(labels, n["absoluteError"], t))
            families["squaredError"].append(Sample(labels, n["squaredError"], t))
    return str(run), t, Snapshot(families, starts), {arm for arm, _ in seen}


# ----------------------------------------------------------------------------- the source
class ReplaySource(PrometheusSource):
    """The operator's Prometheus reader, answering from the current line instead of HTTP."""

    def __init__(self) -> None:  # no HTTP client: nothing is ever sent
        self.settings = PrometheusSettings(url="replay:")
        self.now: tuple[float, Snapshot, set[str]] = (0.0, Snapshot({}), set())
        self.at_start: Snapshot = Snapshot({})

    async def aclose(self) -> None:
        return None

    async def instant(self, query: str, at: float | None = None) -> list[Sample]:
        # Only the scrape-time query reaches here (prometheus gates are refused): each arm with
        # series was scraped at t.
        t, _, arms = self.now
        return [Sample({"role": a, "version": a}, t, t) for a in ARMS if a in arms]

    async def _snapshot(
        self,
        labels: Mapping[str, str],
        families: tuple[str, ...],
        arms: tuple[ArmSelector, ...],
        at: float,
    ) -> Snapshot:
        t, snapshot, _ = self.now
        return snapshot if at == t else self.at_start


# ----------------------------------------------------------------------------- runs
@dataclass
class _Run:
    status: Status
    evaluation: Evaluation
    last_t: float
    at_start: Snapshot | None  # the first line's series, until the first look has read them
    answer: dict[str, Any] | None = None  # set once the run is concluded


@dataclass(frozen=True)
class ReplayTarget:
    """Whose series a replay reads: the ModelDeployment and its two versions. Lines name the
    arms "champion" and "challenger"; a Prometheus has the versions' own names."""

    namespace: str = "replay"
    deployment: str = "replay"
    champion: ModelRef = CHAMPION
    challenger: ModelRef = CHALLENGER


class Replayer:
    """Feeds lines to independent runs; `answer(line)` gives the line's JSON answer.

    `source`: where an evaluation reads counts; by default the current line's series
    (`ReplaySource`); `replay_prometheus` gives it a Prometheus and calls `look_at`."""

    def __init__(
        self,
        policy: ReplayPolicy,
        source: CountsSource | None = None,
        target: ReplayTarget = ReplayTarget(),
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.policy = policy
        self.source: CountsSource = source or ReplaySource()
        self.target = target
        self.runs: dict[str, _Run] = {}
        # The source's HTTP client, if any, must live on the loop the looks run on.
        self._loop = loop or asyncio.new_event_loop()

    def close(self) -> None:
        self._loop.close()

    def answer(self, line: str) -> str:
        return json.dumps(self.answer_obj(line), separators=(",", ":"))

    def answer_obj(self, line: str) -> dict[str, Any]:
        data: Any = None
        try:
            if len(line) > MAX_LINE_CHARS:
                raise LineError(f"a line is at most {MAX_LINE_CHARS} characters")
            try:
                data = json.loads(line)
            except ValueError as error:
                raise LineError(f"not JSON: {error}") from error
            parsed = parse_line(data, self.policy.latency_bound)
            answer = self._loop.run_until_complete(self._look(*parsed))
            return {**answer, "t": data["t"]}  # as given (1700000060, not 1700000060.0)
        except LineError as error:
            out: dict[str, Any] = {"error": str(error)}
            if isinstance(data, Mapping):
                out = {"run": data.get("run"), "t": data.get("t"), **out}
            return out

    async def _look(
        self, run_id: str, t: float, snapshot: Snapshot | None = None, arms: set[str] | None = None
    ) -> dict[str, Any]:
        run = self.runs.get(run_id)
        if run is not None and run.answer is not None:
            return {**run.answer, "run": run_id, "t": t}
        if run is not None and t <= run.last_t:
            raise LineError(f"t: {t:g} is not after this run's previous line ({run.last_t:g})")
        spec = self.policy.policy.spec
        if run is None:
            run = self.runs[run_id] = self._begin(t, snapshot)
        else:
            run.last_t = t
            signal = GateSignal(None, run.status.message or "gates not evaluated yet", False)
            if self._due(run, t):
                if isinstance(self.source, ReplaySource) and snapshot is not None:
                    self.source.now = (t, snapshot, arms or set())
                    self.source.at_start = run.at_start or Snapshot({})
                signal, evaluation, problem = await evaluate_challenge(
                    self.source,
                    namespace=self.target.namespace,
                    deployment=self.target.deployment,
                    policy=self.policy.policy,
                    status=run.status,
                    previous=run.evaluation,
                    now=t,
                    loss_bound=self.policy.loss_bound,
                )
                # As the daemon does: retry at the next look, never decide on missing data.
                run.evaluation = replace(evaluation, at=None) if problem else evaluation
                if not problem:
                    run.at_start = None  # the ledger holds the baselines now
            transition = step(run.status, self._observation(t, signal))
            run.status = transition.status
            if transition.reset_evidence:
                run.evaluation = Evaluation()
        status = run.status
        traffic = desired_topology(status)
        out: dict[str, Any] = {
            "run": run_id,
            "t": t,
            "phase": status.phase.value,
            "decision": DECISIONS.get(status.phase, "wait"),
            "challengerPercent": traffic.challenger_percent,
        }
        if spec.strategy.type == "shadow":
            out["mirrorPercent"] = traffic.mirror_percent
        out["reason"] = status.message
        if status.phase in DECISIONS:
            # A swap needs a cluster: the run's answer is final, its state dropped.
            run.answer, run.evaluation, run.at_start = out, Evaluation(), None
        return out

    def _due(self, run: _Run, t: float) -> bool:
        # The daemon's rule (handlers.championchallenger._due), on the replay's clock.
        policy = self.policy.policy
        gated = run.status.phase in GATED_PHASES and run.status.started_at is not None
        if not gated or policy.spec.paused:
            return False
        last = run.evaluation.at
        return last is None or t - last >= policy.gating.policy.interval

    def _observation(self, t: float, signal: GateSignal) -> Observation:
        spec = self.policy.policy.spec
        return Observation(
            now=t,
            desired=self.target.challenger,
            strategy=strategy_view(spec.strategy),
            live_champion=self.target.champion,
            challenger_ready=True,
            gates=signal,
            step_interval_seconds=self.policy.policy.gating.policy.interval,
            approval_required=spec.approval.required,
            paused=spec.paused,
        )

    def _begin(self, t: float, snapshot: Snapshot | None) -> _Run:
        """The challenge starts at the run's first line: Idle → Progressing → first step."""
        status = Status(champion=self.target.champion)
        for _ in range(2):
            status = step(status, self._observation(t, GateSignal())).status
        return _Run(status, Evaluation(), t, snapshot)

    def look_at(self, run_id: str, t: float) -> dict[str, Any]:
        """One look of a run at `t`, its counts read from the source (not from a line)."""
        return self._loop.run_until_complete(self._look(run_id, t))


def replay(policy: ReplayPolicy, lines: Iterable[str], write: Callable[[str], Any]) -> None:
    """Answer every non-blank line of `lines` through `write`, one JSON line each."""
    replayer = Replayer(policy)
    try:
        for line in lines:
            if line.strip():
                write(replayer.answer(line) + "\n")
    finally:
        replayer.close()
