"""The routers by spec.rollout.trafficRouting, and the replicas router: weights as ready-pod ratios behind
the Service."""

from __future__ import annotations

import pytest

from modeldeploy.api.spec import TrafficRouting
from modeldeploy.canary.weights import Split
from modeldeploy.routers import ROUTERS, ReplicasRouter, router_for


def test_the_replicas_routing_gives_the_replicas_router() -> None:
    assert isinstance(router_for(TrafficRouting.REPLICAS), ReplicasRouter)


@pytest.mark.parametrize("kind", list(TrafficRouting))
def test_every_routing_the_spec_accepts_has_a_router(kind: TrafficRouting) -> None:
    assert kind in ROUTERS
    router = router_for(kind)
    assert router.effective_weight(router.target(100, 2)) == 100


def test_a_weight_surges_the_canary_first_and_reports_what_traffic_sees() -> None:
    router = router_for(TrafficRouting.REPLICAS)
    current = Split(stable=4, canary=0)
    asked = router.replicas_for(25, 4, current, ready=current)
    assert asked == Split(stable=4, canary=1)
    assert router.effective_weight(Split(stable=4, canary=1)) == 20
    assert router.replicas_for(25, 4, asked, ready=asked) == Split(stable=3, canary=1)
    assert router.effective_weight(Split(stable=3, canary=1)) == 25


def test_the_replicas_router_targets_the_nearest_ratio_its_pods_allow() -> None:
    router = router_for(TrafficRouting.REPLICAS)
    assert router.target(40, 3) == Split(stable=2, canary=1)
    assert router.target(100, 3) == Split(stable=0, canary=3)
    assert router.effective_weight(router.target(40, 3)) == 33
