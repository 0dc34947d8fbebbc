"""Measurement verdicts: a value with its request count, judged against a metric's bounds.

Rates (a share of requests, such as the error rate) are judged with their counts: 3 errors in 20
requests is not "15 %" with certainty. A sample is a rate when it carries its counts, its events
(errors) out of its requests; the provider that measures it says so, not the metric's name. The
exact binomial (Clopper-Pearson) interval at 95 % brackets the true rate; a measurement is Failed
only when the whole interval lies outside the bounds, Successful only when it lies inside, and
Inconclusive in between. Exact rather than Wilson: Wilson's lower bound is too high for a handful of
errors (2 in 50 puts it at 1.1 %), which rolled back 15 % of good canaries at half a 1 % bound (50
requests a window) in benchmarks/canary_analysis.py; the exact bound rolled back 0.1 % and still
caught every canary at five times the bound.

Other metrics (a latency, a value a query computes) are judged by their value, provided the window
saw `min_requests` requests when the provider counts them. No data is never a pass: fewer than
`min_requests`, an empty result, NaN or an infinity are Inconclusive.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import scipy.stats

from modeldeploy.api.rollout import MeasurementVerdict


@dataclasses.dataclass(frozen=True)
class Bounds:
    """A metric's inclusive bounds."""

    min: float | None = None
    max: float | None = None


class Share(NamedTuple):
    """A rate's counts: `events` (errors) out of `requests`."""

    events: int
    requests: int


@dataclasses.dataclass(frozen=True)
class Sample:
    """A value over a window and the requests it was computed from (None: the provider cannot count).

    A rate (a share of the requests, as the error rate) also carries `events`, its numerator (errors);
    a value with requests but no events (a mean latency) is not a rate.
    """

    value: float | None
    requests: int | None = None
    events: int | None = None
    interval: tuple[float, float] | None = None
    """Its 95 % interval when the provider computed it from its own counts (a golden-set measure)."""
    unit: str = "requests"
    """What `requests` counts (a golden set counts examples)."""
    detail: str = ""
    """What the verdict quotes after itself (a golden set's per-label counts and first problems)."""

    @property
    def share(self) -> Share | None:
        """The counts of a rate (None: this value is not a share of requests)."""
        if self.requests is None or self.events is None:
            return None
        return Share(self.events, self.requests)


@dataclasses.dataclass(frozen=True)
class Judgement:
    """A verdict and a sentence a user can act on (metric value, interval, bound)."""

    verdict: MeasurementVerdict
    message: str
    bound: float | None = None


def exact_interval(events: int, requests: int, confidence: float = 0.95) -> tuple[float, float]:
    """The exact binomial (Clopper-Pearson) interval of events/requests at `confidence`, two-sided."""
    if requests <= 0:
        return 0.0, 1.0
    events = min(max(events, 0), requests)
    tail = (1.0 - confidence) / 2
    low = 0.0 if events == 0 else float(scipy.stats.beta.ppf(tail, events, requests - events + 1))
    high = 1.0 if events == requests else float(scipy.stats.beta.ppf(1.0 - tail, events + 1, requests - events))
    return low, high


def rate_difference(canary: Share, stable: Share, confidence: float = 0.95) -> Sample:
    """canary - stable of two rates counted over the same window, with an interval that covers at least
    `confidence`: each rate's exact interval at half the risk, the difference of their far ends."""
    each = 1.0 - (1.0 - confidence) / 2
    ours, theirs = exact_interval(*canary, each), exact_interval(*stable, each)
    value = canary.events / canary.requests - stable.events / stable.requests
    return Sample(value, canary.requests, interval=(ours[0] - theirs[1], ours[1] - theirs[0]))


def _usable(sample: Sample) -> bool:
    return sample.value is not None and math.isfinite(sample.value)


def compare_interval(low: float, high: float, minimum: float | None,
             maximum: float | None) -> tuple[MeasurementVerdict, float | None]:
    """Failed when [low, high] lies wholly outside the bounds, Successful when wholly inside."""
    if maximum is not None and low > maximum:
        return MeasurementVerdict.FAILED, maximum
    if minimum is not None and high < minimum:
        return MeasurementVerdict.FAILED, minimum
    inside = (maximum is None or high <= maximum) and (minimum is None or low >= minimum)
    if inside:
        return MeasurementVerdict.SUCCESSFUL, None
    return MeasurementVerdict.INCONCLUSIVE, maximum if maximum is not None and high > maximum else minimum


def _interval(sample: Sample) -> tuple[float, float]:
    assert sample.value is not None
    if sample.interval is not None:
        return sample.interval
    share = sample.share
    if share is not None:
        return exact_interval(share.events, share.requests)
    return sample.value, sample.value


def _describe(name: str, sample: Sample, low: float, high: float) -> str:
    assert sample.value is not None
    counted = f" over {sample.requests} {sample.unit}" if sample.requests is not None else ""
    interval = f" (95 % interval {low:.4g}..{high:.4g})" if low != high else ""
    return f"{name} = {sample.value:.4g}{counted}{interval}"


def judge(name: str, canary: Sample, bounds: Bounds, min_requests: int, *, beside: str = "") -> Judgement:
    """The verdict of one measurement of metric `name` (Successful, Failed or Inconclusive); `beside` is
    quoted after the value (stable's own value, say)."""
    if not _usable(canary):
        return Judgement(MeasurementVerdict.INCONCLUSIVE, f"{name}: no value ({canary.value})")
    if canary.requests is not None and canary.requests < min_requests:
        return Judgement(MeasurementVerdict.INCONCLUSIVE,
                         f"{name}: {canary.requests} {canary.unit}, fewer than minRequests {min_requests}")
    low, high = _interval(canary)
    text = _describe(name, canary, low, high) + beside
    verdict, bound = compare_interval(low, high, bounds.min, bounds.max)
    detail = f"; {canary.detail}" if canary.detail else ""
    if verdict is MeasurementVerdict.FAILED:
        side = "above max" if bound == bounds.max else "below min"
        return Judgement(verdict, f"{text}, {side} {bound:g}{detail}", bound)
    if verdict is MeasurementVerdict.SUCCESSFUL:
        return Judgement(verdict, f"{text}, within bounds{detail}")
    return Judgement(verdict, f"{text}, not yet decisive against {bound:g}{detail}", bound)
