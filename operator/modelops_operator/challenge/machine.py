"""The champion/challenger state machine: one pure function per phase, Flagger-style.

`step(status, observation) -> Transition`. Everything it knows comes in as plain data (what the
ModelDeployment asks for, what is live, what the gates said, what a person commanded), and
everything it decides goes out as plain data (the next status, Events, a history entry). State
lives in the returned status, never in memory, so an operator restarted at any point resumes
from status where it stopped; the topology (which Deployments run which version, how traffic is
split) is derived from status alone by `desired_topology`, so applying it twice is harmless.

Phases: Idle → Progressing(step i) → [AwaitingApproval] → Promoting → Promoted, or
RollingBack → RolledBack; Failed for configuration errors. Promotion follows Flagger's hot swap:
(1) all traffic to the warm challenger, (2) the champion Deployment rolls to the new version
while it takes no traffic, (3) all traffic back to the champion, the challenger is removed.
Every traffic move is one route update of a router that reloads without dropping requests.
"""

from __future__ import annotations

from dataclasses import replace

from .model import (
    GATES,
    Command,
    Event,
    HistoryEntry,
    Observation,
    Phase,
    PromotionStage,
    Status,
    Topology,
    Transition,
)
from .rejection import rejected_in_spec

GATED_PHASES = (Phase.PROGRESSING, Phase.AWAITING_APPROVAL)


def desired_topology(status: Status) -> Topology:
    """What should run and how traffic is split, from status alone."""
    champion = status.champion
    challenger = status.challenger
    if status.phase in GATED_PHASES and challenger is not None:
        return Topology(champion, challenger, status.challenger_percent, status.mirror_percent)
    if status.phase is Phase.PROMOTING and challenger is not None:
        if status.promotion_stage is PromotionStage.SHIFT:
            return Topology(champion, challenger, 100, 0)
        if status.promotion_stage is PromotionStage.CONVERGE:
            # The champion Deployment rolls to the new version while it takes no traffic.
            return Topology(challenger, challenger, 100, 0)
        # Traffic back on the champion Deployment; the challenger stays (0%) through the
        # feedback grace so labels of requests it answered still reach it.
        return Topology(challenger, None if status.traffic_withdrawn else challenger, 0, 0)
    if status.phase is Phase.ROLLING_BACK and challenger is not None:
        # Traffic leaves the challenger first; it is removed once the route says so.
        return Topology(champion, challenger if not status.traffic_withdrawn else None, 0, 0)
    return Topology(champion, None, 0, 0)


def step(status: Status, seen: Observation) -> Transition:
    if seen.config_error:
        return _fail(status, seen)
    if status.phase is Phase.FAILED:
        status = replace(status, phase=Phase.IDLE if status.champion is None else _rest(status))
    if status.champion is None and seen.live_champion is not None:
        status = replace(status, champion=seen.live_champion)
    if seen.paused and status.phase not in (Phase.PROMOTING, Phase.ROLLING_BACK):
        # Half a swap is worse than either end of it, so a pause waits for one to finish.
        return Transition(replace(status, message="paused (spec.paused is true)"))
    if seen.command is not None and status.phase in GATED_PHASES:
        return _obey(status, seen, seen.command)
    handler = {
        Phase.IDLE: _resting,
        Phase.PROMOTED: _resting,
        Phase.ROLLED_BACK: _resting,
        Phase.PROGRESSING: _progressing,
        Phase.AWAITING_APPROVAL: _awaiting_approval,
        Phase.PROMOTING: _promoting,
        Phase.ROLLING_BACK: _rolling_back,
    }[status.phase]
    return handler(status, seen)


# ----------------------------------------------------------------------------- resting phases
def _rest(status: Status) -> Phase:
    return status.last_outcome or Phase.IDLE


