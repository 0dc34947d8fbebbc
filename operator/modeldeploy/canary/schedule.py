"""When to measure and when to look again: the measurements each metric is owed, and the requeue.

    due = due_metrics(policy, state, now)      # before decide: what to measure now
    after = requeue_after(policy, state, now, moving)   # in decide: when to reconcile again
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from modeldeploy.api.rollout import RolloutState, latest
from modeldeploy.canary.inputs import Policy
from modeldeploy.canary.transitions import paused_by_user

ERROR_RETRY = timedelta(seconds=10)
"""How soon a measurement that ended in a provider error is tried again."""

POLL = timedelta(seconds=5)
"""How soon to look again while pods are being replaced (child watches usually wake us first)."""


@dataclasses.dataclass(frozen=True)
class MeasurementDue:
    """A metric to measure over [window_start, now] once now >= due_at."""

    metric: str
    window_start: datetime
    due_at: datetime


def next_measurements(policy: Policy, state: RolloutState) -> tuple[MeasurementDue, ...]:
    """The measurement each metric is owed next, while a canary is being analysed.

    A window starts no earlier than the step, the current effective weight and the previous
    measurement; it is due one interval later. After a provider error it is retried after
    ERROR_RETRY, over the same window (an error consumes no measurement).
    """
    if state.canary_revision is None or state.promoting or state.step_started_at is None:
        return ()
    if policy.step_target(state.step_index).canary == 0:
        return ()
    due: list[MeasurementDue] = []
    for metric in policy.step_metrics(state.step_index):
        counters = state.metric(metric.name)
        start = latest(counters.last_at, state.weight_since, state.step_started_at)
        assert start is not None
        at = start + policy.interval
        if counters.consecutive_errors and counters.last_error_at is not None:
            at = max(counters.last_error_at + ERROR_RETRY, start + timedelta(seconds=1))
        due.append(MeasurementDue(metric=metric.name, window_start=start, due_at=at))
    return tuple(due)


def due_metrics(policy: Policy, state: RolloutState, now: datetime) -> tuple[MeasurementDue, ...]:
    """The measurements to take before calling `decide` at `now`."""
    return tuple(due for due in next_measurements(policy, state) if due.due_at <= now)


def requeue_after(policy: Policy, state: RolloutState, now: datetime, moving: bool) -> timedelta | None:
    """How soon to reconcile again (None: settled, wait for a change): the next measurement, the end of
    a step's pause, the deadlines, a readiness about to settle, or a poll while pods move."""
    moments: list[datetime] = [due.due_at for due in next_measurements(policy, state)]
    if state.canary_revision is not None and not state.promoting and state.step_started_at is not None:
        step = policy.step(state.step_index)
        if step.pause is not None:
            moments.append(state.step_started_at + step.pause)
        if not paused_by_user(state):
            moments.append(state.step_started_at + policy.progress_deadline + timedelta(seconds=1))
            if state.unready_since is not None:
                moments.append(state.unready_since + policy.progress_deadline + timedelta(seconds=1))
        if state.ready_since is not None and state.unready_since is not None:
            moments.append(state.ready_since + policy.interval)
    if state.canary_revision is not None and state.promoting and state.promoting_since is not None:
        moments.append(state.promoting_since + policy.progress_deadline + timedelta(seconds=1))
    if moving:
        moments.append(now + POLL)
    if not moments:
        return None
    return max(min(moments) - now, timedelta(seconds=1))
