"""The reconcile: a chain of ensure-steps, each returning early while its part of the world is not settled.

A step looks at the parsed object, its status and the cluster, makes at most one part of the world as
desired, and returns a `ReconcileOutcome` when the chain must stop there (something is missing, building, or
still starting), or None when its part is settled. The chain's end means everything is settled.

`reconcile_and_report` then writes the verdict to status only when something changed, with the
resourceVersion the decision was made on as a precondition: a write based on a stale view fails with a
conflict, the object is read again, and the decision is taken again. Nothing here imports kopf.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from modeldeploy.api.conditions import Phase, Reason, ReconcileOutcome, format_time
from modeldeploy.api.events import Event
from modeldeploy.api.revision import build_key_of, revision_of
from modeldeploy.api.spec import SpecError, parse
from modeldeploy.api.status import Status, desired_status, status_patch, transition_events
from modeldeploy.metrics.registry import Providers
from modeldeploy.reconcile.archive import ensure_archive
from modeldeploy.reconcile.context import Cluster, ReconcileContext, Step
from modeldeploy.reconcile.errors import ConflictError, NotFoundError
from modeldeploy.reconcile.references import ensure_references_exist
from modeldeploy.reconcile.rollout import ensure_rollout
from modeldeploy.settings import OperatorIdentity

MAX_CONFLICT_RETRIES = 3


STEPS: tuple[Step, ...] = (ensure_references_exist, ensure_archive, ensure_rollout)
"""The chain, in order: references, then the archive, then the rollout (the first revision straight to
stable, later ones through a canary). Each returns a ReconcileOutcome (with `requeue_after` while something
moves) or None once its part is settled, and sets the typed status fields it owns on `ctx.status`."""


def settled_verdict(ctx: ReconcileContext) -> ReconcileOutcome:
    """Every step is settled: the revision is served."""
    return ReconcileOutcome.of(Phase.HEALTHY, Reason.READY, f"Revision {ctx.revision.short} is served",
                               ready=True, archive_ready=True)


def invalid_spec_verdict(error: SpecError) -> ReconcileOutcome:
    """A spec the domain cannot act on: nothing changes in the cluster until the spec is fixed."""
    return ReconcileOutcome.of(Phase.FAILED, Reason.INVALID_SPEC, f"Invalid spec: {error}", degraded=True)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """The result of one reconcile: the verdict, and the status the steps left (before the verdict)."""

    verdict: ReconcileOutcome
    generation: int
    status: Status
    notes: tuple[Event, ...] = ()


async def reconcile(body: Mapping[str, Any], cluster: Cluster, operator: OperatorIdentity, now: datetime,
                    steps: Sequence[Step] = STEPS, providers: Providers | None = None) -> Outcome:
    """Run the chain on one object until a step stops it."""
    generation = int((body.get("metadata") or {}).get("generation") or 0)
    current = Status.parse(body.get("status"))
    try:
        deployment = parse(body)
    except SpecError as error:
        return Outcome(invalid_spec_verdict(error), generation, current)
    revision = revision_of(deployment.spec)
    ctx = ReconcileContext(
        deployment=deployment,
        status=dataclasses.replace(current, revision=revision.short),
        revision=revision,
        build_key=build_key_of(deployment.spec),
        operator=operator,
        cluster=cluster,
        now=now,
        annotations=dict((body.get("metadata") or {}).get("annotations") or {}),
        spec_body=dict(body.get("spec") or {}),
        providers=Providers() if providers is None else providers,
    )
    for step in steps:
        verdict = await step(ctx)
        if verdict is not None:
            return Outcome(verdict, generation, ctx.status, tuple(ctx.notes))
    return Outcome(settled_verdict(ctx), generation, ctx.status, tuple(ctx.notes))


@dataclasses.dataclass(frozen=True)
class Report:
    """What `reconcile_and_report` did: the verdict, whether it wrote, and the Events to post."""

    outcome: Outcome | None
    written: bool
    events: tuple[Event, ...]
    behind_generation: int | None = None
    """The generation of the body the reconcile was given, when the stored object had another one."""


async def reconcile_and_report(body: Mapping[str, Any], cluster: Cluster, operator: OperatorIdentity,
                               steps: Sequence[Step] = STEPS,
                               now: Callable[[], datetime] = lambda: datetime.now(UTC),
                               providers: Providers | None = None) -> Report:
    """Reconcile the object as stored now and write the status if, and only if, it differs from the stored one.

    `body` (the watch's copy) names the object and may be behind the stored one: a watch delivers
    changes late while its handlers are busy, and a decision taken on an older spec or status would
    act on the children before its status write failed on the conflict, bringing back a canary
    that the current spec had removed. So the object is read first, and `Report.behind_generation`
    says when the copy given had an older spec.
    """
    metadata = body.get("metadata") or {}
    current_body = await cluster.get_model_deployment(metadata["namespace"], metadata["name"])
    behind: int | None = None
    if current_body is not None:
        given = int(metadata.get("generation") or 0)
        if given != int((current_body.get("metadata") or {}).get("generation") or 0):
            behind = given
    report = await _decide_and_write(current_body, cluster, operator, steps, now, providers)
    return dataclasses.replace(report, behind_generation=behind)


async def _decide_and_write(body: Mapping[str, Any] | None, cluster: Cluster, operator: OperatorIdentity,
                            steps: Sequence[Step], now: Callable[[], datetime], providers: Providers | None) -> Report:
    current_body = body
    for _ in range(MAX_CONFLICT_RETRIES):
        if current_body is None:
            return Report(None, False, ())
        metadata = current_body.get("metadata") or {}
        moment = now()
        outcome = await reconcile(current_body, cluster, operator, moment, steps, providers)
        current_status = current_body.get("status") or {}
        desired = desired_status(outcome.status, outcome.verdict, generation=outcome.generation, now=moment)
        patch = status_patch(current_status, desired.render())
        if patch is None:
            return Report(outcome, False, ())
        # Something changed: the write also says when (no write of its own, so a settled object gets none).
        desired = dataclasses.replace(desired, last_progress_time=format_time(moment))
        patch = status_patch(current_status, desired.render())
        assert patch is not None
        try:
            await cluster.patch_model_deployment_status(metadata["namespace"], metadata["name"], patch,
                                                        resource_version=metadata.get("resourceVersion"))
        except ConflictError:
            current_body = await cluster.get_model_deployment(metadata["namespace"], metadata["name"])
            continue
        except NotFoundError:
            return Report(outcome, False, ())
        events = transition_events(Status.parse(current_status), desired)
        return Report(outcome, True, (*events, *outcome.notes))
    raise ConflictError(409, "Conflict", f"status write lost {MAX_CONFLICT_RETRIES} races in a row")
