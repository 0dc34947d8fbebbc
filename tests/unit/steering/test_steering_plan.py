"""Manual commands: the request each writes, or why it writes none, decided from the object as read."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from modeldeploy.api.conditions import format_time
from modeldeploy.api.rollout import (
    Aborted,
    AbortReason,
    HandledRequest,
    Pause,
    PauseReason,
    RolloutState,
)
from modeldeploy.canary.requests import REQUEST_ANNOTATION, Action, ManualRequest, parse_request
from modeldeploy.steering.plan import (
    Refusal,
    describe_request,
    fresh_time,
    is_handled,
    outcome,
    plan_request,
    request_events,
)

NOW = datetime(2026, 11, 26, 2, 0, 0, tzinfo=UTC)
STABLE = "7f3a9c01de" + "0" * 54
CANARY = "1b2c3d4e5f" + "0" * 54
STEPS = [{"weight": 25, "pause": "1m"}, {"weight": 50}, {"weight": 100}]


def body(state: RolloutState, *, phase: str = "Progressing", revision: str | None = None,
         annotation: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "iris", "namespace": "team", "resourceVersion": "7", "generation": 3}
    if annotation is not None:
        metadata["annotations"] = {REQUEST_ANNOTATION: annotation}
    return {
        "metadata": metadata,
        "spec": {"rollout": {"steps": STEPS}},
        "status": {"phase": phase, "revision": revision or state.canary_revision or state.stable_revision,
                   "rollout": state.to_dict(), **state.summary()},
    }


CANARY_AT_STEP_1 = RolloutState(stable_revision=STABLE, canary_revision=CANARY, step_index=0,
                                step_started_at=NOW - timedelta(seconds=20), weight=25, effective_weight=25)
SETTLED = RolloutState(stable_revision=STABLE)
ROLLED_BACK = RolloutState(stable_revision=STABLE, aborted=Aborted(CANARY, AbortReason.ANALYSIS_FAILED,
                                                                   "error-rate too high", NOW))


@pytest.mark.parametrize("action", [Action.PROMOTE, Action.ABORT, Action.PAUSE])
def test_each_command_names_the_canary_revision(action: Action) -> None:
    planned = plan_request(body(CANARY_AT_STEP_1), action, now=NOW, by="alice")
    assert planned == ManualRequest(action=action, revision=CANARY, at="2026-11-26T02:00:00Z", by="alice")


def test_promote_full_is_carried_in_the_request() -> None:
    planned = plan_request(body(CANARY_AT_STEP_1), Action.PROMOTE, now=NOW, full=True)
    assert isinstance(planned, ManualRequest) and planned.full
    assert json.loads(planned.to_annotation())["full"] is True


@pytest.mark.parametrize("action", [Action.PROMOTE, Action.ABORT, Action.PAUSE, Action.RESUME])
def test_without_a_canary_nothing_is_written_and_the_answer_says_why(action: Action) -> None:
    planned = plan_request(body(SETTLED, phase="Healthy"), action, now=NOW)
    assert isinstance(planned, Refusal)
    assert "no canary" in planned.reason and "7f3a9c01de" in planned.reason and "Healthy" in planned.reason


def test_promote_during_a_promotion_says_already_promoting() -> None:
    promoting = RolloutState(stable_revision=STABLE, canary_revision=CANARY, promoting=True, weight=100)
    planned = plan_request(body(promoting), Action.PROMOTE, now=NOW)
    assert isinstance(planned, Refusal) and "already being promoted" in planned.reason


def test_retry_names_the_rolled_back_revision() -> None:
    planned = plan_request(body(ROLLED_BACK, phase="RolledBack", revision=CANARY), Action.RETRY, now=NOW, by="bob")
    assert isinstance(planned, ManualRequest)
    assert (planned.action, planned.revision, planned.by) == (Action.RETRY, CANARY, "bob")


def test_retry_without_a_rollback_says_nothing_is_rolled_back() -> None:
    planned = plan_request(body(SETTLED, phase="Healthy"), Action.RETRY, now=NOW)
    assert isinstance(planned, Refusal) and "no revision of iris is rolled back" in planned.reason


def test_retry_after_the_spec_moved_on_says_the_new_revision_rolls_out_by_itself() -> None:
    planned = plan_request(body(ROLLED_BACK, revision="abcdef0123" + "0" * 54), Action.RETRY, now=NOW)
    assert isinstance(planned, Refusal) and "abcdef0123" in planned.reason


def test_retry_during_a_canary_is_refused() -> None:
    planned = plan_request(body(CANARY_AT_STEP_1), Action.RETRY, now=NOW)
    assert isinstance(planned, Refusal) and "is running" in planned.reason


def test_abort_after_a_rollback_says_it_is_already_rolled_back() -> None:
    planned = plan_request(body(ROLLED_BACK, phase="RolledBack", revision=CANARY), Action.ABORT, now=NOW)
    assert isinstance(planned, Refusal) and "already" in planned.reason and "AnalysisFailed" in planned.reason


def test_pause_twice_and_resume_unpaused_write_nothing() -> None:
    paused = RolloutState(stable_revision=STABLE, canary_revision=CANARY, pause=Pause(PauseReason.USER, NOW))
    assert isinstance(plan_request(body(paused), Action.PAUSE, now=NOW), Refusal)
    assert isinstance(plan_request(body(CANARY_AT_STEP_1), Action.RESUME, now=NOW), Refusal)
    assert isinstance(plan_request(body(paused), Action.RESUME, now=NOW), ManualRequest)


def test_resume_of_a_step_waiting_for_promote_points_to_promote() -> None:
    waiting = RolloutState(stable_revision=STABLE, canary_revision=CANARY, step_index=1,
                           pause=Pause(PauseReason.STEP, NOW))
    planned = plan_request(body(waiting), Action.RESUME, now=NOW)
    assert isinstance(planned, Refusal) and "step 2/3 waits for a promote request" in planned.reason


def test_a_new_request_is_always_later_than_the_last_one() -> None:
    handled = RolloutState(stable_revision=STABLE, canary_revision=CANARY,
                           last_request=HandledRequest("pause", CANARY, format_time(NOW)))
    assert fresh_time(body(handled), NOW) == "2026-11-26T02:00:01Z"
    annotated = body(CANARY_AT_STEP_1, annotation=ManualRequest(Action.PAUSE, CANARY, "2026-11-26T02:00:05Z")
                     .to_annotation())
    assert fresh_time(annotated, NOW) == "2026-11-26T02:00:06Z"
    assert fresh_time(body(CANARY_AT_STEP_1), NOW) == "2026-11-26T02:00:00Z"


def test_the_written_annotation_is_what_the_engine_parses() -> None:
    planned = plan_request(body(CANARY_AT_STEP_1), Action.PROMOTE, now=NOW, by="alice")
    assert isinstance(planned, ManualRequest)
    assert parse_request(planned.to_annotation()) == planned
    assert describe_request(body(CANARY_AT_STEP_1), planned) == (
        "promote revision 1b2c3d4e5f (step 1/3, weight 25 %, effective 25 %), requested by alice at "
        "2026-11-26T02:00:00Z")


def event(reason: str, message: str, at: datetime, kind: str = "Normal") -> dict[str, Any]:
    return {"type": kind, "reason": reason, "message": message, "lastTimestamp": format_time(at)}


def test_the_outcome_prints_the_engines_event_and_the_phase() -> None:
    request = ManualRequest(Action.PROMOTE, CANARY, format_time(NOW), by="alice")
    after = body(RolloutState(stable_revision=STABLE, canary_revision=CANARY, step_index=1, weight=50,
                              last_request=request.handled))
    after["status"]["conditions"] = [{"type": "Progressing", "status": "True",
                                      "message": "canary 1b2c3d4e5f at step 2/3, weight 50 %"}]
    assert is_handled(after, request)
    events = [event("CanaryStarted", "new revision", NOW - timedelta(minutes=5)),
              event("CanaryStep", "revision 1b2c3d4e5f: step 2/3, weight 50 %", NOW + timedelta(seconds=1))]
    result = outcome(after, request, events)
    assert result.changed
    assert result.lines == ("Normal CanaryStep: revision 1b2c3d4e5f: step 2/3, weight 50 %",
                            "phase Progressing: canary 1b2c3d4e5f at step 2/3, weight 50 %")


def with_ready_reason(reason: str, state: RolloutState, phase: str = "Progressing") -> dict[str, Any]:
    handled = body(state, phase=phase)
    handled["status"]["conditions"] = [{"type": "Ready", "status": "False", "reason": reason, "message": ""}]
    return handled


def test_the_command_waits_for_the_requests_own_event_not_the_phase_change_posted_before_it() -> None:
    request = ManualRequest(Action.PROMOTE, CANARY, format_time(NOW))
    stepped = with_ready_reason("CanaryProgressing", RolloutState(stable_revision=STABLE, canary_revision=CANARY,
                                                                  step_index=1, last_request=request.handled))
    phase_change = event("CanaryProgressing", "Progressing: canary 1b2c3d4e5f at step 2/3", NOW + timedelta(seconds=1))
    assert request_events([phase_change], request, stepped) == []
    step = event("CanaryStep", "revision 1b2c3d4e5f: step 2/3, weight 50 %", NOW + timedelta(seconds=1))
    assert request_events([phase_change, step], request, stepped) == [step]
    # A phase change that shares the action's reason (the status's Ready reason) is posted first: not the answer.
    promoting_body = with_ready_reason("Promoting", RolloutState(
        stable_revision=STABLE, canary_revision=CANARY, promoting=True, last_request=request.handled))
    promoting = event("Promoting", "Progressing: promoting revision 1b2c3d4e5f", NOW + timedelta(seconds=1))
    assert request_events([promoting], request, promoting_body) == []
    action = event("Promoting", "revision 1b2c3d4e5f: promote requested; rolling stable to it at full size",
                   NOW + timedelta(seconds=1))
    assert request_events([promoting, action], request, promoting_body) == [action]
    # When the status's Ready reason is another one, no phase change shares the action's reason.
    assert request_events([action], request, stepped) == [action]


def test_events_posted_in_one_second_are_ordered_by_their_event_time() -> None:
    request = ManualRequest(Action.ABORT, CANARY, format_time(NOW))
    rolled_back = with_ready_reason("Aborted", ROLLED_BACK, phase="RolledBack")
    second = format_time(NOW + timedelta(seconds=1))
    phase_change = {**event("Aborted", "RolledBack: x", NOW + timedelta(seconds=1), kind="Warning"),
                    "eventTime": second.replace("Z", ".100000Z")}
    action = {**event("Aborted", "y", NOW + timedelta(seconds=1), kind="Warning"),
              "eventTime": second.replace("Z", ".200000Z")}
    assert request_events([action, phase_change], request, rolled_back) == [action]


def test_a_stale_request_ignored_by_the_engine_is_reported_as_no_change() -> None:
    request = ManualRequest(Action.PROMOTE, CANARY, format_time(NOW))
    after = body(RolloutState(stable_revision=CANARY, last_request=request.handled), phase="Healthy")
    ignored = event("RequestIgnored", "promote for revision 1b2c3d4e5f ignored: the canary is none", NOW)
    result = outcome(after, request, [ignored])
    assert not result.changed
    assert result.lines[0].startswith("Normal RequestIgnored")
