"""How a rollout moves on its own: following the spec, analysing the canary, advancing its steps,
finishing a promotion, and the weight traffic sees while no canary is judged."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import NamedTuple

from modeldeploy.api.events import Event, EventReason
from modeldeploy.api.rollout import Pause, PauseReason, RolloutState
from modeldeploy.canary.counters import record
from modeldeploy.canary.inputs import Observations, Policy, RoleStatus
from modeldeploy.canary.rules import Findings, has_evidence
from modeldeploy.canary.transitions import (
    Changed,
    begin_promotion,
    cancelled,
    enter_step,
    paused_by_user,
    promoted,
    short,
    start_canary,
)
from modeldeploy.canary.weights import Split


class Analysed(NamedTuple):
    """The state with the canary's readiness tracked and the new measurements folded in, and what was found."""

    state: RolloutState
    findings: Findings


class Watched(NamedTuple):
    """The state with the canary's readiness and the effective weight tracked; whether it is all ready."""

    state: RolloutState
    all_ready: bool


def follow_spec(policy: Policy, state: RolloutState, stable: RoleStatus, now: datetime) -> Changed:
    """The revision the spec asks for against the one serving (`stable`, as observed) and the one on trial."""
    revision = policy.revision
    if state.stable_revision is None:
        if stable.revision is None or stable.revision == revision or stable.ready_at_revision == 0:
            # The first revision of an object: nothing to compare with.
            return Changed(dataclasses.replace(state, stable_revision=revision))
        # No rollout state, but stable pods serve another revision (status lost, or an object
        # served before canaries existed): they are the stable, and the spec's revision a canary.
        state = dataclasses.replace(state, stable_revision=stable.revision)
    if state.canary_revision is not None and revision != state.canary_revision:
        if revision == state.stable_revision:
            return cancelled(state)
        return start_canary(policy, state, revision,
                            f"spec changed during the canary of {short(state.canary_revision)}", now)
    if state.canary_revision is None and revision != state.stable_revision:
        if state.aborted is not None and state.aborted.revision == revision:
            return Changed(state)  # rolled back: not retried until the spec changes or a user retries
        return start_canary(policy, state, revision, "new revision", now)
    if revision == state.stable_revision and state.aborted is not None and state.canary_revision is None:
        return Changed(dataclasses.replace(state, aborted=None))
    return Changed(state)


def watch_pods(policy: Policy, state: RolloutState, observations: Observations, target: Split,
               now: datetime) -> Watched:
    """Track the canary's readiness and the effective weight."""
    obs = observations
    canary_ready = obs.canary.ready_at_revision if obs.canary.revision == state.canary_revision else 0
    if policy.at_gate(state.step_index) and obs.canary.revision == state.canary_revision:
        canary_ready += obs.canary.held  # loaded, and behind no Service as the gate wants
    weight = policy.router.effective_weight(Split(stable=obs.stable.ready, canary=obs.canary.ready))
    if weight != state.effective_weight or (state.weight_since is None and canary_ready):
        state = dataclasses.replace(state, effective_weight=weight, weight_since=now)
    all_ready = canary_ready >= target.canary
    if all_ready:
        ready_since = state.ready_since or now
        # Ready for good only after a whole interval: a pod ready for a moment resets nothing.
        settled = now - ready_since >= policy.interval
        state = dataclasses.replace(state, ready_since=ready_since,
                                    unready_since=None if settled else state.unready_since)
    else:
        state = dataclasses.replace(state, ready_since=None, unready_since=state.unready_since or now)
    return Watched(state, all_ready)


def analyse(policy: Policy, state: RolloutState, observations: Observations, now: datetime) -> Analysed:
    """The canary's pods and the measurements taken, folded into the state for the rollback rules."""
    target = policy.step_target(state.step_index)
    watched = watch_pods(policy, state, observations, target, now)
    # what traffic sees once the step's pods are ready
    recorded = record(policy, watched.state, observations.measurements, all_ready=watched.all_ready,
                      served=policy.served_weight(state.step_index))
    return Analysed(dataclasses.replace(watched.state, metrics=recorded.metrics),
                    Findings(target, watched.all_ready, recorded.failures))


def advance(policy: Policy, state: RolloutState, findings: Findings, now: datetime) -> Changed:
    """A canary the rules let go on: wait for a promote request at a step without a pause, or move to
    the next step (or the promotion) once every pod is ready, every metric has its evidence and the
    step's pause is over. The gate moves on its evidence (and its pause, if any) without a request.
    A user's pause holds the steps."""
    if paused_by_user(state):
        return Changed(state)
    step = policy.step(state.step_index)
    started = state.step_started_at
    assert started is not None
    label = policy.step_label(state.step_index)
    if step.pause is None and not policy.is_last(state.step_index) and not policy.at_gate(state.step_index):
        if state.pause is not None:
            return Changed(state)
        waiting = dataclasses.replace(state, pause=Pause(PauseReason.STEP, started))
        return Changed(waiting, (Event("Normal", EventReason.PAUSED,
                                       f"revision {short(state.canary_revision)}: {label} waits for a promote "
                                       "request"),))
    evidence = has_evidence(policy, state, findings.target)
    if not (findings.all_ready and evidence and now >= started + (step.pause or timedelta(0))):
        return Changed(state)
    if policy.is_last(state.step_index):
        return begin_promotion(state, f"{label} passed", now)
    return enter_step(policy, state, state.step_index + 1, now)


def finish_promotion(policy: Policy, state: RolloutState, stable: RoleStatus) -> Changed:
    """A promotion ends once stable serves the canary revision, ready at full size."""
    if stable.revision == state.canary_revision and stable.ready_at_revision >= policy.replicas:
        return promoted(state)
    return Changed(state)


def drained_weight(policy: Policy, state: RolloutState, observations: Observations) -> RolloutState:
    """What traffic sees while no canary is judged (a rollback or a promotion draining the canary)."""
    weight = policy.router.effective_weight(Split(stable=observations.stable.ready, canary=observations.canary.ready))
    if weight == state.effective_weight:
        return state
    return dataclasses.replace(state, effective_weight=weight)
