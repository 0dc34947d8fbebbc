"""What the rules ask of a traffic router: pods per role for a weight, and what traffic sees.

The protocol lives beside the rules that call it; the routers (modeldeploy.routers, one module per
kind, chosen by a factory from spec.rollout.trafficRouting) implement it, and the reconcile step
hands the chosen one to `decide` in its Policy.
"""

from __future__ import annotations

from typing import Protocol

from modeldeploy.canary.weights import Split


class TrafficRouter(Protocol):
    """Turns a canary weight into what the cluster must run, and says what traffic really sees.

    `target` answers the pods per role once a weight is fully served; `replicas_for` the replica
    counts to ask for now, on the way to `weight`, given the counts asked so far and the ready pods
    (capacity is the router's to keep); `effective_weight` the canary's share of traffic in percent
    given the ready pods. A router that splits traffic in a mesh or a gateway also writes its routes;
    the replicas router writes nothing: the Service `NAME` selects both roles.
    """

    def target(self, weight: int, replicas: int) -> Split:
        """Pods per role once `weight` percent is served with `replicas` pods."""
        ...

    def replicas_for(self, weight: int, replicas: int, current: Split, ready: Split) -> Split:
        """Replica counts per role to apply now."""
        ...

    def effective_weight(self, ready: Split) -> int:
        """The canary's share of traffic (percent) given the ready pods."""
        ...
