"""The replicas router: weights as ready-pod ratios behind the Service, chosen by the factory."""

from __future__ import annotations

from modeldeploy.api.spec import TrafficRouter as RouterKind
from modeldeploy.canary.weights import Split
from modeldeploy.routers import ReplicasRouter, router_for


def test_the_factory_gives_the_replicas_router() -> None:
    assert isinstance(router_for(RouterKind.REPLICAS), ReplicasRouter)


def test_a_weight_surges_the_canary_first_and_reports_what_traffic_sees() -> None:
    router = router_for(RouterKind.REPLICAS)
    current = Split(stable=4, canary=0)
    asked = router.replicas_for(25, 4, current, ready=current)
    assert asked == Split(stable=4, canary=1)
    assert router.effective_weight(Split(stable=4, canary=1)) == 20
    assert router.replicas_for(25, 4, asked, ready=asked) == Split(stable=3, canary=1)
    assert router.effective_weight(Split(stable=3, canary=1)) == 25


def test_the_replicas_router_targets_the_nearest_ratio_its_pods_allow() -> None:
    router = router_for(RouterKind.REPLICAS)
    assert router.target(40, 3) == Split(stable=2, canary=1)
    assert router.target(100, 3) == Split(stable=0, canary=3)
    assert router.effective_weight(router.target(40, 3)) == 33
