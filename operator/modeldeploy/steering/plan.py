"""What a manual command asks for, decided from the object as read: a request to write, or why none.

A command never writes the spec: it writes one annotation (modeldeploy.canary.REQUEST_ANNOTATION)
naming the revision it is meant for. When the object shows that the request could change nothing
(no canary, already promoted, nothing rolled back, ...) the command says why and writes nothing.
The engine stays the judge: a request that arrives after its revision is gone is ignored there.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from modeldeploy.api.conditions import format_time
from modeldeploy.api.events import EventReason
from modeldeploy.api.rollout import PauseReason, RolloutState, parse_time
from modeldeploy.api.status import Status
from modeldeploy.canary.requests import REQUEST_ANNOTATION, Action, ManualRequest, RequestError, parse_request

REQUEST_EVENT_REASONS: frozenset[EventReason] = frozenset({
    EventReason.CANARY_STARTED, EventReason.CANARY_STEP, EventReason.PROMOTING, EventReason.PROMOTED,
    EventReason.PAUSED, EventReason.RESUMED, EventReason.ABORTED, EventReason.REQUEST_IGNORED,
})
"""The reasons of the Events the engine posts when it acts on a request (RequestIgnored when it does not)."""

SHARED_WITH_PHASE_CHANGE: frozenset[EventReason] = frozenset({EventReason.PROMOTING, EventReason.ABORTED})
"""Request reasons that are condition reasons too. When the reconcile that acts on a request leaves the Ready
condition with such a reason, it posts that phase change's Event, with the same reason, before the action's
own Event (the status's Events go first, then the steps'): of that reason, the first Event since the
request is the phase change's."""


@dataclasses.dataclass(frozen=True)
class Refusal:
    """Why a command writes nothing."""

    reason: str


def short(revision: str | None) -> str:
    """A revision as the operator's messages print it."""
    return (revision or "none")[:10]


def rollout_of(body: Mapping[str, Any]) -> RolloutState:
    """The rollout state recorded in the object's status (empty when none)."""
    return Status.parse(body.get("status") or {}).rollout.state or RolloutState()


def step_count(body: Mapping[str, Any]) -> int:
    """How many steps the spec's rollout has (one when it names none)."""
    steps = ((body.get("spec") or {}).get("rollout") or {}).get("steps")
    return len(steps) if isinstance(steps, list) and steps else 1


def pending_request(body: Mapping[str, Any]) -> ManualRequest | None:
    """The request in the annotation when the engine has not acted on it yet."""
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    text = annotations.get(REQUEST_ANNOTATION)
    if not text:
        return None
    try:
        request = parse_request(text)
    except RequestError:
        return None
    return None if request.handled == rollout_of(body).last_request else request


def fresh_time(body: Mapping[str, Any], now: datetime) -> str:
    """`now` as a request time, later than any request already on the object.

    The engine recognises a handled request by (action, revision, at): two requests in one second
    would otherwise look like one.
    """
    moments = [now]
    rollout = rollout_of(body)
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    previous: list[str] = []
    if rollout.last_request is not None:
        previous.append(rollout.last_request.at)
    text = annotations.get(REQUEST_ANNOTATION)
    if text:
        with contextlib.suppress(RequestError):
            previous.append(parse_request(text).at)
    for at in previous:
        try:
            moments.append(parse_time(at) + timedelta(seconds=1))
        except ValueError:
            continue
    return format_time(max(moments))


def plan_request(body: Mapping[str, Any], action: Action, *, now: datetime, full: bool = False,
                 by: str = "") -> ManualRequest | Refusal:
    """The request `action` writes on the object `body`, or why it would change nothing."""
    name = (body.get("metadata") or {}).get("name", "")
    status = body.get("status") or {}
    rollout = rollout_of(body)
    canary = rollout.canary_revision
    stable = rollout.stable_revision or status.get("stableRevision")
    aborted = rollout.aborted
    at = fresh_time(body, now)
    if action is Action.RETRY:
        if canary is not None:
            return Refusal(f"nothing to retry: canary {short(canary)} is running (retry restarts a rolled-back "
                           f"revision)")
        if aborted is None:
            return Refusal(f"nothing to retry: no revision of {name} is rolled back "
                           f"(stable revision {short(stable)})")
        desired = status.get("revision")
        if desired and desired != aborted.revision:
            return Refusal(f"nothing to retry: revision {short(aborted.revision)} was rolled back, but the spec "
                           f"now asks for {short(desired)}, which rolls out by itself")
        return ManualRequest(action=action, revision=aborted.revision, at=at, by=by)
    if canary is None:
        why = f"{name} has no canary (stable revision {short(stable)}, phase {status.get('phase') or 'Unknown'})"
        if aborted is not None:
            why += (f"; revision {short(aborted.revision)} was rolled back ({aborted.reason.value}), "
                    + ("already" if action is Action.ABORT else "`modeldeploy retry` restarts it"))
        return Refusal(f"nothing to {action.value}: {why}")
    if action is Action.PROMOTE and rollout.promoting:
        return Refusal(f"nothing to promote: revision {short(canary)} is already being promoted")
    if action is Action.PAUSE:
        if rollout.promoting:
            return Refusal(f"nothing to pause: revision {short(canary)} is being promoted")
        if rollout.pause is not None and rollout.pause.reason is PauseReason.USER:
            return Refusal(f"nothing to pause: revision {short(canary)} is paused by a user since "
                           f"{format_time(rollout.pause.since)}")
    if action is Action.RESUME:
        if rollout.pause is None:
            return Refusal(f"nothing to resume: revision {short(canary)} is not paused")
        if rollout.pause.reason is PauseReason.STEP:
            return Refusal(f"nothing to resume: step {rollout.step_index + 1}/{step_count(body)} waits for a "
                           f"promote request, not a resume (`modeldeploy promote {name}`)")
    return ManualRequest(action=action, revision=canary, at=at, full=full and action is Action.PROMOTE, by=by)


