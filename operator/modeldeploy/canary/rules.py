"""The rollback rules: when a canary is rolled back and why, every `AbortReason` in one table.

    abort = first_abort(facts)

Each rule is a small pure function of the `Facts` that returns an `Abort` (its reason, and the
sentence a user reads in the Warning Event and in status) or None. `ROLLBACK_RULES` is their order,
and the first rule that aborts wins:

1. `aborted_by_request`: a user asked to abort this canary (also while it is being promoted);
2. `metric_limits`: each metric's limits, metric by metric in the spec's order, each first by
   `METRIC_RULES` (`metrics_unavailable`: a provider error streak longer than
   consecutiveErrorLimit, then `analysis_failed`: more Failed measurements than failureLimit);
3. `progress_deadline_exceeded`: canary pods not ready for good within progressDeadlineSeconds;
   `promotion_deadline_exceeded`: a promotion whose new stable pods are not all ready within
   progressDeadlineSeconds of its start (stable then goes back to its own revision);
4. `insufficient_data`: no Successful measurement of some metric at the step's weight within
   progressDeadlineSeconds of the step.

The rules of the analysis (2-4) judge only a canary analysed in this reconcile (`Facts.findings`);
the deadlines (3, 4) wait while a user pauses the rollout: analysis goes on, the clocks do not.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime
from typing import NamedTuple

from modeldeploy.api.rollout import AbortReason, MeasurementVerdict, RolloutState
from modeldeploy.canary.counters import Failure
from modeldeploy.canary.inputs import MetricPolicy, Policy, RoleStatus
from modeldeploy.canary.requests import ManualRequest
from modeldeploy.canary.transitions import paused_by_user
from modeldeploy.canary.weights import Split


class Abort(NamedTuple):
    """Why the canary is rolled back: the reason and the sentence that explains it."""

    reason: AbortReason
    message: str


class Findings(NamedTuple):
    """What analysing the canary found in this reconcile.

    `target`: the pods per role of the step's weight; `all_ready`: every canary pod of the step is
    ready; `failures`: the measurements that Failed, in the order they were recorded.
    """

    target: Split
    all_ready: bool
    failures: tuple[Failure, ...] = ()


@dataclasses.dataclass(frozen=True)
class Facts:
    """What the rules judge: the policy, the state with this reconcile's measurements folded in, the
    time, the observed canary Deployment, an accepted abort request for the canary (None: none), and
    the findings of this reconcile's analysis (None: the canary was not analysed)."""

    policy: Policy
    state: RolloutState
    now: datetime
    canary: RoleStatus = dataclasses.field(default_factory=RoleStatus)
    abort_request: ManualRequest | None = None
    findings: Findings | None = None
    stable: RoleStatus = dataclasses.field(default_factory=RoleStatus)


Rule = Callable[[Facts], Abort | None]
MetricRule = Callable[[Facts, MetricPolicy], Abort | None]


def has_evidence(policy: Policy, state: RolloutState, target: Split) -> bool:
    """Whether every metric of the step has a Successful measurement there (a step without canary pods
    needs none; the gate, one of every metric that sends its own requests)."""
    metrics = policy.step_metrics(state.step_index)
    if policy.at_gate(state.step_index) and not metrics:
        return False  # the spec asks for one; nothing judged is never a pass
    return target.canary == 0 or all(state.metric(m.name).successes_at_step >= 1 for m in metrics)


def aborted_by_request(facts: Facts) -> Abort | None:
    """`Aborted`: a user asked to abort the canary."""
    request = facts.abort_request
    if request is None:
        return None
    who = f" by {request.by}" if request.by else ""
    return Abort(AbortReason.ABORTED, f"abort requested{who}")


def metrics_unavailable(facts: Facts, metric: MetricPolicy) -> Abort | None:
    """`MetricsUnavailable`: more provider errors in a row than consecutiveErrorLimit."""
    if facts.findings is None:
        return None
    counters = facts.state.metric(metric.name)
    limit = facts.policy.consecutive_error_limit
    if counters.consecutive_errors <= limit:
        return None
    last = counters.measurements[-1].message if counters.measurements else ""
    return Abort(AbortReason.METRICS_UNAVAILABLE,
                 f"{metric.name}: {counters.consecutive_errors} provider errors in a row, more than "
                 f"consecutiveErrorLimit {limit} (last: {last})")


