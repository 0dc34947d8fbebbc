"""The operator's own Prometheus metrics (`modeldeploy_*`), fed from values a reconcile already has.

Conventions: base units (seconds, ratios 0..1), `_total` counters, and bounded labels only: per
ModelDeployment `namespace` and `modeldeployment` (series are removed when the object goes), `phase` and
`verdict` from closed enums, `reason` from the closed set of rollback reasons, `metric` from the
object's own analysis list.

One call per reconcile: `OperatorMetrics.record_reconcile(namespace, name, seconds=…, result=…,
status=…, events=…)`, with the status as rendered (`phase`, `rollout`, `archive`) and the Events
the reconcile's steps posted (a rollback's or promotion's Event comes once, from the canary's
decision; the transition Events that repeat its reason on each phase change must not be passed).
Counters move on those Events, gauges follow the status.
"""

from __future__ import annotations

import contextlib
import enum
import math
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from modeldeploy.api.conditions import Phase
from modeldeploy.api.events import ROLLBACK_REASONS, EventReason
from modeldeploy.api.rollout import MeasurementVerdict, RolloutState
from modeldeploy.api.status import Status

PROMOTION_REASONS = ("Analysis", "UserRequest")
"""What promoted a canary: its analysis passed every step, or a user asked for it."""
VERDICTS = tuple(verdict.value for verdict in MeasurementVerdict)


class ReconcileResult(enum.StrEnum):
    """How a reconcile ended (the `result` label)."""

    SETTLED = "settled"
    """Nothing to write: the status already says it."""
    WRITTEN = "written"
    """The status changed and was written."""
    ERROR = "error"
    """The reconcile raised (an API error, a conflict it gave up on, a bug)."""


class EventLike(Protocol):
    """An Event as the reconcile posts it (api.events.Event)."""

    @property
    def reason(self) -> str: ...


