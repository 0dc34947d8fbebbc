"""The Jobs metric providers run (a golden-set measurement), over the operator's child access.

A provider sees only `ProviderJobs`: create if absent, the outcome with the pod's last log line, delete.
API failures become ProviderError (an Error measurement, never a pass).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modeldeploy.api.labels import job_pods
from modeldeploy.metrics.base import JobOutcome, ProviderError
from modeldeploy.reconcile.context import Children
from modeldeploy.reconcile.errors import KubeApiError

JOB = ("batch/v1", "Job")
POD = ("v1", "Pod")


def finished(job: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether the Job finished, and why it failed (empty: it completed)."""
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            return True, ""
        if condition.get("type") == "Failed":
            return True, f"{condition.get('reason') or 'Failed'}: {condition.get('message') or 'the Job failed'}"
    return False, ""


class ChildJobs:
    """`ProviderJobs` over the API: one container per Job, its result the last line it logged."""

    def __init__(self, children: Children) -> None:
        self._children = children

    async def create(self, manifest: Mapping[str, Any]) -> None:
        try:
            await self._children.apply(manifest, None, known=True)
        except KubeApiError as error:
            raise ProviderError(f"creating it: {error}") from None

    async def outcome(self, namespace: str, name: str) -> JobOutcome | None:
        try:
            job = await self._children.get(*JOB, namespace, name)
            if job is None:
                return None
            done, failure = finished(job)
            if not done:
                return JobOutcome()
            pods = await self._children.list(*POD, namespace, job_pods(name))
        except KubeApiError as error:
            raise ProviderError(f"reading it: {error}") from None
        uid = job["metadata"].get("uid")
        if uid:  # a Job of the same name that came before may still have pods about
            pods = [p for p in pods if any(o.get("uid") == uid for o in p["metadata"].get("ownerReferences") or [])]
        last_line = ""
        for pod in sorted(pods, key=lambda p: str(p["metadata"].get("creationTimestamp") or "")):
            containers = (pod.get("spec") or {}).get("containers") or [{}]
            tail = await self._children.pod_log_tail(namespace, pod["metadata"]["name"],
                                                     str(containers[0].get("name") or ""), lines=1)
            last_line = tail.strip().splitlines()[-1] if tail.strip() else last_line
        return JobOutcome(finished=True, failure=failure, last_line=last_line)

    async def delete(self, namespace: str, name: str) -> None:
        try:
            await self._children.delete(*JOB, namespace, name)
        except KubeApiError as error:
            raise ProviderError(f"deleting it: {error}") from None
