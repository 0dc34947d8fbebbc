"""Steps, weights and replica counts: how a canary weight becomes pods when the split is by replicas.

Without a mesh, the Service `NAME` selects the pods of both roles and kube-proxy spreads
connections evenly over the ready ones, so the canary's share of traffic is its share of the
ready pods (Argo Rollouts does the same without a traffic router).

Rounding: at weight w of `replicas` R, the canary gets round(R * w / 100) pods (halves round up)
and stable the rest, R in all, so the effective weight is the nearest ratio R pods allow (Argo
rounds the canary up instead, which can overshoot: R=3 at 40 % is 2/3 = 67 % by ceiling, 1/3 = 33 %
by nearest). Two clamps keep a step meaningful: any weight above 0 gets at least one canary pod
(else nothing can be measured), any weight below 100 keeps at least one stable pod (else it is
not a canary). With R = 1 both cannot hold within R pods: a step between 0 and 100 then runs one
stable and one canary pod (one extra pod, 50 %).

Capacity: a role shrinks only by as many pods as the other role has ready, so at least R pods
stay ready through every step, promotion and rollback, and the pods in all never exceed 2R.
"""

from __future__ import annotations

import dataclasses

from modeldeploy.api.spec import RolloutStep


@dataclasses.dataclass(frozen=True)
class Split:
    """Pods per role."""

    stable: int
    canary: int

    @property
    def weight(self) -> int:
        """The canary's share of these pods, in whole percent (0 without pods)."""
        return effective_weight(self.stable, self.canary)


def current_step(steps: tuple[RolloutStep, ...], index: int) -> RolloutStep:
    """The step at `index`, clamped to the last one (a shorter spec cannot point past its end)."""
    return steps[min(max(index, 0), len(steps) - 1)]


def is_last_step(steps: tuple[RolloutStep, ...], index: int) -> bool:
    """Whether `index` is the final step (weight 100: the promotion)."""
    return index >= len(steps) - 1


def target_split(weight: int, replicas: int) -> Split:
    """The pods per role that serve `weight` percent to the canary once everything is ready."""
    if not 0 <= weight <= 100:
        raise ValueError(f"weight {weight} must lie within 0..100")
    if replicas < 1:
        raise ValueError(f"replicas {replicas} must be at least 1")
    if weight == 0:
        return Split(stable=replicas, canary=0)
    if weight == 100:
        return Split(stable=0, canary=replicas)
    if replicas == 1:
        return Split(stable=1, canary=1)
    canary = (replicas * weight * 2 + 100) // 200  # round half up, in integers
    canary = min(max(canary, 1), replicas - 1)
    return Split(stable=replicas - canary, canary=canary)


def desired_replicas(target: Split, current: Split, ready: Split, replicas: int) -> Split:
    """Replica counts to ask for now, on the way from `current` to `target`, keeping capacity.

    A role grows to its target at once (surge, bounded by `replicas` per role); it shrinks only
    to what the other role's ready pods leave necessary, so ready pods never fall below
    `replicas` because of us.
    """
    stable = max(target.stable, min(current.stable, replicas - ready.canary))
    canary = max(target.canary, min(current.canary, replicas - ready.stable))
    return Split(stable=min(max(stable, 0), replicas), canary=min(max(canary, 0), replicas))


def effective_weight(ready_stable: int, ready_canary: int) -> int:
    """What traffic sees: ready canary pods over all ready pods, in whole percent (half up)."""
    total = ready_stable + ready_canary
    if total <= 0:
        return 0
    return (ready_canary * 200 + total) // (2 * total)
