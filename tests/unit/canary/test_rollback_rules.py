"""The rollback rules, each alone, and the order in which `first_abort` asks them.

Every AbortReason has its rule: a user's abort (Aborted), a provider error streak
(MetricsUnavailable), failed measurements (AnalysisFailed), unready pods (ProgressDeadlineExceeded),
no evidence at the step (InsufficientData). The rules are pure: each test builds the facts by hand.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

import pytest

from modeldeploy.api.rollout import (
    AbortReason,
    MeasurementRecord,
    MeasurementVerdict,
    MetricState,
    Pause,
    PauseReason,
    RolloutState,
)
from modeldeploy.api.spec import RolloutStep
from modeldeploy.canary.counters import Failure
from modeldeploy.canary.inputs import MetricPolicy, RoleStatus
from modeldeploy.canary.requests import Action, ManualRequest
from modeldeploy.canary.rules import (
    Abort,
    Facts,
    Findings,
    aborted_by_request,
    analysis_failed,
    first_abort,
    insufficient_data,
    metric_limits,
    metrics_unavailable,
    progress_deadline_exceeded,
    promotion_deadline_exceeded,
)
from modeldeploy.canary.verdicts import Bounds
from modeldeploy.canary.weights import Split
from unit.canary.builders import ERROR_RATE, T0, V1, V2, policy

LATENCY = MetricPolicy("mean-latency", Bounds(max=250.0))
POLICY = policy(V2, (RolloutStep(50, timedelta(minutes=5)), RolloutStep(100)), metrics=(ERROR_RATE, LATENCY),
                failure_limit=1, consecutive_error_limit=4, progress_deadline=timedelta(seconds=600))
CANARY = RoleStatus(revision=V2, replicas=2, ready=1, not_ready_reason="CrashLoopBackOff: model failed to load")
FINDINGS = Findings(target=Split(stable=2, canary=2), all_ready=True)
GOOD = MetricState(successes_at_step=1)


def canary_state(**changes: Any) -> RolloutState:
    """A canary of V2 at step 1/2 since T0, every metric with its evidence, pods ready."""
    state = RolloutState(stable_revision=V1, canary_revision=V2, step_index=0, step_started_at=T0, weight=50,
                         effective_weight=50, weight_since=T0, metrics={"error-rate": GOOD, "mean-latency": GOOD})
    return dataclasses.replace(state, **changes)


def facts(state: RolloutState | None = None, *, after: timedelta = timedelta(seconds=60),
          findings: Findings | None = FINDINGS, request: ManualRequest | None = None) -> Facts:
    return Facts(POLICY, state or canary_state(), T0 + after, CANARY, request, findings)


def abort_request(by: str = "") -> ManualRequest:
    return ManualRequest(Action.ABORT, V2, "2026-11-26T02:01:00Z", by=by)


def errors(count: int, last: str = "connection refused") -> MetricState:
    record = MeasurementRecord(at=T0, verdict=MeasurementVerdict.ERROR, message=last)
    return MetricState(consecutive_errors=count, measurements=(record,) if count else ())


def failed(count: int, message: str = "error-rate = 0.3 over 100 requests, above max 0.01") -> MetricState:
    record = MeasurementRecord(at=T0, verdict=MeasurementVerdict.FAILED, value=0.3, requests=100, message=message)
    return MetricState(failed=count, measurements=(record,) if count else ())


def with_metric(name: str, counters: MetricState, state: RolloutState | None = None) -> RolloutState:
    state = state or canary_state()
    return dataclasses.replace(state, metrics={**state.metrics, name: counters})


# --- each rule alone --------------------------------------------------------------------------------


def test_aborted_rule_rolls_back_on_a_users_abort_request_and_names_who_asked() -> None:
    assert aborted_by_request(facts(request=abort_request(by="alice"))) == Abort(
        AbortReason.ABORTED, "abort requested by alice")
    assert aborted_by_request(facts(request=abort_request())) == Abort(AbortReason.ABORTED, "abort requested")
    assert aborted_by_request(facts()) is None


def test_aborted_rule_applies_while_the_canary_is_promoted_and_not_analysed() -> None:
    promoting = canary_state(promoting=True, weight=100)
    abort = aborted_by_request(facts(promoting, findings=None, request=abort_request()))
    assert abort is not None and abort.reason is AbortReason.ABORTED


def test_metrics_unavailable_rule_rolls_back_after_more_errors_in_a_row_than_consecutive_error_limit() -> None:
    at_limit = facts(with_metric("error-rate", errors(4)))
    assert metrics_unavailable(at_limit, ERROR_RATE) is None
    over = facts(with_metric("error-rate", errors(5, last="Prometheus answered 503")))
    assert metrics_unavailable(over, ERROR_RATE) == Abort(
        AbortReason.METRICS_UNAVAILABLE,
        "error-rate: 5 provider errors in a row, more than consecutiveErrorLimit 4 (last: Prometheus answered 503)")
    assert metrics_unavailable(over, LATENCY) is None  # the streak is the error rate's alone


def test_analysis_failed_rule_rolls_back_after_more_failed_measurements_than_failure_limit() -> None:
    assert analysis_failed(facts(with_metric("error-rate", failed(1))), ERROR_RATE) is None
    latest = "error-rate = 0.5 over 40 requests, above max 0.01"
    over = facts(with_metric("error-rate", failed(2)),
                 findings=FINDINGS._replace(failures=(Failure("error-rate", latest),)))
    assert analysis_failed(over, ERROR_RATE) == Abort(
        AbortReason.ANALYSIS_FAILED, f"{latest}; 2 failed measurements, more than failureLimit 1")


def test_analysis_failed_rule_quotes_the_last_failed_record_when_this_reconcile_recorded_no_failure() -> None:
    abort = analysis_failed(facts(with_metric("error-rate", failed(2))), ERROR_RATE)
    assert abort == Abort(AbortReason.ANALYSIS_FAILED,
                          "error-rate = 0.3 over 100 requests, above max 0.01; 2 failed measurements, "
                          "more than failureLimit 1")


def test_progress_deadline_exceeded_rule_rolls_back_pods_not_ready_in_time_and_quotes_why() -> None:
    unready = canary_state(unready_since=T0)
    assert progress_deadline_exceeded(facts(unready, after=timedelta(seconds=600))) is None
    assert progress_deadline_exceeded(facts(unready, after=timedelta(seconds=601))) == Abort(
        AbortReason.PROGRESS_DEADLINE_EXCEEDED,
        "1/2 canary pods ready 600 s after the step began: CrashLoopBackOff: model failed to load")
    assert progress_deadline_exceeded(facts(canary_state(), after=timedelta(hours=1))) is None  # ready for good


def test_progress_deadline_exceeded_rule_counts_no_pod_of_another_revision_as_ready() -> None:
    other = Facts(POLICY, canary_state(unready_since=T0), T0 + timedelta(seconds=601),
                  RoleStatus(revision=V1, replicas=2, ready=2), None, FINDINGS)
    assert progress_deadline_exceeded(other) == Abort(
        AbortReason.PROGRESS_DEADLINE_EXCEEDED, "0/2 canary pods ready 600 s after the step began: no reason reported")


def test_insufficient_data_rule_rolls_back_a_step_without_a_successful_measurement_of_every_metric() -> None:
    quiet = with_metric("mean-latency", MetricState(inconclusive=12))
    assert insufficient_data(facts(quiet, after=timedelta(seconds=600))) is None
    assert insufficient_data(facts(quiet, after=timedelta(seconds=601))) == Abort(
        AbortReason.INSUFFICIENT_DATA,
        "no Successful measurement of mean-latency at weight 50 % within progressDeadlineSeconds 600")
    assert insufficient_data(facts(after=timedelta(hours=1))) is None  # every metric has its evidence


def test_insufficient_data_rule_asks_no_evidence_of_a_step_without_canary_pods() -> None:
    no_pods = Findings(target=Split(stable=4, canary=0), all_ready=True)
    assert insufficient_data(facts(canary_state(metrics={}), after=timedelta(hours=1), findings=no_pods)) is None


def test_deadline_rules_wait_while_a_user_pauses_the_rollout() -> None:
    paused = canary_state(unready_since=T0, metrics={}, pause=Pause(PauseReason.USER, T0))
    assert progress_deadline_exceeded(facts(paused, after=timedelta(hours=1))) is None
    assert insufficient_data(facts(paused, after=timedelta(hours=1))) is None
    step_paused = dataclasses.replace(paused, pause=Pause(PauseReason.STEP, T0))
    assert progress_deadline_exceeded(facts(step_paused, after=timedelta(hours=1))) is not None
    assert insufficient_data(facts(step_paused, after=timedelta(hours=1))) is not None


def test_analysis_rules_judge_only_a_canary_analysed_in_this_reconcile() -> None:
    everything_wrong = canary_state(unready_since=T0, metrics={"error-rate": dataclasses.replace(failed(3),
                                                                                                 consecutive_errors=9)})
    unanalysed = facts(everything_wrong, after=timedelta(hours=1), findings=None)
    assert metrics_unavailable(unanalysed, ERROR_RATE) is None
    assert analysis_failed(unanalysed, ERROR_RATE) is None
    assert progress_deadline_exceeded(unanalysed) is None
    assert insufficient_data(unanalysed) is None


# --- the order: the first rule that aborts wins ------------------------------------------------------


def everything_wrong() -> RolloutState:
    """Every rule aborts: errors and failures on both metrics, pods never ready, no evidence."""
    counters = dataclasses.replace(failed(2), consecutive_errors=5)
    return canary_state(unready_since=T0, metrics={"error-rate": counters, "mean-latency": counters})


@pytest.mark.parametrize(
    ("fixed", "reason"),
    [
        ((), AbortReason.ABORTED),
        (("request",), AbortReason.METRICS_UNAVAILABLE),
        (("request", "errors"), AbortReason.ANALYSIS_FAILED),
        (("request", "errors", "failures"), AbortReason.PROGRESS_DEADLINE_EXCEEDED),
        (("request", "errors", "failures", "pods"), AbortReason.INSUFFICIENT_DATA),
    ],
)
def test_first_abort_asks_the_rules_in_order_and_the_first_that_aborts_wins(fixed: tuple[str, ...],
                                                                              reason: AbortReason) -> None:
    state = everything_wrong()
    counters = {name: dataclasses.replace(m, consecutive_errors=0 if "errors" in fixed else m.consecutive_errors,
                                          failed=0 if "failures" in fixed else m.failed)
                for name, m in state.metrics.items()}
    state = dataclasses.replace(state, metrics=counters, unready_since=None if "pods" in fixed else T0)
    abort = first_abort(facts(state, after=timedelta(hours=1),
                              request=None if "request" in fixed else abort_request()))
    assert abort is not None and abort.reason is reason


def test_first_abort_lets_a_canary_that_breaks_no_rule_go_on() -> None:
    assert first_abort(facts(after=timedelta(hours=1))) is None


def test_metric_limits_go_metric_by_metric_in_the_specs_order() -> None:
    # The error rate (first in the spec) failed too often; the latency's provider is down: the error rate's
    # failure is the reason.
    state = with_metric("mean-latency", errors(5), with_metric("error-rate", failed(2)))
    abort = metric_limits(facts(state))
    assert abort is not None and abort.reason is AbortReason.ANALYSIS_FAILED
    assert abort.message.startswith("error-rate = 0.3")


def test_metric_limits_of_one_metric_ask_the_error_streak_before_the_failures() -> None:
    state = with_metric("error-rate", dataclasses.replace(failed(2), consecutive_errors=5))
    abort = metric_limits(facts(state))
    assert abort is not None and abort.reason is AbortReason.METRICS_UNAVAILABLE


def test_first_abort_asks_only_the_rules_it_is_given() -> None:
    state = everything_wrong()
    abort = first_abort(facts(state, after=timedelta(hours=1), request=abort_request()), rules=(insufficient_data,))
    assert abort is not None and abort.reason is AbortReason.INSUFFICIENT_DATA


def promoting(since: datetime = T0, stable: RoleStatus | None = None, after: timedelta = timedelta(seconds=601),
              request: ManualRequest | None = None) -> Facts:
    """A promotion of V2 begun at `since`, not analysed (as decide calls the rules while promoting)."""
    state = canary_state(promoting=True, promoting_since=since, weight=100)
    return dataclasses.replace(facts(state, after=after, findings=None, request=request),
                               stable=stable or RoleStatus(revision=V2, replicas=4, ready=2, ready_updated=2,
                                                           not_ready_reason="pod iris-stable-x: OOMKilled"))


def test_promotion_deadline_rule_rolls_back_a_promotion_whose_stable_pods_are_not_ready_in_time() -> None:
    abort = promotion_deadline_exceeded(promoting())
    assert abort == Abort(AbortReason.PROGRESS_DEADLINE_EXCEEDED,
                          "promotion: 2/4 stable pods ready at revision bbbbbbbbbb 600 s after the promotion began: "
                          "pod iris-stable-x: OOMKilled")


def test_promotion_deadline_rule_waits_for_the_deadline_and_spares_a_whole_stable() -> None:
    assert promotion_deadline_exceeded(promoting(after=timedelta(seconds=600))) is None
    whole = RoleStatus(revision=V2, replicas=4, ready=4, ready_updated=4)
    assert promotion_deadline_exceeded(promoting(stable=whole)) is None
    assert promotion_deadline_exceeded(facts(canary_state(), after=timedelta(hours=1))) is None  # not promoting


def test_promotion_deadline_rule_counts_no_stable_pod_of_the_old_revision_as_ready() -> None:
    old = RoleStatus(revision=V1, replicas=4, ready=4, ready_updated=4)
    abort = promotion_deadline_exceeded(promoting(stable=old))
    assert abort is not None and abort.message.startswith("promotion: 0/4 stable pods ready")
    assert abort.message.endswith("no reason reported")


def test_a_users_abort_of_a_promotion_comes_before_its_deadline() -> None:
    abort = first_abort(promoting(request=abort_request()))
    assert abort is not None and abort.reason is AbortReason.ABORTED
