# ruff: noqa: RUF002, RUF003  (mathematical notation: α, Δ, ×, − are intended)
"""The world that broke the gates, replayed through `modelops gating replay`'s own path.

Each scenario simulates pods serving traffic minute by minute, split as the replay answers
(closed loop), and hands the replay the cumulative counters each pod's sidecar would export
(restarts reset them; labels go through the sidecar's own `MaturingScores` where the scenario
says so). The challenger sits exactly on the null it must not pass (the worst case) unless the
scenario measures power; with the default harmMargin (the margin) that is also the edge of the
rollback null, so the same runs measure false promotion and false rollback. Each table row of
the issue is one test; `RUNS` runs each, and a rate "holds" when it is at most alpha + 2
Monte-Carlo standard errors (`limit`).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from scipy.optimize import brentq

from modelops_operator.challenge.replay import Replayer, load_policy
from modelops_serving.feedback_store import FeedbackStore, MaturingScores, Remembered, Score
from modelops_serving.feedback_store import score as score_label
from modelops_serving.retries import RouteMemory, attempt_line, read_marks, route_arm
from modelops_serving.router_config import RouterConfig
from modelops_serving.routing import CHALLENGER, CHAMPION

pytestmark = pytest.mark.slow

T0 = 1_700_000_000.0
ALPHA = 0.05
RUNS = 200


def limit(runs: int = RUNS, alpha: float = ALPHA) -> float:
    return alpha + 2 * math.sqrt(alpha * (1 - alpha) / runs)


def policy(gates: list[dict[str, Any]], steps: list[int], **decision: Any) -> Replayer:
    return Replayer(load_policy({
        "targetRef": {"name": "fraud"},
        "strategy": {"type": "canary", "steps": steps},
        "gates": gates,
        "decision": {"interval": "1m", "maxDuration": "24h", **decision},
    }))


ERRORS = {"name": "errors", "type": "errorRate"}  # defaults: margin 0.2, absoluteMargin 0.001
ACCURACY = {"name": "accuracy", "type": "accuracy"}  # default margin: one point


@dataclass
class Pod:
    arm: str
    name: str
    start: float
    counters: dict[str, float] = field(default_factory=dict)

    def add(self, **counts: float) -> None:
        for key, value in counts.items():
            self.counters[key] = self.counters.get(key, 0.0) + value

    def restart(self, at: float) -> None:
        self.start, self.counters = at, {}

    def series(self) -> dict[str, Any]:
        return {"arm": self.arm, "pod": self.name, "podStart": self.start, **self.counters}


# A minute of the world: (rng, minute, challenger percent, champion pod, challenger pod).
Minute = Callable[[np.random.Generator, int, int, Pod, Pod], None]


def run(replayer: Replayer, minute: Minute, *, looks: int, runs: int, seed: int,
        challenger_start: float = T0 - 600) -> list[dict[str, Any]]:
    """The last answer of each run (a run stops at its first decision)."""
    last = []
    for r in range(runs):
        rng = np.random.default_rng([seed, r])
        champion = Pod("champion", "champion-0", T0 - 86_400)
        challenger = Pod("challenger", "challenger-0", challenger_start)
        percent = 0
        answer: dict[str, Any] = {}
        for k in range(looks):
            if k:
                minute(rng, k, percent, champion, challenger)
            line = {"run": str(r), "t": T0 + 60 * k,
                    "series": [champion.series(), challenger.series()]}
            answer = replayer.answer_obj(json.dumps(line))
            percent = answer["challengerPercent"]
            if answer["decision"] != "wait":
                break
        last.append(answer)
    return last


def share(answers: list[dict[str, Any]], decision: str) -> float:
    """The share of runs that ended in `decision` (printed: `pytest -s` shows the figures)."""
    rate = float(np.mean([a["decision"] == decision for a in answers]))
    print(f"\n  {decision}: {rate:.3f} of {len(answers)} runs")
    return rate


def split(rng: np.random.Generator, per_minute: float, percent: int) -> tuple[int, int]:
    total = int(rng.poisson(per_minute))
    to_challenger = int(rng.binomial(total, percent / 100))
    return total - to_challenger, to_challenger


def serve_errors(rng: np.random.Generator, pod: Pod, n: int, rate: float) -> None:
    pod.add(requests=n, errors=int(rng.binomial(n, min(rate, 1.0))))


def at_error_null(rate: float) -> float:
    """Worse than both default margins: 20 % more errors and 0.1 point more."""
    return max(1.2 * rate, rate + 0.001)


Rate = Callable[[int], float]  # a share at minute k


def errors_world(per_minute: float, champion: Rate, challenger: Rate) -> Minute:
    """Both arms erring at their rates of the minute, traffic split as the replay says."""

    def minute(rng, k, percent, champion_pod, challenger_pod):
        n_a, n_b = split(rng, per_minute, percent)
        serve_errors(rng, champion_pod, n_a, champion(k))
        serve_errors(rng, challenger_pod, n_b, challenger(k))

    return minute


def test_an_error_burst_on_both_arms_during_the_first_step_promotes_nobody() -> None:
    """Was 99.5 %: cumulative rates compared the 5 % step's burst with the champion's calm."""

    def base(k: int) -> float:
        return 0.2 if k in (1, 2) else 0.005  # the burst falls in the 5 % step

    minute = errors_world(3000, base, lambda k: at_error_null(base(k)))
    answers = run(policy([ERRORS], [5, 25, 50]), minute, looks=150, runs=RUNS, seed=1)
    assert share(answers, "promote") <= limit()
    assert share(answers, "rollback") <= limit()


def correct(rng: np.random.Generator, n: int, hard: float, accuracy: tuple[float, float]
            ) -> tuple[int, int]:
    """(labels, correct) of n requests, a share `hard` of them hard."""
    n_hard = int(rng.binomial(n, hard))
    right = int(rng.binomial(n_hard, accuracy[0])) + int(rng.binomial(n - n_hard, accuracy[1]))
    return n, right


CHAMPION_ACCURACY = (0.60, 0.95)  # hard, easy requests
AT_ACCURACY_NULL = (0.59, 0.94)  # one point worse on every kind of request


def label(pod: Pod, labels: int, right: int) -> None:
    pod.add(correct=right, incorrect=labels - right)


def labels_world(per_minute: float, champion: tuple[float, float],
                 challenger: tuple[float, float], hard: Rate = lambda k: 0.0) -> Minute:
    """Every request labelled at once; accuracies on (hard, easy) requests, `hard(k)` of them
    hard in minute k."""

    def minute(rng, k, percent, champion_pod, challenger_pod):
        n_a, n_b = split(rng, per_minute, percent)
        champion_pod.add(requests=n_a)
        challenger_pod.add(requests=n_b)
        label(champion_pod, *correct(rng, n_a, hard(k), champion))
        label(challenger_pod, *correct(rng, n_b, hard(k), challenger))

    return minute


def test_the_mix_getting_easier_during_the_ramp_promotes_nobody() -> None:
    """Was 98.6–100 %: the challenger's labels came mostly from the easy late traffic."""
    minute = labels_world(3000, CHAMPION_ACCURACY, AT_ACCURACY_NULL,
                          hard=lambda k: 0.5 if k < 4 else 0.1)
    answers = run(policy([ACCURACY], [5, 25, 50]), minute, looks=150, runs=RUNS, seed=2)
    assert share(answers, "promote") <= limit()
    assert share(answers, "rollback") <= limit()


