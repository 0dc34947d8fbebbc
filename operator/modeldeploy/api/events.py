"""The operator's one vocabulary of reasons, and the Event it posts.

The reason of an Event and the reason of a standard condition are one vocabulary: every change of
phase or of the Ready condition's reason posts an Event whose reason is the Ready condition's reason,
and a rollback's reason is both its Event's and the conditions' reason. So there is one enum,
`EventReason`; `api.conditions.Reason` and `api.rollout.AbortReason` name it.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Literal


class EventReason(enum.StrEnum):
    """Every reason the operator writes, in an Event or in a standard condition."""

    # The spec and what it refers to.
    NEW_REVISION = "NewRevision"
    """An Event: the spec asks for a new revision."""
    INVALID_SPEC = "InvalidSpec"
    REFERENCE_NOT_FOUND = "ReferenceNotFound"
    # The archive.
    ARCHIVE_BUILDING = "ArchiveBuilding"
    ARCHIVE_BUILD_FAILED = "ArchiveBuildFailed"
    ARCHIVE_READY = "ArchiveReady"
    ARCHIVE_WARNING = "ArchiveWarning"
    """An Event: the archive was built with a warning."""
    ARCHIVE_CHECK_FAILED = "ArchiveCheckFailed"
    DIGEST_MISMATCH = "DigestMismatch"
    STORE_CREDENTIALS_REFUSED = "StoreCredentialsRefused"
    # Serving.
    PODS_NOT_READY = "PodsNotReady"
    MODEL_LOAD_FAILED = "ModelLoadFailed"
    READY = "Ready"
    DRIFT_REVERTED = "DriftReverted"
    """An Event: a child's field we own was changed by hand and has been put back."""
    # The canary.
    CANARY_STARTED = "CanaryStarted"
    CANARY_STEP = "CanaryStep"
    CANARY_PROGRESSING = "CanaryProgressing"
    CANARY_PAUSED = "CanaryPaused"
    CANARY_CANCELLED = "CanaryCancelled"
    PAUSED = "Paused"
    RESUMED = "Resumed"
    PROMOTING = "Promoting"
    PROMOTED = "Promoted"
    ROLLING_BACK = "RollingBack"
    PASSED_GATE = "PassedGate"
    """The reason of a canary pod's traffic-gate condition once its revision passed the weight-0 gate."""
    # Why a canary is rolled back (ROLLBACK_REASONS).
    ANALYSIS_FAILED = "AnalysisFailed"
    METRICS_UNAVAILABLE = "MetricsUnavailable"
    INSUFFICIENT_DATA = "InsufficientData"
    PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
    ABORTED = "Aborted"
    # Manual requests.
    REQUEST_IGNORED = "RequestIgnored"
    INVALID_REQUEST = "InvalidRequest"


ROLLBACK_REASONS: frozenset[EventReason] = frozenset({
    EventReason.ANALYSIS_FAILED, EventReason.METRICS_UNAVAILABLE, EventReason.INSUFFICIENT_DATA,
    EventReason.PROGRESS_DEADLINE_EXCEEDED, EventReason.ABORTED,
})
"""The reasons a canary is rolled back for: its Warning Event's reason and its conditions' reason."""


@dataclasses.dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post on the object."""

    type: Literal["Normal", "Warning"]
    reason: EventReason
    message: str
