"""What a decided state asks of the cluster and tells the user: the Deployment per role, the phase.

    targets = role_targets(policy, state, observations)
    report = phase_report(policy, state, targets.moving)
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

from modeldeploy.api.conditions import Phase
from modeldeploy.api.rollout import PauseReason, RolloutState
from modeldeploy.canary.inputs import Observations, Policy
from modeldeploy.canary.transitions import short
from modeldeploy.canary.weights import Split


@dataclasses.dataclass(frozen=True)
class RoleTarget:
    """What one role's Deployment must be: the revision its pods serve and how many."""

    revision: str
    replicas: int


class Targets(NamedTuple):
    """The Deployment per role (`canary` None: none needs to exist), and whether pods are still moving."""

    stable: RoleTarget
    canary: RoleTarget | None
    moving: bool


class PhaseReport(NamedTuple):
    """The phase and the sentence that says where the rollout stands."""

    phase: Phase
    message: str


def role_targets(policy: Policy, state: RolloutState, observations: Observations) -> Targets:
    """The desired Deployments per role for `state`, given the ones observed."""
    obs = observations
    assert state.stable_revision is not None
    current = Split(stable=obs.stable.replicas, canary=obs.canary.replicas)
    ready = Split(stable=obs.stable.ready if obs.stable.revision == state.stable_revision else 0,
                  canary=obs.canary.ready)
    if state.canary_revision is not None and state.promoting:
        stable = RoleTarget(state.canary_revision, policy.replicas)
        canary = RoleTarget(state.canary_revision, max(obs.canary.replicas, 0))
        return Targets(stable, canary if canary.replicas else None, True)
    if state.canary_revision is not None:
        target = policy.step_target(state.step_index)
        split = policy.step_replicas(state.step_index, current, ready)
        moving = split != current or ready != target
        stable = RoleTarget(state.stable_revision, split.stable)
        return Targets(stable, RoleTarget(state.canary_revision, split.canary), moving)
    split = policy.router.replicas_for(0, policy.replicas, current, ready)
    stable = RoleTarget(state.stable_revision, split.stable)
    moving = (split != current or obs.canary.replicas > 0 or obs.canary.ready > 0
              or obs.stable.revision != state.stable_revision or obs.stable.ready_at_revision < policy.replicas)
    if obs.canary.revision is None or (split.canary == 0 and obs.canary.replicas == 0 and obs.canary.ready == 0):
        return Targets(stable, None, moving)
    return Targets(stable, RoleTarget(obs.canary.revision, split.canary), moving)


def phase_report(policy: Policy, state: RolloutState, moving: bool) -> PhaseReport:
    """The phase of `state` and its message (`moving`: pods are still being replaced)."""
    if state.canary_revision is not None:
        label = policy.step_label(state.step_index)
        if state.promoting:
            return PhaseReport(Phase.PROGRESSING, f"promoting revision {short(state.canary_revision)}")
        if state.pause is not None:
            why = "paused by a user" if state.pause.reason is PauseReason.USER else "waiting for a promote request"
            return PhaseReport(Phase.PAUSED, f"canary {short(state.canary_revision)} at {label}, {why}")
        if policy.at_gate(state.step_index):
            return PhaseReport(Phase.PROGRESSING,
                               f"canary {short(state.canary_revision)} at the gate ({label}): judged on its own "
                               f"requests, no user traffic")
        return PhaseReport(Phase.PROGRESSING,
                           f"canary {short(state.canary_revision)} at {label}, weight {state.weight} % "
                           f"(effective {state.effective_weight} %)")
    if state.aborted is not None and state.aborted.revision == policy.revision:
        if moving:
            return PhaseReport(Phase.DEGRADED,
                               f"rolling back to {short(state.stable_revision)}: {state.aborted.message}")
        return PhaseReport(Phase.ROLLED_BACK,
                           f"revision {short(state.aborted.revision)} rolled back ({state.aborted.reason.value}): "
                           f"{state.aborted.message}")
    if moving:
        return PhaseReport(Phase.PROGRESSING, f"bringing stable revision {short(state.stable_revision)} to full size")
    return PhaseReport(Phase.HEALTHY, f"revision {short(state.stable_revision)} serves at full size")
