"""The rollout state kept in `status.rollout`: everything a restarted operator needs to resume.

A typed, immutable value with a camelCase dict form. Times are stored (RFC 3339, whole seconds),
never counted in memory: a deadline or a pause is always "now minus a stored time".
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from modeldeploy.api.conditions import format_time
from modeldeploy.api.events import EventReason

MAX_MEASUREMENTS = 10
"""Measurements kept per metric in status (the newest last)."""


def stamp(moment: datetime) -> datetime:
    """`moment` as it is stored: UTC, whole seconds, so a state read back equals the state written."""
    if moment.tzinfo is None:
        raise ValueError(f"{moment!r} has no time zone")
    return moment.astimezone(UTC).replace(microsecond=0)


def latest(*moments: datetime | None) -> datetime | None:
    """The latest of the moments given (None when none is)."""
    present = [m for m in moments if m is not None]
    return max(present) if present else None


def parse_time(text: str) -> datetime:
    """Parse an RFC 3339 time (Z or an offset); the result is in UTC."""
    return stamp(datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00")))


def _time(data: Mapping[str, Any], key: str) -> datetime | None:
    value = data.get(key)
    return parse_time(str(value)) if value else None


def _put_time(out: dict[str, Any], key: str, value: datetime | None) -> None:
    if value is not None:
        out[key] = format_time(value)


class MeasurementVerdict(enum.StrEnum):
    """What one measurement of one metric says."""

    SUCCESSFUL = "Successful"
    FAILED = "Failed"
    INCONCLUSIVE = "Inconclusive"
    ERROR = "Error"


class PauseReason(enum.StrEnum):
    """Why a rollout is paused: the step asks for it, or a user asked for it."""

    STEP = "step"
    USER = "user"


AbortReason = EventReason
"""Why a revision was rolled back: one of api.events.ROLLBACK_REASONS, its Event's reason."""


