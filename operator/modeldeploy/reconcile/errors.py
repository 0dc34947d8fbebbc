"""Errors of the Kubernetes API, reduced to what the reconcile decides on (raised by modeldeploy.k8s)."""

from __future__ import annotations


class KubeApiError(Exception):
    """The API answered with an error, or could not be reached (status 0)."""

    def __init__(self, status: int, reason: str, message: str = "") -> None:
        self.status = status
        self.reason = reason
        self.message = message
        super().__init__(f"{status} {reason}: {message}" if message else f"{status} {reason}")


class ConflictError(KubeApiError):
    """409: the object changed since it was read (resourceVersion precondition failed)."""


class NotFoundError(KubeApiError):
    """404: the object does not exist."""


class ForbiddenError(KubeApiError):
    """403: the operator's role does not allow the request."""
