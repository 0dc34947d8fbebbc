"""decide(): every rule of the canary, one behaviour per test, on a tiny simulated world.

The world applies each decision as a cluster would (replica counts and revisions; pods ready at
once unless the canary is broken) and stores the state as status does (through its dict form).
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta

import pytest

from modeldeploy.api.conditions import Phase, format_time
from modeldeploy.api.rollout import AbortReason, MeasurementVerdict, PauseReason, RolloutState
from modeldeploy.api.spec import RolloutStep, parse_spec
from modeldeploy.canary.decide import (
    Decision,
    Measurement,
    MetricPolicy,
    Observations,
    Policy,
    RoleStatus,
    decide,
    due_metrics,
)
from modeldeploy.canary.requests import Action, ManualRequest, RejectedRequest, RequestError
from modeldeploy.canary.verdicts import Bounds, Sample
from modeldeploy.canary.weights import Split
from modeldeploy.routers import ReplicasRouter, router_for
from unit.canary.builders import ERROR_RATE, T0, V1, V2, V3, policy

STEPS = (RolloutStep(25, timedelta(minutes=1)), RolloutStep(50, timedelta(minutes=1)), RolloutStep(100))
POLICY = policy(V1, STEPS)

GOOD = Sample(0.0, 1000, 0)          # 0 errors in 1000: Successful against 1 %
BAD = Sample(0.3, 100, 30)           # 30 %: Failed
QUIET = Sample(0.0, 3, 0)            # too few requests: Inconclusive


@dataclasses.dataclass
class World:
    """Two Deployments, the stored status, a clock."""

    policy: Policy
    now: datetime = T0
    state: RolloutState = dataclasses.field(default_factory=RolloutState)
    stable: RoleStatus = dataclasses.field(default_factory=RoleStatus)
    canary: RoleStatus = dataclasses.field(default_factory=RoleStatus)
    canary_ready: bool = True
    not_ready_reason: str = ""
    events: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)
    last: Decision | None = None

    def observe(self, measurements: tuple[Measurement, ...] = (),
                request: ManualRequest | None = None) -> Observations:
        return Observations(self.stable, self.canary, measurements, request)

    def reconcile(self, measurements: tuple[Measurement, ...] = (), request: ManualRequest | None = None) -> Decision:
        decision = decide(self.policy, self.state, self.observe(measurements, request), self.now)
        self.state = RolloutState.from_dict(json.loads(json.dumps(decision.state.to_dict())))
        self.events += [(e.type, e.reason, e.message) for e in decision.events]
        self.stable = RoleStatus(decision.stable.revision, decision.stable.replicas, decision.stable.replicas)
        if decision.canary is None:
            self.canary = RoleStatus()
        else:
            ready = decision.canary.replicas if self.canary_ready else 0
            # At the gate the canary's pods are loaded but held out of traffic by their readiness gate.
            held = self.policy.at_gate(decision.state.step_index) and decision.state.canary_revision is not None
            self.canary = RoleStatus(decision.canary.revision, decision.canary.replicas, 0 if held else ready,
                                     not_ready_reason=self.not_ready_reason, held=ready if held else 0)
        self.last = decision
        return decision

    def settle(self) -> Decision:
        """Reconcile until the decision stops moving pods (pods start at once here)."""
        for _ in range(6):
            decision = self.reconcile()
        return decision

    def measure(self, sample: Sample | None, error: str | None = None) -> Decision:
        """Take the measurements that are due now, all with the same sample (or the same error)."""
        due = due_metrics(self.policy, self.state, self.now)
        return self.reconcile(tuple(Measurement(d.metric, self.now, d.window_start, sample, error=error) for d in due))

    def wait(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def reasons(self) -> list[str]:
        return [reason for _, reason, _ in self.events]


def healthy_world(policy: Policy = POLICY) -> World:
    world = World(policy)
    assert world.settle().phase is Phase.HEALTHY
    world.policy = dataclasses.replace(policy, revision=V2)
    world.events.clear()
    return world


def request(action: Action, revision: str, at: int = 0, full: bool = False) -> ManualRequest:
    return ManualRequest(action, revision, format_time(T0 + timedelta(seconds=at)), full=full, by="alice")


# --- first revision, start -------------------------------------------------------------------------


def test_the_first_revision_goes_straight_to_stable_at_full_size() -> None:
    world = World(POLICY)
    decision = world.reconcile()
    assert decision.stable.revision == V1
    assert decision.stable.replicas == 4
    assert decision.canary is None
    assert world.settle().phase is Phase.HEALTHY
    assert world.state.canary_revision is None


def test_a_new_revision_starts_a_canary_at_step_0_with_stable_untouched() -> None:
    world = healthy_world()
    decision = world.reconcile()
    assert decision.state.canary_revision == V2
    assert decision.state.step_index == 0
    assert decision.state.weight == 25
    assert (decision.stable.revision, decision.stable.replicas) == (V1, 4)   # surge first: capacity
    assert decision.canary is not None and (decision.canary.revision, decision.canary.replicas) == (V2, 1)
    assert decision.phase is Phase.PROGRESSING
    assert world.reasons() == ["CanaryStarted"]
    world.settle()
    assert (world.stable.replicas, world.canary.replicas) == (3, 1)
    assert world.state.effective_weight == 25


def test_a_replicas_change_is_never_a_canary() -> None:
    world = healthy_world(POLICY)
    world.policy = dataclasses.replace(POLICY, replicas=6)
    decision = world.settle()
    assert decision.canary is None
    assert (decision.stable.revision, decision.stable.replicas) == (V1, 6)
    assert decision.phase is Phase.HEALTHY


@dataclasses.dataclass(frozen=True)
class StableStaysWhole:
    """A router of another kind: canary pods beside a stable kept at full size, traffic by ready pods."""

    def target(self, weight: int, replicas: int) -> Split:
        if weight == 100:
            return Split(stable=0, canary=replicas)
        return Split(stable=replicas, canary=0 if weight == 0 else max(1, replicas * weight // 100))

    def replicas_for(self, weight: int, replicas: int, current: Split, ready: Split) -> Split:
        return self.target(weight, replicas)

    def effective_weight(self, ready: Split) -> int:
        total = ready.stable + ready.canary
        return 0 if total == 0 else round(100 * ready.canary / total)


def test_pods_and_the_weight_traffic_sees_come_from_the_policys_router() -> None:
    world = healthy_world(dataclasses.replace(POLICY, router=StableStaysWhole()))
    world.settle()
    assert (world.stable.replicas, world.canary.replicas) == (4, 1)
    assert world.state.effective_weight == 20   # 1 of 5 ready pods, as that router says
    world.wait(60)
    world.measure(GOOD)
    world.settle()
    # the good measurement at the router's 20 % was the step's evidence: on to 50 %, stable still whole
    assert world.state.step_index == 1
    assert (world.stable.replicas, world.canary.replicas) == (4, 2)


# --- advancing --------------------------------------------------------------------------------------


def test_a_good_canary_advances_only_with_evidence_and_is_promoted_then_drained() -> None:
    world = healthy_world()
    world.settle()
    world.wait(30)
    world.measure(GOOD)
    assert world.state.step_index == 0          # the pause (1 min) is not over
    world.wait(30)
    world.measure(GOOD)
    assert world.state.step_index == 1 and world.state.weight == 50
    assert world.state.metric("error-rate").successes_at_step == 0   # evidence is per step
    world.settle()
    assert (world.stable.replicas, world.canary.replicas) == (2, 2)
    world.wait(60)
    world.measure(GOOD)
    assert world.state.promoting
    decision = world.settle()
    assert decision.phase is Phase.HEALTHY
    assert world.state.stable_revision == V2
    assert world.state.canary_revision is None
    assert (decision.stable.revision, decision.stable.replicas) == (V2, 4)
    assert decision.canary is None
    assert world.reasons() == ["CanaryStarted", "CanaryStep", "Promoting", "Promoted"]


def test_the_pause_over_without_a_successful_measurement_holds_the_weight() -> None:
    world = healthy_world()
    world.settle()
    for _ in range(4):
        world.wait(30)
        world.measure(QUIET)
    assert world.state.step_index == 0
    assert world.state.metric("error-rate").inconclusive == 4
    assert world.last is not None and world.last.phase is Phase.PROGRESSING


def test_a_successful_measurement_from_before_the_step_is_not_evidence_for_it() -> None:
    world = healthy_world()
    world.settle()
    world.wait(60)
    world.measure(GOOD)                       # evidence for step 0, advances
    assert world.state.step_index == 1
    world.settle()
    stale = Measurement("error-rate", world.now + timedelta(seconds=30), T0, GOOD)
    world.wait(60)
    world.reconcile((stale,))
    assert world.state.metric("error-rate").successes_at_step == 0
    assert "not evidence" in world.state.metric("error-rate").measurements[-1].message
    assert world.state.step_index == 1


def test_a_step_with_no_evidence_at_the_progress_deadline_aborts_with_insufficient_data() -> None:
    world = healthy_world()
    world.settle()
    for _ in range(20):
        world.wait(30)
        world.measure(QUIET)
    world.wait(30)
    decision = world.measure(QUIET)
    assert world.state.aborted is not None
    assert world.state.aborted.reason is AbortReason.INSUFFICIENT_DATA
    assert "no Successful measurement of error-rate at weight 25 %" in world.state.aborted.message
    assert decision.stable.replicas == 4
    assert world.settle().phase is Phase.ROLLED_BACK


QUALITY = MetricPolicy("quality", Bounds(min=0.9), own_requests=True)
GATED = policy(V1, (RolloutStep(0), RolloutStep(50, timedelta(minutes=1)), RolloutStep(100)),
               metrics=(ERROR_RATE, QUALITY))
ACCURATE = Sample(0.99, 1000, interval=(0.982, 0.995), unit="examples")
MISLABELLED = Sample(0.66, 1000, interval=(0.63, 0.69), unit="examples")


def measure_each(world: World, samples: dict[str, Sample]) -> Decision:
    due = due_metrics(world.policy, world.state, world.now)
    return world.reconcile(tuple(Measurement(d.metric, world.now, d.window_start, samples[d.metric]) for d in due))


def test_the_gate_runs_one_canary_pod_beside_a_whole_stable_and_measures_only_what_sends_its_own_requests() -> None:
    world = healthy_world(GATED)
    decision = world.settle()

    assert (decision.stable.replicas, decision.canary.replicas if decision.canary else 0) == (4, 1)
    assert world.state.effective_weight == 0 and world.canary.held == 1 and world.canary.ready == 0
    assert "at the gate (step 1/3): judged on its own requests, no user traffic" in decision.message
    world.wait(30)
    assert [d.metric for d in due_metrics(world.policy, world.state, world.now)] == ["quality"]


def test_the_gate_moves_on_its_evidence_without_a_promote_request() -> None:
    world = healthy_world(GATED)
    world.settle()
    world.wait(30)
    measure_each(world, {"quality": ACCURATE})
    world.settle()

    assert world.state.step_index == 1 and world.state.pause is None
    assert world.canary.replicas == 2 and world.state.effective_weight == 50
    world.wait(30)
    assert sorted(d.metric for d in due_metrics(world.policy, world.state, world.now)) == ["error-rate", "quality"]


def test_a_mislabelling_canary_is_rolled_back_at_the_gate_before_any_user_request() -> None:
    world = healthy_world(GATED)
    world.settle()
    for _ in range(2):  # failureLimit 1: the second Failed measurement rolls back
        world.wait(30)
        measure_each(world, {"quality": MISLABELLED})

    assert world.state.aborted is not None and world.state.aborted.reason is AbortReason.ANALYSIS_FAILED
    assert "quality = 0.66 over 1000 examples (95 % interval 0.63..0.69), below min 0.9" in world.state.aborted.message
    assert world.state.effective_weight == 0
    assert world.settle().phase is Phase.ROLLED_BACK and world.canary.replicas == 0


def test_an_undecided_gate_aborts_at_the_deadline_with_insufficient_data() -> None:
    world = healthy_world(dataclasses.replace(GATED, progress_deadline=timedelta(minutes=5)))
    world.settle()
    for _ in range(11):
        world.wait(30)
        measure_each(world, {"quality": Sample(0.95, 20, interval=(0.75, 0.999), unit="examples")})

    assert world.state.aborted is not None and world.state.aborted.reason is AbortReason.INSUFFICIENT_DATA
    assert "no Successful measurement of quality at the gate (weight 0, no user traffic)" in world.state.aborted.message
    assert [m.verdict for m in world.state.metric("quality").measurements][:3] == [MeasurementVerdict.INCONCLUSIVE] * 3


# --- rolling back -----------------------------------------------------------------------------------


def test_failures_beyond_the_failure_limit_roll_back_naming_metric_value_and_bound() -> None:
    world = healthy_world()
    world.settle()
    world.wait(30)
    world.measure(BAD)
    assert world.state.metric("error-rate").failed == 1 and world.state.canary_revision == V2
    world.wait(30)
    decision = world.measure(BAD)
    assert world.state.canary_revision is None
    assert world.state.aborted is not None and world.state.aborted.reason is AbortReason.ANALYSIS_FAILED
    warning = [e for e in world.events if e[0] == "Warning"]
    assert len(warning) == 1 and warning[0][1] == "AnalysisFailed"
    for part in ("error-rate = 0.3", "above max 0.01", "failureLimit 1"):
        assert part in warning[0][2]
    assert (decision.stable.revision, decision.stable.replicas) == (V1, 4)
    assert decision.phase is Phase.DEGRADED           # stable back to full first
    decision = world.settle()
    assert decision.phase is Phase.ROLLED_BACK and decision.canary is None


def test_a_rolled_back_revision_is_not_retried_until_the_spec_changes() -> None:
    world = rolled_back_world()
    world.wait(3600)
    decision = world.settle()
    assert decision.phase is Phase.ROLLED_BACK and decision.canary is None
    world.policy = dataclasses.replace(world.policy, revision=V3)
    decision = world.reconcile()
    assert decision.state.canary_revision == V3 and decision.state.aborted is None


def test_a_retry_request_naming_the_rolled_back_revision_starts_it_again_fresh() -> None:
    world = rolled_back_world()
    world.reconcile(request=request(Action.RETRY, V3))      # names another revision: nothing
    assert world.state.canary_revision is None
    decision = world.reconcile(request=request(Action.RETRY, V2, at=5))
    assert decision.state.canary_revision == V2 and decision.state.step_index == 0
    assert decision.state.metric("error-rate").failed == 0
    assert world.reasons()[-2:] == ["RequestIgnored", "CanaryStarted"]


def rolled_back_world() -> World:
    world = healthy_world()
    world.settle()
    for _ in range(2):
        world.wait(30)
        world.measure(BAD)
    world.settle()
    assert world.last is not None and world.last.phase is Phase.ROLLED_BACK
    return world


def test_errors_beyond_the_consecutive_error_limit_abort_with_metrics_unavailable() -> None:
    world = healthy_world()
    world.settle()
    world.wait(30)
    for _ in range(5):
        world.measure(None, error="scrape of 10.0.0.7:8082 timed out after 5 s")
        world.wait(10)
    assert world.state.aborted is not None
    assert world.state.aborted.reason is AbortReason.METRICS_UNAVAILABLE
    assert "timed out" in world.state.aborted.message
    assert world.state.metric("error-rate").failed == 0 if world.state.metrics else True


def test_an_error_is_retried_after_10_seconds_and_a_success_resets_the_streak() -> None:
    world = healthy_world()
    world.settle()
    world.wait(30)
    for _ in range(4):
        world.measure(None, error="connection refused")
        assert [d.metric for d in due_metrics(world.policy, world.state, world.now + timedelta(seconds=10))] \
            == ["error-rate"]
        assert due_metrics(world.policy, world.state, world.now + timedelta(seconds=9)) == ()
        world.wait(10)
    world.measure(QUIET)
    counters = world.state.metric("error-rate")
    assert counters.consecutive_errors == 0 and counters.inconclusive == 1 and counters.failed == 0
    assert world.state.canary_revision == V2
    assert [m.verdict for m in counters.measurements] == ([MeasurementVerdict.ERROR] * 4
                                                          + [MeasurementVerdict.INCONCLUSIVE])


def test_canary_pods_never_ready_abort_at_the_progress_deadline_with_their_reason() -> None:
    world = healthy_world()
    world.canary_ready = False
    world.not_ready_reason = "model iris failed to load: worker died"
    world.settle()
    world.wait(600)
    world.reconcile()
    assert world.state.canary_revision == V2
    world.wait(2)
    world.reconcile()
    assert world.state.aborted is not None
    assert world.state.aborted.reason is AbortReason.PROGRESS_DEADLINE_EXCEEDED
    assert "0/1 canary pods ready" in world.state.aborted.message
    assert "worker died" in world.state.aborted.message
    assert world.stable.replicas == 4 and world.stable.ready == 4


def test_a_pod_ready_for_a_moment_does_not_reset_the_deadline_clock() -> None:
    world = healthy_world()
    world.canary_ready = False
    world.settle()
    for flap in range(14):
        world.wait(50)
        world.canary_ready = flap % 2 == 0            # ready for a moment, then not again
        world.canary = dataclasses.replace(world.canary, ready=world.canary.replicas if world.canary_ready else 0)
        world.reconcile()
    assert world.state.aborted is not None
    assert world.state.aborted.reason is AbortReason.PROGRESS_DEADLINE_EXCEEDED


# --- changes mid-canary -----------------------------------------------------------------------------


def test_a_new_revision_mid_canary_restarts_at_step_0_with_fresh_counters() -> None:
    world = healthy_world()
    world.settle()
    world.wait(30)
    world.measure(BAD)
    world.wait(30)
    world.measure(GOOD)
    world.settle()
    assert world.state.step_index == 1 and world.state.metric("error-rate").failed == 1
    world.policy = dataclasses.replace(world.policy, revision=V3)
    decision = world.reconcile()
    assert decision.state.canary_revision == V3
    assert decision.state.step_index == 0 and decision.state.metrics == {}
    assert decision.stable.revision == V1
    assert decision.canary is not None and decision.canary.revision == V3


def test_the_spec_back_at_stable_returns_to_stable_at_once_without_analysis() -> None:
    world = healthy_world()
    world.settle()
    world.policy = dataclasses.replace(world.policy, revision=V1)
    decision = world.reconcile()
    assert decision.state.canary_revision is None and decision.state.aborted is None
    assert (decision.stable.revision, decision.stable.replicas) == (V1, 4)
    assert due_metrics(world.policy, world.state, world.now + timedelta(hours=1)) == ()
    assert world.settle().phase is Phase.HEALTHY
    assert world.reasons() == ["CanaryStarted", "CanaryCancelled"]


# --- manual control ---------------------------------------------------------------------------------

PROMOTE_STEPS = (RolloutStep(25), RolloutStep(50, timedelta(minutes=1)), RolloutStep(100))


def test_a_step_without_pause_waits_paused_for_a_promote_naming_the_canary() -> None:
    world = healthy_world(dataclasses.replace(POLICY, steps=PROMOTE_STEPS))
    world.settle()
    world.wait(30)
    decision = world.measure(GOOD)
    assert decision.phase is Phase.PAUSED
    assert world.state.pause is not None and world.state.pause.reason is PauseReason.STEP
    world.wait(3600)                               # evidence is there: waiting is not a failure
    assert world.settle().phase is Phase.PAUSED
    world.reconcile(request=request(Action.PROMOTE, V1))          # stale: names another revision
    assert world.state.step_index == 0
    world.reconcile(request=request(Action.PROMOTE, V2, at=1))
    assert world.state.step_index == 1 and world.state.pause is None
    world.wait(1)
    world.reconcile(request=request(Action.PROMOTE, V2, at=1))    # the same request, read again
    assert world.state.step_index == 1
    assert world.reasons().count("CanaryStep") == 1


def test_promote_full_skips_the_remaining_steps() -> None:
    world = healthy_world(dataclasses.replace(POLICY, steps=PROMOTE_STEPS))
    world.settle()
    world.reconcile(request=request(Action.PROMOTE, V2, full=True))
    assert world.state.promoting
    assert world.settle().phase is Phase.HEALTHY and world.state.stable_revision == V2


def test_an_abort_request_rolls_back_through_the_one_rollback_path() -> None:
    world = healthy_world()
    world.settle()
    decision = world.reconcile(request=request(Action.ABORT, V2))
    assert decision.state.aborted is not None and decision.state.aborted.reason is AbortReason.ABORTED
    assert "abort requested by alice" in decision.state.aborted.message
    assert world.settle().phase is Phase.ROLLED_BACK


def test_a_user_pause_stops_the_deadline_clock_and_resume_restarts_it() -> None:
    world = healthy_world()
    world.canary_ready = False
    world.settle()
    world.wait(300)
    world.reconcile(request=request(Action.PAUSE, V2))
    assert world.last is not None and world.last.phase is Phase.PAUSED
    world.wait(3600)
    world.reconcile()
    assert world.state.canary_revision == V2           # an hour paused: no deadline
    world.reconcile(request=request(Action.RESUME, V2, at=1))
    world.wait(299)
    world.reconcile()
    assert world.state.canary_revision == V2           # 300 + 299 s of clock
    world.wait(2)
    world.reconcile()
    assert world.state.aborted is not None
    assert world.reasons() == ["CanaryStarted", "Paused", "Resumed", "ProgressDeadlineExceeded"]


def test_pods_failing_during_a_user_pause_start_the_deadline_clock_at_resume_not_later() -> None:
    world = healthy_world()
    world.settle()
    world.reconcile(request=request(Action.PAUSE, V2))
    world.wait(30)
    world.measure(GOOD)                                  # the step has its evidence
    world.wait(3000)
    world.canary_ready = False
    world.reconcile()
    world.wait(600)
    world.reconcile()
    assert world.state.canary_revision == V2           # paused: the clock does not run
    world.reconcile(request=request(Action.RESUME, V2, at=1))
    world.wait(599)
    world.reconcile()
    assert world.state.canary_revision == V2
    world.wait(2)
    world.reconcile()
    assert world.state.aborted is not None              # the deadline's 600 s, counted from the resume
    assert world.reasons()[-1] == "ProgressDeadlineExceeded"


def test_requests_that_change_nothing_say_so_in_an_event() -> None:
    world = healthy_world()
    world.settle()
    world.reconcile(request=request(Action.RESUME, V2))
    world.reconcile(request=request(Action.PAUSE, V2, at=1))
    world.reconcile(request=request(Action.PAUSE, V2, at=2))
    world.reconcile(request=request(Action.PROMOTE, V2, at=3, full=True))
    assert world.state.promoting and world.state.pause is None
    world.reconcile(request=request(Action.PAUSE, V2, at=4))
    assert world.state.pause is None                     # a promotion is never paused
    ignored = [message for _, reason, message in world.events if reason == "RequestIgnored"]
    assert ignored == [f"resume for revision {V2} ignored: it is not paused by a user",
                       f"pause for revision {V2} ignored: it is already paused by a user",
                       f"pause for revision {V2} ignored: it is being promoted"]


def test_analysis_goes_on_during_a_user_pause_and_can_still_roll_back() -> None:
    world = healthy_world()
    world.settle()
    world.reconcile(request=request(Action.PAUSE, V2))
    for _ in range(2):
        world.wait(30)
        world.measure(BAD)
    assert world.state.aborted is not None and world.state.aborted.reason is AbortReason.ANALYSIS_FAILED


def test_a_malformed_request_is_reported_once_and_again_only_for_a_new_text() -> None:
    world = healthy_world()
    world.settle()

    def reconcile(text: str | None) -> None:
        rejected = None if text is None else RejectedRequest.of(text, RequestError(f"not JSON: {text}"))
        decision = decide(world.policy, world.state, Observations(world.stable, world.canary, rejected=rejected),
                          world.now)
        world.state = RolloutState.from_dict(json.loads(json.dumps(decision.state.to_dict())))
        world.events += [(e.type, e.reason, e.message) for e in decision.events]
        world.wait(5)

    for text in ["{promote", "{promote", "{promote", "[]", "[]", None, "{promote"]:
        reconcile(text)
    assert [(kind, reason, message) for kind, reason, message in world.events if reason == "InvalidRequest"] == [
        ("Warning", "InvalidRequest", "not JSON: {promote"),
        ("Warning", "InvalidRequest", "not JSON: []"),
        ("Warning", "InvalidRequest", "not JSON: {promote"),   # fixed in between, then broken again
    ]
    assert world.state.canary_revision == V2   # the canary went on meanwhile


# --- idempotence and restarts -------------------------------------------------------------------------


@pytest.mark.parametrize("moment", ["starting", "in a step", "paused", "promoting", "rolled back", "healthy"])
def test_the_same_inputs_give_the_same_decision_and_a_settled_state_changes_nothing(moment: str) -> None:
    world = healthy_world(dataclasses.replace(POLICY, steps=PROMOTE_STEPS) if moment == "paused" else POLICY)
    if moment != "starting":
        world.settle()
    if moment == "paused":
        world.wait(30)
        world.measure(GOOD)
    if moment == "promoting":
        world.reconcile(request=request(Action.PROMOTE, V2, full=True))
    if moment == "rolled back":
        world = rolled_back_world()
    if moment == "healthy":
        world.reconcile(request=request(Action.PROMOTE, V2, full=True))
        world.settle()
    observations = world.observe()
    first = decide(world.policy, world.state, observations, world.now)
    assert decide(world.policy, world.state, observations, world.now) == first
    if moment in ("in a step", "paused", "rolled back", "healthy"):
        assert first.state == world.state and first.events == ()
        again = decide(world.policy, first.state, observations, world.now + timedelta(seconds=5))
        assert again.state == first.state and again.events == ()


def test_a_measurement_passed_twice_is_counted_once() -> None:
    world = healthy_world()
    world.settle()
    world.wait(30)
    due = due_metrics(world.policy, world.state, world.now)
    bad = tuple(Measurement(d.metric, world.now, d.window_start, BAD) for d in due)
    world.reconcile(bad)
    world.reconcile(bad)
    assert world.state.metric("error-rate").failed == 1


def test_a_restarted_operator_resumes_at_the_same_step_from_the_stored_state() -> None:
    world = healthy_world()
    world.settle()
    world.wait(60)
    world.measure(GOOD)
    stored = json.dumps(world.state.to_dict())
    restarted = dataclasses.replace(world, state=RolloutState.from_dict(json.loads(stored)), events=[])
    decision = restarted.reconcile()
    assert decision.state.step_index == 1 and decision.events == ()


def test_policy_from_spec_reads_the_steps_the_metrics_and_the_deadline() -> None:
    spec = parse_spec({"model": {"name": "iris", "serializedFile": {"uri": "pvc://models/iris/model.pt"},
                                 "handler": {"uri": "pvc://models/iris/handler.py"}},
                       "serving": {"replicas": 3},
                       "rollout": {"steps": [{"weight": 20, "pause": "1m"}, {"weight": 100}]}})
    policy = Policy.from_spec(spec, V2, router_for(spec.rollout.traffic_router))
    assert policy.replicas == 3 and policy.steps[0].weight == 20
    assert policy.metrics == (MetricPolicy("error-rate", Bounds(max=0.01)),)
    assert policy.progress_deadline == timedelta(seconds=600)
    assert policy.router == ReplicasRouter()


def test_a_window_begun_without_a_baseline_is_not_judged_and_moves_the_next_one_an_interval_on() -> None:
    world = healthy_world()
    world.settle()
    world.wait(30)
    due = due_metrics(world.policy, world.state, world.now)
    world.reconcile(tuple(Measurement(d.metric, world.now, d.window_start) for d in due))
    counters = world.state.metric("error-rate")
    assert counters.measurements == () and counters.inconclusive == 0
    assert due_metrics(world.policy, world.state, world.now + timedelta(seconds=29)) == ()
    assert len(due_metrics(world.policy, world.state, world.now + timedelta(seconds=30))) == 1


def test_a_pending_measurement_records_nothing_and_the_same_window_is_asked_about_again_until_it_is_done() -> None:
    world = healthy_world()
    world.settle()
    world.wait(30)
    due = due_metrics(world.policy, world.state, world.now)
    world.reconcile(tuple(Measurement(d.metric, world.now, d.window_start, pending=True) for d in due))
    assert world.state.metric("error-rate").measurements == ()
    world.wait(2)
    again = due_metrics(world.policy, world.state, world.now)
    assert [d.window_start for d in again] == [d.window_start for d in due]  # not an interval on
    assert world.last is not None and world.last.requeue_after is not None
    assert world.last.requeue_after <= timedelta(seconds=1)
    world.reconcile(tuple(Measurement(d.metric, world.now, d.window_start, GOOD) for d in again))
    assert [m.verdict for m in world.state.metric("error-rate").measurements] == [MeasurementVerdict.SUCCESSFUL]


def test_a_good_canary_behind_little_traffic_earns_evidence_from_the_steps_pooled_windows() -> None:
    world = healthy_world()
    world.settle()
    for _ in range(3):
        world.wait(30)
        world.measure(Sample(0.0, 150, 0))         # 0 in 150: alone, the upper bound is 2.5 %
    verdicts = [m.verdict for m in world.state.metric("error-rate").measurements]
    assert verdicts == [MeasurementVerdict.INCONCLUSIVE, MeasurementVerdict.INCONCLUSIVE,
                        MeasurementVerdict.SUCCESSFUL]   # 0 in 450: 0.85 %
    assert "over this step's windows" in world.state.metric("error-rate").measurements[-1].message
    assert world.state.step_index == 1
    assert world.state.metric("error-rate").step_requests == 0   # the next step pools afresh


def test_pooling_never_turns_windows_into_a_failure() -> None:
    world = healthy_world()
    world.settle()
    for _ in range(6):
        world.wait(30)
        world.measure(Sample(2 / 100, 100, 2))      # 2 % in each window: never decisive alone
    counters = world.state.metric("error-rate")
    assert counters.failed == 0 and world.state.canary_revision == V2
    assert counters.step_requests == 600 and counters.step_events == 12


def test_stable_pods_serving_another_revision_without_rollout_state_are_adopted_and_the_spec_becomes_a_canary() -> None:
    world = World(dataclasses.replace(POLICY, revision=V2))
    world.stable = RoleStatus(V1, 4, 4)
    decision = world.reconcile()
    assert decision.state.stable_revision == V1 and decision.state.canary_revision == V2
    assert decision.stable.revision == V1


def test_the_effective_weight_falls_back_to_0_once_a_rolled_back_canary_is_gone() -> None:
    world = rolled_back_world()
    assert world.state.effective_weight == 0


def test_promotion_keeps_the_canary_until_stable_serves_its_revision_ready_at_full_size() -> None:
    world = healthy_world()
    world.settle()
    decision = world.reconcile(request=request(Action.PROMOTE, V2, full=True))
    assert (decision.stable.revision, decision.stable.replicas) == (V2, 4)
    for _ in range(2):
        world.stable = RoleStatus(V2, 4, ready=4, ready_updated=2)   # rolling: 2 of 4 new pods ready
        decision = world.reconcile()
    assert decision.canary is not None and decision.canary.replicas == 1
    assert world.state.canary_revision == V2 and world.state.promoting
    world.stable = RoleStatus(V2, 4, ready=4, ready_updated=4)
    decision = world.reconcile()
    assert world.state.stable_revision == V2
    assert decision.canary is not None and decision.canary.replicas == 0     # now the canary goes
    assert world.reasons()[-1] == "Promoted"


def test_a_rollback_keeps_the_canary_until_stable_is_ready_at_full_size() -> None:
    world = healthy_world()
    world.settle()
    world.reconcile(request=request(Action.ABORT, V2))
    world.stable = RoleStatus(V1, 4, ready=3)                          # the 4th stable pod is starting
    decision = world.reconcile()
    assert decision.canary is not None and decision.canary.replicas == 1
    assert decision.phase is Phase.DEGRADED
    world.stable = RoleStatus(V1, 4, ready=4)
    decision = world.reconcile()
    assert decision.canary is not None and decision.canary.replicas == 0
