"""Measurement verdicts: rates (samples that count their errors) judged with their counts, no data never a pass."""

from __future__ import annotations

import math

import pytest

from modeldeploy.api.rollout import MeasurementVerdict
from modeldeploy.api.spec import TorchServeMetric
from modeldeploy.canary.verdicts import Bounds, Sample, exact_interval, judge
from modeldeploy.metrics.torchserve import PodCounters, sample_for

ERROR_RATE = Bounds(max=0.01)
LATENCY = Bounds(max=250.0)


@pytest.mark.parametrize(
    ("errors", "requests", "verdict"),
    [
        (1, 20, MeasurementVerdict.INCONCLUSIVE),     # 5 % observed, but 1 in 20 proves nothing against 1 %
        (6, 20, MeasurementVerdict.FAILED),           # 30 % is caught in 20 requests
        (0, 20, MeasurementVerdict.INCONCLUSIVE),     # nothing failed, but 20 requests cannot show < 1 %
        (0, 400, MeasurementVerdict.SUCCESSFUL),      # upper bound 0.92 % < 1 %
        (2, 50, MeasurementVerdict.INCONCLUSIVE),     # 4 % observed; the exact lower bound 0.49 % (Wilson's: 1.1 %)
        (2, 1000, MeasurementVerdict.SUCCESSFUL),     # 0.2 % with an upper bound of 0.72 %
        (5, 1000, MeasurementVerdict.INCONCLUSIVE),   # 0.5 %: 95 % interval reaches past 1 %
        (30, 1000, MeasurementVerdict.FAILED),        # 3 %: lower bound 2.1 % > 1 %
        (3, 19, MeasurementVerdict.INCONCLUSIVE),     # fewer than minRequests: never judged
    ],
)
def test_error_rates_are_judged_with_their_counts(errors: int, requests: int, verdict: MeasurementVerdict) -> None:
    judgement = judge("error-rate", Sample(errors / requests, requests, errors), ERROR_RATE, min_requests=20)
    assert judgement.verdict is verdict, judgement.message


@pytest.mark.parametrize("value", [None, math.nan, math.inf, -math.inf])
def test_no_value_is_inconclusive_never_a_pass(value: float | None) -> None:
    assert judge("error-rate", Sample(value, 500, None), ERROR_RATE, 20).verdict is MeasurementVerdict.INCONCLUSIVE
    assert judge("p99", Sample(value, None), LATENCY, 20).verdict is MeasurementVerdict.INCONCLUSIVE


@pytest.mark.parametrize(
    ("value", "requests", "verdict"),
    [(120.0, 100, MeasurementVerdict.SUCCESSFUL), (250.0, 100, MeasurementVerdict.SUCCESSFUL),
     (251.0, 100, MeasurementVerdict.FAILED),
     (400.0, 5, MeasurementVerdict.INCONCLUSIVE), (120.0, None, MeasurementVerdict.SUCCESSFUL)],
)
def test_other_metrics_are_judged_by_value_with_min_requests(value: float, requests: int | None,
                                                             verdict: MeasurementVerdict) -> None:
    assert judge("mean-latency-ms", Sample(value, requests), LATENCY, 20).verdict is verdict


def test_a_lower_bound_fails_a_value_below_it() -> None:
    judgement = judge("throughput", Sample(3.0, 100), Bounds(min=5.0), 20)
    assert judgement.verdict is MeasurementVerdict.FAILED
    assert "below min 5" in judgement.message


def test_a_failed_verdict_names_the_metric_its_value_and_its_bound() -> None:
    judgement = judge("error-rate", Sample(0.3, 100, 30), ERROR_RATE, 20)
    assert judgement.verdict is MeasurementVerdict.FAILED
    assert judgement.message.startswith("error-rate = 0.3 over 100 requests")
    assert "above max 0.01" in judgement.message
    assert judgement.bound == 0.01


def test_a_sample_with_its_errors_counted_is_a_rate_and_a_value_over_requests_is_not() -> None:
    # No error in 20 requests cannot show a rate below 1 %; a 0 ms latency over 20 requests is below 1 ms.
    assert judge("error-rate", Sample(0.0, 20, 0), ERROR_RATE, 20).verdict is MeasurementVerdict.INCONCLUSIVE
    assert judge("latency-s", Sample(0.0, 20), ERROR_RATE, 20).verdict is MeasurementVerdict.SUCCESSFUL
    assert Sample(0.0, 20, 0).share == (0, 20) and Sample(0.0, 20).share is None and Sample(0.0).share is None


def test_the_torchserve_providers_error_rate_is_a_rate_and_its_latency_a_value() -> None:
    window = PodCounters(requests=400, responses_2xx=396, responses_5xx=4, latency_us=400 * 12_000)
    error_rate = sample_for(TorchServeMetric.ERROR_RATE, window)
    assert error_rate.share == (4, 400)
    assert "95 % interval" in judge("error-rate", error_rate, ERROR_RATE, 20).message
    latency = sample_for(TorchServeMetric.MEAN_LATENCY_MS, window)
    assert latency.share is None and latency.requests == 400
    assert judge("mean-latency-ms", latency, LATENCY, 20).message == (
        "mean-latency-ms = 12 over 400 requests, within bounds")


@pytest.mark.parametrize(
    ("errors", "requests", "low", "high"),
    [(0, 20, 0.0, 0.1684), (6, 20, 0.1189, 0.5428), (2, 50, 0.0049, 0.1371), (20, 20, 0.8316, 1.0),
     (500, 100_000, 0.00457, 0.00546)],
)
def test_exact_interval_matches_clopper_pearson(errors: int, requests: int, low: float, high: float) -> None:
    assert exact_interval(errors, requests) == (pytest.approx(low, abs=1e-4), pytest.approx(high, abs=1e-4))
