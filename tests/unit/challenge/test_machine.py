"""The champion/challenger state machine, walked through its phases with plain data."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import ClassVar

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from modelops_operator.challenge import (
    Command,
    GateSignal,
    ModelRef,
    Observation,
    Phase,
    PromotionStage,
    Status,
    StrategyView,
    Topology,
    Transition,
    desired_topology,
    step,
)

V1 = ModelRef("v1", "file:///models/v1.skops", "sha256:" + "1" * 64)
V2 = ModelRef("v2", "file:///models/v2.skops", "sha256:" + "2" * 64)
V3 = ModelRef("v3", "file:///models/v3.skops", "sha256:" + "3" * 64)
CANARY = StrategyView("canary", steps=(5, 25, 50))
WAIT = GateSignal("WAIT", "not enough data", fresh=True)
PROMOTE = GateSignal("PROMOTE", "all gates pass", fresh=True)
ROLLBACK = GateSignal("ROLLBACK", "errorRate: challenger worse", fresh=True)


def seen(now: float, desired: ModelRef = V2, **kw: object) -> Observation:
    base = dict(strategy=CANARY, live_champion=V1, challenger_ready=True, step_interval_seconds=60)
    base.update(kw)
    return Observation(now=now, desired=desired, **base)  # type: ignore[arg-type]


def progressing_at_step(index: int) -> Status:
    return Status(
        phase=Phase.PROGRESSING,
        champion=V1,
        challenger=V2,
        step=index,
        challenger_percent=CANARY.steps[index],
        started_at=0.0,
        step_started_at=0.0,
        challenge_id="v2-0",
    )


def test_idle_with_the_champion_desired_changes_nothing() -> None:
    result = step(Status(champion=V1), seen(0, desired=V1))
    assert result.status.phase is Phase.IDLE
    assert result.events == ()
    assert desired_topology(result.status).challenger is None


def test_a_new_version_starts_a_challenge_with_no_traffic_until_ready() -> None:
    started = step(Status(champion=V1), seen(0, challenger_ready=False))
    assert started.status.phase is Phase.PROGRESSING
    assert started.status.challenger == V2
    assert started.reset_evidence
    assert [e.reason for e in started.events] == ["ChallengeStarted"]
    topology = desired_topology(started.status)
    assert (topology.champion, topology.challenger, topology.challenger_percent) == (V1, V2, 0)

    waiting = step(started.status, seen(10, challenger_ready=False))
    assert waiting.status.started_at is None
    assert "waiting for challenger v2" in waiting.status.message

    ready = step(waiting.status, seen(20))
    assert (ready.status.started_at, ready.status.challenger_percent) == (20, 5)
    assert [e.reason for e in ready.events] == ["TrafficShifted"]


def test_canary_steps_advance_only_on_fresh_evidence_after_the_dwell() -> None:
    status = progressing_at_step(0)
    assert step(status, seen(30, gates=WAIT)).status.step == 0  # dwell not over
    stale = GateSignal(None, "Prometheus unreachable", fresh=False)
    assert step(status, seen(90, gates=stale)).status.step == 0  # no data never widens exposure
    advanced = step(status, seen(90, gates=WAIT)).status
    assert (advanced.step, advanced.challenger_percent, advanced.step_started_at) == (1, 25, 90)
    # PROMOTE before the last step widens exposure; it does not promote.
    assert step(advanced, seen(200, gates=PROMOTE)).status.phase is Phase.PROGRESSING


def test_the_old_champion_pods_stay_for_late_labels_before_the_champion_deployment_rolls() -> None:
    promoting = step(progressing_at_step(2), seen(100, gates=PROMOTE)).status
    draining = step(promoting, seen(120, route_applied=True, feedback_grace_seconds=30)).status
    # All traffic is on the challenger, but the champion Deployment still runs v1: the labels
    # of what its pods answered just before the shift find them there.
    assert draining.promotion_stage is PromotionStage.SHIFT
    assert desired_topology(draining).champion == V1 and "late feedback" in draining.message
    assert step(draining, seen(149, route_applied=True, feedback_grace_seconds=30)).status == (
        draining
    )
    converge = step(draining, seen(150, route_applied=True, feedback_grace_seconds=30)).status
    assert converge.promotion_stage is PromotionStage.CONVERGE
    assert desired_topology(converge).champion == V2 and converge.retire_at is None


def test_promotion_is_a_three_stage_hot_swap_recorded_in_history() -> None:
    promoting = step(progressing_at_step(2), seen(100, gates=PROMOTE)).status
    assert (promoting.phase, promoting.promotion_stage) == (Phase.PROMOTING, PromotionStage.SHIFT)
    shift = desired_topology(promoting)
    assert (shift.champion, shift.challenger, shift.challenger_percent) == (V1, V2, 100)
    assert step(promoting, seen(110)).status == promoting  # route not applied yet

    converge = step(promoting, seen(120, route_applied=True)).status
    assert converge.promotion_stage is PromotionStage.CONVERGE
    rolled = desired_topology(converge)
    assert (rolled.champion, rolled.challenger, rolled.challenger_percent) == (V2, V2, 100)

    settle = step(converge, seen(130, champion_ready_version="v2")).status
    assert settle.promotion_stage is PromotionStage.SETTLE
    back = desired_topology(settle)
    # The challenger stays, without traffic, for labels of requests it answered.
    assert (back.champion, back.challenger, back.challenger_percent) == (V2, V2, 0)
    grace = step(settle, seen(140, route_applied=True, feedback_grace_seconds=30)).status
    assert desired_topology(grace).challenger == V2 and "late feedback" in grace.message
    assert step(grace, seen(160, route_applied=True, feedback_grace_seconds=30)).status == grace
    retired = step(grace, seen(171, route_applied=True, feedback_grace_seconds=30)).status
    assert desired_topology(retired) == Topology(V2, None, 0, 0)

    done = step(retired, seen(180, route_applied=True, challenger_removed=True))
    assert done.status.phase is Phase.PROMOTED
    assert (done.status.champion, done.status.challenger) == (V2, None)
    assert done.history is not None
    assert (done.history.kind, done.history.version, done.history.previous) == (
        "Promoted",
        "v2",
        "v1",
    )
    # At rest with v2 live and desired: nothing more to do.
    assert step(done.status, seen(150, live_champion=V2)).status.phase is Phase.PROMOTED


def test_rollback_withdraws_traffic_then_removes_the_challenger_and_remembers_it() -> None:
    rolling = step(progressing_at_step(1), seen(100, gates=ROLLBACK))
    assert rolling.status.phase is Phase.ROLLING_BACK
    assert rolling.events[0].type == "Warning"
    assert desired_topology(rolling.status).challenger_percent == 0
    assert desired_topology(rolling.status).challenger == V2  # removed only after the route

    withdrawn = step(rolling.status, seen(110, route_applied=True)).status
    assert desired_topology(withdrawn).challenger is None
    done = step(withdrawn, seen(120, challenger_removed=True))
    assert done.status.phase is Phase.ROLLED_BACK
    assert (done.status.champion, done.status.rejected) == (V1, V2)
    assert done.history is not None and done.history.kind == "RolledBack"

    # Git still says v2: it stays rejected. A fix (v3) starts a new challenge.
    assert step(done.status, seen(130)).status.phase is Phase.ROLLED_BACK
    fixed = step(done.status, seen(140, desired=V3))
    assert (fixed.status.phase, fixed.status.challenger) == (Phase.PROGRESSING, V3)


def test_approval_holds_promotion_until_given_for_this_version() -> None:
    waiting = step(progressing_at_step(2), seen(100, gates=PROMOTE, approval_required=True))
    assert waiting.status.phase is Phase.AWAITING_APPROVAL
    # An approval names the challenge (version and start), never just a version: one given
    # to an earlier challenge of v2 does not count.
    other = seen(110, gates=PROMOTE, approval_required=True, approved_version="v2-1")
    assert step(waiting.status, other).status.phase is Phase.AWAITING_APPROVAL
    approved = step(
        waiting.status,
        seen(
            120,
            gates=PROMOTE,
            approval_required=True,
            approved_version=waiting.status.challenge_id,
            approved_by="alice",
        ),
    )
    assert approved.status.phase is Phase.PROMOTING
    assert "approved by alice" in approved.status.message
    harmed = step(waiting.status, seen(130, gates=ROLLBACK, approval_required=True))
    assert harmed.status.phase is Phase.ROLLING_BACK


def test_a_new_spec_mid_challenge_restarts_it_and_never_promotes_the_unvalidated() -> None:
    # The challenger takes traffic: it is withdrawn first (route confirmed), then v3 starts.
    withdrawing = step(progressing_at_step(2), seen(100, desired=V3, gates=PROMOTE))
    assert withdrawing.status.phase is Phase.ROLLING_BACK and withdrawing.reset_evidence
    assert [e.reason for e in withdrawing.events] == ["ChallengeWithdrawn"]
    assert desired_topology(withdrawing.status) == Topology(V1, V2, 0, 0)
    waiting = step(withdrawing.status, seen(101, desired=V3, gates=PROMOTE))
    assert desired_topology(waiting.status).challenger == V2  # route not confirmed yet
    gone = step(waiting.status, seen(102, desired=V3, route_applied=True)).status
    assert desired_topology(gone).challenger is None
    rested = step(gone, seen(103, desired=V3, challenger_removed=True))
    assert rested.history is None and rested.status.rejected is None  # no verdict on v2
    assert [e.reason for e in rested.events] == ["ChallengeCancelled"]
    restarted = step(rested.status, seen(104, desired=V3, gates=PROMOTE))
    assert restarted.status.phase is Phase.PROGRESSING
    assert (restarted.status.challenger, restarted.status.step) == (V3, 0)
    assert restarted.status.started_at is None

    # A challenger that never took traffic is replaced at once.
    not_started = replace(progressing_at_step(0), started_at=None)
    swapped = step(not_started, seen(100, desired=V3))
    assert [e.reason for e in swapped.events] == ["ChallengeRestarted"]
    assert swapped.status.challenger == V3

    back = step(progressing_at_step(1), seen(100, desired=V1))
    assert back.status.phase is Phase.ROLLING_BACK
    assert desired_topology(back.status).challenger_percent == 0
    withdrawn = step(back.status, seen(101, desired=V1, route_applied=True)).status
    cancelled = step(withdrawn, seen(102, desired=V1, challenger_removed=True)).status
    assert cancelled.phase is Phase.IDLE and desired_topology(cancelled).challenger is None


def test_commands_pause_and_configuration_errors() -> None:
    status = progressing_at_step(0)
    forced = step(status, seen(10, command=Command("promote", "bob")))
    assert forced.status.phase is Phase.PROMOTING and "bob" in forced.status.message
    # Never all traffic to a challenger that is not serving: the order waits.
    early = step(status, seen(10, command=Command("promote", "bob"), challenger_ready=False))
    assert early.status.phase is Phase.PROGRESSING and "waits" in early.status.message
    manual = step(status, seen(10, command=Command("rollback", "carol")))
    assert manual.status.phase is Phase.ROLLING_BACK

    paused = step(status, seen(500, gates=ROLLBACK, paused=True))
    assert paused.status.phase is Phase.PROGRESSING and paused.status.step == 0

    failed = step(status, seen(10, config_error="spec.targetRef.name: fraud not found"))
    assert failed.status.phase is Phase.FAILED
    assert desired_topology(failed.status) == desired_topology(Status(champion=V1))
    assert (
        step(failed.status, seen(11, config_error="spec.targetRef.name: fraud not found")).events
        == ()
    )
    healed = step(failed.status, seen(20))
    assert healed.status.phase is Phase.PROGRESSING


def round_trip(status: Status) -> Status:
    return Status.from_dict(json.loads(json.dumps(status.to_dict())))


signals = st.sampled_from([WAIT, PROMOTE, ROLLBACK, GateSignal(), GateSignal("WAIT", "stale")])
observations = st.fixed_dictionaries(
    {
        "desired": st.sampled_from([V1, V2, V3]),
        "gates": signals,
        "challenger_ready": st.booleans(),
        "route_applied": st.booleans(),
        "challenger_removed": st.booleans(),
        "champion_ready_version": st.sampled_from([None, "v1", "v2", "v3"]),
        "approval_required": st.booleans(),
        "approved_version": st.sampled_from([None, "v2", "v3"]),
        "paused": st.booleans(),
    }
)


@settings(max_examples=300, deadline=None)
@given(st.lists(observations, min_size=1, max_size=40))
def test_random_walks_resume_from_status_and_promote_only_on_evidence(walk: list[dict]) -> None:
    status = Status(champion=V1)
    promote_seen_for: set[str] = set()
    for tick, kw in enumerate(walk):
        observation = seen(tick * 30.0, **{**kw, "live_champion": status.champion})
        if kw["gates"].action == "PROMOTE" and status.challenger is not None:
            promote_seen_for.add(status.challenger.version)
        result: Transition = step(status, observation)
        # A restarted operator reads status back from the API server: same decision.
        assert step(round_trip(status), observation) == result
        topology = desired_topology(result.status)
        assert 0 <= topology.challenger_percent <= 100
        assert 0 <= topology.mirror_percent <= 100
        if result.history is not None and result.history.kind == "Promoted":
            assert result.history.version in promote_seen_for
        status = replace(result.status)


def test_the_machine_phases_are_the_ones_the_crd_allows() -> None:
    from modelops_operator.api.championchallenger import PHASES

    assert {p.value for p in Phase} == set(PHASES)


class ChallengeWorld(RuleBasedStateMachine):
    """A ModelDeployment over time: versions shipped, gate verdicts, a person approving, a
    cluster that applies what the machine asks (or lags). The invariants hold at every step;
    `visited` shows the walks reach promotion, approval and rollback."""

    visited: ClassVar[set[Phase]] = set()

    def __init__(self) -> None:
        super().__init__()
        self.status = Status(champion=V1)
        self.now = 0.0
        self.desired = V1
        self.approval_required = False
        self.approved: str | None = None
        self.promote_evidence: set[str] = set()  # challenge ids the gates said PROMOTE for
        self.validated = {V1.version}

    def tick(self, gates: GateSignal, cooperative: bool = True) -> None:
        self.now += 60.0
        topology = desired_topology(self.status)
        observation = Observation(
            now=self.now, desired=self.desired, strategy=CANARY,
            live_champion=self.status.champion, challenger_ready=True, gates=gates,
            step_interval_seconds=60, approval_required=self.approval_required,
            approved_version=self.approved, route_applied=cooperative,
            champion_ready_version=(topology.champion.version
                                    if cooperative and topology.champion else None),
            challenger_removed=cooperative and topology.challenger is None,
        )  # fmt: skip
        before = self.status
        if gates.action == "PROMOTE" and before.challenge_id:
            self.promote_evidence.add(before.challenge_id)
        after = step(before, observation).status
        if after.phase is Phase.PROMOTING and before.phase is not Phase.PROMOTING:
            assert before.challenge_id in self.promote_evidence
            if self.approval_required:
                assert self.approved == before.challenge_id
        if after.phase is Phase.PROMOTED and after.champion is not None:
            self.validated.add(after.champion.version)
        self.status = after
        self.visited.add(after.phase)

    @rule(version=st.sampled_from([V2, V3]))
    def ship(self, version: ModelRef) -> None:
        self.desired = version
        self.tick(WAIT)

    @rule(gates=st.sampled_from([WAIT, WAIT, PROMOTE, ROLLBACK]))
    def evaluate(self, gates: GateSignal) -> None:
        self.tick(gates)

    @rule(looks=st.integers(2, 6))
    def evidence_keeps_saying_promote(self, looks: int) -> None:
        for _ in range(looks):
            self.tick(PROMOTE)

    @rule()
    def lagging_cluster(self) -> None:
        self.tick(GateSignal("WAIT", "stale"), cooperative=False)

    @rule(required=st.booleans())
    def require_approval(self, required: bool) -> None:
        self.approval_required = required

    @rule()
    def approve(self) -> None:
        self.approved = self.status.challenge_id

    @invariant()
    def traffic_is_a_share(self) -> None:
        topology = desired_topology(self.status)
        assert 0 <= topology.challenger_percent <= 100
        assert 0 <= topology.mirror_percent <= 100

    @invariant()
    def the_champion_is_always_a_validated_version(self) -> None:
        if self.status.phase is not Phase.PROMOTING and self.status.champion is not None:
            assert self.status.champion.version in self.validated


def test_stateful_walks_reach_promotion_approval_and_rollback_safely() -> None:
    ChallengeWorld.visited.clear()
    run_state_machine_as_test(
        ChallengeWorld,
        # Derandomized: the same walks every run, so reaching each phase is not left to luck.
        settings=settings(
            max_examples=150, stateful_step_count=40, deadline=None, derandomize=True,
            database=None,
        ),
    )
    assert {Phase.PROMOTED, Phase.AWAITING_APPROVAL, Phase.ROLLED_BACK} <= ChallengeWorld.visited
