"""The `replicas` router: mesh-free, the split is the ratio of ready pods behind the Service NAME.

kube-proxy balances connections evenly over the ready endpoints of `NAME`, which selects the pods
of both roles, so a weight is a number of pods (see modeldeploy.canary.weights for the rounding
and the capacity rule).
"""

from __future__ import annotations

import dataclasses

from modeldeploy.canary.weights import Split, desired_replicas, effective_weight, target_split


@dataclasses.dataclass(frozen=True)
class ReplicasRouter:
    """Weights as ready-pod ratios."""

    def target(self, weight: int, replicas: int) -> Split:
        """The canary's share of `replicas` pods, rounded to the nearest ratio they allow."""
        return target_split(weight, replicas)

    def replicas_for(self, weight: int, replicas: int, current: Split, ready: Split) -> Split:
        """Replica counts per role now, on the way to `weight`, never below `replicas` ready pods."""
        return desired_replicas(target_split(weight, replicas), current, ready, replicas)

    def effective_weight(self, ready: Split) -> int:
        """Ready canary pods over all ready pods, in percent."""
        return effective_weight(ready.stable, ready.canary)