def describe_request(body: Mapping[str, Any], request: ManualRequest) -> str:
    """One line naming what is asked of which revision, where the rollout stands."""
    rollout = rollout_of(body)
    where = ""
    if rollout.canary_revision == request.revision:
        where = (f" (step {rollout.step_index + 1}/{step_count(body)}, weight {rollout.weight} %, "
                 f"effective {rollout.effective_weight} %)")
    flag = " --full" if request.full else ""
    by = f" by {request.by}" if request.by else ""
    return f"{request.action.value}{flag} revision {short(request.revision)}{where}, requested{by} at {request.at}"


def is_handled(body: Mapping[str, Any], request: ManualRequest) -> bool:
    """Whether the engine has recorded `request` as acted on."""
    return rollout_of(body).last_request == request.handled


def event_time(event: Mapping[str, Any]) -> datetime | None:
    """When an Event last happened (lastTimestamp, eventTime, or its creation)."""
    metadata = event.get("metadata") or {}
    for value in (event.get("lastTimestamp"), event.get("eventTime"), event.get("firstTimestamp"),
                  metadata.get("creationTimestamp")):
        if value:
            try:
                return parse_time(str(value))
            except ValueError:
                continue
    return None


def events_since(events: Sequence[Mapping[str, Any]], at: str, slack: timedelta = timedelta(seconds=2)
                 ) -> list[Mapping[str, Any]]:
    """The Events that happened at or after `at` (less a little clock skew), oldest first."""
    start = parse_time(at) - slack
    dated = [(moment, event) for event in events for moment in [event_time(event)] if moment and moment >= start]
    return [event for _, event in sorted(dated, key=lambda item: item[0])]


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What a handled request did: whether anything changed, and lines a person reads."""

    changed: bool
    lines: tuple[str, ...]


def phase_line(body: Mapping[str, Any]) -> str:
    """The phase and the message of the condition that explains it."""
    status = body.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or [] if isinstance(c, Mapping)}
    message = ""
    for kind in ("Degraded", "Progressing", "Ready"):
        condition = conditions.get(kind)
        if condition and (condition.get("status") == "True" or kind == "Ready") and condition.get("message"):
            message = str(condition["message"])
            break
    phase = status.get("phase") or "Unknown"
    return f"phase {phase}: {message}" if message else f"phase {phase}"


def posted_at(event: Mapping[str, Any]) -> datetime | None:
    """When an Event was posted, to the microsecond when it says (eventTime), for the order of Events posted
    in one second."""
    value = event.get("eventTime")
    if value:
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC)
    return event_time(event)


def ready_reason(body: Mapping[str, Any]) -> str:
    """The reason of the object's Ready condition ("" when it has none)."""
    for condition in (body.get("status") or {}).get("conditions") or []:
        if isinstance(condition, Mapping) and condition.get("type") == "Ready":
            return str(condition.get("reason") or "")
    return ""


def request_events(events: Sequence[Mapping[str, Any]], request: ManualRequest,
                   body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The Events since `request` that say what the engine did with it, oldest first; `body` is the object
    as the reconcile that handled the request wrote it.

    Recognised by their reasons and the status, never by their messages: only the request's own reasons
    count (REQUEST_EVENT_REASONS), and when the status's Ready reason is one of them
    (SHARED_WITH_PHASE_CHANGE), the first Event of that reason is the phase change's. Which revision the
    request was for, and that the engine acted on it, the status says (status.rollout.lastRequest,
    `is_handled`).
    """
    shared = ready_reason(body)
    since = events_since(events, request.at)
    order = {id(e): (posted_at(e) or datetime.min.replace(tzinfo=UTC), i) for i, e in enumerate(since)}
    found: list[Mapping[str, Any]] = []
    phase_changes: set[str] = set()
    for e in sorted(since, key=lambda e: order[id(e)]):
        reason = str(e.get("reason") or "")
        if reason not in REQUEST_EVENT_REASONS:
            continue
        if reason in SHARED_WITH_PHASE_CHANGE and reason == shared and reason not in phase_changes:
            phase_changes.add(reason)
            continue
        found.append(e)
    return found


def outcome(body: Mapping[str, Any], request: ManualRequest, events: Sequence[Mapping[str, Any]]) -> Outcome:
    """What the engine did with `request`, from the object after and the Events since the request."""
    related = request_events(events, request, body)
    ignored = [e for e in related if e.get("reason") == EventReason.REQUEST_IGNORED]
    lines = [f"{e.get('type', 'Normal')} {e.get('reason')}: {e.get('message', '')}" for e in related]
    lines.append(phase_line(body))
    return Outcome(changed=not ignored, lines=tuple(lines))
