"""Choose the metric provider by a metric's provider kind."""

from __future__ import annotations

from modeldeploy.api.spec import Metric, PrometheusProvider, TorchServeProvider
from modeldeploy.metrics.base import MetricProvider


def provider_kind(metric: Metric) -> str:
    """The metric's provider kind as the spec names it (`torchserve`, `prometheus`)."""
    if isinstance(metric.provider, TorchServeProvider):
        return "torchserve"
    if isinstance(metric.provider, PrometheusProvider):
        return "prometheus"
    raise TypeError(f"unknown metric provider {metric.provider!r}")


def provider_for(metric: Metric, torchserve: MetricProvider | None,
                 prometheus: MetricProvider | None) -> MetricProvider | None:
    """The provider of `metric`: the engine's long-lived TorchServe scraper (it keeps baselines) or its
    Prometheus client, both kept for the operator's lifetime; None when the engine was given none of that kind."""
    return torchserve if provider_kind(metric) == "torchserve" else prometheus
