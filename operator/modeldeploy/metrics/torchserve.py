"""The `torchserve` provider: the pods' own TorchServe counters, scraped from their metrics port.

TorchServe 0.12 (`metrics_mode=prometheus`, port 8082) exposes, per process:

    Requests2XX / Requests4XX / Requests5XX{Level="Host",Hostname=...}       HTTP answers of all listeners
    ts_inference_requests_total{model_name,model_version,hostname}           inference requests received
    ts_inference_latency_microseconds{model_name,model_version,hostname}     summed inference latency

A measurement is a difference between two scrapes of the same pod: the error rate is
Δ Requests5XX / Δ ts_inference_requests_total, the mean latency Δ µs / Δ requests, each with the
request count beside it. Pods are summed per role (canary, stable), never mixed. A pod whose
counters went down restarted: its window is skipped (no negative delta, no rate from half a
window) and it gets a fresh baseline. Baselines live in this object, one per metric and pod: after
an operator restart the first call only begins a window (the decision then waits an interval).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import ClassVar

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from modeldeploy.api.revision import Role
from modeldeploy.api.spec import Metric, RelativeTo, TorchServeMetric, TorchServeProvider
from modeldeploy.canary.decide import Measurement
from modeldeploy.canary.verdicts import Sample, rate_difference
from modeldeploy.metrics.base import Pod, ProviderError, Target

SCRAPE_TIMEOUT = timedelta(seconds=5)

_COUNTERS = {
    "Requests2XX": "responses_2xx",
    "Requests4XX": "responses_4xx",
    "Requests5XX": "responses_5xx",
    "ts_inference_requests": "requests",
    "ts_inference_latency_microseconds": "latency_us",
}


@dataclasses.dataclass(frozen=True)
class PodCounters:
    """One scrape of one pod's counters (cumulative since its TorchServe started)."""

    requests: float = 0.0
    responses_2xx: float = 0.0
    responses_4xx: float = 0.0
    responses_5xx: float = 0.0
    latency_us: float = 0.0

    def minus(self, earlier: PodCounters) -> PodCounters | None:
        """The increase since `earlier`; None when any counter went down (the pod restarted)."""
        fields = {f.name: getattr(self, f.name) - getattr(earlier, f.name) for f in dataclasses.fields(self)}
        if any(value < 0 for value in fields.values()):
            return None
        return PodCounters(**fields)

    def plus(self, other: PodCounters) -> PodCounters:
        return PodCounters(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in dataclasses.fields(self)})


def _base_name(name: str) -> str:
    return name[: -len("_total")] if name.endswith("_total") else name


def parse_counters(text: str, model_name: str) -> PodCounters:
    """The counters in a TorchServe Prometheus page; ProviderError when it is not one.

    Inference counters are summed over the versions of `model_name` (one model per pod); a
    counter not yet incremented is absent from the page and counts 0.
    """
    totals = dict.fromkeys(_COUNTERS.values(), 0.0)
    try:
        families = list(text_string_to_metric_families(text))
    except (ValueError, TypeError, IndexError) as error:
        raise ProviderError(f"metrics page is not Prometheus text: {error}") from None
    for family in families:
        field = _COUNTERS.get(_base_name(family.name))
        if field is None:
            continue
        for sample in family.samples:
            if _base_name(sample.name) != _base_name(family.name):
                continue  # _created and other companions
            if "model_name" in sample.labels and sample.labels["model_name"] != model_name:
                continue
            if not math.isfinite(sample.value) or sample.value < 0:
                raise ProviderError(f"counter {sample.name} has the value {sample.value}")
            totals[field] += sample.value
    return PodCounters(**totals)


def sample_for(metric: TorchServeMetric, delta: PodCounters) -> Sample:
    """The value of `metric` over a window whose counters increased by `delta`."""
    requests = round(delta.requests)
    if requests <= 0:
        return Sample(value=None, requests=0)
    if metric is TorchServeMetric.ERROR_RATE:
        errors = min(round(delta.responses_5xx), requests)
        return Sample(value=errors / requests, requests=requests, events=errors)
    return Sample(value=delta.latency_us / requests / 1000.0, requests=requests)


def relative_to_stable(canary: Sample, stable: Sample) -> Sample:
    """What `relativeTo: stable` judges: canary - stable for a rate (with its interval), canary / stable
    for a mean latency (a value, as the mean latency itself is judged)."""
    if canary.value is None or stable.value is None:
        return Sample(value=None, requests=canary.requests)
    if canary.share is not None and stable.share is not None:
        return rate_difference(canary.share, stable.share)
    ratio = canary.value / stable.value if stable.value > 0 else math.inf
    return Sample(value=ratio, requests=canary.requests)


@dataclasses.dataclass(frozen=True)
class _Baseline:
    at: datetime
    counters: PodCounters


Fetch = Callable[[Pod, int], Awaitable[str]]


