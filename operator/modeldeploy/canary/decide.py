"""`decide`: every rule of a canary rollout, as one pure function.

    decision = decide(policy, state, observations, now)

The reconcile step gathers the observations (the two Deployments' revisions, replica counts and
ready pods; the measurements that were due; the manual request annotation), calls `decide`, and
applies the decision: replica counts and revisions per role, `status.rollout = state.to_dict()`,
the phase, the Events, and a requeue. Nothing here reads a clock, the API or the network.

Idempotent: the same inputs give the same decision; a decision's state fed back with the same
observations changes nothing and posts no Event (measurements already recorded are recognised by
their time, a handled request by its action, revision and time).
"""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime, timedelta
from typing import Literal

from modeldeploy.api.conditions import Phase
from modeldeploy.api.spec import ModelDeploymentSpec, RolloutStep, TorchServeMetric, TorchServeProvider
from modeldeploy.canary.requests import Action, ManualRequest, RejectedRequest
from modeldeploy.canary.state import (
    MAX_MEASUREMENTS,
    Aborted,
    AbortReason,
    MeasurementRecord,
    MetricState,
    Pause,
    PauseReason,
    RolloutState,
    Verdict,
    stamp,
)
from modeldeploy.canary.traffic import TrafficRouter
from modeldeploy.canary.verdicts import Bounds, Sample, judge
from modeldeploy.canary.weights import Split, current_step

ERROR_RETRY = timedelta(seconds=10)
"""How soon a measurement that ended in a provider error is tried again."""

POLL = timedelta(seconds=5)
"""How soon to look again while pods are being replaced (child watches usually wake us first)."""


# --- inputs ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MetricPolicy:
    """A metric to judge: its name and bounds."""

    name: str
    bounds: Bounds