def diurnal_hard_share(k: int) -> float:
    """Rising at the start: older requests were easier."""
    return 0.3 + 0.2 * math.sin(2 * math.pi * k / 1440)


@pytest.mark.parametrize("maturity", [90 * 60.0, None])
def test_challenger_labels_an_hour_later_compare_the_same_hours_with_a_maturity_window(
    maturity: float | None,
) -> None:
    """Was 93–100 %. The sidecars' maturity window counts both models' labels at the same age;
    without it (counted at arrival) the challenger is judged on easier, older hours."""
    delays = {"champion": 5, "challenger": 65}  # minutes until the label comes back
    clock = [0.0]
    held: dict[str, MaturingScores] = {}  # each arm's sidecar, new for every run

    def minute(rng, k, percent, champion, challenger):
        clock[0] = 60.0 * k
        n_a, n_b = split(rng, 3000, percent)
        champion.add(requests=n_a)
        challenger.add(requests=n_b)
        for pod, n, acc in ((champion, n_a, CHAMPION_ACCURACY),
                            (challenger, n_b, AT_ACCURACY_NULL)):  # fmt: skip
            labels, right = correct(rng, n, diurnal_hard_share(k), acc)
            waiting = pending.setdefault(pod.arm, [])
            waiting.append((k + delays[pod.arm], k, Score(correct=right,
                                                          incorrect=labels - right)))
            arrived = [w for w in waiting if w[0] <= k]
            pending[pod.arm] = [w for w in waiting if w[0] > k]
            sidecar = held.setdefault(pod.arm, MaturingScores(maturity or 1.0, lambda: clock[0]))
            for _, predicted_minute, score in arrived:
                if maturity is None:
                    pod.add(correct=score.correct, incorrect=score.incorrect)
                else:
                    sidecar.add(60.0 * predicted_minute, score)
            if maturity is not None:
                for score in sidecar.release():
                    pod.add(correct=score.correct, incorrect=score.incorrect)

    runs = RUNS if maturity else 40
    answers = []
    for r in range(runs):
        pending: dict[str, list[tuple[int, int, Score]]] = {}
        held.clear()
        answers += run(policy([ACCURACY], [5, 25, 50]), minute, looks=300, runs=1,
                       seed=1000 + r)
    if maturity:
        assert share(answers, "promote") <= limit(runs)
        assert share(answers, "rollback") <= limit(runs)
    else:  # the scenario bites: the control shows why the window exists
        assert share(answers, "promote") > 0.3


