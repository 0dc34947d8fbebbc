"""What the canary engine's unit tests build from: one clock, three revisions, the error-rate metric and
the four-replica policy on the replicas router (each test passes only what it changes)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from modeldeploy.api.spec import RolloutStep
from modeldeploy.canary.decide import MetricPolicy, Policy
from modeldeploy.canary.verdicts import Bounds
from modeldeploy.routers import ReplicasRouter

T0 = datetime(2026, 11, 26, 2, 0, 0, tzinfo=UTC)
"""The engine's clock at the start of every scenario."""

V1, V2, V3 = "aaaaaaaaaa", "bbbbbbbbbb", "cccccccccc"
"""Three revisions, in the order they are applied."""

ERROR_RATE = MetricPolicy("error-rate", Bounds(max=0.01))
"""The default metric: at most 1 % of requests answered with an error."""


def policy(revision: str, steps: Sequence[RolloutStep], *, metrics: Sequence[MetricPolicy] = (ERROR_RATE,),
           **changes: Any) -> Policy:
    """The canary policy of `revision` over four replicas, routed by the replicas router."""
    return Policy(revision=revision, replicas=4, steps=tuple(steps), metrics=tuple(metrics),
                  router=ReplicasRouter(), **changes)