@dataclasses.dataclass(frozen=True)
class Policy:
    """What the spec asks of the rollout: the revision to serve and how to get there.

    `router` turns weights into pods per role and says what traffic sees (the one
    spec.rollout.trafficRouting names, chosen by modeldeploy.routers.router_for).
    """

    revision: str
    replicas: int
    steps: tuple[RolloutStep, ...]
    interval: timedelta = timedelta(seconds=30)
    failure_limit: int = 1
    consecutive_error_limit: int = 4
    min_requests: int = 20
    metrics: tuple[MetricPolicy, ...] = ()
    progress_deadline: timedelta = timedelta(seconds=600)
    router: TrafficRouter = dataclasses.field(kw_only=True)

    @classmethod
    def from_spec(cls, spec: ModelDeploymentSpec, revision: str, router: TrafficRouter) -> Policy:
        """The policy of a parsed spec whose content hashes to `revision`, its traffic split by `router`."""
        rollout = spec.rollout
        analysis = rollout.analysis
        metrics = tuple(
            MetricPolicy(
                name=metric.name,
                bounds=Bounds(
                    min=metric.min,
                    max=metric.max,
                    rate=isinstance(metric.provider, TorchServeProvider)
                    and metric.provider.metric is TorchServeMetric.ERROR_RATE,
                ),
            )
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

    @property
    def ready_at_revision(self) -> int:
        """Ready pods of the template's revision."""
        return self.ready if self.ready_updated is None else self.ready_updated


@dataclasses.dataclass(frozen=True)
class Measurement:
    """One measurement of one metric over [window_start, at]: samples, or a provider error.

    Neither samples nor an error: the provider only began a window at `at` (it had no baseline,
    say after an operator restart); nothing is judged, and the next measurement is due an
    interval later.
    """

    metric: str
    at: datetime
    window_start: datetime
    canary: Sample | None = None
    stable: Sample | None = None
    error: str | None = None


@dataclasses.dataclass(frozen=True)
class Observations:
    """What the reconcile step saw: both roles, the measurements taken, the manual request (or the
    malformed annotation in its place)."""

    stable: RoleStatus = RoleStatus()
    canary: RoleStatus = RoleStatus()
    measurements: tuple[Measurement, ...] = ()
    request: ManualRequest | None = None
    rejected: RejectedRequest | None = None


# --- outputs --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RoleTarget:
    """What one role's Deployment must be: the revision its pods serve and how many."""

    revision: str
    replicas: int


@dataclasses.dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post on the object."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class Decision:
    """What to apply.

    `stable` is always set; `canary` is None when no canary Deployment needs to exist (none, or
    drained to zero: it may be deleted). `requeue_after` is when to look again at the latest (None:
    settled, wait for a change).
    """

    state: RolloutState
    stable: RoleTarget
    canary: RoleTarget | None
    phase: Phase
    message: str
    events: tuple[Event, ...] = ()
    requeue_after: timedelta | None = None


@dataclasses.dataclass(frozen=True)
class MeasurementDue:
    """A metric to measure over [window_start, now] once now >= due_at."""

    metric: str
    window_start: datetime
    due_at: datetime


# --- helpers --------------------------------------------------------------------------------------


def _latest(*moments: datetime | None) -> datetime | None:
    present = [m for m in moments if m is not None]
    return max(present) if present else None


def _is_last(policy: Policy, index: int) -> bool:
    return index >= len(policy.steps) - 1


def _step(policy: Policy, state: RolloutState) -> RolloutStep:
    return current_step(policy.steps, state.step_index)


def _step_label(policy: Policy, index: int) -> str:
    return f"step {index + 1}/{len(policy.steps)}"


def _short(revision: str | None) -> str:
    return (revision or "none")[:10]


def next_measurements(policy: Policy, state: RolloutState) -> tuple[MeasurementDue, ...]:
    """The measurement each metric is owed next, while a canary is being analysed.

    A window starts no earlier than the step, the current effective weight and the previous
    measurement; it is due one interval later. After a provider error it is retried after
    ERROR_RETRY, over the same window (an error consumes no measurement).
    """
    if state.canary_revision is None or state.promoting or state.step_started_at is None:
        return ()
    if policy.router.target(_step(policy, state).weight, policy.replicas).canary == 0:
        return ()
    due: list[MeasurementDue] = []
    for metric in policy.metrics:
        counters = state.metric(metric.name)
        start = _latest(counters.last_at, state.weight_since, state.step_started_at)
        assert start is not None
        at = start + policy.interval
        if counters.consecutive_errors and counters.last_error_at is not None:
            at = max(counters.last_error_at + ERROR_RETRY, start + timedelta(seconds=1))
        due.append(MeasurementDue(metric=metric.name, window_start=start, due_at=at))
    return tuple(due)


def due_metrics(policy: Policy, state: RolloutState, now: datetime) -> tuple[MeasurementDue, ...]:
    """The measurements to take before calling `decide` at `now`."""
    return tuple(due for due in next_measurements(policy, state) if due.due_at <= now)


class _Run:
    """One call of decide: the state being rewritten and the Events it earns."""

    def __init__(self, policy: Policy, state: RolloutState, observations: Observations, now: datetime) -> None:
        self.policy = policy
        self.state = state
        self.obs = observations
        self.now = stamp(now)
        self.events: list[Event] = []

    def update(self, **changes: object) -> None:
        self.state = dataclasses.replace(self.state, **changes)  # type: ignore[arg-type]

    def event(self, kind: Literal["Normal", "Warning"], reason: str, message: str) -> None:
        self.events.append(Event(kind, reason, message))

    # -- lifecycle ---------------------------------------------------------------------------------

    def start_canary(self, revision: str, why: str) -> None:
        first = self.policy.steps[0]
        self.update(
            canary_revision=revision, step_index=0, step_started_at=self.now, weight=first.weight,
            weight_since=None, unready_since=self.now, ready_since=None, pause=None, metrics={},
            promoting=False, aborted=None,
        )
        self.event("Normal", "CanaryStarted",
                   f"{why}: revision {_short(revision)} starts at {_step_label(self.policy, 0)}, "
                   f"weight {first.weight} %")
        self.enter_step(0)

    def enter_step(self, index: int) -> None:
        """Begin step `index`; the final step without a pause is the promotion itself."""
        step = self.policy.steps[index]
        if _is_last(self.policy, index) and step.pause is None:
            self.begin_promotion(f"{_step_label(self.policy, index)} reached")
            return
        counters = {name: dataclasses.replace(m, successes_at_step=0, step_requests=0, step_events=0)
                    for name, m in self.state.metrics.items()}
        self.update(step_index=index, step_started_at=self.now, weight=step.weight, metrics=counters,
                    unready_since=self.now, ready_since=None,
                    pause=self.state.pause if self.user_paused else None)
        if index > 0:
            self.event("Normal", "CanaryStep",
                       f"revision {_short(self.state.canary_revision)}: {_step_label(self.policy, index)}, "
                       f"weight {step.weight} %")

    def begin_promotion(self, why: str) -> None:
        self.update(promoting=True, pause=None, weight=100)
        self.event("Normal", "Promoting",
                   f"revision {_short(self.state.canary_revision)}: {why}; rolling stable to it at full size")

    def abort(self, reason: AbortReason, message: str) -> None:
        revision = self.state.canary_revision
        assert revision is not None
        self.update(
            canary_revision=None, aborted=Aborted(revision=revision, reason=reason, message=message, at=self.now),
            promoting=False, pause=None, weight=0, step_index=0, step_started_at=None,
            unready_since=None, ready_since=None,
        )
        self.event("Warning", reason.value,
                   f"revision {_short(revision)} rolled back to {_short(self.state.stable_revision)}: {message}")

    @property
    def user_paused(self) -> bool:
        return self.state.pause is not None and self.state.pause.reason is PauseReason.USER

    # -- the rules ---------------------------------------------------------------------------------

    def follow_spec(self) -> None:
        """The revision the spec asks for against the one serving and the one on trial."""
        revision = self.policy.revision
        state = self.state
        if state.stable_revision is None:
            serving = self.obs.stable
            if serving.revision is None or serving.revision == revision or serving.ready_at_revision == 0:
                # The first revision of an object: nothing to compare with.
                self.update(stable_revision=revision)
                return
            # No rollout state, but stable pods serve another revision (status lost, or an object
            # served before canaries existed): they are the stable, and the spec's revision a canary.
            self.update(stable_revision=serving.revision)
            state = self.state
        if state.canary_revision is not None and revision != state.canary_revision:
            if revision == state.stable_revision:
                cancelled = state.canary_revision
                self.update(canary_revision=None, promoting=False, pause=None, weight=0, step_index=0,
                            step_started_at=None, unready_since=None, ready_since=None, metrics={})
                self.event("Normal", "CanaryCancelled",
                           f"spec is back at stable revision {_short(revision)}: canary {_short(cancelled)} removed")
            else:
                self.start_canary(revision, f"spec changed during the canary of {_short(state.canary_revision)}")
            return
        if state.canary_revision is None and revision != state.stable_revision:
            if state.aborted is not None and state.aborted.revision == revision:
                return  # rolled back: not retried until the spec changes or a user retries
            self.start_canary(revision, "new revision")
            return
        if revision == state.stable_revision and state.aborted is not None and state.canary_revision is None:
            self.update(aborted=None)

    def handle_request(self) -> None:
        rejected = self.obs.rejected
        digest = rejected.digest if rejected is not None else None
        if digest != self.state.rejected_request:
            # Reported once per malformed text; forgotten once the annotation is fixed or removed.
            self.update(rejected_request=digest)
            if rejected is not None:
                self.event("Warning", "InvalidRequest", rejected.message)
        request = self.obs.request
        if request is None or request.handled == self.state.last_request:
            return
        self.update(last_request=request.handled)
        state = self.state
        who = f" by {request.by}" if request.by else ""
        if request.action is Action.RETRY:
            if (state.aborted is not None and state.aborted.revision == request.revision
                    and self.policy.revision == request.revision and state.canary_revision is None):
                self.start_canary(request.revision, f"retry requested{who}")
            else:
                self.ignore(request, "no rolled-back revision of that name is in the spec")
            return
        if state.canary_revision != request.revision:
            self.ignore(request, f"the canary is {_short(state.canary_revision)}")
            return
        if request.action is Action.ABORT:
            self.abort(AbortReason.ABORTED, f"abort requested{who}")
        elif request.action is Action.PAUSE:
            if state.promoting:
                self.ignore(request, "it is being promoted")
            elif self.user_paused:
                self.ignore(request, "it is already paused by a user")
            else:
                self.update(pause=Pause(PauseReason.USER, self.now))
                self.event("Normal", "Paused", f"revision {_short(request.revision)} paused{who}")
        elif request.action is Action.RESUME:
            if self.user_paused:
                self.resume(who)
            else:
                self.ignore(request, "it is not paused by a user")
        elif request.action is Action.PROMOTE and state.promoting:
            self.ignore(request, "it is already being promoted")
        elif request.action is Action.PROMOTE:
            if self.user_paused:
                self.resume(who)
            if request.full or _is_last(self.policy, state.step_index):
                self.begin_promotion(f"promote{' --full' if request.full else ''} requested{who}")
            else:
                self.enter_step(state.step_index + 1)

    def ignore(self, request: ManualRequest, why: str) -> None:
        self.event("Normal", "RequestIgnored",
                   f"{request.action.value} for revision {_short(request.revision)} ignored: {why}")

    def resume(self, who: str) -> None:
        """End a user pause; the deadline clocks did not run while it lasted."""
        pause = self.state.pause
        assert pause is not None
        state = self.state

        def held(since: datetime | None) -> datetime | None:
            # A clock moves on by the part of the pause it was running in: one started during the pause
            # starts now, never later.
            return None if since is None else since + (self.now - max(since, pause.since))

        self.update(pause=None, step_started_at=held(state.step_started_at), unready_since=held(state.unready_since))
        self.event("Normal", "Resumed", f"revision {_short(state.canary_revision)} resumed{who}")

    def watch_pods(self, target: Split) -> bool:
        """Track the canary's readiness and the effective weight; True when the canary is all ready."""
        obs = self.obs
        canary_ready = obs.canary.ready_at_revision if obs.canary.revision == self.state.canary_revision else 0
        weight = self.policy.router.effective_weight(Split(stable=obs.stable.ready, canary=obs.canary.ready))
        if weight != self.state.effective_weight or (self.state.weight_since is None and canary_ready):
            self.update(effective_weight=weight, weight_since=self.now)
        all_ready = canary_ready >= target.canary
        if all_ready:
            ready_since = self.state.ready_since or self.now
            # Ready for good only after a whole interval: a pod ready for a moment resets nothing.
            settled = self.now - ready_since >= self.policy.interval
            self.update(ready_since=ready_since, unready_since=None if settled else self.state.unready_since)
        else:
            self.update(ready_since=None, unready_since=self.state.unready_since or self.now)
        return all_ready

    def record(self, target: Split, all_ready: bool) -> list[tuple[str, str]]:
        """Fold new measurements into the counters; return (metric, message) of each Failed one."""
        failures: list[tuple[str, str]] = []
        policies = {m.name: m for m in self.policy.metrics}
        metrics: dict[str, MetricState] = dict(self.state.metrics)
        step_start = _latest(self.state.weight_since, self.state.step_started_at)
        served = self.policy.router.effective_weight(target)  # what traffic sees once the step's pods are ready
        for measurement in sorted(self.obs.measurements, key=lambda m: m.at):
            policy = policies.get(measurement.metric)
            if policy is None:
                continue
            counters = metrics.get(policy.name, MetricState())
            at = stamp(measurement.at)
            seen = _latest(counters.last_at, counters.last_error_at)
            if seen is not None and at <= seen:
                continue  # already recorded
            weight = self.state.effective_weight
            if measurement.error is None and measurement.canary is None:
                # a window begun (the provider had no baseline): no verdict, the next one is due an interval on
                metrics[policy.name] = dataclasses.replace(counters, last_at=at)
                continue
            if measurement.error is not None:
                record = MeasurementRecord(at=at, verdict=Verdict.ERROR, weight=weight, message=measurement.error)
                counters = dataclasses.replace(counters, consecutive_errors=counters.consecutive_errors + 1,
                                               last_error_at=at)
            else:
                canary = measurement.canary or Sample(value=None)
                eligible = (all_ready and weight == served and step_start is not None
                            and stamp(measurement.window_start) >= step_start)
                judgement = judge(policy.name, canary, policy.bounds, self.policy.min_requests, measurement.stable)
                if eligible and policy.bounds.rate and canary.requests and canary.value is not None \
                        and math.isfinite(canary.value):
                    # A rate's evidence pools the step's windows at this weight: a good canary behind little
                    # traffic shows "below the bound" in a few windows instead of never. Failures stay per window.
                    events = canary.events if canary.events is not None else round(canary.value * canary.requests)
                    counters = dataclasses.replace(counters, step_requests=counters.step_requests + canary.requests,
                                                   step_events=counters.step_events + events)
                    if judgement.verdict is Verdict.INCONCLUSIVE and counters.step_requests > canary.requests:
                        pooled = judge(f"{policy.name} over this step's windows",
                                       Sample(counters.step_events / counters.step_requests, counters.step_requests,
                                              counters.step_events),
                                       policy.bounds, self.policy.min_requests, measurement.stable)
                        if pooled.verdict is Verdict.SUCCESSFUL:
                            judgement = pooled
                finite = canary.value if canary.value is not None and math.isfinite(canary.value) else None
                message = judgement.message
                if judgement.verdict is Verdict.SUCCESSFUL and not eligible:
                    message += f" (not evidence: the window began before weight {served} % was served)"
                record = MeasurementRecord(at=at, verdict=judgement.verdict, value=finite,
                                           requests=canary.requests, weight=weight, message=message)
                counters = dataclasses.replace(counters, consecutive_errors=0, last_at=at)
                if judgement.verdict is Verdict.FAILED:
                    counters = dataclasses.replace(counters, failed=counters.failed + 1)
                    failures.append((policy.name, judgement.message))
                elif judgement.verdict is Verdict.INCONCLUSIVE:
                    counters = dataclasses.replace(counters, inconclusive=counters.inconclusive + 1)
                elif eligible:
                    counters = dataclasses.replace(counters, successes_at_step=counters.successes_at_step + 1)
            counters = dataclasses.replace(counters, measurements=(*counters.measurements, record)[-MAX_MEASUREMENTS:])
            metrics[policy.name] = counters
        self.update(metrics=metrics)
        return failures

    def judge_canary(self) -> None:
        """Measurements, limits, deadlines and the advance of a running canary."""
        policy = self.policy
        step = _step(policy, self.state)
        target = policy.router.target(step.weight, policy.replicas)
        all_ready = self.watch_pods(target)
        failures = self.record(target, all_ready)
        for metric in policy.metrics:
            counters = self.state.metric(metric.name)
            if counters.consecutive_errors > policy.consecutive_error_limit:
                last = counters.measurements[-1].message if counters.measurements else ""
                self.abort(AbortReason.METRICS_UNAVAILABLE,
                           f"{metric.name}: {counters.consecutive_errors} provider errors in a row, more than "
                           f"consecutiveErrorLimit {policy.consecutive_error_limit} (last: {last})")
                return
            if counters.failed > policy.failure_limit:
                detail = next((m for name, m in reversed(failures) if name == metric.name), None)
                if detail is None:
                    detail = next((r.message for r in reversed(counters.measurements) if r.verdict is Verdict.FAILED),
                                  metric.name)
                self.abort(AbortReason.ANALYSIS_FAILED,
                           f"{detail}; {counters.failed} failed measurements, more than failureLimit "
                           f"{policy.failure_limit}")
                return
        if self.user_paused:
            return  # analysis goes on (and can roll back); the clocks and the steps wait
        deadline = policy.progress_deadline
        if self.state.unready_since is not None and self.now - self.state.unready_since > deadline:
            reason = self.obs.canary.not_ready_reason or "no reason reported"
            ready = self.obs.canary.ready_at_revision if self.obs.canary.revision == self.state.canary_revision else 0
            self.abort(AbortReason.PROGRESS_DEADLINE_EXCEEDED,
                       f"{ready}/{target.canary} canary pods ready {int(deadline.total_seconds())} s after the "
                       f"step began: {reason}")
            return
        evidence = target.canary == 0 or all(self.state.metric(m.name).successes_at_step >= 1 for m in policy.metrics)
        started = self.state.step_started_at
        assert started is not None
        if not evidence and self.now - started > deadline:
            missing = [m.name for m in policy.metrics if self.state.metric(m.name).successes_at_step < 1]
            self.abort(AbortReason.INSUFFICIENT_DATA,
                       f"no Successful measurement of {', '.join(missing)} at weight {step.weight} % within "
                       f"progressDeadlineSeconds {int(deadline.total_seconds())}")
            return
        if step.pause is None and not _is_last(policy, self.state.step_index):
            if self.state.pause is None:
                self.update(pause=Pause(PauseReason.STEP, started))
                self.event("Normal", "Paused",
                           f"revision {_short(self.state.canary_revision)}: "
                           f"{_step_label(policy, self.state.step_index)} waits for a promote request")
            return
        if not (all_ready and evidence and self.now >= started + (step.pause or timedelta(0))):
            return
        if _is_last(policy, self.state.step_index):
            self.begin_promotion(f"{_step_label(policy, self.state.step_index)} passed")
        else:
            self.enter_step(self.state.step_index + 1)

    def promote(self) -> None:
        """Finish a promotion once stable serves the canary revision, ready at full size."""
        stable = self.obs.stable
        if stable.revision == self.state.canary_revision and stable.ready_at_revision >= self.policy.replicas:
            promoted = self.state.canary_revision
            self.update(stable_revision=promoted, canary_revision=None, promoting=False, pause=None, weight=0,
                        step_index=0, step_started_at=None, unready_since=None, ready_since=None)
            self.event("Normal", "Promoted", f"revision {_short(promoted)} is stable at full size")

    # -- the result --------------------------------------------------------------------------------

    def targets(self) -> tuple[RoleTarget, RoleTarget | None, bool]:
        """Desired roles, and whether pods are still moving."""
        policy, state, obs = self.policy, self.state, self.obs
        assert state.stable_revision is not None
        current = Split(stable=obs.stable.replicas, canary=obs.canary.replicas)
        ready = Split(stable=obs.stable.ready if obs.stable.revision == state.stable_revision else 0,
                      canary=obs.canary.ready)
        if state.canary_revision is not None and state.promoting:
            stable = RoleTarget(state.canary_revision, policy.replicas)
            canary = RoleTarget(state.canary_revision, max(obs.canary.replicas, 0))
            return stable, canary if canary.replicas else None, True
        if state.canary_revision is not None:
            weight = _step(policy, state).weight
            target = policy.router.target(weight, policy.replicas)
            split = policy.router.replicas_for(weight, policy.replicas, current, ready)
            moving = split != current or ready != target
            stable = RoleTarget(state.stable_revision, split.stable)
            return stable, RoleTarget(state.canary_revision, split.canary), moving
        split = policy.router.replicas_for(0, policy.replicas, current, ready)
        stable = RoleTarget(state.stable_revision, split.stable)
        moving = (split != current or obs.canary.replicas > 0 or obs.canary.ready > 0
                  or obs.stable.revision != state.stable_revision or obs.stable.ready_at_revision < policy.replicas)
        if obs.canary.revision is None or (split.canary == 0 and obs.canary.replicas == 0 and obs.canary.ready == 0):
            return stable, None, moving
        return stable, RoleTarget(obs.canary.revision, split.canary), moving

    def phase(self, moving: bool) -> tuple[Phase, str]:
        state = self.state
        if state.canary_revision is not None:
            label = _step_label(self.policy, state.step_index)
            if state.promoting:
                return Phase.PROGRESSING, f"promoting revision {_short(state.canary_revision)}"
            if state.pause is not None:
                why = "paused by a user" if state.pause.reason is PauseReason.USER else "waiting for a promote request"
                return Phase.PAUSED, f"canary {_short(state.canary_revision)} at {label}, {why}"
            return (Phase.PROGRESSING,
                    f"canary {_short(state.canary_revision)} at {label}, weight {state.weight} % "
                    f"(effective {state.effective_weight} %)")
        if state.aborted is not None and state.aborted.revision == self.policy.revision:
            if moving:
                return Phase.DEGRADED, f"rolling back to {_short(state.stable_revision)}: {state.aborted.message}"
            return (Phase.ROLLED_BACK,
                    f"revision {_short(state.aborted.revision)} rolled back ({state.aborted.reason.value}): "
                    f"{state.aborted.message}")
        if moving:
            return Phase.PROGRESSING, f"bringing stable revision {_short(state.stable_revision)} to full size"
        return Phase.HEALTHY, f"revision {_short(state.stable_revision)} serves at full size"

    def requeue(self, moving: bool) -> timedelta | None:
        state, policy = self.state, self.policy
        moments: list[datetime] = [due.due_at for due in next_measurements(policy, state)]
        if state.canary_revision is not None and not state.promoting and state.step_started_at is not None:
            step = _step(policy, state)
            if step.pause is not None:
                moments.append(state.step_started_at + step.pause)
            if not self.user_paused:
                moments.append(state.step_started_at + policy.progress_deadline + timedelta(seconds=1))
                if state.unready_since is not None:
                    moments.append(state.unready_since + policy.progress_deadline + timedelta(seconds=1))
            if state.ready_since is not None and state.unready_since is not None:
                moments.append(state.ready_since + policy.interval)
        if moving:
            moments.append(self.now + POLL)
        if not moments:
            return None
        return max(min(moments) - self.now, timedelta(seconds=1))


def decide(policy: Policy, state: RolloutState, observations: Observations, now: datetime) -> Decision:
    """Every rule of the rollout: given the policy, the stored state, what was observed and the time,
    the new state, the desired roles, the phase and the Events."""
    run = _Run(policy, state, observations, now)
    run.follow_spec()
    run.handle_request()
    if run.state.canary_revision is not None and not run.state.promoting:
        run.judge_canary()
    if run.state.canary_revision is not None and run.state.promoting:
        run.promote()
    if run.state.canary_revision is None or run.state.promoting:
        # what traffic sees while no canary is judged (a rollback or a promotion draining the canary)
        weight = policy.router.effective_weight(Split(stable=observations.stable.ready,
                                                      canary=observations.canary.ready))
        if weight != run.state.effective_weight:
            run.update(effective_weight=weight)
    stable, canary, moving = run.targets()
    phase, message = run.phase(moving)
    return Decision(state=run.state, stable=stable, canary=canary, phase=phase, message=message,
                    events=tuple(run.events), requeue_after=run.requeue(moving))