def test_a_challenger_restarting_every_one_to_two_hours_promotes_nobody() -> None:
    """Was 22–35 % (accuracy) and 7–14 % (absolute error route): resets lost or invented
    counts. Each restart warms up again (2 minutes left out)."""
    next_restart = {}

    def minute(rng, k, percent, champion, challenger):
        if k >= next_restart.setdefault(id(challenger), int(rng.integers(60, 121))):
            challenger.restart(T0 + 60 * k - 30)
            next_restart[id(challenger)] = k + int(rng.integers(60, 121))
        n_a, n_b = split(rng, 3000, percent)
        serve_errors(rng, champion, n_a, 0.005)
        serve_errors(rng, challenger, n_b, at_error_null(0.005))
        label(champion, *correct(rng, n_a, 0.3, CHAMPION_ACCURACY))
        label(challenger, *correct(rng, n_b, 0.3, AT_ACCURACY_NULL))

    errors_only = run(policy([ERRORS], [5, 25, 50]), minute, looks=240, runs=RUNS, seed=4)
    assert share(errors_only, "promote") <= limit()
    assert share(errors_only, "rollback") <= limit()
    accuracy = run(policy([ACCURACY], [5, 25, 50]), minute, looks=240, runs=RUNS, seed=5)
    assert share(accuracy, "promote") <= limit()
    assert share(accuracy, "rollback") <= limit()


def test_a_minute_of_cold_start_errors_rolls_back_no_good_challenger() -> None:
    """Was 74–100 % false rollback: the warm-up (2 minutes by default) leaves it out."""

    minute = errors_world(3000, lambda k: 0.005, lambda k: 0.3 if k <= 1 else 0.005)
    answers = run(policy([ERRORS], [5, 25, 50]), minute, looks=120, runs=RUNS, seed=6,
                  challenger_start=T0)
    assert share(answers, "rollback") <= limit()


def test_accuracy_near_one_on_a_small_canary_promotes_nobody() -> None:
    """Was 6.3 %: a plug-in variance near accuracy 1 is too small; betting needs none."""

    minute = labels_world(3000, (0.0, 0.995), (0.0, 0.985))
    answers = run(policy([ACCURACY], [5, 10]), minute, looks=240, runs=RUNS, seed=7)
    assert share(answers, "promote") <= limit()
    assert share(answers, "rollback") <= limit()


