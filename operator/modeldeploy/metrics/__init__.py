"""Metric providers: where the canary's measurements come from.

A `MetricProvider` measures one metric of one ModelDeployment over a window and answers a
`modeldeploy.canary.Measurement`; `provider_for` picks the module by the metric's provider kind
(`torchserve`: the pods' own counters; `prometheus`: a PromQL query).
"""

from modeldeploy.metrics.base import MetricProvider, Pod, ProviderError, Role, Target
from modeldeploy.metrics.factory import provider_for, provider_kind
from modeldeploy.metrics.prometheus import PrometheusMetrics

__all__ = [
    "MetricProvider",
    "Pod",
    "PrometheusMetrics",
    "ProviderError",
    "Role",
    "Target",
    "provider_for",
    "provider_kind",
]