def analysis_failed(facts: Facts, metric: MetricPolicy) -> Abort | None:
    """`AnalysisFailed`: more Failed measurements than failureLimit; the message quotes the latest failure."""
    if facts.findings is None:
        return None
    counters = facts.state.metric(metric.name)
    limit = facts.policy.failure_limit
    if counters.failed <= limit:
        return None
    detail = next((f.message for f in reversed(facts.findings.failures) if f.metric == metric.name), None)
    if detail is None:
        detail = next((r.message for r in reversed(counters.measurements) if r.verdict is MeasurementVerdict.FAILED),
                      metric.name)
    return Abort(AbortReason.ANALYSIS_FAILED,
                 f"{detail}; {counters.failed} failed measurements, more than failureLimit {limit}")


METRIC_RULES: tuple[MetricRule, ...] = (metrics_unavailable, analysis_failed)
"""The limits of one metric, in order."""


def metric_limits(facts: Facts) -> Abort | None:
    """The first abort of `METRIC_RULES`, metric by metric in the spec's order."""
    for metric in facts.policy.metrics:
        for rule in METRIC_RULES:
            abort = rule(facts, metric)
            if abort is not None:
                return abort
    return None


def progress_deadline_exceeded(facts: Facts) -> Abort | None:
    """`ProgressDeadlineExceeded`: the canary's pods were not ready for good within progressDeadlineSeconds;
    the message quotes why they are not (a waiting reason, the model's last log line)."""
    findings, state = facts.findings, facts.state
    if findings is None or paused_by_user(state):
        return None
    deadline = facts.policy.progress_deadline
    if state.unready_since is None or facts.now - state.unready_since <= deadline:
        return None
    canary = facts.canary
    reason = canary.not_ready_reason or "no reason reported"
    ready = canary.ready_at_revision if canary.revision == state.canary_revision else 0
    return Abort(AbortReason.PROGRESS_DEADLINE_EXCEEDED,
                 f"{ready}/{findings.target.canary} canary pods ready {int(deadline.total_seconds())} s after the "
                 f"step began: {reason}")


def promotion_deadline_exceeded(facts: Facts) -> Abort | None:
    """`ProgressDeadlineExceeded` of a promotion: stable does not serve the canary's revision with every
    pod ready within progressDeadlineSeconds of the promotion's start; the message names how many are
    ready and why the others are not."""
    state, policy = facts.state, facts.policy
    if state.canary_revision is None or not state.promoting or state.promoting_since is None:
        return None
    deadline = policy.progress_deadline
    if facts.now - state.promoting_since <= deadline:
        return None
    stable = facts.stable
    ready = stable.ready_at_revision if stable.revision == state.canary_revision else 0
    if ready >= policy.replicas:
        return None
    reason = stable.not_ready_reason or "no reason reported"
    return Abort(AbortReason.PROGRESS_DEADLINE_EXCEEDED,
                 f"promotion: {ready}/{policy.replicas} stable pods ready at revision {state.canary_revision[:10]} "
                 f"{int(deadline.total_seconds())} s after the promotion began: {reason}")


def insufficient_data(facts: Facts) -> Abort | None:
    """`InsufficientData`: some metric has no Successful measurement at the step's weight within
    progressDeadlineSeconds of the step's start."""
    findings, state, policy = facts.findings, facts.state, facts.policy
    if findings is None or paused_by_user(state) or has_evidence(policy, state, findings.target):
        return None
    started = state.step_started_at
    assert started is not None
    deadline = policy.progress_deadline
    if facts.now - started <= deadline:
        return None
    missing = [m.name for m in policy.step_metrics(state.step_index) if state.metric(m.name).successes_at_step < 1]
    where = ("at the gate (weight 0, no user traffic)" if policy.at_gate(state.step_index)
             else f"at weight {policy.step(state.step_index).weight} %")
    return Abort(AbortReason.INSUFFICIENT_DATA,
                 f"no Successful measurement of {', '.join(missing) or 'a metric that sends its own requests'} "
                 f"{where} within progressDeadlineSeconds {int(deadline.total_seconds())}")


ROLLBACK_RULES: tuple[Rule, ...] = (aborted_by_request, metric_limits, progress_deadline_exceeded,
                                    promotion_deadline_exceeded, insufficient_data)
"""Every rollback rule, in the order they are asked."""


def first_abort(facts: Facts, rules: tuple[Rule, ...] = ROLLBACK_RULES) -> Abort | None:
    """The abort of the first rule in `rules` that aborts (None: the canary goes on)."""
    for rule in rules:
        abort = rule(facts)
        if abort is not None:
            return abort
    return None
