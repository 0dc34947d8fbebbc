"""Traffic routers: how a canary weight becomes traffic. One module per kind behind `TrafficRouter`,
chosen by `router_for` from the `ROUTERS` table by spec.rollout.trafficRouting."""

from modeldeploy.routers.base import RoleCounts, TrafficRouter
from modeldeploy.routers.factory import ROUTERS, router_for
from modeldeploy.routers.replicas import ReplicasRouter

__all__ = ["ROUTERS", "ReplicasRouter", "RoleCounts", "TrafficRouter", "router_for"]