def test_power_is_kept() -> None:
    """2× the error rate and two points less accuracy at 300 requests a minute are rolled back
    in ≥ 80 % of runs within 24 h; an equal challenger at 3,000 a minute is promoted in ≥ 80 %
    of runs within 2 h."""
    runs = 100

    worse_errors = errors_world(300, lambda k: 0.005, lambda k: 0.01)
    answers = run(policy([ERRORS], [5, 25, 50]), worse_errors, looks=1440, runs=runs, seed=8)
    assert share(answers, "rollback") >= 0.8

    worse_accuracy = labels_world(300, (0.0, 0.90), (0.0, 0.88))
    answers = run(policy([ACCURACY], [5, 25, 50]), worse_accuracy, looks=1440, runs=runs,
                  seed=9)
    assert share(answers, "rollback") >= 0.8

    equal = errors_world(3000, lambda k: 0.005, lambda k: 0.005)
    answers = run(policy([ERRORS], [5, 25, 50]), equal, looks=120, runs=runs, seed=10)
    assert share(answers, "promote") >= 0.8


def router_config(percent: int) -> RouterConfig:
    return RouterConfig(apiVersion="router.modelops.io/v1alpha1",
                        champion={"url": "http://champion"},  # type: ignore[arg-type]
                        challenger={"url": "http://challenger"},  # type: ignore[arg-type]
                        challengerWeight=percent)


@dataclass
class SidecarRetryRule:
    """The sidecar's rule for what it counts apart (dataplane/internal/sidecar, isRetry): a
    marker says retry, or it answered the client's id within the retry window."""

    store: FeedbackStore
    retry_window: float = 60.0

    def is_retry(self, attempt: int, client_id: str | None) -> bool:
        if attempt > 1:
            return True
        found = None if client_id is None else self.store.get_aged(client_id)
        return found is not None and found[1] <= self.retry_window


def new_sidecar(clock: Callable[[], float]) -> SidecarRetryRule:
    return SidecarRetryRule(FeedbackStore(clock=clock))


def retrying_world(champion: float, challenger: float, retries: int, again: float,
                   recognised: bool, per_minute: float = 3000) -> Minute:
    """Clients retry a failed request up to `retries` times, a second or two apart, until it
    succeeds; a retry fails again with probability `again` (the input, not the model, was the
    trouble). Each attempt goes through the router's `RouteMemory` and `route_arm`, carries the
    head the router writes, and is counted or not by the sidecar's `is_retry`; with
    `recognised=False` the router remembers nothing, as before retries were recognised, so a
    retry is split like a new request and counted where it lands. First attempts that succeed
    are counted in bulk: a fresh id and no marker, which every rule counts."""
    state: dict[str, Any] = {}

    def minute(rng, k, percent, champion_pod, challenger_pod):
        if k == 1:  # a new run: a new router and new sidecars
            state["clock"] = [0.0]
            clock = lambda: state["clock"][0]  # noqa: E731
            state["memory"] = RouteMemory(100_000, 3600.0, clock=clock)
            state["sidecars"] = {CHAMPION: new_sidecar(clock), CHALLENGER: new_sidecar(clock)}
        now, memory, sidecars = state["clock"], state["memory"], state["sidecars"]
        pods = {CHAMPION: champion_pod, CHALLENGER: challenger_pod}
        config = router_config(percent)

        def attempt(request_id: str, drawn: str | None) -> tuple[str, bool]:
            """Where one attempt goes (the split's `drawn` arm for a new request) and whether
            its sidecar counts it."""
            marks = read_marks(b"\r\nX-Request-Id: %s\r\n" % request_id.encode())
            earlier, number = memory.earlier(marks) if recognised else (None, marks.standard)
            arm = drawn or route_arm(config, earlier, None, rng.random)
            if recognised:
                memory.dispatched(marks.request_id, earlier, arm, f"http://{arm}", number)
            seen = read_marks(b"\r\nX-Request-Id: %s%s\r\n" % (request_id.encode(),
                                                                  attempt_line(number)))
            return arm, not sidecars[arm].is_retry(seen.attempt, seen.request_id)

        for arm, n in zip((CHAMPION, CHALLENGER), split(rng, per_minute, percent), strict=True):
            failed = int(rng.binomial(n, champion if arm == CHAMPION else challenger))
            pods[arm].add(requests=n - failed)
            for i in range(failed):
                request_id = f"{k}-{arm}-{i}"
                now[0] = 60.0 * k + float(rng.uniform(0, 58))
                where, counted = attempt(request_id, arm)
                assert counted
                pods[where].add(requests=1, errors=1)
                for _ in range(retries):
                    now[0] += float(rng.uniform(1, 2))
                    where, counted = attempt(request_id, None)
                    fails = bool(rng.random() < again)
                    if counted:
                        pods[where].add(requests=1, errors=int(fails))
                    if not fails:
                        break

    return minute


