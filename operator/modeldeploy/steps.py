"""The reconcile steps that build a revision's archive and serve it.

Each step ensures one part of the world and returns a Verdict while that part is not settled
(see handlers/reconcile.py for the chain). Nothing here imports kopf.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from modeldeploy import serving
from modeldeploy.archivejob import OperatorImage, archive_status, build_job, job_name, job_outcome
from modeldeploy.conditions import ConditionState, ConditionType, EventNote, Phase, Reason, Verdict
from modeldeploy.serving.plan import Role
from modeldeploy.servingplan import serving_plan

if TYPE_CHECKING:
    from modeldeploy.handlers.reconcile import ReconcileContext

POLL_SECONDS = 2.0


class ChildAccess(Protocol):
    """What the steps need to read and write the children (implemented by modeldeploy.k8s.Children)."""

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None: ...

    async def list(self, api_version: str, kind: str, namespace: str, selector: str) -> list[dict[str, Any]]: ...

    async def apply(self, desired: Mapping[str, Any], live: Mapping[str, Any] | None = None,
                    *, known: bool = False) -> tuple[dict[str, Any], bool]: ...

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> bool: ...

    async def pod_log_tail(self, namespace: str, pod: str, container: str, lines: int = 20) -> str: ...


@dataclasses.dataclass(frozen=True)
class Runtime:
    """Where the operator runs: its own image (for Jobs and init containers) and namespace."""

    operator: OperatorImage
    namespace: str


def _archive_ok(ctx: ReconcileContext, message: str) -> ConditionState:
    return ConditionState(ConditionType.ARCHIVE_READY, True, Reason.ARCHIVE_READY, message)


async def ensure_archive(ctx: ReconcileContext, children: ChildAccess, runtime: Runtime) -> Verdict | None:
    """The revision's archive is in the store (status.archive), or a build Job is making it."""
    md, key = ctx.deployment, ctx.build_key.short
    current = ctx.status.get("archive") or {}
    if current.get("buildKey") == key and current.get("sha256"):
        ctx.fields["archive"] = dict(current)
        return None
    name = job_name(md, key)
    job = await children.get("batch/v1", "Job", md.namespace, name)
    if job is None:
        await children.apply(build_job(md, key, runtime.operator), None, known=True)
        return Verdict.of(Phase.BUILDING, Reason.ARCHIVE_BUILDING,
                          f"Building the archive of revision {ctx.revision.short} in Job {name}",
                          progressing=True, requeue_after=POLL_SECONDS)
    pods = await children.list("v1", "Pod", md.namespace, f"job-name={name}")
    outcome = job_outcome(job, pods)
    if outcome.state == "running":
        stuck = _waiting_problem(pods)
        message = f"Building the archive of revision {ctx.revision.short} in Job {name}"
        return Verdict.of(Phase.BUILDING, Reason.ARCHIVE_BUILDING,
                          f"{message}; its pod cannot start: {stuck}" if stuck else message,
                          progressing=True, degraded=stuck is not None, requeue_after=POLL_SECONDS)
    if outcome.state == "failed":
        message = outcome.message
        if not message and pods:
            message = await children.pod_log_tail(md.namespace, pods[-1]["metadata"]["name"], "build", 10)
        return Verdict.of(Phase.FAILED, Reason.ARCHIVE_BUILD_FAILED,
                          f"Archive build Job {name} failed ({outcome.reason}): {message}. "
                          f"Fix the spec, or delete the Job to build again.", degraded=True)
    assert outcome.result is not None
    ctx.fields["archive"] = archive = archive_status(outcome.result, md, ctx.revision.short, key)
    verb = "reused from the store" if archive["reused"] else "built"
    ctx.notes.append(EventNote("Normal", Reason.ARCHIVE_READY,
                               f"Archive {archive['sha256'][:12]} {verb}: {archive['uri']}"))
    ctx.notes.extend(EventNote("Warning", "ArchiveWarning", str(w)) for w in outcome.result.get("warnings") or [])
    return None


START_FAILURES = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerError",
                  "CreateContainerConfigError", "RunContainerError")


def _waiting_problem(pods: Sequence[Mapping[str, Any]]) -> str | None:
    """Why a pod's container cannot start (an image that cannot be pulled, a bad config), if it cannot."""
    for pod in pods:
        status = pod.get("status") or {}
        for container in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in START_FAILURES:
                return f"{waiting['reason']}: {waiting.get('message', '')}".strip()
    return None


def _pod_problem(pods: Sequence[Mapping[str, Any]]) -> tuple[str, str] | None:
    """A serving pod's failure a user must act on: a digest mismatch, or a model that fails to load."""
    for pod in pods:
        status = pod.get("status") or {}
        for init in status.get("initContainerStatuses") or []:
            for state in (init.get("state") or {}, init.get("lastState") or {}):
                terminated = state.get("terminated") or {}
                if terminated.get("exitCode", 0) != 0:
                    detail = str(terminated.get("message") or "").strip().splitlines()
                    text = detail[-1] if detail else f"exit code {terminated.get('exitCode')}"
                    return Reason.DIGEST_MISMATCH, f"pod {pod['metadata']['name']}: archive check failed: {text}"
        for container in status.get("containerStatuses") or []:
            terminated = (container.get("lastState") or {}).get("terminated") or (
                (container.get("state") or {}).get("terminated") or {})
            if terminated and terminated.get("exitCode", 0) != 0:
                line = serving.model_load_failure(str(terminated.get("message") or ""))
                if line:
                    return Reason.MODEL_LOAD_FAILED, f"pod {pod['metadata']['name']}: {line}"
    return None


