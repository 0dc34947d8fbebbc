"""Measurement verdicts: rates judged with their counts, no data never a pass."""

from __future__ import annotations

import math

import pytest

from modeldeploy.canary.state import Verdict
from modeldeploy.canary.verdicts import Bounds, Sample, exact_interval, judge, wilson_interval

ERROR_RATE = Bounds(max=0.01, rate=True)
LATENCY = Bounds(max=250.0)


@pytest.mark.parametrize(
    ("errors", "requests", "verdict"),
    [
        (1, 20, Verdict.INCONCLUSIVE),     # 5 % observed, but 1 in 20 proves nothing against 1 %
        (6, 20, Verdict.FAILED),           # 30 % is caught in 20 requests
        (0, 20, Verdict.INCONCLUSIVE),     # nothing failed, but 20 requests cannot show < 1 %
        (0, 400, Verdict.SUCCESSFUL),      # upper bound 0.92 % < 1 %
        (2, 50, Verdict.INCONCLUSIVE),     # 4 % observed; the exact lower bound 0.49 % (Wilson's: 1.1 %)
        (2, 1000, Verdict.SUCCESSFUL),     # 0.2 % with an upper bound of 0.72 %
        (5, 1000, Verdict.INCONCLUSIVE),   # 0.5 %: 95 % interval reaches past 1 %
        (30, 1000, Verdict.FAILED),        # 3 %: lower bound 2.1 % > 1 %
        (3, 19, Verdict.INCONCLUSIVE),     # fewer than minRequests: never judged
    ],
)
def test_error_rates_are_judged_with_their_counts(errors: int, requests: int, verdict: Verdict) -> None:
    judgement = judge("error-rate", Sample(errors / requests, requests, errors), ERROR_RATE, min_requests=20)
    assert judgement.verdict is verdict, judgement.message


@pytest.mark.parametrize("value", [None, math.nan, math.inf, -math.inf])
def test_no_value_is_inconclusive_never_a_pass(value: float | None) -> None:
    assert judge("error-rate", Sample(value, 500, None), ERROR_RATE, 20).verdict is Verdict.INCONCLUSIVE
    assert judge("p99", Sample(value, None), LATENCY, 20).verdict is Verdict.INCONCLUSIVE


@pytest.mark.parametrize(
    ("value", "requests", "verdict"),
    [(120.0, 100, Verdict.SUCCESSFUL), (250.0, 100, Verdict.SUCCESSFUL), (251.0, 100, Verdict.FAILED),
     (400.0, 5, Verdict.INCONCLUSIVE), (120.0, None, Verdict.SUCCESSFUL)],
)
def test_other_metrics_are_judged_by_value_with_min_requests(value: float, requests: int | None,
                                                             verdict: Verdict) -> None:
    assert judge("mean-latency-ms", Sample(value, requests), LATENCY, 20).verdict is verdict


def test_a_lower_bound_fails_a_value_below_it() -> None:
    judgement = judge("throughput", Sample(3.0, 100), Bounds(min=5.0), 20)
    assert judgement.verdict is Verdict.FAILED
    assert "below min 5" in judgement.message


def test_a_failed_verdict_names_the_metric_its_value_and_its_bound() -> None:
    judgement = judge("error-rate", Sample(0.3, 100, 30), ERROR_RATE, 20)
    assert judgement.verdict is Verdict.FAILED
    assert judgement.message.startswith("error-rate = 0.3 over 100 requests")
    assert "above max 0.01" in judgement.message
    assert judgement.bound == 0.01


@pytest.mark.parametrize(
    ("canary", "stable", "verdict"),
    [
        (Sample(0.02, 2000, 40), Sample(0.019, 6000, 114), Verdict.SUCCESSFUL),  # no worse than stable
        (Sample(0.10, 2000, 200), Sample(0.02, 6000, 120), Verdict.FAILED),       # 8 points worse
        (Sample(0.02, 2000, 40), Sample(0.02, 5, 0), Verdict.INCONCLUSIVE),       # stable has no data
        (Sample(0.02, 2000, 40), None, Verdict.INCONCLUSIVE),
    ],
)
def test_max_increase_holds_the_canary_to_stable_in_the_same_window(canary: Sample, stable: Sample | None,
                                                                    verdict: Verdict) -> None:
    bounds = Bounds(max=0.5, max_increase=0.02, rate=True)
    assert judge("error-rate", canary, bounds, 20, stable).verdict is verdict


def test_wilson_interval_matches_known_values() -> None:
    low, high = wilson_interval(0, 20)
    assert low == 0.0
    assert high == pytest.approx(0.1611, abs=1e-4)
    low, high = wilson_interval(6, 20)
    assert (low, high) == (pytest.approx(0.1455, abs=1e-4), pytest.approx(0.5190, abs=1e-4))


@pytest.mark.parametrize(
    ("errors", "requests", "low", "high"),
    [(0, 20, 0.0, 0.1684), (6, 20, 0.1189, 0.5428), (2, 50, 0.0049, 0.1371), (20, 20, 0.8316, 1.0),
     (500, 100_000, 0.00457, 0.00546)],
)
def test_exact_interval_matches_clopper_pearson(errors: int, requests: int, low: float, high: float) -> None:
    assert exact_interval(errors, requests) == (pytest.approx(low, abs=1e-4), pytest.approx(high, abs=1e-4))
