"""The rollout's state transitions: typed functions from one frozen `RolloutState` to the next.

Each is a `dataclasses.replace` with keyword arguments mypy checks. `without_canary` is the one list
of what ending a canary resets; a rollback, a promotion, a cancel and a new canary all start from
it. A transition that people should hear of returns the new state with its Events (`Changed`).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import NamedTuple

from modeldeploy.api.events import Event, EventReason
from modeldeploy.api.rollout import Aborted, AbortReason, PauseReason, RolloutState
from modeldeploy.canary.inputs import Policy


class Changed(NamedTuple):
    """A new state and the Events that tell of the change (none when nothing worth telling changed)."""

    state: RolloutState
    events: tuple[Event, ...] = ()


def short(revision: str | None) -> str:
    """A revision as Events and messages quote it."""
    return (revision or "none")[:10]


def paused_by_user(state: RolloutState) -> bool:
    """Whether a user paused the rollout (the steps and the deadline clocks wait)."""
    return state.pause is not None and state.pause.reason is PauseReason.USER


def without_canary(state: RolloutState) -> RolloutState:
    """`state` with no canary on trial: no step, no weight, no pause, no readiness clocks.

    What stays: the stable revision, the last rollback, the last request and the canary's metrics
    (status keeps the analysis that decided its fate until the next canary starts).
    """
    return dataclasses.replace(
        state, canary_revision=None, promoting=False, promoting_since=None, pause=None, weight=0, step_index=0,
        step_started_at=None, unready_since=None, ready_since=None,
    )


def start_canary(policy: Policy, state: RolloutState, revision: str, why: str, now: datetime) -> Changed:
    """Put `revision` on trial at the first step, its analysis fresh."""
    first = policy.steps[0]
    started = dataclasses.replace(
        without_canary(state), canary_revision=revision, step_started_at=now, weight=first.weight,
        weight_since=None, unready_since=now, metrics={}, aborted=None,
    )
    event = Event("Normal", EventReason.CANARY_STARTED,
                  f"{why}: revision {short(revision)} starts at {policy.step_label(0)}, weight {first.weight} %")
    entered = enter_step(policy, started, 0, now)
    return Changed(entered.state, (event, *entered.events))


def enter_step(policy: Policy, state: RolloutState, index: int, now: datetime) -> Changed:
    """Begin step `index`; the final step without a pause is the promotion itself.

    The step's evidence starts from nothing; a user's pause lasts, a step's pause ends.
    """
    step = policy.steps[index]
    if policy.is_last(index) and step.pause is None:
        return begin_promotion(state, f"{policy.step_label(index)} reached", now)
    counters = {name: dataclasses.replace(m, successes_at_step=0, step_requests=0, step_events=0)
                for name, m in state.metrics.items()}
    entered = dataclasses.replace(
        state, step_index=index, step_started_at=now, weight=step.weight, metrics=counters,
        unready_since=now, ready_since=None, pause=state.pause if paused_by_user(state) else None,
    )
    if index == 0:
        return Changed(entered)
    return Changed(entered, (Event("Normal", EventReason.CANARY_STEP,
                                   f"revision {short(entered.canary_revision)}: {policy.step_label(index)}, "
                                   f"weight {step.weight} %"),))


def begin_promotion(state: RolloutState, why: str, now: datetime) -> Changed:
    """Roll stable to the canary's revision at full size, from `now` on (its deadline counts from then)."""
    promoting = dataclasses.replace(state, promoting=True, promoting_since=now, pause=None, weight=100)
    return Changed(promoting, (Event("Normal", EventReason.PROMOTING,
                                     f"revision {short(promoting.canary_revision)}: {why}; "
                                     "rolling stable to it at full size"),))


def promoted(state: RolloutState) -> Changed:
    """The canary's revision is the stable one."""
    revision = state.canary_revision
    done = dataclasses.replace(without_canary(state), stable_revision=revision)
    return Changed(done, (Event("Normal", EventReason.PROMOTED, f"revision {short(revision)} is stable at full size"),))


def rolled_back(state: RolloutState, reason: AbortReason, message: str, now: datetime) -> Changed:
    """Roll the canary back for `reason`; its revision is not tried again until the spec changes or a
    user retries."""
    revision = state.canary_revision
    assert revision is not None
    back = dataclasses.replace(
        without_canary(state), aborted=Aborted(revision=revision, reason=reason, message=message, at=now),
    )
    return Changed(back, (Event("Warning", reason,
                                f"revision {short(revision)} rolled back to {short(back.stable_revision)}: "
                                f"{message}"),))


def cancelled(state: RolloutState) -> Changed:
    """The spec is back at the stable revision: the canary and its analysis go."""
    revision = state.canary_revision
    back = dataclasses.replace(without_canary(state), metrics={})
    return Changed(back, (Event("Normal", EventReason.CANARY_CANCELLED,
                                f"spec is back at stable revision {short(back.stable_revision)}: "
                                f"canary {short(revision)} removed"),))


def resumed(state: RolloutState, now: datetime) -> RolloutState:
    """End a user pause; the deadline clocks did not run while it lasted.

    A clock moves on by the part of the pause it was running in: one started during the pause
    starts now, never later.
    """
    pause = state.pause
    assert pause is not None

    def held(since: datetime | None) -> datetime | None:
        return None if since is None else since + (now - max(since, pause.since))

    return dataclasses.replace(state, pause=None, step_started_at=held(state.step_started_at),
                               unready_since=held(state.unready_since))
