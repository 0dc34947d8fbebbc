"""Why pods do not become ready, read from their status: pure functions shared by the steps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from modeldeploy import serving
from modeldeploy.api.conditions import Reason

START_FAILURES = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerError",
                  "CreateContainerConfigError", "RunContainerError")


def waiting_problem(pods: Sequence[Mapping[str, Any]]) -> str | None:
    """Why a pod's container cannot start (an image that cannot be pulled, a bad config), if it cannot."""
    for pod in pods:
        status = pod.get("status") or {}
        for container in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in START_FAILURES:
                return f"{waiting['reason']}: {waiting.get('message', '')}".strip()
    return None


def pod_problem(pods: Sequence[Mapping[str, Any]]) -> tuple[Reason, str] | None:
    """A serving pod's failure a user must act on: an archive check that failed (other bytes, refused
    credentials), or a model that fails to load."""
    for pod in pods:
        status = pod.get("status") or {}
        for init in status.get("initContainerStatuses") or []:
            for state in (init.get("state") or {}, init.get("lastState") or {}):
                terminated = state.get("terminated") or {}
                code = terminated.get("exitCode", 0)
                if code != 0:
                    detail = str(terminated.get("message") or "").strip().splitlines()
                    reason, text = serving.verify_failure(code, detail[-1] if detail else f"exit code {code}")
                    return reason, f"pod {pod['metadata']['name']}: {text}"
        for container in status.get("containerStatuses") or []:
            terminated = (container.get("lastState") or {}).get("terminated") or (
                (container.get("state") or {}).get("terminated") or {})
            if terminated and terminated.get("exitCode", 0) != 0:
                line = serving.model_load_failure(str(terminated.get("message") or ""))
                if line:
                    return Reason.MODEL_LOAD_FAILED, f"pod {pod['metadata']['name']}: {line}"
    return None


def deployment_ready(deployment: Mapping[str, Any], replicas: int) -> bool:
    """Whether a Deployment has rolled out completely: every replica updated and available."""
    meta, status = deployment.get("metadata") or {}, deployment.get("status") or {}
    return bool(status.get("observedGeneration", 0) >= meta.get("generation", 0)
                and status.get("updatedReplicas", 0) == replicas
                and status.get("availableReplicas", 0) == replicas
                and status.get("replicas", 0) == replicas)


def progress_deadline_exceeded(deployment: Mapping[str, Any]) -> str | None:
    """The Deployment controller's message when the rollout made no progress in its deadline."""
    for cond in (deployment.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return str(cond.get("message") or "")
    return None
