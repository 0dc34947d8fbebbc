"""The provider protocol and what a provider is asked to measure."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

from modeldeploy.api.revision import Role
from modeldeploy.api.spec import Metric, ModelDeployment
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

    `canary_revision` is the revision on trial (a Prometheus query's `{{revision}}`); `deployment`
    the ModelDeployment itself, for providers that create objects on its behalf (a golden-set Job).
    """

    namespace: str
    name: str
    model_name: str
    pods: tuple[Pod, ...]
    metrics_port: int = 8082
    canary_revision: str | None = None
    deployment: ModelDeployment | None = None


@dataclasses.dataclass(frozen=True)
class JobOutcome:
    """How a provider's Job stands: still going, or finished (failed: why) with its pod's last log line."""

    finished: bool = False
    failure: str = ""
    last_line: str = ""


class ProviderJobs(Protocol):
    """The Jobs a provider runs in a ModelDeployment's namespace (implemented over the API in k8s/)."""

    async def create(self, manifest: Mapping[str, Any]) -> None:
        """Create the Job unless one of its name exists; ProviderError naming why it cannot."""
        ...

    async def outcome(self, namespace: str, name: str) -> JobOutcome | None:
        """The Job's outcome so far; None when there is no such Job."""
        ...

    async def delete(self, namespace: str, name: str) -> None:
        """Delete the Job and its pods (gone already is fine)."""
        ...


class MetricProvider(Protocol):
    """Measures one metric over [window_start, now]; one per kind, kept for the operator's lifetime.

    `kind` is the key under a metric's `provider` in the spec that it measures (the `kind` of that
    provider's spec, such as `torchserve`). `measure` answers a Measurement with the canary's (and,
    when known, stable's) Sample; with `error` set when the source failed (never raises for that);
    with neither when it could only begin a window now (no baseline yet); `pending` while a
    measurement it started is still running (asked again soon, same window). Calling it twice for the
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
