"""What a finished (or running) build Job says, and the status.archive it leads to: pure functions.

The build writes its result (or its refusal) as JSON to the termination message, which the operator
reads from the finished pod.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Mapping, Sequence
from typing import Any

from modeldeploy.api.spec import ModelDeployment, PvcStore, S3Store
from modeldeploy.api.status import ArchiveStatus, seconds_or_none
from modeldeploy.building.job import STORE_MOUNT


class JobState(enum.StrEnum):
    """Where a build Job is: still running, built, or failed."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclasses.dataclass(frozen=True)
class JobOutcome:
    """What a build Job says: still running, built (with its result), or failed (with why)."""

    state: JobState
    result: Mapping[str, Any] | None = None
    reason: str = ""
    message: str = ""


def _condition(job: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return dict(cond)
    return None


def _last_termination(pods: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The most recently finished build container's terminated state."""
    finished = []
    for pod in pods:
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (status.get("state") or {}).get("terminated")
            if terminated:
                finished.append(terminated)
    finished.sort(key=lambda t: str(t.get("finishedAt") or ""))
    return finished[-1] if finished else None


def _tail(text: str, lines: int = 10) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def job_outcome(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> JobOutcome:
    """Reads a build Job and its pods: the result JSON on success, the reason and log tail on failure."""
    terminated = _last_termination(pods)
    message = str((terminated or {}).get("message") or "")
    document: Mapping[str, Any] | None = None
    try:
        parsed = json.loads(message) if message.startswith("{") else None
        document = parsed if isinstance(parsed, dict) else None
    except ValueError:
        document = None
    if _condition(job, "Complete") is not None:
        if document is None or "sha256" not in document:
            return JobOutcome(JobState.FAILED, reason="BuildResultMissing",
                              message=f"the build finished without a result: {_tail(message) or 'no message'}")
        return JobOutcome(JobState.SUCCEEDED, result=document)
    failed = _condition(job, "Failed")
    if failed is not None:
        if document is not None and "message" in document:
            return JobOutcome(JobState.FAILED, reason=str(document.get("reason") or "BuildFailed"),
                              message=str(document["message"]))
        detail = _tail(message) or str(failed.get("message") or "")
        return JobOutcome(JobState.FAILED, reason=str(failed.get("reason") or "BuildFailed"), message=detail)
    return JobOutcome(JobState.RUNNING)


def store_uri(uri: str, store: PvcStore | S3Store) -> str:
    """The artifact's URI as users see it: file:///store/KEY inside the build becomes pvc://CLAIM/KEY."""
    prefix = f"file://{STORE_MOUNT}/"
    if isinstance(store, PvcStore) and uri.startswith(prefix):
        return f"pvc://{store.claim_name}/{uri[len(prefix):]}"
    return uri


def archive_status(result: Mapping[str, Any], md: ModelDeployment, revision: str,
                   build_key: str) -> ArchiveStatus:
    """status.archive from a build result."""
    return ArchiveStatus(
        revision=revision,
        build_key=build_key,
        inputs_digest=str(result["inputsDigest"]),
        sha256=str(result["sha256"]),
        uri=store_uri(str(result["uri"]), md.spec.archive.store),
        format=str(result["format"]),
        bytes=int(result["bytes"]),
        reused=bool(result.get("reused", False)),
        build_seconds=seconds_or_none(result.get("seconds")),
    )
