"""Manual requests (promote, abort, retry, pause, resume) applied to the rollout state.

    requested = apply_request(policy, state, observations, now)

A request is acted on once: the state remembers the last one handled (its action, revision and
time), and a malformed annotation is reported once per text. A request that does not apply to the
rollout as it stands is ignored with its reason in a RequestIgnored Event. An abort is not applied
here: it is handed to the rollback rules (`Requested.abort`), where every reason to roll back lives.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import NamedTuple

from modeldeploy.api.events import Event, EventReason
from modeldeploy.api.rollout import Pause, PauseReason, RolloutState
from modeldeploy.canary.inputs import Observations, Policy
from modeldeploy.canary.requests import Action, ManualRequest
from modeldeploy.canary.transitions import (
    begin_promotion,
    enter_step,
    paused_by_user,
    resumed,
    short,
    start_canary,
)


class Requested(NamedTuple):
    """The state once the manual request is applied, its Events, and an abort request accepted for the
    canary (None: none), for the rollback rules."""

    state: RolloutState
    events: tuple[Event, ...] = ()
    abort: ManualRequest | None = None


def _ignored(request: ManualRequest, why: str) -> Event:
    return Event("Normal", EventReason.REQUEST_IGNORED,
                 f"{request.action.value} for revision {short(request.revision)} ignored: {why}")


def _resumed(state: RolloutState, now: datetime, who: str) -> tuple[RolloutState, Event]:
    return resumed(state, now), Event("Normal", EventReason.RESUMED,
                                      f"revision {short(state.canary_revision)} resumed{who}")


def apply_request(policy: Policy, state: RolloutState, observations: Observations, now: datetime) -> Requested:
    """Report a malformed request annotation once, then act on a request not handled yet."""
    events: list[Event] = []
    rejected = observations.rejected
    digest = rejected.digest if rejected is not None else None
    if digest != state.rejected_request:
        # Reported once per malformed text; forgotten once the annotation is fixed or removed.
        state = dataclasses.replace(state, rejected_request=digest)
        if rejected is not None:
            events.append(Event("Warning", EventReason.INVALID_REQUEST, rejected.message))
    request = observations.request
    if request is None or request.handled == state.last_request:
        return Requested(state, tuple(events))
    state = dataclasses.replace(state, last_request=request.handled)
    who = f" by {request.by}" if request.by else ""
    if request.action is Action.RETRY:
        if (state.aborted is not None and state.aborted.revision == request.revision
                and policy.revision == request.revision and state.canary_revision is None):
            started = start_canary(policy, state, request.revision, f"retry requested{who}", now)
            return Requested(started.state, (*events, *started.events))
        return Requested(state, (*events, _ignored(request, "no rolled-back revision of that name is in the spec")))
    if state.canary_revision != request.revision:
        return Requested(state, (*events, _ignored(request, f"the canary is {short(state.canary_revision)}")))
    if request.action is Action.ABORT:
        return Requested(state, tuple(events), abort=request)
    if request.action is Action.PAUSE:
        if state.promoting:
            return Requested(state, (*events, _ignored(request, "it is being promoted")))
        if paused_by_user(state):
            return Requested(state, (*events, _ignored(request, "it is already paused by a user")))
        paused = dataclasses.replace(state, pause=Pause(PauseReason.USER, now))
        event = Event("Normal", EventReason.PAUSED, f"revision {short(request.revision)} paused{who}")
        return Requested(paused, (*events, event))
    if request.action is Action.RESUME:
        if not paused_by_user(state):
            return Requested(state, (*events, _ignored(request, "it is not paused by a user")))
        state, event = _resumed(state, now, who)
        return Requested(state, (*events, event))
    assert request.action is Action.PROMOTE
    if state.promoting:
        return Requested(state, (*events, _ignored(request, "it is already being promoted")))
    if paused_by_user(state):
        state, event = _resumed(state, now, who)
        events.append(event)
    if request.full or policy.is_last(state.step_index):
        moved = begin_promotion(state, f"promote{' --full' if request.full else ''} requested{who}", now)
    else:
        moved = enter_step(policy, state, state.step_index + 1, now)
    return Requested(moved.state, (*events, *moved.events))