@pytest.mark.parametrize("retries", [1, 3])
def test_retries_stay_on_their_arm_and_out_of_the_counts(retries: int) -> None:
    """Counted as new requests where the split sends them, retries mix the arms' errors (with
    a 5 % canary nearly all of the challenger's failures are retried on the champion, and the
    champion's fill the challenger's small share with its error rate, so a worse challenger
    looks like the champion) and come in clumps that the e-processes take for independent
    evidence: false promotion 20 % (one retry) and 68 % (three) in 40 runs. Recognised by
    their X-Request-Id, kept on their arm and counted apart: neither, and no false rollback."""
    base, again, runs, looks = 0.005, 0.8, 100, 100
    at_null = retrying_world(base, at_error_null(base), retries, again, recognised=True)
    answers = run(policy([ERRORS], [5, 25, 50]), at_null, looks=looks, runs=runs, seed=20)
    assert share(answers, "promote") <= limit(runs)
    assert share(answers, "rollback") <= limit(runs)
    equal = retrying_world(base, base, retries, again, recognised=True)
    answers = run(policy([ERRORS], [5, 25, 50]), equal, looks=looks, runs=runs, seed=21)
    assert share(answers, "rollback") <= limit(runs)
    # The control: the same worse challenger, its retries counted wherever the split sends them.
    counted = retrying_world(base, at_error_null(base), retries, again, recognised=False)
    answers = run(policy([ERRORS], [5, 25, 50]), counted, looks=looks, runs=40, seed=22)
    assert share(answers, "promote") > limit(runs)


def test_labels_sent_twice_count_once() -> None:
    """30 % of labels are sent a second time, a minute or two after the first. Each request
    (50 rows) is remembered in its sidecar's `FeedbackStore`; a label takes the prediction out
    (`take_dated`), is scored and held by `MaturingScores` until the prediction is 4 minutes
    old; every second label finds nothing (unmatched), so no request is counted twice."""
    rows, duplicated, maturity = 50, 0.3, 240.0
    state: dict[str, Any] = {}

    def minute(rng, k, percent, champion_pod, challenger_pod):
        if k == 1:  # a new run: new sidecars
            state["clock"] = [0.0]
            clock = lambda: state["clock"][0]  # noqa: E731
            state["arms"] = {arm: (FeedbackStore(clock=clock), MaturingScores(maturity, clock),
                                   defaultdict(list)) for arm in (CHAMPION, CHALLENGER)}
        state["clock"][0] = 60.0 * k
        for pod, n, accuracy in zip((champion_pod, challenger_pod), split(rng, 3000, percent),
                                    (CHAMPION_ACCURACY, AT_ACCURACY_NULL), strict=True):
            store, held, due = state["arms"][pod.arm]
            for request_id, truth, second in due.pop(k, ()):
                dated = store.take_dated(request_id)
                assert (dated is None) == second  # a first label always finds its prediction
                if dated is not None:
                    held.add(dated[1], score_label(dated[0], truth))
                else:
                    state["unmatched"] = state.get("unmatched", 0) + 1
            for result in held.release():
                pod.add(correct=result.correct, incorrect=result.incorrect)
            requests = n // rows
            pod.add(requests=requests * rows)
            p = 0.3 * accuracy[0] + 0.7 * accuracy[1]  # a row's chance, 30 % of rows hard
            rights = rng.binomial(rows, p, size=requests)
            delays = rng.integers(1, 4, size=requests)
            again = rng.random(requests) < duplicated
            for i in range(requests):
                request_id = f"{k}-{i}"
                store.remember(request_id, [1] * rows, classification=True)
                truth = [1] * int(rights[i]) + [0] * (rows - int(rights[i]))
                due[k + int(delays[i])].append((request_id, truth, False))
                if again[i]:
                    due[k + int(delays[i]) + 1 + i % 2].append((request_id, truth, True))

    runs = 100
    answers = run(policy([ACCURACY], [5, 25, 50]), minute, looks=100, runs=runs, seed=30)
    assert share(answers, "promote") <= limit(runs)
    assert share(answers, "rollback") <= limit(runs)
    assert state["unmatched"] > 0


