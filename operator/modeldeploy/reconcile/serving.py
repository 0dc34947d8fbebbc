"""The serving step: one revision served in one role by NAME-ROLE, its ConfigMap, Services, policy, budget.

The role and the revision are arguments: the rollout step (reconcile/rollout.py) serves the spec's
revision as `stable` when no canary runs (`ensure_serving`), and renders either role from the spec with
`apply_role` while one does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from modeldeploy import serving
from modeldeploy.api.conditions import ConditionState, ConditionType, Phase, Reason, ReconcileOutcome
from modeldeploy.api.labels import LABEL_REVISION, other_revisions, role_revision_pods
from modeldeploy.api.revision import Role
from modeldeploy.api.status import ArchiveStatus
from modeldeploy.reconcile.context import Children, ReconcileContext
from modeldeploy.reconcile.pods import deployment_ready, pod_problem, progress_deadline_exceeded, waiting_problem

POLL_SECONDS = 2.0
"""How soon to look again while pods start."""
PROBLEM_POLL_SECONDS = POLL_SECONDS * 5
"""How soon to look again at pods that fail: a user must act first."""


async def apply_role(ctx: ReconcileContext, role: Role, revision: str, archive: ArchiveStatus,
                     replicas: int) -> dict[str, Any]:
    """Render the spec's plan for `role` (ConfigMap, policy, Deployment, budget, Services); the live Deployment."""
    md, children = ctx.deployment, ctx.children
    plan = serving.plan_for(md, archive, revision, role, replicas, ctx.operator)
    deployment: dict[str, Any] | None = None
    for desired in serving.build_objects(plan):
        live, _ = await children.apply(desired)
        if desired["kind"] == "Deployment":
            deployment = live
    if not plan.network_policy.enabled:
        # Turned off after it was on: the policy NAME (both roles') is ours to remove.
        await _remove_owned(children, "networking.k8s.io/v1", "NetworkPolicy", md.namespace, md.name, md.uid)
    if replicas <= 1:
        # A budget only makes sense with more than one replica; remove one left from a larger scale.
        name = plan.deployment_name  # the budget is named after the Deployment it protects
        if await children.get("policy/v1", "PodDisruptionBudget", md.namespace, name) is not None:
            await children.delete("policy/v1", "PodDisruptionBudget", md.namespace, name)
    assert deployment is not None
    return deployment


async def _remove_owned(children: Children, api_version: str, kind: str, namespace: str, name: str,
                        owner_uid: str) -> None:
    """Delete the object if it exists and this ModelDeployment owns it (one of the same name may be the user's)."""
    live = await children.get(api_version, kind, namespace, name)
    if live is None:
        return
    owners = (live.get("metadata") or {}).get("ownerReferences") or []
    if any(owner.get("uid") == owner_uid for owner in owners):
        await children.delete(api_version, kind, namespace, name)


async def serving_problem(children: Children, namespace: str,
                          pods: Sequence[Mapping[str, Any]]) -> tuple[Reason, str] | None:
    """Why serving pods fail, a user must act on it: a digest mismatch, a model that does not load."""
    return pod_problem(pods) or await _load_failure_in_logs(children, namespace, pods)


async def ensure_serving(ctx: ReconcileContext, role: Role, revision: str, archive: ArchiveStatus,
                         replicas: int) -> ReconcileOutcome | None:
    """`revision` is served in `role` by `replicas` ready pods verifying `archive`; records it in status."""
    md, children = ctx.deployment, ctx.children
    deployment = await apply_role(ctx, role, revision, archive, replicas)
    deployment_name = f"{md.name}-{role}"
    if role is Role.STABLE:
        ctx.status = dataclasses.replace(ctx.status, stable_revision=revision)
    else:
        ctx.status = dataclasses.replace(ctx.status, canary_revision=revision)
    archive_ok = ConditionState(ConditionType.ARCHIVE_READY, True, Reason.ARCHIVE_READY,
                                f"Archive {archive.sha256[:12]} is in {archive.uri}")
    if deployment_ready(deployment, replicas):
        await remove_other_revisions(children, md.namespace, md.name, revision)
        return None
    pods = await children.list("v1", "Pod", md.namespace, role_revision_pods(md.name, role, revision))
    problem = await serving_problem(children, md.namespace, pods)
    if problem is not None:
        reason, message = problem
        return ReconcileOutcome.of(Phase.DEGRADED, reason, message, degraded=True, progressing=True,
                                   overrides=(archive_ok,), requeue_after=PROBLEM_POLL_SECONDS)
    deadline = progress_deadline_exceeded(deployment)
    if deadline is not None:
        return ReconcileOutcome.of(Phase.DEGRADED, Reason.PROGRESS_DEADLINE_EXCEEDED, deadline, degraded=True,
                                   overrides=(archive_ok,), requeue_after=PROBLEM_POLL_SECONDS)
    status = deployment.get("status") or {}
    message = (f"Revision {revision}: {status.get('availableReplicas', 0)}/{replicas} pods ready "
               f"in Deployment {deployment_name}")
    stuck = waiting_problem(pods)
    if stuck:
        message = f"{message}; a pod cannot start: {stuck}"
    return ReconcileOutcome.of(Phase.DEPLOYING, Reason.PODS_NOT_READY, message, progressing=True,
                               degraded=stuck is not None, overrides=(archive_ok,), requeue_after=POLL_SECONDS)


async def remove_other_revisions(children: Children, namespace: str, name: str, *revisions: str) -> None:
    """Once every pod serves one of `revisions`, the ConfigMaps of other revisions have no reader left."""
    keep = set(revisions)
    for old in await children.list("v1", "ConfigMap", namespace, other_revisions(name, revisions[0])):
        if (old["metadata"].get("labels") or {}).get(LABEL_REVISION) not in keep:
            await children.delete("v1", "ConfigMap", namespace, old["metadata"]["name"])


async def _load_failure_in_logs(children: Children, namespace: str,
                                pods: Sequence[Mapping[str, Any]]) -> tuple[Reason, str] | None:
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