@dataclasses.dataclass(frozen=True)
class MeasurementRecord:
    """One measurement as kept in status."""

    at: datetime
    verdict: MeasurementVerdict
    value: float | None = None
    requests: int | None = None
    weight: int = 0
    message: str = ""
    stable_value: float | None = None
    """Stable's own value on the same examples (a golden set), beside the canary's."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"at": format_time(self.at), "verdict": self.verdict.value, "weight": self.weight}
        if self.value is not None and math.isfinite(self.value):
            out["value"] = self.value  # NaN and infinities are kept out of records (the message names them)
        if self.stable_value is not None and math.isfinite(self.stable_value):
            out["stableValue"] = self.stable_value
        if self.requests is not None:
            out["requests"] = self.requests
        if self.message:
            out["message"] = self.message
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MeasurementRecord:
        value = data.get("value")
        return cls(
            at=parse_time(str(data["at"])),
            verdict=MeasurementVerdict(str(data["verdict"])),
            value=None if value is None else float(value),
            requests=None if data.get("requests") is None else int(data["requests"]),
            weight=int(data.get("weight", 0)),
            stable_value=None if data.get("stableValue") is None else float(data["stableValue"]),
            message=str(data.get("message", "")),
        )


@dataclasses.dataclass(frozen=True)
class MetricState:
    """Counters of one metric for the canary revision, and its last measurements.

    `failed` and `inconclusive` count over the whole revision; `successes_at_step` only at the
    current step (evidence is never carried from one step to the next), as do `step_requests` and
    `step_events`, a rate's counts pooled over the step's windows at its weight; `consecutive_errors`
    is the current streak of provider errors. `last_at` is the end of the last window measured.
    """

    failed: int = 0
    inconclusive: int = 0
    consecutive_errors: int = 0
    successes_at_step: int = 0
    step_requests: int = 0
    step_events: int = 0
    last_at: datetime | None = None
    last_error_at: datetime | None = None
    measurements: tuple[MeasurementRecord, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "failed": self.failed,
            "inconclusive": self.inconclusive,
            "consecutiveErrors": self.consecutive_errors,
            "successesAtStep": self.successes_at_step,
            "stepRequests": self.step_requests,
            "stepEvents": self.step_events,
            "measurements": [m.to_dict() for m in self.measurements],
        }
        _put_time(out, "lastMeasuredAt", self.last_at)
        _put_time(out, "lastErrorAt", self.last_error_at)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MetricState:
        return cls(
            failed=int(data.get("failed", 0)),
            inconclusive=int(data.get("inconclusive", 0)),
            consecutive_errors=int(data.get("consecutiveErrors", 0)),
            successes_at_step=int(data.get("successesAtStep", 0)),
            step_requests=int(data.get("stepRequests", 0)),
            step_events=int(data.get("stepEvents", 0)),
            last_at=_time(data, "lastMeasuredAt"),
            last_error_at=_time(data, "lastErrorAt"),
            measurements=tuple(MeasurementRecord.from_dict(m) for m in data.get("measurements") or ()),
        )


@dataclasses.dataclass(frozen=True)
class Pause:
    """A pause: its reason and since when."""

    reason: PauseReason
    since: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"reason": self.reason.value, "since": format_time(self.since)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Pause:
        return cls(reason=PauseReason(str(data["reason"])), since=parse_time(str(data["since"])))


@dataclasses.dataclass(frozen=True)
class Aborted:
    """A revision that was rolled back: not tried again until the spec changes or a user retries."""

    revision: str
    reason: AbortReason
    message: str
    at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"revision": self.revision, "reason": self.reason.value, "message": self.message,
                "at": format_time(self.at)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Aborted:
        return cls(revision=str(data["revision"]), reason=AbortReason(str(data["reason"])),
                   message=str(data.get("message", "")), at=parse_time(str(data["at"])))


@dataclasses.dataclass(frozen=True)
class HandledRequest:
    """The last manual request the engine acted on, so that a re-read does not act twice."""

    action: str
    revision: str
    at: str

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "revision": self.revision, "at": self.at}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HandledRequest:
        return cls(action=str(data.get("action", "")), revision=str(data.get("revision", "")),
                   at=str(data.get("at", "")))


@dataclasses.dataclass(frozen=True)
class RolloutState:
    """Where a rollout stands (`status.rollout`).

    - `stable_revision` serves today; `canary_revision` is on trial (None: no canary).
    - `step_index` and `step_started_at`: the current step and when it began. A user pause moves
      `step_started_at` (and `unready_since`) forward by its length when it ends: human pauses stop
      the deadline clocks.
    - `weight` is the canary weight asked for; `effective_weight` what traffic really sees
      (ready canary pods / ready pods), `weight_since` when the effective weight last changed
      (a window measured before it is not evidence for this weight).
    - `unready_since`: since when the canary has not been seen ready for good (see canary/decide.py).
    - `promoting`: stable is being rolled to the canary revision, since `promoting_since` (the
      promotion's own progress deadline counts from then).
    - `aborted`: the revision last rolled back; it stays rolled back while the spec names it.
    - `rejected_request`: the digest of the malformed request annotation last reported (it is
      reported once, not on every reconcile).
    """

    stable_revision: str | None = None
    canary_revision: str | None = None
    step_index: int = 0
    step_started_at: datetime | None = None
    weight: int = 0
    effective_weight: int = 0
    weight_since: datetime | None = None
    unready_since: datetime | None = None
    ready_since: datetime | None = None
    pause: Pause | None = None
    metrics: Mapping[str, MetricState] = dataclasses.field(default_factory=dict)
    promoting: bool = False
    promoting_since: datetime | None = None
    aborted: Aborted | None = None
    last_request: HandledRequest | None = None
    rejected_request: str | None = None

    def summary(self) -> dict[str, Any]:
        """The status fields the CRD already has (printer columns and `status.analysis`) for this state.

        `canaryWeight` is the effective weight (what traffic sees); `currentStep` the step index.
        """
        records = sorted(((name, record) for name, metric in self.metrics.items() for record in metric.measurements),
                         key=lambda item: (item[1].at, item[0]))
        measurements = []
        for name, record in records[-64:]:
            entry: dict[str, Any] = {"metric": name, "phase": record.verdict.value, "at": format_time(record.at)}
            if record.value is not None:
                entry["value"] = record.value
            if record.requests is not None:
                entry["requests"] = record.requests
            if record.message:
                entry["message"] = record.message
            measurements.append(entry)
        return {
            "stableRevision": self.stable_revision,
            "canaryRevision": self.canary_revision,
            "currentStep": self.step_index if self.canary_revision is not None else None,
            "canaryWeight": self.effective_weight,
            "analysis": {
                "failedChecks": sum(m.failed for m in self.metrics.values()),
                "consecutiveErrors": max((m.consecutive_errors for m in self.metrics.values()), default=0),
                "inconclusive": sum(m.inconclusive for m in self.metrics.values()),
                "measurements": measurements,
            },
        }

    def metric(self, name: str) -> MetricState:
        """The counters of metric `name` (fresh ones when it was never measured)."""
        return self.metrics.get(name, MetricState())

    def to_dict(self) -> dict[str, Any]:
        """The camelCase form stored in `status.rollout`."""
        out: dict[str, Any] = {
            "stepIndex": self.step_index,
            "weight": self.weight,
            "effectiveWeight": self.effective_weight,
            "metrics": {name: self.metrics[name].to_dict() for name in sorted(self.metrics)},
        }
        if self.stable_revision is not None:
            out["stableRevision"] = self.stable_revision
        if self.canary_revision is not None:
            out["canaryRevision"] = self.canary_revision
        _put_time(out, "stepStartedAt", self.step_started_at)
        _put_time(out, "weightSince", self.weight_since)
        _put_time(out, "unreadySince", self.unready_since)
        _put_time(out, "readySince", self.ready_since)
        if self.pause is not None:
            out["pause"] = self.pause.to_dict()
        if self.promoting:
            out["promoting"] = True
            _put_time(out, "promotingSince", self.promoting_since)
        if self.aborted is not None:
            out["aborted"] = self.aborted.to_dict()
        if self.last_request is not None:
            out["lastRequest"] = self.last_request.to_dict()
        if self.rejected_request is not None:
            out["rejectedRequest"] = self.rejected_request
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> RolloutState:
        """Read `status.rollout` back (None or {}: nothing has rolled out yet)."""
        if not data:
            return cls()
        return cls(
            stable_revision=data.get("stableRevision"),
            canary_revision=data.get("canaryRevision"),
            step_index=int(data.get("stepIndex", 0)),
            step_started_at=_time(data, "stepStartedAt"),
            weight=int(data.get("weight", 0)),
            effective_weight=int(data.get("effectiveWeight", 0)),
            weight_since=_time(data, "weightSince"),
            unready_since=_time(data, "unreadySince"),
            ready_since=_time(data, "readySince"),
            pause=Pause.from_dict(data["pause"]) if data.get("pause") else None,
            metrics={str(k): MetricState.from_dict(v) for k, v in (data.get("metrics") or {}).items()},
            promoting=bool(data.get("promoting", False)),
            promoting_since=_time(data, "promotingSince"),
            aborted=Aborted.from_dict(data["aborted"]) if data.get("aborted") else None,
            last_request=HandledRequest.from_dict(data["lastRequest"]) if data.get("lastRequest") else None,
            rejected_request=str(data["rejectedRequest"]) if data.get("rejectedRequest") else None,
        )
