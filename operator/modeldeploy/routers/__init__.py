"""Traffic routers: how a canary weight becomes traffic. One module per kind behind `TrafficRouter`."""

from modeldeploy.routers.base import RoleCounts, TrafficRouter
from modeldeploy.routers.factory import router_for
from modeldeploy.routers.replicas import ReplicasRouter

__all__ = ["ReplicasRouter", "RoleCounts", "TrafficRouter", "router_for"]