def _resting(status: Status, seen: Observation) -> Transition:
    if seen.live_champion is not None:
        # At rest the live champion is the truth, whoever rolled it out.
        status = replace(status, champion=seen.live_champion)
    champion = status.champion
    if champion is None:
        return Transition(replace(status, message="waiting for the target's first rollout"))
    if seen.desired.same_model(champion):
        return Transition(replace(status, message=f"{champion.version} is serving"))
    rejected = rejected_in_spec(status, seen.desired)
    if rejected is not None:
        return Transition(
            replace(
                status,
                message=f"{rejected.version} was rolled back; {champion.version} serves "
                "until spec.model names another version",
            )
        )
    return _start(status, seen, reason="ChallengeStarted")


def _start(status: Status, seen: Observation, *, reason: str) -> Transition:
    challenger = seen.desired
    assert status.champion is not None
    fresh = Status(
        phase=Phase.PROGRESSING,
        champion=status.champion,
        challenger=challenger,
        rejected=status.rejected,
        last_outcome=status.last_outcome,
        challenge_id=f"{challenger.version}-{int(seen.now)}",
        message=f"starting challenger {challenger.version}; waiting for it to become ready",
    )
    return Transition(
        fresh,
        events=(
            Event(
                "Normal",
                reason,
                f"challenger {challenger.version} against champion "
                f"{status.champion.version} ({seen.strategy.type})",
            ),
        ),
        reset_evidence=True,
    )


# ----------------------------------------------------------------------------- gated phases
def _progressing(status: Status, seen: Observation) -> Transition:
    changed = _spec_moved(status, seen)
    if changed is not None:
        return changed
    assert status.challenger is not None
    if not seen.challenger_ready:
        return Transition(
            replace(
                status,
                message=f"waiting for challenger {status.challenger.version} to become ready",
            )
        )
    if status.started_at is None:
        first = seen.strategy.traffic_at(0)
        started = replace(
            status,
            started_at=seen.now,
            step_started_at=seen.now,
            step=0,
            challenger_percent=first.challenger_percent,
            mirror_percent=first.mirror_percent,
            message=f"challenger ready; {first.describe()}",
        )
        return Transition(started, events=(Event("Normal", "TrafficShifted", first.describe()),))
    gates = seen.gates
    if gates.action == "ROLLBACK":
        return _begin_rollback(status, f"gates failed: {gates.reason}", "GatesFailed")
    strategy = seen.strategy
    final_step = status.step >= strategy.last_step
    if gates.action == "PROMOTE" and final_step:
        return _gates_passed(status, seen)
    dwell_over = status.step_started_at is not None and (
        seen.now - status.step_started_at >= seen.step_interval_seconds
    )
    if not final_step and gates.fresh and gates.action in ("WAIT", "PROMOTE") and dwell_over:
        # More exposure only on fresh evidence of no harm: stale or missing data never widens it.
        nxt = strategy.traffic_at(status.step + 1)
        advanced = replace(
            status,
            step=status.step + 1,
            step_started_at=seen.now,
            challenger_percent=nxt.challenger_percent,
            mirror_percent=nxt.mirror_percent,
            message=f"step {status.step + 2}/{strategy.last_step + 1}: {nxt.describe()}",
        )
        return Transition(advanced, events=(Event("Normal", "TrafficShifted", nxt.describe()),))
    return Transition(replace(status, message=gates.reason))


def _gates_passed(status: Status, seen: Observation) -> Transition:
    assert status.challenger is not None
    version = status.challenger.version
    if seen.approval_required and seen.approved_version != status.challenge_id:
        waiting = replace(
            status,
            phase=Phase.AWAITING_APPROVAL,
            message=f"gates passed; {version} awaits approval (kubectl modelops approve)",
        )
        return Transition(waiting, events=(Event("Normal", "AwaitingApproval", waiting.message),))
    by = f" (approved by {seen.approved_by})" if seen.approval_required else ""
    return _begin_promotion(status, f"gates passed{by}", "GatesPassed")


def _awaiting_approval(status: Status, seen: Observation) -> Transition:
    changed = _spec_moved(status, seen)
    if changed is not None:
        return changed
    assert status.challenger is not None
    if seen.gates.action == "ROLLBACK":
        return _begin_rollback(status, f"gates failed: {seen.gates.reason}", "GatesFailed")
    if seen.approved_version == status.challenge_id and seen.challenger_ready:
        return _begin_promotion(status, f"approved by {seen.approved_by}", "Approved")
    return Transition(
        replace(
            status,
            message=f"gates passed; {status.challenger.version} awaits approval "
            "(kubectl modelops approve)",
        )
    )


