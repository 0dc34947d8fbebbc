"""Metric providers: where the canary's measurements come from.

A `MetricProvider` measures one metric of one ModelDeployment over a window and answers a
`modeldeploy.canary.Measurement`; the operator builds one per kind (`build_providers`) and
`Providers.for_metric` picks the one of a metric's provider kind (`torchserve`: the pods' own
counters; `prometheus`: a PromQL query).
"""

from modeldeploy.metrics.base import MetricProvider, Pod, ProviderError, ReadSecret, Target
from modeldeploy.metrics.prometheus import PrometheusMetrics
from modeldeploy.metrics.registry import BUILDERS, OperatorAccess, Providers, UnknownProviderKind, build_providers
from modeldeploy.metrics.torchserve import TorchServeMetrics

__all__ = [
    "BUILDERS",
    "MetricProvider",
    "OperatorAccess",
    "Pod",
    "PrometheusMetrics",
    "ProviderError",
    "Providers",
    "ReadSecret",
    "Target",
    "TorchServeMetrics",
    "UnknownProviderKind",
    "build_providers",
]
