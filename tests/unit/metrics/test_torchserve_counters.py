"""The torchserve provider: counters parsed from TorchServe's page, deltas per pod, roles apart.

Pages are fed in as text (the real scrape against TorchServe is in tests/torchserve).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from modeldeploy.api.revision import Role
from modeldeploy.api.spec import Metric, RelativeTo, TorchServeMetric, TorchServeProvider
from modeldeploy.canary.counters import MetricState, fold
from modeldeploy.canary.decide import Measurement
from modeldeploy.canary.inputs import MetricPolicy
from modeldeploy.canary.verdicts import Bounds, Sample
from modeldeploy.metrics import Pod, ProviderError, Target
from modeldeploy.metrics.torchserve import PodCounters, TorchServeMetrics, parse_counters

T0 = datetime(2026, 11, 26, 2, 0, 0, tzinfo=UTC)
ERROR_RATE = Metric("error-rate", TorchServeProvider(TorchServeMetric.ERROR_RATE), max=0.01)
LATENCY = Metric("latency", TorchServeProvider(TorchServeMetric.MEAN_LATENCY_MS), max=250)
CANARY_A = Pod("iris-canary-a", "uid-ca", "10.244.0.11", Role.CANARY)
CANARY_B = Pod("iris-canary-b", "uid-cb", "10.244.0.12", Role.CANARY)
STABLE_A = Pod("iris-stable-a", "uid-sa", "10.244.0.21", Role.STABLE)
TARGET = Target("default", "iris", "iris", (CANARY_A, CANARY_B, STABLE_A))


def page(ok: float, errors: float, requests: float, latency_us: float, model: str = "iris") -> str:
    """A metrics page as TorchServe 0.12 writes it (trailing commas in label sets included)."""
    return f"""# HELP Requests2XX Torchserve prometheus counter metric with unit: Count
