"""Folding measurements into a metric's counters: each one's verdict, the streaks, the step's evidence.

    recorded = record(policy, state, measurements, all_ready=..., served=...)

A measurement already recorded (at or before the metric's last one) is recognised by its time and
skipped, so the same measurements folded twice change nothing.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from modeldeploy.api.rollout import (
    MAX_MEASUREMENTS,
    MeasurementRecord,
    MeasurementVerdict,
    MetricState,
    RolloutState,
    latest,
    stamp,
)
from modeldeploy.canary.inputs import Measurement, MetricPolicy, Policy
from modeldeploy.canary.verdicts import Sample, judge


class Failure(NamedTuple):
    """A Failed measurement: the metric and the sentence that says why."""

    metric: str
    message: str


class Folded(NamedTuple):
    """A metric's counters with one measurement folded in, and the reason it Failed (None: it did not)."""

    counters: MetricState
    failure: str | None = None


class Recorded(NamedTuple):
    """Every metric's counters once the new measurements are folded in, and the ones that Failed, in order."""

    metrics: Mapping[str, MetricState]
    failures: tuple[Failure, ...] = ()


def _kept(counters: MetricState, record: MeasurementRecord) -> MetricState:
    return dataclasses.replace(counters, measurements=(*counters.measurements, record)[-MAX_MEASUREMENTS:])


def fold(counters: MetricState, measurement: Measurement, metric: MetricPolicy, *, min_requests: int,
         weight: int, served: int, eligible: bool) -> Folded:
    """`counters` with `measurement` of `metric` judged and counted.

    `weight` is the effective weight the measurement was taken at, `served` the weight the step serves
    once its pods are ready; `eligible`: a Successful verdict is evidence for the step (the canary is
    all ready at the step's weight, and the window began after the step and that weight did). A
    provider error only lengthens the error streak; a window merely begun is not judged.
    """
    if measurement.pending:
        return Folded(counters)  # still running: the same window is asked about again
    at = stamp(measurement.at)
    if measurement.error is not None:
        record = MeasurementRecord(at=at, verdict=MeasurementVerdict.ERROR, weight=weight, message=measurement.error)
        return Folded(_kept(dataclasses.replace(counters, consecutive_errors=counters.consecutive_errors + 1,
                                                last_error_at=at), record))
    canary = measurement.canary
    if canary is None:
        # a window begun (the provider had no baseline): no verdict, the next one is due an interval on
        return Folded(dataclasses.replace(counters, last_at=at))
    stable = measurement.stable
    # A comparison with stable, and a golden set's verdict, quote stable's own value beside the canary's.
    beside = (f", stable {stable.value:.4g}" if stable is not None and stable.value is not None
              and (metric.relative or stable.interval is not None) else "")
    judgement = judge(f"{metric.name} ({metric.comparison})" if metric.comparison else metric.name, canary,
                      metric.bounds, min_requests, beside=beside)
    share = canary.share
    if eligible and share is not None and share.requests and canary.value is not None \
            and math.isfinite(canary.value):
        # A rate's evidence pools the step's windows at this weight: a good canary behind little
        # traffic shows "below the bound" in a few windows instead of never. Failures stay per window.
        counters = dataclasses.replace(counters, step_requests=counters.step_requests + share.requests,
                                       step_events=counters.step_events + share.events)
        if judgement.verdict is MeasurementVerdict.INCONCLUSIVE and counters.step_requests > share.requests:
            pooled = judge(f"{metric.name} over this step's windows",
                           Sample(counters.step_events / counters.step_requests, counters.step_requests,
                                  counters.step_events),
                           metric.bounds, min_requests)
            if pooled.verdict is MeasurementVerdict.SUCCESSFUL:
                judgement = pooled
    finite = canary.value if canary.value is not None and math.isfinite(canary.value) else None
    message = judgement.message
    if judgement.verdict is MeasurementVerdict.SUCCESSFUL and not eligible:
        message += f" (not evidence: the window began before weight {served} % was served)"
    record = MeasurementRecord(at=at, verdict=judgement.verdict, value=finite, requests=canary.requests,
                               weight=weight, message=message,
                               stable_value=stable.value if beside and stable is not None else None)
    counters = dataclasses.replace(counters, consecutive_errors=0, last_at=at)
    if judgement.verdict is MeasurementVerdict.FAILED:
        return Folded(_kept(dataclasses.replace(counters, failed=counters.failed + 1), record), judgement.message)
    if judgement.verdict is MeasurementVerdict.INCONCLUSIVE:
        counters = dataclasses.replace(counters, inconclusive=counters.inconclusive + 1)
    elif eligible:
        counters = dataclasses.replace(counters, successes_at_step=counters.successes_at_step + 1)
    return Folded(_kept(counters, record))


def record(policy: Policy, state: RolloutState, measurements: Iterable[Measurement], *, all_ready: bool,
           served: int) -> Recorded:
    """Fold the new `measurements` (oldest first) into the counters of the policy's metrics.

    `all_ready`: every canary pod of the step is ready; `served`: the weight the step serves once they
    are. Measurements of metrics the policy does not judge are left out.
    """
    policies = {m.name: m for m in policy.metrics}
    metrics: dict[str, MetricState] = dict(state.metrics)
    failures: list[Failure] = []
    step_start = latest(state.weight_since, state.step_started_at)
    for measurement in sorted(measurements, key=lambda m: m.at):
        metric = policies.get(measurement.metric)
        if metric is None:
            continue
        counters = metrics.get(metric.name, MetricState())
        seen = latest(counters.last_at, counters.last_error_at)
        if seen is not None and stamp(measurement.at) <= seen:
            continue  # already recorded
        eligible = (all_ready and state.effective_weight == served and step_start is not None
                    and stamp(measurement.window_start) >= step_start)
        folded = fold(counters, measurement, metric, min_requests=policy.min_requests,
                      weight=state.effective_weight, served=served, eligible=eligible)
        metrics[metric.name] = folded.counters
        if folded.failure is not None:
            failures.append(Failure(metric.name, folded.failure))
    return Recorded(metrics, tuple(failures))
