"""One gate evaluation: Prometheus counts in, the gating engine's verdict out.

Counts are per-series increments since the previous look, against the counter values the last
evaluation kept in status (`promsource.CounterLedger`, in `Evaluation.counters`).
Missing metrics never promote: an unreachable Prometheus or an arm without series gives a
`GateSignal` with no action and the reason, which the daemon puts in a condition, and the
kept values stay as they were for the next look.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .. import gating  # its statistics load at the first evaluation (gating/__init__.py)
from ..api.championchallenger import Gate
from ..promsource import (
    ArmSelector,
    CounterLedger,
    CountsSource,
    PrometheusSource,
    PrometheusUnavailable,
)
from .controller import ChallengePolicy, Evaluation
from .model import GateSignal, Status

ROUTER_CONFIG_INFO = "modelops_router_config_info"
# A new split reaches every router within this; the sample-ratio alarm reads no interval that
# began sooner after a step.
SPLIT_SETTLE_SECONDS = 30.0


def _substitute(query: str, values: Mapping[str, str]) -> str:
    for key, value in values.items():
        query = query.replace("{{" + key + "}}", value)
    return query


async def _custom_values(
    source: CountsSource,
    gates: Sequence[Gate],
    namespace: str,
    deployment: str,
    arms: Mapping[str, ArmSelector],
    now: float,
) -> dict[str, dict[str, dict[str, float]]]:
    """Flagger-style `prometheus` gates: each arm's value of the user's query."""
    values: dict[str, dict[str, dict[str, float]]] = {arm: {} for arm in arms}
    for gate in gates:
        if gate.type != "prometheus" or not gate.query:
            continue
        for arm, selector in arms.items():
            query = _substitute(
                gate.query,
                {
                    "namespace": namespace,
                    "deployment": deployment,
                    "role": selector.role,
                    "version": selector.version,
                },
            )
            samples = await source.instant(query, now)
            if samples:
                values[arm][gate.name] = {"value": samples[0].value}
    return values


def kept_counters(previous: Evaluation) -> CounterLedger | None:
    """The previous look's counter values; None (baselines read at the challenge's start again)
    for a challenge's first look, or when what status holds cannot be read."""
    if not previous.counters:
        return None
    try:
        return CounterLedger.from_dict(previous.counters)
    except ValueError:
        return None


async def evaluate_challenge(
    source: CountsSource,
    *,
    namespace: str,
    deployment: str,
    policy: ChallengePolicy,
    status: Status,
    previous: Evaluation,
    now: float,
    loss_bound: float | None = None,
) -> tuple[GateSignal, Evaluation, str | None]:
    """(signal for the state machine, evaluation to keep in status, metrics problem or None).

    `loss_bound`: the target's spec.monitoring.feedback.lossBound, by which its sidecars bound
    each regression label's error."""
    assert status.champion is not None and status.challenger is not None
    assert status.started_at is not None
    arms = {
        "champion": ArmSelector("champion", status.champion.version),
        "challenger": ArmSelector("challenger", status.challenger.version),
    }
    shadow = policy.spec.strategy.type == "shadow"
    try:
        reading = await source.read_counts(
            namespace=namespace,
            deployment=deployment,
            champion=arms["champion"],
            challenger=arms["challenger"],
            started_at=status.started_at,
            ledger=kept_counters(previous),
            now=now,
            paired=shadow,
            warm_up=policy.gating.policy.warm_up,
        )
        custom = await _custom_values(
            source, policy.spec.gates, namespace, deployment, arms, now
        )
    except PrometheusUnavailable as error:
        problem = f"no decision while Prometheus cannot be read: {error}"
        return GateSignal(None, problem, False), previous, problem
    if reading.missing:
        problem = "no decision: no metrics yet from " + ", ".join(reading.missing)
        return GateSignal(None, problem, False), previous, problem
    counts = dict(reading.counts)
    sticky = policy.spec.strategy.sticky_header is not None
    weight = None if sticky else split_in_force(status, previous, reading.complete)
    if weight is not None:
        counts["challengerWeight"] = weight
    if loss_bound is not None:
        counts["lossBound"] = loss_bound
    for arm, values in custom.items():
        if values:
            counts[arm] = {**counts[arm], "custom": values}
    decision = gating.evaluate(
        policy.gating.gates,
        counts,
        elapsed=max(now - status.started_at, 0.0),
        state=previous.state,
        policy=policy.gating.policy,
    )
    fresh = any(g.verdict != gating.NODATA for g in decision.gates)
    kept = Evaluation(
        at=now,
        decision=decision.status_decision,
        gates=tuple(g.to_status() for g in decision.gates),
        state=decision.state.to_dict(),
        counters=reading.ledger.to_dict() if reading.ledger is not None else None,
    )
    return GateSignal(decision.action.value, decision.reason, fresh), kept, None


def split_in_force(status: Status, previous: Evaluation, complete: bool) -> float | None:
    """The challenger's configured share over the whole interval since the previous look, when
    one split was in force for all of it and every pod counted it all; else None (the
    sample-ratio alarm then skips the interval: a changing split is no mismatch). Sticky
    sessions route users, not requests: their split is not binomial, and the caller skips it."""
    if not complete or status.mirror_percent or previous.at is None:
        return None
    started = status.step_started_at
    if started is None or previous.at < started + SPLIT_SETTLE_SECONDS:
        return None
    return status.challenger_percent / 100


async def router_revisions(
    source: PrometheusSource, namespace: str, deployment: str
) -> list[str]:
    """The configuration revision each router pod reports it runs."""
    label = source.settings.namespace_label
    selector = f'{{{label}="{namespace}",deployment="{deployment}"}}'
    samples = await source.instant(f"{ROUTER_CONFIG_INFO}{selector} == 1")
    return [s.labels.get("revision", "") for s in samples]