def _spec_moved(status: Status, seen: Observation) -> Transition | None:
    """A new spec.model mid-challenge: never promote a version nobody validated.

    A challenger that already takes traffic is withdrawn first (route confirmed, feedback
    grace), exactly like a rollback but without a verdict; only then does a new challenge
    start, so no request reaches a Deployment that is being replaced or removed.
    """
    assert status.challenger is not None and status.champion is not None
    if seen.desired.same_model(status.challenger):
        return None
    if status.started_at is not None:
        back_to_champion = seen.desired.same_model(status.champion)
        why = (
            f"spec.model is {status.champion.version} again"
            if back_to_champion
            else f"spec.model moved on to {seen.desired.version}"
        )
        withdrawing = _withdrawing_traffic(
            status,
            withdrawing=True,
            outcome_reason=why,
            message=f"withdrawing {status.challenger.version}: {why}",
        )
        event = Event("Normal", "ChallengeWithdrawn", withdrawing.message)
        return Transition(withdrawing, events=(event,), reset_evidence=True)
    if seen.desired.same_model(status.champion):
        cancelled = replace(
            desired_rest(status),
            message=f"challenge of {status.challenger.version} cancelled: "
            f"spec.model is {status.champion.version} again",
        )
        return Transition(
            cancelled,
            events=(Event("Normal", "ChallengeCancelled", cancelled.message),),
            reset_evidence=True,
        )
    return _start(status, seen, reason="ChallengeRestarted")


def desired_rest(status: Status) -> Status:
    return Status(
        phase=_rest(status),
        champion=status.champion,
        rejected=status.rejected,
        last_outcome=status.last_outcome,
    )


def _obey(status: Status, seen: Observation, command: Command) -> Transition:
    if command.action == "rollback":
        return _begin_rollback(
            status, f"rollback requested by {command.user}", "ManualRollback", command.user
        )
    if not (seen.challenger_ready and status.started_at is not None):
        # All traffic to a challenger that does not serve yet would be an outage: the order
        # waits (it names this challenge, so it cannot outlive it).
        return Transition(
            replace(status, message=f"promotion forced by {command.user} waits for the "
                    "challenger to become ready")
        )
    return _begin_promotion(
        status, f"promotion forced by {command.user}", "ForcedPromotion", command.user
    )


# ----------------------------------------------------------------------------- swaps
def _begin_promotion(
    status: Status, reason: str, event_reason: str, decided_by: str = GATES
) -> Transition:
    assert status.challenger is not None
    promoting = replace(
        status,
        decided_by=decided_by,
        phase=Phase.PROMOTING,
        promotion_stage=PromotionStage.SHIFT,
        traffic_withdrawn=False,
        retire_at=None,
        outcome_reason=reason,
        message=f"promoting {status.challenger.version}: {reason}",
    )
    return Transition(promoting, events=(Event("Normal", event_reason, promoting.message),))


def _promoting(status: Status, seen: Observation) -> Transition:
    challenger = status.challenger
    assert challenger is not None
    stage = status.promotion_stage
    if stage is PromotionStage.SHIFT and seen.route_applied:
        # The old champion's pods hold the predictions they answered until their labels come
        # back: rolling them away at once would lose every label still on its way.
        drained_at = status.retire_at if status.retire_at is not None else (
            seen.now + seen.feedback_grace_seconds
        )
        if seen.now < drained_at:
            return Transition(
                replace(
                    status,
                    retire_at=drained_at,
                    message=f"all traffic on {challenger.version}; keeping the old champion "
                    f"pods {seen.feedback_grace_seconds:g} s for late feedback labels",
                )
            )
        return Transition(
            replace(
                status,
                promotion_stage=PromotionStage.CONVERGE,
                retire_at=None,
                message=f"all traffic on {challenger.version}; rolling the champion Deployment",
            )
        )
    if stage is PromotionStage.CONVERGE and seen.champion_ready_version == challenger.version:
        return Transition(
            replace(
                status,
                promotion_stage=PromotionStage.SETTLE,
                message=f"champion Deployment runs {challenger.version}; moving traffic back to it",
            )
        )
    if stage is PromotionStage.SETTLE and not status.traffic_withdrawn:
        return Transition(_retire(status, seen))
    if stage is PromotionStage.SETTLE and seen.challenger_removed:
        return _conclude(status, seen, Phase.PROMOTED)
    return Transition(status)


