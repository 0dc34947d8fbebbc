"""The first step: every PersistentVolumeClaim and Secret the spec names exists."""

from __future__ import annotations

from modeldeploy.api.conditions import Phase, Reason, ReconcileOutcome
from modeldeploy.reconcile.context import ReconcileContext


async def ensure_references_exist(ctx: ReconcileContext) -> ReconcileOutcome | None:
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
    return ReconcileOutcome.of(Phase.PENDING, Reason.REFERENCE_NOT_FOUND, message, degraded=True)
