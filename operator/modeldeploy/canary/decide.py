"""`decide`: every rule of a canary rollout, as one pure function.

    decision = decide(policy, state, observations, now)

The reconcile step gathers the observations (the two Deployments' revisions, replica counts and
ready pods; the measurements that were due; the manual request annotation), calls `decide`, and
applies the decision: replica counts and revisions per role, `status.rollout = state.to_dict()`,
the phase, the Events, and a requeue. Nothing here reads a clock, the API or the network.

`decide` only orchestrates; the rules live beside it: following the spec and the steps
(progress.py), manual requests (manual.py), folding measurements into counters (counters.py), the
rollback rules (rules.py), the state transitions (transitions.py), the measurements due and the
requeue (schedule.py), the Deployments and the phase (outcome.py).

Idempotent: the same inputs give the same decision; a decision's state fed back with the same
observations changes nothing and posts no Event (measurements already recorded are recognised by
their time, a handled request by its action, revision and time).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from modeldeploy.api.conditions import Phase
from modeldeploy.api.events import Event
from modeldeploy.api.rollout import RolloutState, stamp
from modeldeploy.canary.inputs import Measurement, MetricPolicy, Observations, Policy, RoleStatus
from modeldeploy.canary.manual import apply_request
from modeldeploy.canary.outcome import RoleTarget, phase_report, role_targets
from modeldeploy.canary.progress import advance, analyse, drained_weight, finish_promotion, follow_spec
from modeldeploy.canary.rules import Facts, Findings, first_abort
from modeldeploy.canary.schedule import MeasurementDue, due_metrics, next_measurements, requeue_after
from modeldeploy.canary.transitions import Changed, rolled_back

__all__ = [
    "Decision",
    "Event",
    "Measurement",
    "MeasurementDue",
    "MetricPolicy",
    "Observations",
    "Policy",
    "RoleStatus",
    "RoleTarget",
    "decide",
    "due_metrics",
    "next_measurements",
]


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


def decide(policy: Policy, state: RolloutState, observations: Observations, now: datetime) -> Decision:
    """Every rule of the rollout: given the policy, the stored state, what was observed and the time,
    the new state, the desired roles, the phase and the Events."""
    now = stamp(now)
    events: list[Event] = []

    def apply(change: Changed) -> RolloutState:
        events.extend(change.events)
        return change.state

    state = apply(follow_spec(policy, state, observations.stable, now))
    requested = apply_request(policy, state, observations, now)
    state = apply(Changed(requested.state, requested.events))
    findings: Findings | None = None
    if state.canary_revision is not None and not state.promoting and requested.abort is None:
        state, findings = analyse(policy, state, observations, now)
    if state.promoting and state.promoting_since is None:
        # A promotion begun before promotions kept their start: its deadline counts from now.
        state = dataclasses.replace(state, promoting_since=now)
    abort = first_abort(Facts(policy, state, now, observations.canary, requested.abort, findings,
                              stable=observations.stable))
    if abort is not None:
        state = apply(rolled_back(state, abort.reason, abort.message, now))
    elif findings is not None:
        state = apply(advance(policy, state, findings, now))
    if state.canary_revision is not None and state.promoting:
        state = apply(finish_promotion(policy, state, observations.stable))
    if state.canary_revision is None or state.promoting:
        state = drained_weight(policy, state, observations)
    targets = role_targets(policy, state, observations)
    report = phase_report(policy, state, targets.moving)
    return Decision(state=state, stable=targets.stable, canary=targets.canary, phase=report.phase,
                    message=report.message, events=tuple(events),
                    requeue_after=requeue_after(policy, state, now, targets.moving))
