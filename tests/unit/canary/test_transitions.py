"""The state transitions: what ending a canary resets and keeps, what each transition tells."""

from __future__ import annotations

from datetime import timedelta

from modeldeploy.api.rollout import (
    Aborted,
    AbortReason,
    HandledRequest,
    MetricState,
    Pause,
    PauseReason,
    RolloutState,
)
from modeldeploy.api.spec import RolloutStep
from modeldeploy.canary.transitions import (
    Event,
    cancelled,
    promoted,
    resumed,
    rolled_back,
    start_canary,
    without_canary,
)
from unit.canary.builders import T0, V1, V2, V3, policy

POLICY = policy(V3, (RolloutStep(25, timedelta(minutes=1)), RolloutStep(100)), metrics=())
ANALYSIS = {"error-rate": MetricState(failed=1, successes_at_step=2)}
HANDLED = HandledRequest("pause", V2, "2026-11-26T02:00:30Z")
ON_TRIAL = RolloutState(
    stable_revision=V1, canary_revision=V2, step_index=1, step_started_at=T0, weight=50, effective_weight=50,
    weight_since=T0, unready_since=T0, ready_since=T0, pause=Pause(PauseReason.USER, T0), metrics=ANALYSIS,
    promoting=True, last_request=HANDLED, rejected_request="digest",
)


def test_without_canary_resets_the_trial_and_keeps_the_stable_the_analysis_and_the_requests() -> None:
    assert without_canary(ON_TRIAL) == RolloutState(
        stable_revision=V1, effective_weight=50, weight_since=T0, metrics=ANALYSIS, last_request=HANDLED,
        rejected_request="digest")


def test_a_rollback_keeps_the_analysis_that_decided_it_and_remembers_the_revision() -> None:
    change = rolled_back(ON_TRIAL, AbortReason.ANALYSIS_FAILED, "error-rate failed", T0 + timedelta(minutes=3))
    assert change.state == RolloutState(
        stable_revision=V1, effective_weight=50, weight_since=T0, metrics=ANALYSIS, last_request=HANDLED,
        rejected_request="digest",
        aborted=Aborted(V2, AbortReason.ANALYSIS_FAILED, "error-rate failed", T0 + timedelta(minutes=3)))
    assert change.events == (Event("Warning", "AnalysisFailed",
                                   f"revision {V2} rolled back to {V1}: error-rate failed"),)


def test_a_promotion_makes_the_canary_stable_and_a_cancel_forgets_its_analysis() -> None:
    done = promoted(ON_TRIAL)
    assert done.state.stable_revision == V2 and done.state.canary_revision is None
    assert done.state.metrics == ANALYSIS
    assert done.events == (Event("Normal", "Promoted", f"revision {V2} is stable at full size"),)
    back = cancelled(ON_TRIAL)
    assert back.state == RolloutState(stable_revision=V1, effective_weight=50, weight_since=T0,
                                      last_request=HANDLED, rejected_request="digest")


def test_a_new_canary_starts_fresh_from_any_state() -> None:
    rolled = rolled_back(ON_TRIAL, AbortReason.ABORTED, "abort requested", T0).state
    change = start_canary(POLICY, rolled, V3, "new revision", T0 + timedelta(minutes=5))
    assert change.state == RolloutState(
        stable_revision=V1, canary_revision=V3, step_started_at=T0 + timedelta(minutes=5), weight=25,
        effective_weight=50, unready_since=T0 + timedelta(minutes=5), last_request=HANDLED,
        rejected_request="digest")
    assert [event.reason for event in change.events] == ["CanaryStarted"]


def test_resuming_moves_the_deadline_clocks_on_by_the_pause() -> None:
    paused_at = T0 + timedelta(minutes=2)
    state = RolloutState(stable_revision=V1, canary_revision=V2, step_started_at=T0,
                         unready_since=T0 + timedelta(minutes=3), pause=Pause(PauseReason.USER, paused_at))
    after = resumed(state, T0 + timedelta(minutes=10))
    assert after.pause is None
    assert after.step_started_at == T0 + timedelta(minutes=8)       # ran 2 of its 10 minutes
    assert after.unready_since == T0 + timedelta(minutes=10)        # began during the pause: starts now
