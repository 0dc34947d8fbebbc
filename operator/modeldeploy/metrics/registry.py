"""The operator's metric providers: one per kind, built once from one table, chosen by a metric's kind.

`BUILDERS` is the one construction point: each entry builds one provider from what the operator
offers (`OperatorAccess`). `Providers` holds what they built for the operator's lifetime (the
torchserve scraper keeps per-pod baselines there), picks the provider of a metric by its spec's
kind, and closes them all at shutdown.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping

from modeldeploy.api.spec import Metric
from modeldeploy.metrics.base import MetricProvider, ProviderError, ProviderJobs, ReadSecret
from modeldeploy.metrics.golden_set import GoldenSetMetrics
from modeldeploy.metrics.prometheus import PrometheusMetrics
from modeldeploy.metrics.torchserve import TorchServeMetrics
from modeldeploy.settings import OperatorIdentity


class UnknownProviderKind(LookupError):
    """No provider of a metric's kind in this operator."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        super().__init__(f"no {kind} metric provider in this operator")


class Providers:
    """The operator's metric providers by kind (at most one per kind)."""

    def __init__(self, providers: Iterable[MetricProvider] = ()) -> None:
        by_kind: dict[str, MetricProvider] = {}
        for provider in providers:
            if provider.kind in by_kind:
                raise ValueError(f"two metric providers of kind {provider.kind}: "
                                 f"{by_kind[provider.kind]!r} and {provider!r}")
            by_kind[provider.kind] = provider
        self._by_kind: Mapping[str, MetricProvider] = by_kind

    @property
    def kinds(self) -> tuple[str, ...]:
        """The provider kinds this operator can measure."""
        return tuple(self._by_kind)

    def for_metric(self, metric: Metric) -> MetricProvider:
        """The provider of `metric`'s kind; UnknownProviderKind naming the kind when there is none."""
        provider = self._by_kind.get(metric.provider.kind)
        if provider is None:
            raise UnknownProviderKind(metric.provider.kind)
        return provider

    async def close(self) -> None:
        """Close every provider; each one is asked even when an earlier one fails, then the first failure is raised."""
        failures: list[Exception] = []
        for provider in self._by_kind.values():
            try:
                await provider.close()
            except Exception as error:  # the others are still closed, then it is raised
                failures.append(error)
        if failures:
            raise failures[0]


@dataclasses.dataclass(frozen=True)
class OperatorAccess:
    """What the operator offers the providers it builds."""

    read_secret: ReadSecret | None = None
    """Reads a Secret of a ModelDeployment's namespace (a provider's credentials); None: no Secret access."""
    jobs: ProviderJobs | None = None
    """Runs a provider's Jobs in a ModelDeployment's namespace; None: no Job access."""
    operator: OperatorIdentity = dataclasses.field(default_factory=OperatorIdentity)
    """The image and user a provider's Jobs run the operator's code with."""


class NoJobs:
    """Job access of an operator that offers none: every measurement that needs a Job is an error."""

    async def create(self, manifest: object) -> None:
        raise ProviderError("this operator runs no provider Jobs")

    async def outcome(self, namespace: str, name: str) -> None:
        raise ProviderError("this operator runs no provider Jobs")

    async def delete(self, namespace: str, name: str) -> None:
        raise ProviderError("this operator runs no provider Jobs")


BUILDERS: tuple[Callable[[OperatorAccess], MetricProvider], ...] = (
    lambda access: TorchServeMetrics(),
    lambda access: PrometheusMetrics(read_secret=access.read_secret),
    lambda access: GoldenSetMetrics(access.jobs or NoJobs(), access.operator),
)
"""One entry per provider kind: how the operator builds it. A new kind is one module and one entry here
(and one parser entry in modeldeploy.api.spec.PROVIDER_PARSERS, and its CRD schema)."""


def build_providers(access: OperatorAccess) -> Providers:
    """Every provider of `BUILDERS`, built once for the operator's lifetime."""
    return Providers(build(access) for build in BUILDERS)