async def _remove_old_revisions(children: ChildAccess, namespace: str, name: str, revision: str) -> None:
    """Once every pod serves `revision`, the ConfigMaps of earlier revisions have no reader left."""
    selector = (f"app.kubernetes.io/managed-by=modeldeploy,modeldeploy.dev/deployment={name},"
                f"modeldeploy.dev/revision,modeldeploy.dev/revision!={revision}")
    for old in await children.list("v1", "ConfigMap", namespace, selector):
        await children.delete("v1", "ConfigMap", namespace, old["metadata"]["name"])


async def _load_failure_in_logs(children: ChildAccess, namespace: str,
                                pods: Sequence[Mapping[str, Any]]) -> tuple[str, str] | None:
    """TorchServe retries a model that fails to load instead of exiting: its log says why, early."""
    for pod in pods:
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            if container.get("name") != serving.SERVING_CONTAINER or container.get("ready"):
                continue
            if "running" not in (container.get("state") or {}):
                continue
            tail = await children.pod_log_tail(namespace, pod["metadata"]["name"], serving.SERVING_CONTAINER, 200)
            line = serving.model_load_failure(tail)
            if line:
                return Reason.MODEL_LOAD_FAILED, f"pod {pod['metadata']['name']}: {line}"
    return None


def _deployment_ready(deployment: Mapping[str, Any], replicas: int) -> bool:
    meta, status = deployment.get("metadata") or {}, deployment.get("status") or {}
    return bool(status.get("observedGeneration", 0) >= meta.get("generation", 0)
                and status.get("updatedReplicas", 0) == replicas
                and status.get("availableReplicas", 0) == replicas
                and status.get("replicas", 0) == replicas)


def _progress_deadline_exceeded(deployment: Mapping[str, Any]) -> str | None:
    for cond in (deployment.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return str(cond.get("message") or "")
    return None


async def ensure_serving(ctx: ReconcileContext, children: ChildAccess, runtime: Runtime) -> Verdict | None:
    """The revision is served by NAME-stable, its ConfigMap, Services, policy and budget."""
    md = ctx.deployment
    archive = ctx.fields.get("archive") or {}
    role: Role = "stable"
    replicas = md.spec.serving.replicas
    plan = serving_plan(md, archive, ctx.revision.short, role, replicas, runtime.operator, runtime.namespace)
    deployment: dict[str, Any] | None = None
    for desired in serving.build_objects(plan):
        live, _ = await children.apply(desired)
        if desired["kind"] == "Deployment":
            deployment = live
    if replicas <= 1:
        # A budget only makes sense with more than one replica; remove one left from a larger scale.
        name = plan.deployment_name  # the budget is named after the Deployment it protects
        if await children.get("policy/v1", "PodDisruptionBudget", md.namespace, name) is not None:
            await children.delete("policy/v1", "PodDisruptionBudget", md.namespace, name)
    ctx.fields["stableRevision"] = ctx.revision.short
    archive_ok = _archive_ok(ctx, f"Archive {archive.get('sha256', '')[:12]} is in {archive.get('uri')}")
    assert deployment is not None
    if _deployment_ready(deployment, replicas):
        await _remove_old_revisions(children, md.namespace, md.name, ctx.revision.short)
        return None
    selector = f"{serving_selector(md.name, role)},modeldeploy.dev/revision={ctx.revision.short}"
    pods = await children.list("v1", "Pod", md.namespace, selector)
    problem = _pod_problem(pods) or await _load_failure_in_logs(children, md.namespace, pods)
    if problem is not None:
        reason, message = problem
        return Verdict.of(Phase.DEGRADED, reason, message, degraded=True, progressing=True,
                          overrides=(archive_ok,), requeue_after=POLL_SECONDS * 5)
    deadline = _progress_deadline_exceeded(deployment)
    if deadline is not None:
        return Verdict.of(Phase.DEGRADED, Reason.PROGRESS_DEADLINE_EXCEEDED, deadline, degraded=True,
                          overrides=(archive_ok,), requeue_after=POLL_SECONDS * 5)
    status = deployment.get("status") or {}
    message = (f"Revision {ctx.revision.short}: {status.get('availableReplicas', 0)}/{replicas} pods ready "
               f"in Deployment {plan.deployment_name}")
    stuck = _waiting_problem(pods)
    if stuck:
        message = f"{message}; a pod cannot start: {stuck}"
    return Verdict.of(Phase.DEPLOYING, Reason.PODS_NOT_READY, message, progressing=True, degraded=stuck is not None,
                      overrides=(archive_ok,), requeue_after=POLL_SECONDS)


def serving_selector(name: str, role: Role) -> str:
    """The label selector of one role's serving pods."""
    return f"modeldeploy.dev/deployment={name},modeldeploy.dev/role={role}"
