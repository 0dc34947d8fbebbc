"""Choose the metric provider by a metric's provider kind."""

from __future__ import annotations

from datetime import datetime

from modeldeploy.api.spec import Metric, PrometheusProvider, TorchServeProvider
from modeldeploy.canary.decide import Measurement
from modeldeploy.metrics.base import MetricProvider, Target
from modeldeploy.metrics.prometheus import PrometheusMetrics
from modeldeploy.metrics.torchserve import TorchServeMetrics


class ProviderUnavailable:
    """A provider kind the spec accepts but this operator cannot query yet: every measurement is an Error."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    async def measure(self, metric: Metric, target: Target, window_start: datetime, now: datetime) -> Measurement:
        """An Error measurement naming the missing provider (never a pass)."""
        return Measurement(metric=metric.name, at=now, window_start=window_start,
                           error=f"the {self.kind} metric provider is not available yet in this operator")


def provider_for(metric: Metric, torchserve: TorchServeMetrics,
                 prometheus: PrometheusMetrics | None = None) -> MetricProvider:
    """The provider of `metric`; `torchserve` is the engine's long-lived TorchServe scraper (it keeps baselines),
    `prometheus` its Prometheus client (None: prometheus metrics are Errors, naming why)."""
    if isinstance(metric.provider, TorchServeProvider):
        return torchserve
    if isinstance(metric.provider, PrometheusProvider):
        return prometheus if prometheus is not None else ProviderUnavailable("prometheus")
    raise TypeError(f"unknown metric provider {metric.provider!r}")
