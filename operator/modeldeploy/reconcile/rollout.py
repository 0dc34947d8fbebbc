"""The rollout step: gather what the canary rules need, call `canary.decide`, apply the decision.

It runs after the archive step. The first revision of an object, a replica change and the end of a
promotion all come out of `decide` as "stable serves the spec's revision, no canary": that is the
serving step as before (`ensure_serving`). Otherwise two Deployments are in play:

- `NAME-stable` is rendered from the spec only while it serves the spec's revision (or is being
  promoted to it, a rolling update with maxUnavailable 0). While a canary runs, or after a rollback,
  the spec describes another revision: stable is kept as it is and only its replicas change.
- `NAME-canary` is rendered from the spec (role canary, its own ConfigMap `NAME-REVISION` and the
  verified archive), and deleted once the decision drops it (drained to zero).

Replica counts come from `decide`, which never lets ready pods fall below spec.serving.replicas.
ConfigMaps are removed only for revisions neither role's template serves.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from modeldeploy import serving
from modeldeploy.api.conditions import Phase, Reason, ReconcileOutcome, format_time
from modeldeploy.api.events import EventReason
from modeldeploy.api.labels import (
    LABEL_REVISION,
    LABEL_ROLE,
    TRAFFIC_GATE,
    deployment_selector,
    evaluation_jobs,
    other_revisions,
    selector_text,
)
from modeldeploy.api.revision import ROLES, Role, revision_of
from modeldeploy.api.spec import SpecError, parse_spec
from modeldeploy.api.status import ArchiveStatus, RolloutStatus, StableTemplate
from modeldeploy.canary import (
    Decision,
    ManualRequest,
    Measurement,
    Observations,
    Policy,
    RejectedRequest,
    RoleStatus,
    RoleTarget,
    RolloutState,
    decide,
    due_metrics,
    read_request,
)
from modeldeploy.metrics import Pod, Target, UnknownProviderKind
from modeldeploy.reconcile.context import ReconcileContext
from modeldeploy.reconcile.pods import waiting_problem
from modeldeploy.reconcile.serving import apply_role, ensure_serving, serving_problem
from modeldeploy.routers import router_for

DEPLOYMENT = ("apps/v1", "Deployment")
BUDGET = ("policy/v1", "PodDisruptionBudget")


def _condition(pod: Mapping[str, Any], kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _ready(pod: Mapping[str, Any]) -> bool:
    return _condition(pod, "Ready")


def _gated(pod: Mapping[str, Any]) -> bool:
    """The pod waits at the traffic gate: it carries the readiness gate and is not let through yet."""
    gates = (pod.get("spec") or {}).get("readinessGates") or []
    return any(g.get("conditionType") == TRAFFIC_GATE for g in gates) and not _condition(pod, TRAFFIC_GATE)


def _held(pod: Mapping[str, Any]) -> bool:
    """Loaded (containers ready) and held out of traffic at the gate."""
    return _gated(pod) and _condition(pod, "ContainersReady") and not _ready(pod)


def _started(pod: Mapping[str, Any]) -> bool:
    """The serving container passed its startup probe: the model loaded once (its metrics are worth asking)."""
    return any(c.get("name") == serving.SERVING_CONTAINER and c.get("started")
               for c in (pod.get("status") or {}).get("containerStatuses") or [])


def _labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def template_revision(deployment: Mapping[str, Any] | None) -> str | None:
    """The revision a Deployment's pod template serves."""
    if deployment is None:
        return None
    labels = ((deployment.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {}
    return labels.get(LABEL_REVISION)


def role_status(deployment: Mapping[str, Any] | None, pods: Sequence[Mapping[str, Any]]) -> RoleStatus:
    """One role as `decide` sees it: template revision, spec.replicas, ready pods (any / the template's revision)."""
    if deployment is None:
        return RoleStatus(ready=sum(1 for p in pods if _ready(p)))
    revision = template_revision(deployment)
    ready = [p for p in pods if _ready(p)]
    updated = sum(1 for p in ready if _labels(p).get(LABEL_REVISION) == revision)
    held = sum(1 for p in pods if _held(p) and _labels(p).get(LABEL_REVISION) == revision)
    return RoleStatus(revision=revision, replicas=int((deployment.get("spec") or {}).get("replicas") or 0),
                      ready=len(ready), ready_updated=updated, held=held)


async def _not_ready_reason(ctx: ReconcileContext, pods: Sequence[Mapping[str, Any]]) -> str:
    """Why canary pods are not ready, as the progress deadline will quote it (the model's log line first)."""
    unready = [p for p in pods if not _ready(p) and not _held(p)]
    if not unready:
        return ""
    problem = await serving_problem(ctx.children, ctx.deployment.namespace, unready)
    if problem is not None:
        return problem[1]
    stuck = waiting_problem(unready)
    if stuck:
        return stuck
    return f"{len(unready)} pod(s) not ready: {', '.join(p['metadata']['name'] for p in unready)}"


async def _measure(ctx: ReconcileContext, policy: Policy, state: RolloutState,
                   pods: Sequence[Mapping[str, Any]]) -> tuple[Measurement, ...]:
    """Take the measurements that are due: every serving pod whose model loaded once, canary pods of its revision."""
    due = due_metrics(policy, state, ctx.now)
    if not due:
        return ()
    md = ctx.deployment
    targets: list[Pod] = []
    for pod in pods:
        role, ip = _labels(pod).get(LABEL_ROLE), (pod.get("status") or {}).get("podIP")
        if not ip or not _started(pod) or role not in ROLES:
            continue
        if role == Role.CANARY and _labels(pod).get(LABEL_REVISION) != state.canary_revision:
            continue  # a pod of an earlier canary still going: its numbers are not this revision's
        targets.append(Pod(name=pod["metadata"]["name"], uid=pod["metadata"]["uid"], ip=ip, role=Role(role)))
    target = Target(namespace=md.namespace, name=md.name, model_name=md.spec.model.name, pods=tuple(targets),
                    metrics_port=md.spec.serving.metrics_port, canary_revision=state.canary_revision,
                    deployment=md)
    metrics = {m.name: m for m in md.spec.rollout.analysis.metrics}
    measured: list[Measurement] = []
    for item in due:
        metric = metrics[item.metric]
        try:
            provider = ctx.providers.for_metric(metric)
        except UnknownProviderKind as missing:
            measured.append(Measurement(metric=metric.name, at=ctx.now, window_start=item.window_start,
                                        error=str(missing)))
            continue
        measured.append(await provider.measure(metric, target, item.window_start, ctx.now))
    return tuple(measured)


def _stable_context(ctx: ReconcileContext, revision: str) -> tuple[ReconcileContext, ArchiveStatus] | None:
    """The context that renders `revision` as the spec once described it, from status.rollout.stable;
    None when status has no template of that revision (or one that no longer parses to it)."""
    template = ctx.status.rollout.stable
    if template is None or template.revision != revision:
        return None
    try:
        spec = parse_spec(template.spec)
    except SpecError:
        return None
    if revision_of(spec).short != revision:
        return None
    deployment = dataclasses.replace(ctx.deployment, spec=dataclasses.replace(ctx.deployment.spec, model=spec.model,
                                                                              archive=spec.archive,
                                                                              serving=spec.serving))
    return dataclasses.replace(ctx, deployment=deployment), template.archive


async def _apply_stable(ctx: ReconcileContext, target: RoleTarget, live: Mapping[str, Any] | None,
                        archive: ArchiveStatus) -> None:
    if target.revision == ctx.revision.short:
        await apply_role(ctx, Role.STABLE, target.revision, archive, target.replicas)
    elif live is None or template_revision(live) != target.revision:
        # The spec describes another revision, and NAME-stable is gone (someone deleted it) or runs
        # another revision (a promotion cut short by an abort or a newer revision): render it at its own
        # revision from the template status kept, never at the spec's; a rolling update takes it back.
        # (A status written before templates were kept has none: stable then keeps its template and
        # only its size follows, as before.)
        stable = _stable_context(ctx, target.revision)
        if stable is not None:
            await apply_role(stable[0], Role.STABLE, target.revision, stable[1], target.replicas)
        elif live is not None and (live.get("spec") or {}).get("replicas") != target.replicas:
            await ctx.children.scale(*DEPLOYMENT, ctx.deployment.namespace, f"{ctx.deployment.name}-{Role.STABLE}",
                                     target.replicas)
    elif (live.get("spec") or {}).get("replicas") != target.replicas:
        # The spec describes another revision: keep stable's template, change only how many pods it runs.
        await ctx.children.scale(*DEPLOYMENT, ctx.deployment.namespace, f"{ctx.deployment.name}-{Role.STABLE}",
                                 target.replicas)


async def _apply_canary(ctx: ReconcileContext, target: RoleTarget | None, live: Mapping[str, Any] | None,
                        archive: ArchiveStatus) -> None:
    md = ctx.deployment
    name = f"{md.name}-{Role.CANARY}"
    if target is None:
        if live is not None:
            await ctx.children.delete(*DEPLOYMENT, md.namespace, name)
        if await ctx.children.get(*BUDGET, md.namespace, name) is not None:
            await ctx.children.delete(*BUDGET, md.namespace, name)
        return
    if target.revision == ctx.revision.short:
        await apply_role(ctx, Role.CANARY, target.revision, archive, target.replicas)
    elif live is not None and (live.get("spec") or {}).get("replicas") != target.replicas:
        await ctx.children.scale(*DEPLOYMENT, md.namespace, name, target.replicas)


async def _admit_past_the_gate(ctx: ReconcileContext, policy: Policy, state: RolloutState,
                               pods: Sequence[Mapping[str, Any]]) -> None:
    """Once the canary has left the weight-0 gate, let its gated pods become ready for the Service NAME."""
    if state.canary_revision is None or (policy.at_gate(state.step_index) and not state.promoting):
        return
    for pod in pods:
        if _gated(pod) and _labels(pod).get(LABEL_REVISION) == state.canary_revision:
            await ctx.children.set_pod_condition(ctx.deployment.namespace, pod["metadata"]["name"], {
                "type": TRAFFIC_GATE, "status": "True", "reason": str(EventReason.PASSED_GATE),
                "message": f"revision {state.canary_revision} passed its weight-0 gate",
                "lastTransitionTime": format_time(ctx.now)})


async def _remove_finished_evaluations(ctx: ReconcileContext, policy: Policy, state: RolloutState) -> None:
    """Golden-set Jobs of a canary that is no longer judged (rolled back, cancelled, promoting) are removed:
    a measurement the rollout stopped waiting for is never read."""
    if not any(m.own_requests for m in policy.metrics):
        return
    judged = state.canary_revision if state.canary_revision is not None and not state.promoting else None
    md = ctx.deployment
    for job in await ctx.children.list("batch/v1", "Job", md.namespace, evaluation_jobs(md.name)):
        if _labels(job).get(LABEL_REVISION) != judged:
            await ctx.children.delete("batch/v1", "Job", md.namespace, job["metadata"]["name"])


async def _remove_unserved_configmaps(ctx: ReconcileContext, *revisions: str | None) -> None:
    keep = {r for r in revisions if r}
    md = ctx.deployment
    others = other_revisions(md.name, ctx.revision.short)
    for config in await ctx.children.list("v1", "ConfigMap", md.namespace, others):
        if _labels(config).get(LABEL_REVISION) not in keep:
            await ctx.children.delete("v1", "ConfigMap", md.namespace, config["metadata"]["name"])


def _record(ctx: ReconcileContext, decision: Decision, archive: ArchiveStatus) -> None:
    summary = decision.state.summary()
    stable = ctx.status.rollout.stable
    if decision.state.stable_revision == ctx.revision.short:
        # The spec describes the stable revision: keep what renders it again once the spec moves on.
        stable = StableTemplate.of(ctx.revision.short, ctx.spec_body, archive)
    ctx.status = dataclasses.replace(
        ctx.status,
        stable_revision=summary["stableRevision"],
        canary_revision=summary["canaryRevision"],
        rollout=RolloutStatus(current_step=summary["currentStep"], canary_weight=summary["canaryWeight"],
                              state=decision.state, analysis=summary["analysis"], stable=stable),
    )
    ctx.notes.extend(decision.events)


def _verdict(decision: Decision, canary_problem: str) -> ReconcileOutcome:
    """The phase and the kstatus conditions of a rollout that is not settled.

    Progressing/Paused: Ready False, Progressing True. Rolling back: Degraded True, Progressing True.
    RolledBack: Ready False and Degraded True with the abort reason, Progressing False (nothing moves
    until the spec changes or a user retries).
    """
    state = decision.state
    requeue = decision.requeue_after.total_seconds() if decision.requeue_after is not None else None
    message = decision.message
    if canary_problem and state.canary_revision is not None:
        message = f"{message}; canary pods not ready: {canary_problem}"
    aborted = state.aborted.reason if state.aborted is not None else Reason.ROLLING_BACK
    if decision.phase is Phase.ROLLED_BACK:
        return ReconcileOutcome.of(Phase.ROLLED_BACK, aborted, message, degraded=True, archive_ready=True,
                                   requeue_after=requeue)
    if decision.phase is Phase.DEGRADED:
        return ReconcileOutcome.of(Phase.DEGRADED, aborted, message, degraded=True, progressing=True,
                                   archive_ready=True, requeue_after=requeue)
    if decision.phase is Phase.PAUSED:
        return ReconcileOutcome.of(Phase.PAUSED, Reason.CANARY_PAUSED, message, progressing=True, archive_ready=True,
                                   requeue_after=requeue)
    if state.promoting:
        reason = Reason.PROMOTING
    elif state.canary_revision is not None:
        reason = Reason.CANARY_PROGRESSING
    else:
        reason = Reason.PODS_NOT_READY
    return ReconcileOutcome.of(Phase.PROGRESSING, reason, message, progressing=True, archive_ready=True,
                               requeue_after=requeue)


async def ensure_rollout(ctx: ReconcileContext) -> ReconcileOutcome | None:
    """The spec's revision is served: straight to stable the first time, else through a canary."""
    md, children = ctx.deployment, ctx.children
    archive = ctx.status.archive
    assert archive is not None, "the archive step settles only with an archive"
    policy = Policy.from_spec(md.spec, ctx.revision.short, router_for(md.spec.rollout.traffic_router))
    state = ctx.status.rollout.state or RolloutState()
    stable_live = await children.get(*DEPLOYMENT, md.namespace, f"{md.name}-{Role.STABLE}")
    canary_live = await children.get(*DEPLOYMENT, md.namespace, f"{md.name}-{Role.CANARY}")
    pods = [p for p in await children.list("v1", "Pod", md.namespace, selector_text(deployment_selector(md.name)))
            if not (p.get("metadata") or {}).get("deletionTimestamp")]
    by_role: dict[str, list[Mapping[str, Any]]] = {role: [] for role in ROLES}
    for pod in pods:
        by_role.setdefault(_labels(pod).get(LABEL_ROLE) or "", []).append(pod)
    stable = role_status(stable_live, by_role[Role.STABLE])
    canary = role_status(canary_live, by_role[Role.CANARY])
    canary_problem = ""
    if canary.revision is not None and canary.ready_at_revision + canary.held < canary.replicas:
        own = [p for p in by_role[Role.CANARY] if _labels(p).get(LABEL_REVISION) == canary.revision]
        canary_problem = await _not_ready_reason(ctx, own)
        canary = dataclasses.replace(canary, not_ready_reason=canary_problem)
    if state.promoting and state.canary_revision is not None and stable.ready_at_revision < policy.replicas:
        # A promotion's deadline quotes why the new stable pods are not ready.
        own = [p for p in by_role[Role.STABLE] if _labels(p).get(LABEL_REVISION) == state.canary_revision]
        stable = dataclasses.replace(stable, not_ready_reason=await _not_ready_reason(ctx, own))
    request = read_request(ctx.annotations)
    measurements = await _measure(ctx, policy, state, pods)
    decision = decide(policy, state, Observations(
        stable=stable, canary=canary, measurements=measurements,
        request=request if isinstance(request, ManualRequest) else None,
        rejected=request if isinstance(request, RejectedRequest) else None), ctx.now)
    _record(ctx, decision, archive)
    await _apply_canary(ctx, decision.canary, canary_live, archive)
    await _admit_past_the_gate(ctx, policy, decision.state, by_role[Role.CANARY])
    await _remove_finished_evaluations(ctx, policy, decision.state)
    if decision.canary is None and decision.stable.revision == ctx.revision.short:
        # No canary: the spec's revision is stable (first revision, replica change, promotion done).
        # Its Deployment's own status says when it is whole.
        return await ensure_serving(ctx, Role.STABLE, decision.stable.revision, archive, decision.stable.replicas)
    await _apply_stable(ctx, decision.stable, stable_live, archive)
    # Status's stable revision stays until a promotion is done: its old pods may still serve (and restart).
    await _remove_unserved_configmaps(ctx, template_revision(stable_live), template_revision(canary_live),
                                      decision.stable.revision, decision.state.stable_revision,
                                      decision.canary.revision if decision.canary is not None else None)
    return _verdict(decision, canary_problem)
