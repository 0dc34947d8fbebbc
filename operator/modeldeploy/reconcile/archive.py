"""The archive step: the revision's archive is in the store (status.archive), or a build Job is making it."""

from __future__ import annotations

import dataclasses

from modeldeploy.api.conditions import Phase, Reason, ReconcileOutcome
from modeldeploy.api.events import Event, EventReason
from modeldeploy.api.labels import job_pods
from modeldeploy.building import JobState, archive_status, build_job, job_name, job_outcome
from modeldeploy.reconcile.context import ReconcileContext
from modeldeploy.reconcile.pods import waiting_problem

POLL_SECONDS = 2.0
"""How soon to look again while a build runs."""


async def ensure_archive(ctx: ReconcileContext) -> ReconcileOutcome | None:
    """Settled once status.archive holds an archive of the current build key; else build it and wait."""
    md, key, children = ctx.deployment, ctx.build_key.short, ctx.children
    current = ctx.status.archive
    if current is not None and current.build_key == key and current.sha256:
        return None
    name = job_name(md, key)
    job = await children.get("batch/v1", "Job", md.namespace, name)
    if job is None:
        await children.apply(build_job(md, key, ctx.operator), None, known=True)
        return ReconcileOutcome.of(Phase.BUILDING, Reason.ARCHIVE_BUILDING,
                                   f"Building the archive of revision {ctx.revision.short} in Job {name}",
                                   progressing=True, requeue_after=POLL_SECONDS)
    pods = await children.list("v1", "Pod", md.namespace, job_pods(name))
    outcome = job_outcome(job, pods)
    if outcome.state is JobState.RUNNING:
        stuck = waiting_problem(pods)
        message = f"Building the archive of revision {ctx.revision.short} in Job {name}"
        return ReconcileOutcome.of(Phase.BUILDING, Reason.ARCHIVE_BUILDING,
                                   f"{message}; its pod cannot start: {stuck}" if stuck else message,
                                   progressing=True, degraded=stuck is not None, requeue_after=POLL_SECONDS)
    if outcome.state is JobState.FAILED:
        message = outcome.message
        if not message and pods:
            message = await children.pod_log_tail(md.namespace, pods[-1]["metadata"]["name"], "build", 10)
        return ReconcileOutcome.of(Phase.FAILED, Reason.ARCHIVE_BUILD_FAILED,
                                   f"Archive build Job {name} failed ({outcome.reason}): {message}. "
                                   f"Fix the spec, or delete the Job to build again.", degraded=True)
    assert outcome.result is not None
    archive = archive_status(outcome.result, md, ctx.revision.short, key)
    ctx.status = dataclasses.replace(ctx.status, archive=archive)
    verb = "reused from the store" if archive.reused else "built"
    ctx.notes.append(Event("Normal", EventReason.ARCHIVE_READY,
                               f"Archive {archive.sha256[:12]} {verb}: {archive.uri}"))
    warnings = outcome.result.get("warnings") or []
    ctx.notes.extend(Event("Warning", EventReason.ARCHIVE_WARNING, str(w)) for w in warnings)
    return None