class OperatorMetrics:
    """Every metric of the operator, in one registry (a fresh one per test)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.reconcile_duration = Histogram(
            "modeldeploy_reconcile_duration_seconds", "Time one reconcile of a ModelDeployment took, by result.",
            ["result"], registry=r, buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.reconcile_errors = Counter(
            "modeldeploy_reconcile_errors_total", "Reconciles that raised, by the kind of error.", ["error"],
            registry=r)
        self.last_reconcile = Gauge(
            "modeldeploy_last_reconcile_timestamp_seconds", "When the operator last finished a reconcile (Unix time).",
            registry=r)
        self.object_reconciled = Gauge(
            "modeldeploy_reconcile_timestamp_seconds",
            "When the operator last finished a reconcile of each ModelDeployment (Unix time), whatever its result.",
            ["namespace", "modeldeployment"], registry=r)
        self.object_progressed = Gauge(
            "modeldeploy_progress_timestamp_seconds",
            "When the status of each ModelDeployment last changed (Unix time): the time since it is how long the "
            "object has not moved.", ["namespace", "modeldeployment"], registry=r)
        self.phase = Gauge(
            "modeldeploy_phase", "The phase of each ModelDeployment (1 for its phase, 0 for the others).",
            ["namespace", "modeldeployment", "phase"], registry=r)
        self.weight = Gauge(
            "modeldeploy_canary_weight_ratio",
            "Share of traffic for the canary: `desired` is what the step asks, `effective` what ready pods give.",
            ["namespace", "modeldeployment", "kind"], registry=r)
        self.step = Gauge(
            "modeldeploy_canary_step", "Index of the current canary step (0 when no canary runs).",
            ["namespace", "modeldeployment"], registry=r)
        self.canary_active = Gauge(
            "modeldeploy_canary_active", "1 while a canary revision is on trial or being promoted.",
            ["namespace", "modeldeployment"], registry=r)
        self.analysis_value = Gauge(
            "modeldeploy_analysis_value", "The last measured value of each analysis metric of the canary.",
            ["namespace", "modeldeployment", "metric"], registry=r)
        self.analysis_stable_value = Gauge(
            "modeldeploy_analysis_stable_value",
            "Stable's own value on the same examples, beside the canary's (golden-set metrics).",
            ["namespace", "modeldeployment", "metric"], registry=r)
        self.analysis_verdict = Gauge(
            "modeldeploy_analysis_verdict", "The last verdict of each analysis metric (1 for it, 0 for the others).",
            ["namespace", "modeldeployment", "metric", "verdict"], registry=r)
        self.rollbacks = Counter(
            "modeldeploy_rollbacks_total", "Canary revisions rolled back, by reason.",
            ["namespace", "modeldeployment", "reason"], registry=r)
        self.promotions = Counter(
            "modeldeploy_promotions_total", "Canary revisions promoted to stable, by what promoted them.",
            ["namespace", "modeldeployment", "reason"], registry=r)
        self.archive_build_duration = Histogram(
            "modeldeploy_archive_build_duration_seconds", "Time an archive build took (the build's own measure).",
            registry=r, buckets=(5, 15, 30, 60, 120, 300, 600, 1200, 3600))
        self.archive_builds = Counter(
            "modeldeploy_archive_builds_total",
            "Archives a revision needed: `built` by a Job, or `reused` from the store.", ["result"], registry=r)
        self._analysis_metrics: dict[tuple[str, str], set[str]] = {}
        self._progress: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    # -- one call per reconcile -------------------------------------------------------------------------

    def record_reconcile(self, namespace: str, name: str, *, seconds: float, result: ReconcileResult | str,
                         status: Mapping[str, Any] | None = None, events: Iterable[EventLike] = (),
                         error: str | None = None) -> None:
        """Record one reconcile: its duration and result, and (when given) the object's status and Events."""
        result = ReconcileResult(result)
        now = time.time()
        self.reconcile_duration.labels(result=result.value).observe(max(seconds, 0.0))
        self.last_reconcile.set(now)
        self.object_reconciled.labels(namespace, name).set(now)
        if result is ReconcileResult.WRITTEN:
            self._progressed(namespace, name, now)
        if result is ReconcileResult.ERROR:
            self.reconcile_errors.labels(error=error or "Unknown").inc()
        if status is not None:
            self.record_status(namespace, name, status)
        self.record_events(namespace, name, events, status)

    def record_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        """Set the per-object gauges from a rendered status (`phase`, `rollout`, `archive`)."""
        phase = status.get("phase")
        progressed = _timestamp(status.get("lastProgressTime"))
        if progressed is not None:
            # After a restart of the operator: the last change the status itself records.
            self._progressed(namespace, name, progressed)
        if phase in {p.value for p in Phase}:
            self._start_counters(namespace, name)
            for candidate in Phase:
                self.phase.labels(namespace, name, candidate.value).set(1.0 if candidate.value == phase else 0.0)
        state = Status.parse(status).rollout.state
        if state is not None:
            self._record_rollout(namespace, name, state)

    def record_events(self, namespace: str, name: str, events: Iterable[EventLike],
                      status: Mapping[str, Any] | None = None) -> None:
        """Count the rollbacks, promotions and archives among the Events the reconcile's steps posted."""
        for event in events:
            if event.reason in ROLLBACK_REASONS:
                self.rollbacks.labels(namespace, name, event.reason).inc()
            elif event.reason == EventReason.PROMOTED:
                self.promotions.labels(namespace, name, _promotion_reason(status)).inc()
            elif event.reason == EventReason.ARCHIVE_READY:
                archive = status.get("archive") if status else None
                archive = archive if isinstance(archive, Mapping) else {}
                reused = bool(archive.get("reused"))
                self.archive_builds.labels(result="reused" if reused else "built").inc()
                seconds = archive.get("buildSeconds")
                if not reused and isinstance(seconds, int | float) and not isinstance(seconds, bool):
                    self.record_archive_build_duration(float(seconds))

    def record_archive_build_duration(self, seconds: float) -> None:
        """How long an archive build took: the `seconds` of the build's result, when it was not reused."""
        if math.isfinite(seconds) and seconds >= 0:
            self.archive_build_duration.observe(seconds)

    def forget(self, namespace: str, name: str) -> None:
        """Drop every series of a deleted ModelDeployment (labels stay bounded by the objects that exist)."""
        with self._lock:
            metrics = self._analysis_metrics.pop((namespace, name), set())
            self._progress.pop((namespace, name), None)
        for phase in Phase:
            _remove(self.phase, namespace, name, phase.value)
        for kind in ("desired", "effective"):
            _remove(self.weight, namespace, name, kind)
        _remove(self.step, namespace, name)
        _remove(self.object_reconciled, namespace, name)
        _remove(self.object_progressed, namespace, name)
        _remove(self.canary_active, namespace, name)
        for metric in metrics:
            _remove(self.analysis_value, namespace, name, metric)
            _remove(self.analysis_stable_value, namespace, name, metric)
            for verdict in VERDICTS:
                _remove(self.analysis_verdict, namespace, name, metric, verdict)
        for rollback in ROLLBACK_REASONS:
            _remove(self.rollbacks, namespace, name, rollback)
        for reason in PROMOTION_REASONS:
            _remove(self.promotions, namespace, name, reason)

    # -- details ------------------------------------------------------------------------------------------

    def _progressed(self, namespace: str, name: str, at: float) -> None:
        with self._lock:
            if at <= self._progress.get((namespace, name), 0.0):
                return
            self._progress[(namespace, name)] = at
        self.object_progressed.labels(namespace, name).set(at)

    def _start_counters(self, namespace: str, name: str) -> None:
        # Series at 0 from the first reconcile on: `increase()` then sees the first rollback too.
        for rollback in ROLLBACK_REASONS:
            self.rollbacks.labels(namespace, name, rollback)
        for reason in PROMOTION_REASONS:
            self.promotions.labels(namespace, name, reason)

    def _record_rollout(self, namespace: str, name: str, state: RolloutState) -> None:
        active = state.canary_revision is not None
        self.canary_active.labels(namespace, name).set(1.0 if active else 0.0)
        self.weight.labels(namespace, name, "desired").set(state.weight / 100.0 if active else 0.0)
        self.weight.labels(namespace, name, "effective").set(state.effective_weight / 100.0 if active else 0.0)
        self.step.labels(namespace, name).set(float(state.step_index) if active else 0.0)
        for metric, counters in state.metrics.items():
            if not counters.measurements:
                continue
            last = counters.measurements[-1]
            with self._lock:
                self._analysis_metrics.setdefault((namespace, name), set()).add(metric)
            if last.value is not None and math.isfinite(last.value):
                self.analysis_value.labels(namespace, name, metric).set(last.value)
            if last.stable_value is not None and math.isfinite(last.stable_value):
                self.analysis_stable_value.labels(namespace, name, metric).set(last.stable_value)
            for verdict in VERDICTS:
                self.analysis_verdict.labels(namespace, name, metric, verdict).set(
                    1.0 if last.verdict == verdict else 0.0)


def _promotion_reason(status: Mapping[str, Any] | None) -> str:
    state = Status.parse(status).rollout.state if status else None
    request = state.last_request if state is not None else None
    if request is not None and request.action == "promote":
        return "UserRequest"
    return "Analysis"


def _timestamp(value: object) -> float | None:
    """An RFC 3339 time of the status as Unix time; None when it is not one."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _remove(metric: Gauge | Counter, *labels: str) -> None:
    with contextlib.suppress(KeyError):
        metric.remove(*labels)


METRICS = OperatorMetrics()
"""The operator's metrics, served by `serve_metrics`."""


def serve_metrics(address: str, port: int, metrics: OperatorMetrics = METRICS) -> int:
    """Serve `/metrics` (the Prometheus text format) from a background thread; return the port bound
    (`port` 0 picks a free one)."""
    server, _thread = start_http_server(port, addr=address, registry=metrics.registry)
    return int(server.server_port)
