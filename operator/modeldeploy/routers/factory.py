"""The traffic routers by the kind spec.rollout.trafficRouting names: one table entry per router module."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from modeldeploy.api.spec import TrafficRouting
from modeldeploy.routers.base import TrafficRouter
from modeldeploy.routers.replicas import ReplicasRouter

ROUTERS: Mapping[TrafficRouting, Callable[[], TrafficRouter]] = {
    TrafficRouting.REPLICAS: ReplicasRouter,
}
"""Each routing kind of the spec -> how to build its router. A new router (Gateway API, Istio) is one
module, one `TrafficRouting` member with its CRD schema, and one entry here."""


def router_for(kind: TrafficRouting) -> TrafficRouter:
    """The router of `kind`; ValueError naming the supported kinds when none is registered for it."""
    build = ROUTERS.get(kind)
    if build is None:
        supported = ", ".join(sorted(str(known) for known in ROUTERS))
        raise ValueError(f"traffic router {kind!r} is not supported (supported: {supported})")
    return build()
