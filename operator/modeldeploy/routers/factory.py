"""Choose the traffic router named in spec.rollout.trafficRouting."""

from __future__ import annotations

from modeldeploy.api.spec import TrafficRouter as RouterKind
from modeldeploy.routers.base import TrafficRouter
from modeldeploy.routers.replicas import ReplicasRouter


def router_for(kind: RouterKind) -> TrafficRouter:
    """The router of `kind` (only `replicas` so far; Gateway API and Istio will be one module each)."""
    if kind is RouterKind.REPLICAS:
        return ReplicasRouter()
    raise ValueError(f"traffic router {kind!r} is not supported")
