"""The traffic router protocol."""

from __future__ import annotations

from typing import Protocol

from modeldeploy.canary.weights import Split

RoleCounts = Split
"""Pods per role (stable, canary)."""


class TrafficRouter(Protocol):
    """Turns a canary weight into what the cluster must run, and says what traffic really sees.

    `replicas_for` answers the replica counts per role to ask for now, on the way to `weight`,
    given the counts asked so far and the ready pods (capacity is the router's to keep);
    `effective_weight` the canary's share of traffic in percent from the ready pods.
    A router that splits traffic in a mesh or a gateway would also write its routes; the replicas
    router writes nothing: the Service `NAME` selects both roles.
    """

    def replicas_for(self, weight: int, replicas: int, current: RoleCounts, ready: RoleCounts) -> RoleCounts:
        """Replica counts per role to apply now."""
        ...

    def effective_weight(self, ready: RoleCounts) -> int:
        """The canary's share of traffic (percent) given the ready pods."""
        ...