class TorchServeMetrics:
    """The torchserve provider: one per operator, keeping a baseline per (object, metric, pod).

    `fetch` reads a pod's metrics page (default: HTTP GET with a timeout through aiohttp).
    """

    kind: ClassVar[str] = TorchServeProvider.kind

    def __init__(self, fetch: Fetch | None = None, timeout: timedelta = SCRAPE_TIMEOUT) -> None:
        self._fetch = fetch or self._http_fetch
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._baselines: dict[tuple[str, str, str, str], _Baseline] = {}
        self._scrapes: dict[tuple[str, str, str, int], tuple[datetime, Mapping[str, PodCounters | ProviderError]]] = {}

    async def close(self) -> None:
        """Close the HTTP session (on operator cleanup)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _http_fetch(self, pod: Pod, port: int) -> str:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout.total_seconds()))
        url = f"http://{pod.ip}:{port}/metrics"
        async with self._session.get(url, allow_redirects=False) as response:
            if response.status != 200:
                raise ProviderError(f"{url} answered HTTP {response.status}")
            return await response.text()

    async def _scrape(self, target: Target, pod: Pod) -> PodCounters | ProviderError:
        try:
            text = await self._fetch(pod, target.metrics_port)
        except ProviderError as error:
            return error
        except TimeoutError:
            return ProviderError(f"scrape of pod {pod.name} ({pod.ip}:{target.metrics_port}) timed out after "
                                 f"{self._timeout.total_seconds():g} s")
        except (aiohttp.ClientError, OSError) as error:
            return ProviderError(f"scrape of pod {pod.name} ({pod.ip}:{target.metrics_port}) failed: {error}")
        try:
            return parse_counters(text, target.model_name)
        except ProviderError as error:
            return ProviderError(f"pod {pod.name}: {error}")

    async def _scrape_all(self, target: Target, now: datetime) -> Mapping[str, PodCounters | ProviderError]:
        """Every pod's counters; one scrape per pod per `now`, shared by the metrics measured then."""
        key = (target.namespace, target.name, target.model_name, target.metrics_port)
        cached = self._scrapes.get(key)
        if cached is not None and cached[0] == now:
            return cached[1]
        results = await asyncio.gather(*(self._scrape(target, pod) for pod in target.pods))
        scraped = {pod.uid: result for pod, result in zip(target.pods, results, strict=True)}
        self._scrapes[key] = (now, scraped)
        return scraped

    async def measure(self, metric: Metric, target: Target, window_start: datetime, now: datetime) -> Measurement:
        """The metric over [window_start, now] from each pod's counters since its baseline."""
        if not isinstance(metric.provider, TorchServeProvider):
            raise TypeError(f"metric {metric.name} is not a torchserve metric")
        scraped = await self._scrape_all(target, now)
        failures = [r for pod in target.pods if pod.role is Role.CANARY
                    for r in [scraped[pod.uid]] if isinstance(r, ProviderError)]
        if failures:
            # baselines stay: the retry measures the same window
            return Measurement(metric=metric.name, at=now, window_start=window_start, error=str(failures[0]))
        deltas: dict[Role, list[PodCounters]] = {Role.CANARY: [], Role.STABLE: []}
        starts: list[datetime] = []
        for pod in target.pods:
            counters = scraped[pod.uid]
            if isinstance(counters, ProviderError):
                continue  # a stable pod: only the comparison suffers
            key = (target.namespace, target.name, metric.name, pod.uid)
            baseline = self._baselines.get(key)
            self._baselines[key] = _Baseline(now, counters)
            if baseline is None or baseline.at < window_start:
                continue  # new pod, or a baseline from before the window (another weight): begin here
            delta = counters.minus(baseline.counters)
            if delta is None:
                continue  # restarted within the window: skip it
            deltas[pod.role].append(delta)
            if pod.role is Role.CANARY:
                starts.append(baseline.at)
        self._forget(target)
        if not deltas[Role.CANARY]:
            return Measurement(metric=metric.name, at=now, window_start=window_start)
        kind = metric.provider.metric
        canary = sample_for(kind, _sum(deltas[Role.CANARY]))
        stable = sample_for(kind, _sum(deltas[Role.STABLE])) if deltas[Role.STABLE] else None
        if metric.relative_to is RelativeTo.STABLE:
            if stable is None or not stable.requests:
                # stable's pods have no counts over this window (new, restarted): it only begins
                return Measurement(metric=metric.name, at=now, window_start=min(starts))
            canary = relative_to_stable(canary, stable)
        return Measurement(metric=metric.name, at=now, window_start=min(starts), canary=canary, stable=stable)

    def _forget(self, target: Target) -> None:
        """Drop the baselines of this object's pods that are gone."""
        present = {pod.uid for pod in target.pods}
        for key in [k for k in self._baselines if k[:2] == (target.namespace, target.name) and k[3] not in present]:
            del self._baselines[key]


def _sum(deltas: Iterable[PodCounters]) -> PodCounters:
    total = PodCounters()
    for delta in deltas:
        total = total.plus(delta)
    return total
