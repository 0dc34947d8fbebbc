"""Metric providers: where the canary's measurements come from.

A `MetricProvider` measures one metric of one ModelDeployment over a window and answers a
`modeldeploy.canary.Measurement`; `provider_for` picks the module by the metric's provider kind
(`torchserve` today; `prometheus` is the next one).
"""

from modeldeploy.metrics.base import MetricProvider, Pod, ProviderError, Role, Target
from modeldeploy.metrics.factory import ProviderUnavailable, provider_for

__all__ = ["MetricProvider", "Pod", "ProviderError", "ProviderUnavailable", "Role", "Target", "provider_for"]
