"""The reconcile: a chain of ensure-steps, each returning early while its part of the world is not settled.

A step looks at the parsed object, its status and the cluster, makes at most one part of the world as
desired, and returns a `Verdict` when the chain must stop there (something is missing, building, or
still starting), or None when its part is settled. The chain's end means everything is settled.

`report` then writes the verdict to status only when something changed, with the resourceVersion the
decision was made on as a precondition: a write based on a stale view fails with a conflict, the
object is read again, and the decision is taken again. Nothing here imports kopf.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from modeldeploy.conditions import (
    EventNote,
    Phase,
    Reason,
    Verdict,
    desired_status,
    status_patch,
    transition_events,
)
from modeldeploy.k8s.errors import ConflictError, NotFoundError
from modeldeploy.revision import Digest, build_key_of, revision_of
from modeldeploy.spec import ModelDeployment, SpecError, parse
from modeldeploy.steps import ChildAccess, Runtime, ensure_archive, ensure_serving

MAX_CONFLICT_RETRIES = 3


class Cluster(Protocol):
    """What the reconcile needs from the API (implemented by modeldeploy.k8s.KubeApi)."""

    async def claim_exists(self, namespace: str, name: str) -> bool: ...

    async def secret_exists(self, namespace: str, name: str) -> bool | None: ...

    async def get_model_deployment(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    async def patch_model_deployment_status(self, namespace: str, name: str, status: Mapping[str, Any], *,
                                            resource_version: str | None) -> dict[str, Any]: ...

    @property
    def children(self) -> ChildAccess: ...


@dataclasses.dataclass
class ReconcileContext:
    """What every step sees: the parsed object, its current status, its digests, the cluster.

    Steps add the status fields they own (for example `archive`) to `fields`, and Events about what
    they found (for example a build's warnings) to `notes`; notes are posted with the status write
    that records them, so a settled object posts nothing again.
    """

    deployment: ModelDeployment
    status: Mapping[str, Any]
    revision: Digest
    build_key: Digest
    cluster: Cluster
    fields: dict[str, Any] = dataclasses.field(default_factory=dict)
    notes: list[EventNote] = dataclasses.field(default_factory=list)


Step = Callable[[ReconcileContext], Awaitable[Verdict | None]]


async def ensure_references_exist(ctx: ReconcileContext) -> Verdict | None:
    """Stop, naming the field, while a referenced PersistentVolumeClaim or Secret does not exist."""
    md = ctx.deployment
    missing: list[str] = []
    for field, claim in md.referenced_claims():
        if not await ctx.cluster.claim_exists(md.namespace, claim):
            missing.append(f'PersistentVolumeClaim "{claim}" ({field})')
    for field, secret in md.referenced_secrets():
        # None: the operator may not look at Secrets; the pods mounting it will report a missing one
        if await ctx.cluster.secret_exists(md.namespace, secret) is False:
            missing.append(f'Secret "{secret}" ({field})')
    if not missing:
        return None
    message = f"Not found in namespace {md.namespace}: {'; '.join(missing)}"
    return Verdict.of(Phase.PENDING, Reason.REFERENCE_NOT_FOUND, message, degraded=True)


def reconcile_steps(runtime: Runtime) -> tuple[Step, ...]:
    """The chain, in order: references, then the archive, then serving. Each returns a Verdict (with
    `requeue_after` while something moves) or None once its part is settled, and records the status
    fields it owns in `ctx.fields`."""

    async def archive(ctx: ReconcileContext) -> Verdict | None:
        return await ensure_archive(ctx, ctx.cluster.children, runtime)

    async def serve(ctx: ReconcileContext) -> Verdict | None:
        return await ensure_serving(ctx, ctx.cluster.children, runtime)

    return (ensure_references_exist, archive, serve)


def settled_verdict(ctx: ReconcileContext) -> Verdict:
    """Every step is settled: the revision is served."""
    return Verdict.of(Phase.HEALTHY, Reason.READY, f"Revision {ctx.revision.short} is served",
                      ready=True, archive_ready=True)


def invalid_spec_verdict(error: SpecError) -> Verdict:
    """A spec the domain cannot act on: nothing changes in the cluster until the spec is fixed."""
    return Verdict.of(Phase.FAILED, Reason.INVALID_SPEC, f"Invalid spec: {error}", degraded=True)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """The result of one reconcile: the verdict and the status fields the steps set."""

    verdict: Verdict
    generation: int
    fields: Mapping[str, Any]
    notes: tuple[EventNote, ...] = ()


async def reconcile(body: Mapping[str, Any], cluster: Cluster, steps: Sequence[Step]) -> Outcome:
    """Run the chain on one object until a step stops it."""
    generation = int((body.get("metadata") or {}).get("generation") or 0)
    try:
        deployment = parse(body)
    except SpecError as error:
        return Outcome(invalid_spec_verdict(error), generation, {})
    ctx = ReconcileContext(
        deployment=deployment,
        status=body.get("status") or {},
        revision=revision_of(deployment.spec),
        build_key=build_key_of(deployment.spec),
        cluster=cluster,
        fields={},
    )
    ctx.fields["revision"] = ctx.revision.short
    for step in steps:
        verdict = await step(ctx)
        if verdict is not None:
            return Outcome(verdict, generation, ctx.fields, tuple(ctx.notes))
    return Outcome(settled_verdict(ctx), generation, ctx.fields, tuple(ctx.notes))


@dataclasses.dataclass(frozen=True)
class Report:
    """What `reconcile_and_report` did: the verdict, whether it wrote, and the Events to post."""

    outcome: Outcome | None
    written: bool
    events: tuple[EventNote, ...]


async def reconcile_and_report(body: Mapping[str, Any], cluster: Cluster, steps: Sequence[Step],
                               now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Report:
    """Reconcile and write the status if, and only if, it differs from the stored one."""
    current_body: Mapping[str, Any] | None = body
    for _ in range(MAX_CONFLICT_RETRIES):
        if current_body is None:
            return Report(None, False, ())
        metadata = current_body.get("metadata") or {}
        outcome = await reconcile(current_body, cluster, steps)
        current_status = current_body.get("status") or {}
        desired = desired_status(current_status, outcome.verdict, generation=outcome.generation, now=now(),
                                 fields=outcome.fields)
        patch = status_patch(current_status, desired)
        if patch is None:
            return Report(outcome, False, ())
        try:
            await cluster.patch_model_deployment_status(metadata["namespace"], metadata["name"], patch,
                                                        resource_version=metadata.get("resourceVersion"))
        except ConflictError:
            current_body = await cluster.get_model_deployment(metadata["namespace"], metadata["name"])
            continue
        except NotFoundError:
            return Report(outcome, False, ())
        return Report(outcome, True, (*transition_events(current_status, desired), *outcome.notes))
    raise ConflictError(409, "Conflict", f"status write lost {MAX_CONFLICT_RETRIES} races in a row")
