"""The provider protocol and what a provider is asked to measure."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Protocol

from modeldeploy.api.revision import Role
from modeldeploy.api.spec import Metric
from modeldeploy.canary.decide import Measurement


class ProviderError(Exception):
    """The provider refused, timed out or answered garbage: an Error verdict, never a pass."""


ReadSecret = Callable[[str, str], Awaitable[Mapping[str, bytes]]]
"""(namespace, name) -> the Secret's data, decoded; raises ProviderError naming why it cannot be read."""


@dataclasses.dataclass(frozen=True)
class Pod:
    """A serving pod to measure: its identity (a restarted container keeps it, a new pod does not)."""

    name: str
    uid: str
    ip: str
    role: Role


@dataclasses.dataclass(frozen=True)
class Target:
    """What to measure: a ModelDeployment's pods and how to reach their metrics.

    `canary_revision` is the revision on trial (a Prometheus query's `{{revision}}`).
    """

    namespace: str
    name: str
    model_name: str
    pods: tuple[Pod, ...]
    metrics_port: int = 8082
    canary_revision: str | None = None


class MetricProvider(Protocol):
    """Measures one metric over [window_start, now]; one per kind, kept for the operator's lifetime.

    `kind` is the key under a metric's `provider` in the spec that it measures (the `kind` of that
    provider's spec, such as `torchserve`). `measure` answers a Measurement with the canary's (and,
    when known, stable's) Sample; with `error` set when the source failed (never raises for that);
    with neither when it could only begin a window now (no baseline yet). Calling it twice for the
    same window must not double-count. `close` releases what it holds (HTTP sessions) at shutdown.
    """

    @property
    def kind(self) -> str:
        """The provider kind of the metrics it measures."""
        ...

    async def measure(self, metric: Metric, target: Target, window_start: datetime, now: datetime) -> Measurement:
        """Measure `metric` for `target` over the window ending `now`."""
        ...

    async def close(self) -> None:
        """Release its connections (on operator shutdown)."""
        ...
