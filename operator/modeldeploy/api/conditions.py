"""Phases, standard conditions and verdicts: what a reconcile concludes, as pure values.

A reconcile ends with a `ReconcileOutcome` (a phase and the state of each standard condition).
`merge_conditions` renders it into the object's conditions, keeping each condition's
lastTransitionTime unless its status flips, and keeping conditions owned by others untouched
(api/status.py builds the whole status from it).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from modeldeploy.api.events import EventReason

MAX_MESSAGE_LENGTH = 32768


class Phase(enum.StrEnum):
    """Where a ModelDeployment stands; one word for `kubectl get`."""

    PENDING = "Pending"
    BUILDING = "Building"
    DEPLOYING = "Deploying"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    HEALTHY = "Healthy"
    DEGRADED = "Degraded"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"


STALLED_PHASES = frozenset({Phase.FAILED, Phase.ROLLED_BACK})
"""Phases the operator cannot leave without a change to the spec (or a user's retry)."""


class ConditionType(enum.StrEnum):
    """The standard conditions the operator owns (kstatus: Ready, plus the abnormal-true Degraded and Stalled)."""

    READY = "Ready"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"
    ARCHIVE_READY = "ArchiveReady"
    STALLED = "Stalled"
    """kstatus's abnormal-true condition: True when the operator will not get further without a change
    (phases Failed and RolledBack), so Flux and kpt report Failed instead of waiting for a timeout."""


Reason = EventReason
"""Why a ModelDeployment is where it is: its conditions' reasons are Event reasons too (api.events)."""


@dataclasses.dataclass(frozen=True)
class ConditionState:
    """The desired state of one condition, without its timestamps."""

    type: ConditionType
    status: bool | None
    reason: EventReason
    message: str

    @property
    def status_text(self) -> Literal["True", "False", "Unknown"]:
        """The condition's status as Kubernetes writes it."""
        if self.status is None:
            return "Unknown"
        return "True" if self.status else "False"


@dataclasses.dataclass(frozen=True)
class ReconcileOutcome:
    """What one reconcile concluded: a phase, the standard conditions, and when to look again."""

    phase: Phase
    conditions: tuple[ConditionState, ...]
    requeue_after: float | None = None

    @classmethod
    def of(
        cls,
        phase: Phase,
        reason: EventReason,
        message: str,
        *,
        ready: bool = False,
        progressing: bool = False,
        degraded: bool = False,
        archive_ready: bool | None = False,
        requeue_after: float | None = None,
        overrides: Sequence[ConditionState] = (),
    ) -> ReconcileOutcome:
        """A verdict whose conditions share one reason and message, except the `overrides`; Stalled follows
        the phase."""
        states = {
            ConditionType.READY: ready,
            ConditionType.PROGRESSING: progressing,
            ConditionType.DEGRADED: degraded,
            ConditionType.ARCHIVE_READY: archive_ready,
            ConditionType.STALLED: phase in STALLED_PHASES,
        }
        by_type = {state.type: state for state in overrides}
        conditions = tuple(
            by_type.get(kind, ConditionState(kind, status, reason, message))
            for kind, status in states.items()
        )
        return cls(phase=phase, conditions=conditions, requeue_after=requeue_after)

    def condition(self, kind: ConditionType) -> ConditionState | None:
        """The desired state of one condition, if the verdict sets it."""
        return next((c for c in self.conditions if c.type == kind), None)


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a Z, whole seconds, the way Kubernetes writes metav1.Time."""
    if moment.tzinfo is None:
        raise ValueError(f"{moment!r} has no time zone")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _render_condition(state: ConditionState, existing: Mapping[str, Any] | None, generation: int,
                      now: datetime) -> dict[str, Any]:
    status = state.status_text
    unchanged = (existing is not None and existing.get("status") == status
                 and existing.get("lastTransitionTime"))
    return {
        "type": state.type.value,
        "status": status,
        "reason": state.reason,
        "message": state.message[:MAX_MESSAGE_LENGTH],
        "lastTransitionTime": existing["lastTransitionTime"] if unchanged and existing else format_time(now),
        "observedGeneration": generation,
    }


def merge_conditions(current: Sequence[Mapping[str, Any]], desired: Sequence[ConditionState], generation: int,
                     now: datetime) -> list[dict[str, Any]]:
    """The new conditions list: ours updated in place, others' kept as they are, order preserved."""
    wanted = {state.type.value: state for state in desired}
    merged: list[dict[str, Any]] = []
    for existing in current:
        kind = existing.get("type")
        state = wanted.pop(kind, None) if isinstance(kind, str) else None
        merged.append(_render_condition(state, existing, generation, now) if state else dict(existing))
    merged.extend(_render_condition(state, None, generation, now) for state in wanted.values())
    return merged


def find_condition(conditions: Sequence[Mapping[str, Any]], kind: ConditionType) -> Mapping[str, Any] | None:
    """The condition of the given type among rendered conditions, if present."""
    for condition in conditions:
        if condition.get("type") == kind.value:
            return condition
    return None
