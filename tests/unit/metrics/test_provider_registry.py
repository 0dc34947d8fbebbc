"""The operator's metric providers: one per kind from one table, chosen by a metric's kind, closed together."""

from __future__ import annotations

import asyncio
from datetime import datetime

import aiohttp
import pytest

from modeldeploy.api.spec import PROVIDER_PARSERS, Metric, PrometheusProvider, TorchServeMetric, TorchServeProvider
from modeldeploy.canary.decide import Measurement
from modeldeploy.metrics import (
    OperatorAccess,
    PrometheusMetrics,
    Providers,
    Target,
    TorchServeMetrics,
    UnknownProviderKind,
    build_providers,
)

ERROR_RATE = Metric("error-rate", TorchServeProvider(TorchServeMetric.ERROR_RATE), max=0.01)
P99 = Metric("p99", PrometheusProvider("http://prometheus:9090", "histogram_quantile(...)"), max=250)


class SessionProvider:
    """A provider of its own kind holding a real HTTP session, as the operator's providers do."""

    def __init__(self, kind: str, *, fails_to_close: bool = False) -> None:
        self.kind = kind
        self.fails_to_close = fails_to_close
        self.session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        self.session = aiohttp.ClientSession()

    async def measure(self, metric: Metric, target: Target, window_start: datetime, now: datetime) -> Measurement:
        return Measurement(metric=metric.name, at=now, window_start=window_start, error="measures nothing")

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
        if self.fails_to_close:
            raise RuntimeError(f"{self.kind} could not close")


def test_each_metric_gets_the_provider_of_its_kind() -> None:
    providers = build_providers(OperatorAccess())

    torchserve, prometheus = providers.for_metric(ERROR_RATE), providers.for_metric(P99)
    assert isinstance(torchserve, TorchServeMetrics) and torchserve.kind == "torchserve"
    assert isinstance(prometheus, PrometheusMetrics) and prometheus.kind == "prometheus"
    assert providers.for_metric(ERROR_RATE) is torchserve, "built once: the scraper keeps its baselines"
    asyncio.run(providers.close())


def test_every_provider_kind_the_spec_accepts_has_a_provider_in_the_operator() -> None:
    providers = build_providers(OperatorAccess())

    assert sorted(providers.kinds) == sorted(PROVIDER_PARSERS)
    asyncio.run(providers.close())


def test_a_metric_of_a_kind_without_a_provider_is_refused_naming_the_kind() -> None:
    providers = Providers([TorchServeMetrics()])

    with pytest.raises(UnknownProviderKind) as caught:
        providers.for_metric(P99)
    assert caught.value.kind == "prometheus"
    assert str(caught.value) == "no prometheus metric provider in this operator"
    with pytest.raises(UnknownProviderKind, match="no torchserve metric provider in this operator"):
        Providers().for_metric(ERROR_RATE)


def test_two_providers_of_one_kind_are_refused() -> None:
    with pytest.raises(ValueError, match="two metric providers of kind torchserve"):
        Providers([TorchServeMetrics(), TorchServeMetrics()])


def test_close_closes_every_provider() -> None:
    async def run() -> list[SessionProvider]:
        held = [SessionProvider("torchserve"), SessionProvider("prometheus"), SessionProvider("golden-set")]
        for provider in held:
            await provider.open()
        await Providers(held).close()
        return held

    held = asyncio.run(run())
    assert [p.session is not None and p.session.closed for p in held] == [True, True, True]


def test_a_provider_that_fails_to_close_does_not_keep_the_others_open() -> None:
    async def run() -> tuple[list[SessionProvider], BaseException | None]:
        held = [SessionProvider("torchserve", fails_to_close=True), SessionProvider("prometheus")]
        for provider in held:
            await provider.open()
        try:
            await Providers(held).close()
        except RuntimeError as error:
            return held, error
        return held, None

    held, error = asyncio.run(run())
    assert [p.session is not None and p.session.closed for p in held] == [True, True]
    assert str(error) == "torchserve could not close"