LOSS_BOUND = 20.0
LOSS_MARGIN = 0.1  # the accuracy gate's margin, in the loss's units for a regression model


def lomax_errors(rng: np.random.Generator, n: int, tail: float = 1.5) -> np.ndarray:
    """Absolute errors with a power-law tail: mean 1/(tail − 1), infinite variance at 1.5."""
    return rng.random(n) ** (-1 / tail) - 1.0


def losses_world(per_minute: float, challenger_shift: float) -> Minute:
    """Every request labelled at once and scored by the sidecar's own rule (`score`, each
    error counted up to LOSS_BOUND); the challenger's errors are the champion's kind plus
    `challenger_shift`."""

    def minute(rng, k, percent, champion, challenger):
        n_a, n_b = split(rng, per_minute, percent)
        for pod, n, shift in ((champion, n_a, 0.0), (challenger, n_b, challenger_shift)):
            pod.add(requests=n)
            if n:
                truth = (lomax_errors(rng, n) + shift).tolist()
                scored = score_label(Remembered([0.0] * n, False), truth, LOSS_BOUND)
                pod.add(scored=scored.scored, absoluteError=scored.absolute_error,
                        squaredError=scored.squared_error)  # fmt: skip

    return minute


def loss_policy() -> Replayer:
    gate = {"name": "loss", "type": "accuracy", "margin": LOSS_MARGIN}
    return Replayer(load_policy({
        "targetRef": {"name": "fraud"},
        "strategy": {"type": "canary", "steps": [5, 25, 50]},
        "gates": [gate],
        "decision": {"interval": "1m", "maxDuration": "24h"},
    }, loss_bound=LOSS_BOUND))


def bounded_mean(bound: float, tail: float = 1.5) -> Callable[[float], float]:
    """E[min(X, b)] of `lomax_errors` for b ≤ bound (the survival function's integral)."""
    return lambda b: (1 - (1 + b) ** (1 - tail)) / (tail - 1)


def test_heavy_tailed_regression_loss_promotes_nobody_at_the_margin() -> None:
    """Was 8–17 % with the plug-in variance. With spec.monitoring.feedback.lossBound the gate
    bets on the bounded losses (exact); the challenger sits on that test's null: its bounded
    mean loss exactly LOSS_MARGIN above the champion's."""
    mean = bounded_mean(LOSS_BOUND)
    shift = brentq(lambda c: c + mean(LOSS_BOUND - c) - mean(LOSS_BOUND) - LOSS_MARGIN, 0, 1)
    runs = 100
    answers = run(loss_policy(), losses_world(300, shift), looks=240, runs=runs, seed=12)
    assert share(answers, "promote") <= limit(runs)
    assert share(answers, "rollback") <= limit(runs)
    # Not by never deciding: an equal challenger at 1,000 a minute is promoted within 4 h.
    equal = run(loss_policy(), losses_world(1000, 0.0), looks=240, runs=20, seed=13)
    assert share(equal, "promote") >= 0.8
