"""What `decide` is given: the policy the spec asks for, and what the reconcile step observed."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from modeldeploy.api.spec import Analysis, ModelDeploymentSpec, Rollout, RolloutStep
from modeldeploy.canary.requests import ManualRequest, RejectedRequest
from modeldeploy.canary.traffic import TrafficRouter
from modeldeploy.canary.verdicts import Bounds, Sample
from modeldeploy.canary.weights import Split, current_step

GATE_REPLICAS = 1
"""Canary pods at a weight-0 step (the gate): judged on their own requests, behind no Service."""

_ANALYSIS = Analysis()
_ROLLOUT = Rollout()
"""The spec's defaults, which a policy built without a spec (in tests, say) has too."""


@dataclasses.dataclass(frozen=True)
class MetricPolicy:
    """A metric to judge: its name and bounds (whether a measurement is a rate, its sample says);
    `comparison`: what the bounds apply to with relativeTo: stable ("canary - stable", "canary / stable"),
    None for the canary alone; `own_requests`: its provider
    sends requests of its own (a golden set), so it is measured at the gate too."""

    name: str
    bounds: Bounds
    comparison: str | None = None
    own_requests: bool = False

    @property
    def relative(self) -> bool:
        """Whether the bounds apply to a comparison with stable."""
        return self.comparison is not None


@dataclasses.dataclass(frozen=True)
class Policy:
    """What the spec asks of the rollout: the revision to serve and how to get there.

    `router` turns weights into pods per role and says what traffic sees (the one
    spec.rollout.trafficRouting names, chosen by modeldeploy.routers.router_for).
    """

    revision: str
    replicas: int
    steps: tuple[RolloutStep, ...]
    interval: timedelta = _ANALYSIS.interval
    failure_limit: int = _ANALYSIS.failure_limit
    consecutive_error_limit: int = _ANALYSIS.consecutive_error_limit
    min_requests: int = _ANALYSIS.min_requests
    metrics: tuple[MetricPolicy, ...] = ()
    progress_deadline: timedelta = timedelta(seconds=_ROLLOUT.progress_deadline_seconds)
    router: TrafficRouter = dataclasses.field(kw_only=True)

    @classmethod
    def from_spec(cls, spec: ModelDeploymentSpec, revision: str, router: TrafficRouter) -> Policy:
        """The policy of a parsed spec whose content hashes to `revision`, its traffic split by `router`."""
        rollout = spec.rollout
        analysis = rollout.analysis
        metrics = tuple(
            MetricPolicy(name=metric.name, bounds=Bounds(min=metric.min, max=metric.max),
                         comparison=metric.comparison, own_requests=metric.sends_own_requests)
            for metric in analysis.metrics
        )
        return cls(
            revision=revision,
            replicas=spec.serving.replicas,
            steps=rollout.steps,
            interval=analysis.interval,
            failure_limit=analysis.failure_limit,
            consecutive_error_limit=analysis.consecutive_error_limit,
            min_requests=analysis.min_requests,
            metrics=metrics,
            progress_deadline=timedelta(seconds=rollout.progress_deadline_seconds),
            router=router,
        )

    def step(self, index: int) -> RolloutStep:
        """The step at `index`, clamped to the last one."""
        return current_step(self.steps, index)

    def is_last(self, index: int) -> bool:
        """Whether step `index` is the last (or past it)."""
        return index >= len(self.steps) - 1

    def at_gate(self, index: int) -> bool:
        """Whether step `index` is the gate: a first step of weight 0, where the canary's pods run behind
        no Service and only metrics that send their own requests judge them."""
        return index <= 0 and self.steps[0].weight == 0

    def step_metrics(self, index: int) -> tuple[MetricPolicy, ...]:
        """The metrics measured at step `index` (at the gate, those that send their own requests)."""
        if self.at_gate(index):
            return tuple(m for m in self.metrics if m.own_requests)
        return self.metrics

    def step_target(self, index: int) -> Split:
        """The pods per role once step `index` is served (at the gate: every stable pod and the gate's)."""
        if self.at_gate(index):
            return Split(stable=self.replicas, canary=GATE_REPLICAS)
        return self.router.target(self.step(index).weight, self.replicas)

    def step_replicas(self, index: int, current: Split, ready: Split) -> Split:
        """Replica counts per role to apply now on the way to step `index`."""
        if self.at_gate(index):
            return self.step_target(index)  # the gate's pod takes no traffic: stable stays whole beside it
        return self.router.replicas_for(self.step(index).weight, self.replicas, current, ready)

    def served_weight(self, index: int) -> int:
        """What traffic sees once step `index` is served (none at the gate)."""
        if self.at_gate(index):
            return 0
        return self.router.effective_weight(self.step_target(index))

    def step_label(self, index: int) -> str:
        """Step `index` as people count it: "step 1/3"."""
        return f"step {index + 1}/{len(self.steps)}"


@dataclasses.dataclass(frozen=True)
class RoleStatus:
    """One role's Deployment as observed.

    `revision`: the revision of its pod template (None: no Deployment); `replicas`: its
    spec.replicas; `ready`: its ready pods, any revision (they all take traffic); `ready_updated`:
    its ready pods of `revision` (None: the same as `ready`); `not_ready_reason`: why pods are not
    ready (a waiting reason, the model's last log line), quoted when the deadline aborts.
    """

    revision: str | None = None
    replicas: int = 0
    ready: int = 0
    ready_updated: int | None = None
    not_ready_reason: str = ""
    held: int = 0
    """Pods of `revision` whose containers are ready, held out of traffic by the gate's readiness gate."""

    @property
    def ready_at_revision(self) -> int:
        """Ready pods of the template's revision."""
        return self.ready if self.ready_updated is None else self.ready_updated


@dataclasses.dataclass(frozen=True)
class Measurement:
    """One measurement of one metric over [window_start, at]: samples, or a provider error.

    Neither samples nor an error: the provider only began a window at `at` (it had no baseline,
    say after an operator restart); nothing is judged, and the next measurement is due an
    interval later. `pending`: the provider began a measurement of this window that is still
    running (a golden-set Job); nothing is recorded, and it is asked again about the same window.
    """

    metric: str
    at: datetime
    window_start: datetime
    canary: Sample | None = None
    stable: Sample | None = None
    error: str | None = None
    pending: bool = False


@dataclasses.dataclass(frozen=True)
class Observations:
    """What the reconcile step saw: both roles, the measurements taken, the manual request (or the
    malformed annotation in its place)."""

    stable: RoleStatus = RoleStatus()
    canary: RoleStatus = RoleStatus()
    measurements: tuple[Measurement, ...] = ()
    request: ManualRequest | None = None
    rejected: RejectedRequest | None = None
