"""The typed status of a ModelDeployment: parsed once from the object, changed by the reconcile steps as
typed fields, rendered back, and written only as the smallest patch that gets there.

Room for two revisions: `revision` is what the spec asks for, `stable_revision` serves the stable
traffic, `canary_revision` the canary's, and `rollout` holds the rollout's progress (rendered to the
CRD's `currentStep` and `canaryWeight`). A field left None is not written, and removed if it was there.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

from modeldeploy.api.conditions import (
    ConditionType,
    Phase,
    ReconcileOutcome,
    find_condition,
    merge_conditions,
)
from modeldeploy.api.events import Event, EventReason
from modeldeploy.api.rollout import RolloutState


@dataclasses.dataclass(frozen=True)
class ArchiveStatus:
    """status.archive: the archive built for a revision, and where it is."""

    revision: str
    build_key: str
    inputs_digest: str
    sha256: str
    uri: str
    format: str
    bytes: int
    reused: bool = False
    build_seconds: float | None = None
    """How long the build Job took to make (or find) the archive, by the build's own measure."""

    @classmethod
    def parse(cls, data: object) -> ArchiveStatus | None:
        """The archive recorded in a status, or None when there is none (or only part of one)."""
        if not isinstance(data, Mapping):
            return None
        try:
            return cls(
                revision=str(data["revision"]),
                build_key=str(data["buildKey"]),
                inputs_digest=str(data["inputsDigest"]),
                sha256=str(data["sha256"]),
                uri=str(data["uri"]),
                format=str(data["format"]),
                bytes=int(data["bytes"]),
                reused=bool(data.get("reused", False)),
                build_seconds=seconds_or_none(data.get("buildSeconds")),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def render(self) -> dict[str, Any]:
        """The status field as the CRD defines it."""
        return {
            "revision": self.revision,
            "buildKey": self.build_key,
            "inputsDigest": self.inputs_digest,
            "sha256": self.sha256,
            "uri": self.uri,
            "format": self.format,
            "bytes": self.bytes,
            "reused": self.reused,
            **({} if self.build_seconds is None else {"buildSeconds": self.build_seconds}),
        }


SERVED_SPEC_FIELDS = ("model", "archive", "serving")
"""The parts of a spec a serving pod is rendered from (the revision hashes what of them changes a pod)."""


@dataclasses.dataclass(frozen=True)
class StableTemplate:
    """`status.rollout.stable`: what renders NAME-stable again at its own revision while the spec
    describes another one (a canary, a rolled-back revision): that revision's served spec fields, as
    the user wrote them (kept as one JSON string: the CRD needs no copy of the spec's schema), and its
    archive. Recorded while the spec's revision is the stable one."""

    revision: str
    spec: Mapping[str, Any]
    archive: ArchiveStatus

    @classmethod
    def of(cls, revision: str, spec: Mapping[str, Any], archive: ArchiveStatus) -> StableTemplate:
        """The template of `revision`, keeping only the served fields of `spec`."""
        return cls(revision=revision, spec={k: spec[k] for k in SERVED_SPEC_FIELDS if k in spec}, archive=archive)

    @classmethod
    def parse(cls, data: object) -> StableTemplate | None:
        """The template recorded in status.rollout, or None when there is none (or only part of one)."""
        if not isinstance(data, Mapping):
            return None
        archive = ArchiveStatus.parse(data.get("archive"))
        revision, text = data.get("revision"), data.get("spec")
        try:
            spec = json.loads(text) if isinstance(text, str) else None
        except ValueError:
            spec = None
        if archive is None or not isinstance(revision, str) or not isinstance(spec, dict):
            return None
        return cls(revision=revision, spec=spec, archive=archive)

    def render(self) -> dict[str, Any]:
        """The status field as the CRD defines it."""
        return {"revision": self.revision, "spec": json.dumps(self.spec, sort_keys=True, separators=(",", ":")),
                "archive": self.archive.render()}


def seconds_or_none(value: object) -> float | None:
    """A non-negative number of seconds, or None for anything else (absent, text, NaN)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    seconds = float(value)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


@dataclasses.dataclass(frozen=True)
class RolloutStatus:
    """Where a canary rollout stands: the flat fields of the printer columns, `status.analysis`, and
    `status.rollout` (the canary engine's typed state, and `stable`, the template of the stable revision,
    kept beside it)."""

    current_step: int | None = None
    canary_weight: int | None = None
    state: RolloutState | None = None
    analysis: Mapping[str, Any] | None = None
    stable: StableTemplate | None = None

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> RolloutStatus:
        """The rollout fields of a status."""
        state, analysis = data.get("rollout"), data.get("analysis")
        stable = StableTemplate.parse(state.get("stable")) if isinstance(state, Mapping) else None
        engine = {k: v for k, v in state.items() if k != "stable"} if isinstance(state, Mapping) else None
        return cls(current_step=_optional_int(data.get("currentStep")),
                   canary_weight=_optional_int(data.get("canaryWeight")),
                   state=RolloutState.from_dict(engine) if engine else None,
                   analysis=dict(analysis) if isinstance(analysis, Mapping) else None,
                   stable=stable)

    def render(self) -> dict[str, Any]:
        """The CRD's rollout fields (None: not written, or removed)."""
        rollout = self.state.to_dict() if self.state is not None else None
        if self.stable is not None:
            rollout = {**(rollout or {}), "stable": self.stable.render()}
        return {"currentStep": self.current_step, "canaryWeight": self.canary_weight,
                "rollout": rollout,
                "analysis": dict(self.analysis) if self.analysis is not None else None}


@dataclasses.dataclass(frozen=True)
class Status:
    """The status fields the operator owns."""

    observed_generation: int | None = None
    phase: Phase | None = None
    conditions: tuple[Mapping[str, Any], ...] = ()
    """Rendered conditions, ours and others' (others' are kept as they are)."""
    revision: str | None = None
    stable_revision: str | None = None
    canary_revision: str | None = None
    archive: ArchiveStatus | None = None
    rollout: RolloutStatus = RolloutStatus()
    last_progress_time: str | None = None
    """When the status last changed (RFC 3339): a reconcile that changes nothing leaves it, so the time
    since it is how long the object has not moved (`modeldeploy status` shows it)."""

    @classmethod
    def parse(cls, data: Mapping[str, Any] | None) -> Status:
        """The typed view of an object's status; anything unreadable counts as absent."""
        data = data or {}
        phase = data.get("phase")
        conditions = data.get("conditions")
        return cls(
            observed_generation=_optional_int(data.get("observedGeneration")),
            phase=Phase(phase) if phase in {p.value for p in Phase} else None,
            conditions=tuple(dict(c) for c in conditions if isinstance(c, Mapping))
            if isinstance(conditions, Sequence) else (),
            revision=_optional_str(data.get("revision")),
            stable_revision=_optional_str(data.get("stableRevision")),
            canary_revision=_optional_str(data.get("canaryRevision")),
            archive=ArchiveStatus.parse(data.get("archive")),
            rollout=RolloutStatus.parse(data),
            last_progress_time=_optional_str(data.get("lastProgressTime")),
        )

    def render(self) -> dict[str, Any]:
        """Every owned field as the CRD defines it; None marks a field that must not be there."""
        return {
            "observedGeneration": self.observed_generation,
            "phase": self.phase.value if self.phase is not None else None,
            "conditions": [dict(c) for c in self.conditions] or None,
            "revision": self.revision,
            "stableRevision": self.stable_revision,
            "canaryRevision": self.canary_revision,
            "archive": self.archive.render() if self.archive is not None else None,
            **self.rollout.render(),
            "lastProgressTime": self.last_progress_time,
        }

    def condition(self, kind: ConditionType) -> Mapping[str, Any] | None:
        """One of the status's conditions, if present."""
        return find_condition(self.conditions, kind)


def _optional_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def desired_status(current: Status, verdict: ReconcileOutcome, *, generation: int, now: datetime) -> Status:
    """`current` (with the fields the steps set) as it should be after this verdict.

    Each condition keeps its lastTransitionTime unless its status flips; others' conditions stay.
    """
    return dataclasses.replace(
        current,
        observed_generation=generation,
        phase=verdict.phase,
        conditions=tuple(merge_conditions(current.conditions, verdict.conditions, generation, now)),
    )


def status_patch(current: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any] | None:
    """A merge patch (RFC 7386) of the rendered fields that differ, or None when the status is already as desired.

    A None value removes a field, and is sent only when the field is there. Objects are patched key by
    key, so a key gone from a nested object (say status.rollout.canaryRevision) is removed too.
    """
    patch: dict[str, Any] = {}
    for key, value in desired.items():
        old = current.get(key)
        if old == value or (value is None and key not in current):
            continue
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            nested = status_patch(old, value) or {}
            nested.update({k: None for k in old if k not in value})
            patch[key] = nested
        else:
            patch[key] = value
    return patch or None


def transition_events(current: Status, desired: Status) -> list[Event]:
    """The Events a status change deserves: a new revision, and each change of phase or Ready reason."""
    events: list[Event] = []
    old_revision, new_revision = current.revision, desired.revision
    if new_revision and new_revision != old_revision:
        replaced = f", replacing {old_revision}" if old_revision else ""
        events.append(Event("Normal", EventReason.NEW_REVISION, f"Spec revision {new_revision}{replaced}"))

    old_ready = current.condition(ConditionType.READY) or {}
    new_ready = desired.condition(ConditionType.READY) or {}
    if current.phase != desired.phase or old_ready.get("reason") != new_ready.get("reason"):
        degraded = desired.condition(ConditionType.DEGRADED) or {}
        kind: Literal["Normal", "Warning"] = "Warning" if degraded.get("status") == "True" else "Normal"
        phase = desired.phase.value if desired.phase is not None else None
        # The Ready condition's reason is one of ours (ConditionState.reason is an EventReason).
        reason = new_ready.get("reason")
        if reason in set(EventReason):
            events.append(Event(kind, EventReason(reason), f"{phase}: {new_ready.get('message', '')}"))
    return events
