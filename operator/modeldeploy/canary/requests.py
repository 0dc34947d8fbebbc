"""Manual control without writing the spec: a request in one annotation on the object.

    metadata:
      annotations:
        modeldeploy.dev/request: '{"action": "promote", "revision": "1b2c3d4e5f", "full": false,
                                   "by": "alice", "at": "2026-11-26T02:00:00Z"}'

Each request names the revision it is meant for (the canary's; for `retry`, the rolled-back
one), so a stale request does nothing. The engine records the request it handled (action,
revision, at) in `status.rollout.lastRequest`: a re-read annotation is never acted on twice, and
a new request needs a new `at`.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
from collections.abc import Mapping

from modeldeploy.api.rollout import HandledRequest, parse_time

REQUEST_ANNOTATION = "modeldeploy.dev/request"


class Action(enum.StrEnum):
    """What a user can ask of a running rollout."""

    PROMOTE = "promote"
    ABORT = "abort"
    RETRY = "retry"
    PAUSE = "pause"
    RESUME = "resume"


class RequestError(ValueError):
    """The annotation is not a well-formed request (the message says why)."""


@dataclasses.dataclass(frozen=True)
class ManualRequest:
    """A user's request: the action, the revision it is meant for, who asked and when."""

    action: Action
    revision: str
    at: str
    full: bool = False
    by: str = ""

    @property
    def handled(self) -> HandledRequest:
        """How the request is remembered once acted on."""
        return HandledRequest(action=self.action.value, revision=self.revision, at=self.at)

    def to_annotation(self) -> str:
        """The annotation value (compact JSON, keys sorted)."""
        body: dict[str, object] = {"action": self.action.value, "revision": self.revision, "at": self.at}
        if self.full:
            body["full"] = True
        if self.by:
            body["by"] = self.by
        return json.dumps(body, sort_keys=True, separators=(",", ":"))


def parse_request(text: str) -> ManualRequest:
    """Parse an annotation value; raise RequestError naming what is wrong."""
    try:
        body = json.loads(text)
    except ValueError as error:
        raise RequestError(f"{REQUEST_ANNOTATION} is not JSON: {error}") from None
    if not isinstance(body, dict):
        raise RequestError(f"{REQUEST_ANNOTATION} must be a JSON object")
    try:
        action = Action(str(body.get("action")))
    except ValueError:
        allowed = ", ".join(a.value for a in Action)
        raise RequestError(f"{REQUEST_ANNOTATION}: action {body.get('action')!r} must be one of {allowed}") from None
    revision = body.get("revision")
    if not isinstance(revision, str) or not revision:
        raise RequestError(f"{REQUEST_ANNOTATION}: revision must name the canary revision the request is for")
    at = body.get("at")
    if not isinstance(at, str):
        raise RequestError(f"{REQUEST_ANNOTATION}: at must be an RFC 3339 time")
    try:
        parse_time(at)
    except ValueError:
        raise RequestError(f"{REQUEST_ANNOTATION}: at {at!r} is not an RFC 3339 time") from None
    full = body.get("full", False)
    if not isinstance(full, bool):
        raise RequestError(f"{REQUEST_ANNOTATION}: full must be true or false")
    return ManualRequest(action=action, revision=revision, at=at, full=full, by=str(body.get("by", "")))


@dataclasses.dataclass(frozen=True)
class RejectedRequest:
    """A malformed request annotation: why it is refused, and a digest of its text, so that the same
    text is reported once (status.rollout.rejectedRequest) and a new malformed one again."""

    digest: str
    message: str

    @classmethod
    def of(cls, text: str, error: RequestError) -> RejectedRequest:
        return cls(digest=hashlib.sha256(text.encode()).hexdigest()[:16], message=str(error))


def read_request(annotations: Mapping[str, str] | None) -> ManualRequest | RejectedRequest | None:
    """The request on an object: None without one, a RejectedRequest when it is malformed."""
    try:
        return request_from_annotations(annotations)
    except RequestError as error:
        assert annotations is not None
        return RejectedRequest.of(annotations[REQUEST_ANNOTATION], error)


def request_from_annotations(annotations: Mapping[str, str] | None) -> ManualRequest | None:
    """The request on an object, None when there is none; RequestError when it is malformed."""
    if not annotations or REQUEST_ANNOTATION not in annotations:
        return None
    return parse_request(annotations[REQUEST_ANNOTATION])