def _retire(status: Status, seen: Observation) -> Status:
    """Once the route without the challenger's traffic is live, keep the challenger for the
    feedback grace, then let it go (`traffic_withdrawn`)."""
    if not seen.route_applied:
        return status
    retire_at = status.retire_at
    if retire_at is None:
        retire_at = seen.now + seen.feedback_grace_seconds
    if seen.now >= retire_at:
        return replace(status, traffic_withdrawn=True, retire_at=retire_at)
    assert status.challenger is not None
    return replace(
        status,
        retire_at=retire_at,
        message=f"no traffic on {status.challenger.version}; keeping it "
        f"{seen.feedback_grace_seconds:g} s for late feedback labels",
    )


def _begin_rollback(
    status: Status, reason: str, event_reason: str, decided_by: str = GATES
) -> Transition:
    assert status.challenger is not None
    rolling = _withdrawing_traffic(
        status,
        outcome_reason=reason,
        decided_by=decided_by,
        message=f"rolling back {status.challenger.version}: {reason}",
    )
    return Transition(rolling, events=(Event("Warning", event_reason, rolling.message),))


def _withdrawing_traffic(status: Status, **changes: object) -> Status:
    """RollingBack: the route loses the challenger first; it is removed after the grace."""
    return replace(
        status,
        phase=Phase.ROLLING_BACK,
        challenger_percent=0,
        mirror_percent=0,
        traffic_withdrawn=False,
        retire_at=None,
        **changes,  # type: ignore[arg-type]
    )


def _rolling_back(status: Status, seen: Observation) -> Transition:
    if not status.traffic_withdrawn:
        return Transition(_retire(status, seen))
    if not seen.challenger_removed:
        return Transition(status)
    return _conclude(status, seen, Phase.ROLLED_BACK)


def _conclude(status: Status, seen: Observation, outcome: Phase) -> Transition:
    """The challenge is over: rest with the winner serving, record it in history."""
    challenger, previous = status.challenger, status.champion
    assert challenger is not None
    if status.withdrawing:
        rest = replace(
            desired_rest(status),
            message=f"{challenger.version} withdrawn: {status.outcome_reason}",
        )
        event = Event("Normal", "ChallengeCancelled", rest.message)
        return Transition(rest, events=(event,), reset_evidence=True)
    promoted = outcome is Phase.PROMOTED
    word = "promoted" if promoted else "rolled back"
    done = Status(
        phase=outcome,
        champion=challenger if promoted else previous,
        rejected=None if promoted else challenger,
        last_outcome=outcome,
        message=f"{challenger.version} {word}: {status.outcome_reason}",
    )
    entry = HistoryEntry(
        kind="Promoted" if promoted else "RolledBack",
        version=challenger.version,
        previous=previous.version if previous else "",
        at=seen.now,
        reason=status.outcome_reason,
        decided_by=status.decided_by or GATES,
        started_at=status.started_at,
    )
    event = Event("Normal" if promoted else "Warning", entry.kind, done.message)
    return Transition(done, events=(event,), history=entry, reset_evidence=True)


def _fail(status: Status, seen: Observation) -> Transition:
    message = f"configuration error: {seen.config_error}"
    if status.phase is Phase.FAILED and status.message == message:
        return Transition(status)
    # Nothing live is harmed: the champion keeps serving and any challenger is withdrawn.
    failed = Status(
        phase=Phase.FAILED,
        champion=status.champion,
        rejected=status.rejected,
        last_outcome=status.last_outcome,
        message=message,
    )
    return Transition(
        failed, events=(Event("Warning", "ConfigError", message),), reset_evidence=True
    )
