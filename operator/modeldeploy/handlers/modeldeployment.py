"""kopf handlers of ModelDeployment: thin shims that run the reconcile and report its outcome.

on.resume / on.create / on.update react to spec, label and annotation changes (kopf's diff base
leaves status out, so a status-only change triggers nothing). One daemon per object reconciles it
again when a step asked to look again soon (`requeue_after`, e.g. while a build runs), when one of
its Jobs or Deployments changes, and every resync period otherwise: level-triggered, writing only
when the status would change (handlers/schedule.py: a requeue is honoured at its time, a child's
change acted on at once). A lock per object keeps two reconciles of one object apart, and each reconcile
decides on the object as stored, not on the watch's copy (see `reconcile_and_report`).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Mapping
from typing import Any

import kopf

from modeldeploy import GROUP, PLURAL, VERSION, observability
from modeldeploy.api.conditions import ConditionType, Phase
from modeldeploy.api.labels import MANAGED, owner_name
from modeldeploy.handlers.lifecycle import providers_of
from modeldeploy.handlers.schedule import Schedule
from modeldeploy.k8s import KubeApi
from modeldeploy.reconcile import KubeApiError, Report, reconcile_and_report
from modeldeploy.settings import OperatorConfig, OperatorIdentity

log = logging.getLogger(__name__)
Key = tuple[str, str]
METRICS = observability.METRICS
MOVING_PHASES = frozenset({Phase.BUILDING, Phase.DEPLOYING, Phase.PROGRESSING, Phase.DEGRADED})
"""Phases in which something is on its way: a reconcile that moves nothing then is worth a line at info."""


class Coordination:
    """Shared by every handler (kept in the operator-wide memo): per-object locks and reconcile schedules."""

    def __init__(self, resync_seconds: float) -> None:
        self.resync_seconds = resync_seconds
        self.locks: dict[Key, asyncio.Lock] = {}
        self.schedules: dict[Key, Schedule] = {}

    def lock(self, key: Key) -> asyncio.Lock:
        return self.locks.setdefault(key, asyncio.Lock())

    def schedule(self, key: Key) -> Schedule:
        found = self.schedules.get(key)
        if found is None:
            found = self.schedules[key] = Schedule(self.resync_seconds)
        return found

    def forget(self, key: Key) -> None:
        self.locks.pop(key, None)
        self.schedules.pop(key, None)


def _key(body: Mapping[str, Any]) -> Key:
    meta = body.get("metadata") or {}
    return str(meta.get("namespace")), str(meta.get("name"))


async def _reconcile(body: kopf.Body, memo: kopf.Memo, operator: OperatorIdentity,
                     logger: logging.Logger | logging.LoggerAdapter[Any], retry_delay: float) -> None:
    api: KubeApi = memo["api"]
    coordination: Coordination = memo["coordination"]
    key = _key(body)
    async with coordination.lock(key):
        # A snapshot: kopf updates the live body of daemons while the reconcile awaits.
        snapshot = copy.deepcopy(dict(body))
        started = time.monotonic()
        try:
            report: Report = await reconcile_and_report(snapshot, api, operator, providers=providers_of(memo))
        except KubeApiError as error:
            METRICS.record_reconcile(*key, seconds=time.monotonic() - started, result="error",
                                     error=type(error).__name__)
            raise kopf.TemporaryError(f"Kubernetes API: {error}", delay=retry_delay) from error
        except Exception as error:
            METRICS.record_reconcile(*key, seconds=time.monotonic() - started, result="error",
                                     error=type(error).__name__)
            raise
    if report.behind_generation is not None and report.outcome is not None:
        logger.info("The watch's copy was behind (generation %s): reconciled the stored generation %s.",
                    report.behind_generation, report.outcome.generation)
    if report.outcome is None:
        return
    verdict = report.outcome.verdict
    METRICS.record_reconcile(*key, seconds=time.monotonic() - started,
                             result="written" if report.written else "settled",
                             status={**report.outcome.status.render(), "phase": verdict.phase.value},
                             # The steps' own Events (a rollback, a promotion, an archive), not the
                             # transition Events that repeat a rollback's reason on each phase change.
                             events=report.outcome.notes if report.written else ())
    coordination.schedule(key).look_again(verdict.requeue_after)
    if not report.written:
        log.debug("%s/%s: nothing to write (phase %s).", key[0], key[1], verdict.phase)
        if verdict.phase in MOVING_PHASES:
            # A rollout in progress that this reconcile did not move: say what it waits for, so a stall shows.
            ready = verdict.condition(ConditionType.READY)
            logger.info("Nothing changed: phase %s, waiting for: %s; next look in %s.", verdict.phase,
                        ready.message if ready is not None else "?",
                        f"{verdict.requeue_after:g} s" if verdict.requeue_after is not None
                        else "a change of the object or its children")
        return
    logger.info("Status written: phase %s (generation %s).", verdict.phase, report.outcome.generation)
    for event in report.events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)


def register(registry: kopf.OperatorRegistry, config: OperatorConfig) -> None:
    """Register the ModelDeployment handlers with the operator's registry."""
    operator = config.identity
    retry_delay = min(config.resync_seconds, 10.0)

    @kopf.on.startup(registry=registry)
    async def coordination(memo: kopf.Memo, **_: Any) -> None:
        memo["coordination"] = Coordination(config.resync_seconds)

    @kopf.on.resume(GROUP, VERSION, PLURAL, id="reconcile", registry=registry)
    @kopf.on.create(GROUP, VERSION, PLURAL, id="reconcile", registry=registry)
    @kopf.on.update(GROUP, VERSION, PLURAL, id="reconcile", registry=registry)
    async def reconcile_on_change(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
        await _reconcile(body, memo, operator, logger, retry_delay)

    @kopf.daemon(GROUP, VERSION, PLURAL, id="resync", cancellation_timeout=5.0, registry=registry)
    async def resync(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, stopped: kopf.DaemonStopped,
                     **_: Any) -> None:
        coordination: Coordination = memo["coordination"]
        key = _key(body)
        schedule = coordination.schedule(key)
        try:
            while not stopped:
                why = await schedule.wait()
                if stopped:
                    break
                log.debug("%s/%s: reconciling (%s).", key[0], key[1], why)
                try:
                    await _reconcile(body, memo, operator, logger, retry_delay)
                except kopf.TemporaryError as error:
                    logger.warning("%s; trying again in %ss.", error, retry_delay)
                    schedule.look_again(retry_delay)
        finally:
            if body.get("metadata", {}).get("deletionTimestamp"):
                coordination.forget(key)
                METRICS.forget(*key)

    @kopf.on.event("batch", "v1", "jobs", labels=dict(MANAGED), registry=registry)
    @kopf.on.event("apps", "v1", "deployments", labels=dict(MANAGED), registry=registry)
    async def child_changed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        owner = owner_name(body.get("metadata", {}).get("labels"))
        coordination: Coordination | None = memo.get("coordination")
        if owner and coordination is not None:
            coordination.schedule((str(body.get("metadata", {}).get("namespace")), str(owner))).changed()