# TYPE Requests2XX counter
Requests2XX{{Level="Host",Hostname="pod",}} {ok}
# HELP Requests5XX Torchserve prometheus counter metric with unit: Count
# TYPE Requests5XX counter
Requests5XX{{Level="Host",Hostname="pod",}} {errors}
# HELP ts_inference_requests_total Torchserve prometheus counter metric with unit: Count
# TYPE ts_inference_requests_total counter
ts_inference_requests_total{{model_name="{model}",model_version="2",hostname="pod",}} {requests}
# HELP ts_inference_latency_microseconds Torchserve prometheus counter metric with unit: Microseconds
# TYPE ts_inference_latency_microseconds counter
ts_inference_latency_microseconds{{model_name="{model}",model_version="2",hostname="pod",}} {latency_us}
# HELP CPUUtilization Torchserve prometheus gauge metric with unit: Percent
# TYPE CPUUtilization gauge
CPUUtilization{{Level="Host",Hostname="pod",}} 12.5
"""


class Pages:
    """What each pod answers at its metrics port, changed between measurements by the test."""

    def __init__(self) -> None:
        self.by_ip: dict[str, str | BaseException] = {}

    async def fetch(self, pod: Pod, port: int) -> str:
        assert port == 8082
        answer = self.by_ip[pod.ip]
        if isinstance(answer, BaseException):
            raise answer
        return answer


def measure(provider: TorchServeMetrics, metric: Metric, window_start: datetime, now: datetime) -> Measurement:
    return asyncio.run(provider.measure(metric, TARGET, window_start, now))


def test_counters_are_read_by_name_and_other_models_are_ignored() -> None:
    text = page(100, 7, 90, 450_000) + page(1, 1, 1000, 9, model="other").split("# HELP CPU")[0].replace(
        "Requests", "Ignored")
    assert parse_counters(text, "iris") == PodCounters(requests=90, responses_2xx=100, responses_5xx=7,
                                                       latency_us=450_000)


def test_a_fresh_page_without_counters_counts_zero() -> None:
    assert parse_counters("", "iris") == PodCounters()


@pytest.mark.parametrize("garbage", ["<html>502 Bad Gateway</html>", "Requests5XX{Level= 3"])
def test_a_page_that_is_not_prometheus_text_is_a_provider_error(garbage: str) -> None:
    with pytest.raises(ProviderError):
        parse_counters(garbage, "iris")


def test_the_first_call_only_begins_a_window_then_deltas_give_rates_per_role() -> None:
    pages = Pages()
    provider = TorchServeMetrics(fetch=pages.fetch)
    pages.by_ip = {CANARY_A.ip: page(10, 0, 10, 1e5), CANARY_B.ip: page(5, 0, 5, 5e4),
                   STABLE_A.ip: page(100, 1, 100, 1e6)}
    begun = measure(provider, ERROR_RATE, T0, T0)
    assert begun.canary is None and begun.error is None
    pages.by_ip = {CANARY_A.ip: page(70, 6, 70, 7e5), CANARY_B.ip: page(45, 4, 45, 4.5e5),
                   STABLE_A.ip: page(400, 2, 400, 4e6)}
    later = T0 + timedelta(seconds=30)
    measured = measure(provider, ERROR_RATE, T0, later)
    assert measured.canary == Sample(value=10 / 100, requests=100, events=10)
    assert measured.stable == Sample(value=1 / 300, requests=300, events=1)
    assert measured.window_start == T0 and measured.at == later
    latency = measure(provider, LATENCY, T0, later)          # its own window: begins now
    assert latency.canary is None


def test_mean_latency_is_microseconds_per_request_in_milliseconds() -> None:
    pages = Pages()
    provider = TorchServeMetrics(fetch=pages.fetch)
    pages.by_ip = {CANARY_A.ip: page(0, 0, 0, 0), CANARY_B.ip: page(0, 0, 0, 0), STABLE_A.ip: page(0, 0, 0, 0)}
    measure(provider, LATENCY, T0, T0)
    pages.by_ip = {CANARY_A.ip: page(40, 0, 40, 40 * 120_000), CANARY_B.ip: page(0, 0, 0, 0),
                   STABLE_A.ip: page(0, 0, 0, 0)}
    measured = measure(provider, LATENCY, T0, T0 + timedelta(seconds=30))
    assert measured.canary == Sample(value=120.0, requests=40)
    assert measured.stable == Sample(value=None, requests=0)


def test_a_pod_whose_counters_went_down_restarted_and_its_window_is_skipped() -> None:
    pages = Pages()
    provider = TorchServeMetrics(fetch=pages.fetch)
    pages.by_ip = {CANARY_A.ip: page(500, 50, 500, 0), CANARY_B.ip: page(10, 0, 10, 0),
                   STABLE_A.ip: page(0, 0, 0, 0)}
    measure(provider, ERROR_RATE, T0, T0)
    pages.by_ip[CANARY_A.ip] = page(20, 3, 20, 0)            # restarted: fewer than before
    pages.by_ip[CANARY_B.ip] = page(60, 0, 60, 0)
    measured = measure(provider, ERROR_RATE, T0, T0 + timedelta(seconds=30))
    assert measured.canary == Sample(value=0.0, requests=50, events=0)   # only pod B's window
    pages.by_ip[CANARY_A.ip] = page(40, 3, 40, 0)            # the next window counts pod A again
    pages.by_ip[CANARY_B.ip] = page(60, 0, 60, 0)
    measured = measure(provider, ERROR_RATE, T0 + timedelta(seconds=30), T0 + timedelta(seconds=60))
    assert measured.canary == Sample(value=0.0, requests=20, events=0)


def test_a_baseline_from_before_the_window_is_not_used() -> None:
    pages = Pages()
    provider = TorchServeMetrics(fetch=pages.fetch)
    pages.by_ip = {CANARY_A.ip: page(0, 0, 0, 0), CANARY_B.ip: page(0, 0, 0, 0), STABLE_A.ip: page(0, 0, 0, 0)}
    measure(provider, ERROR_RATE, T0, T0)
    pages.by_ip[CANARY_A.ip] = page(100, 90, 100, 0)
    weight_changed = T0 + timedelta(seconds=10)
    begun = measure(provider, ERROR_RATE, weight_changed, T0 + timedelta(seconds=40))
    assert begun.canary is None and begun.error is None


@pytest.mark.parametrize(
    ("failure", "words"),
    [(ConnectionRefusedError(111, "Connection refused"), "failed"), (TimeoutError(), "timed out after 5 s"),
     (ProviderError("http://10.244.0.11:8082/metrics answered HTTP 500"), "HTTP 500")],
)
def test_a_canary_pod_that_cannot_be_scraped_makes_the_measurement_an_error(failure: BaseException,
                                                                            words: str) -> None:
    pages = Pages()
    provider = TorchServeMetrics(fetch=pages.fetch)
    pages.by_ip = {CANARY_A.ip: failure, CANARY_B.ip: page(0, 0, 0, 0), STABLE_A.ip: page(0, 0, 0, 0)}
    measured = measure(provider, ERROR_RATE, T0, T0)
    assert measured.error is not None and words in measured.error
    pages.by_ip[CANARY_A.ip] = "garbage {"
    assert measure(provider, ERROR_RATE, T0, T0 + timedelta(seconds=10)).error is not None



def relative(metric: Metric) -> Metric:
    return Metric(metric.name, metric.provider, min=None, max=metric.max, relative_to=RelativeTo.STABLE)


def test_relative_to_stable_an_error_rate_is_canary_minus_stable_with_an_interval_over_the_same_window() -> None:
    pages = Pages()
    provider = TorchServeMetrics(fetch=pages.fetch)
    pages.by_ip = {CANARY_A.ip: page(0, 0, 0, 0), CANARY_B.ip: page(0, 0, 0, 0), STABLE_A.ip: page(0, 0, 0, 0)}
    measure(provider, relative(ERROR_RATE), T0, T0)
    pages.by_ip = {CANARY_A.ip: page(950, 50, 1000, 0), CANARY_B.ip: page(950, 50, 1000, 0),
                   STABLE_A.ip: page(1990, 10, 2000, 0)}

    measured = measure(provider, relative(ERROR_RATE), T0, T0 + timedelta(seconds=30))

    assert measured.canary is not None and measured.canary.value == pytest.approx(0.05 - 0.005)
    assert measured.canary.requests == 2000 and measured.canary.share is None  # a difference, not a rate
    assert measured.canary.interval is not None and 0.01 < measured.canary.interval[0] < 0.045
    assert measured.stable == Sample(value=0.005, requests=2000, events=10)


def test_relative_to_stable_a_mean_latency_is_a_ratio_and_a_window_without_stable_counts_only_begins() -> None:
    pages = Pages()
    provider = TorchServeMetrics(fetch=pages.fetch)
    pages.by_ip = {CANARY_A.ip: page(0, 0, 0, 0), CANARY_B.ip: page(0, 0, 0, 0), STABLE_A.ip: page(0, 0, 0, 0)}
    measure(provider, relative(LATENCY), T0, T0)
    pages.by_ip = {CANARY_A.ip: page(40, 0, 40, 40 * 120_000), CANARY_B.ip: page(0, 0, 0, 0),
                   STABLE_A.ip: page(50, 0, 50, 50 * 100_000)}
    ratio = measure(provider, relative(LATENCY), T0, T0 + timedelta(seconds=30))
    pages.by_ip[STABLE_A.ip] = page(50, 0, 50, 50 * 100_000)  # no stable request in the next window
    pages.by_ip[CANARY_A.ip] = page(80, 0, 80, 80 * 120_000)
    quiet = measure(provider, relative(LATENCY), T0 + timedelta(seconds=30), T0 + timedelta(seconds=60))

    assert ratio.canary == Sample(value=pytest.approx(1.2), requests=40)
    assert (quiet.canary, quiet.error) == (None, None)


def test_a_relative_latency_verdict_names_the_ratio_and_quotes_stable_beside_it() -> None:
    spec_metric = relative(LATENCY)
    policy = MetricPolicy(spec_metric.name, Bounds(max=1.1), comparison=spec_metric.comparison)
    measurement = Measurement(metric=spec_metric.name, at=T0 + timedelta(seconds=30), window_start=T0,
                              canary=Sample(value=1.3, requests=40), stable=Sample(value=100.0, requests=50))

    folded = fold(MetricState(), measurement, policy, min_requests=20, weight=25, served=25, eligible=True)

    assert folded.failure is not None and folded.failure.startswith(f"{spec_metric.name} (canary / stable) = 1.3")
    assert "stable 100" in folded.failure
