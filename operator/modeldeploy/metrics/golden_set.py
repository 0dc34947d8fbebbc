"""The goldenSet provider: a golden set's examples sent to the canary's pods (and stable's), the answers
judged against the labels or against each other.

Each measurement is one Job (modeldeploy.evaluation.job), because the set may live on a claim that
only a pod can mount, and the operator mounts none. The first ask of a window creates the Job and
answers pending; later asks answer pending while it runs. Once it finished, its pod's last log line
holds the counts (`{"evaluation": ...}`) or the problem (`{"error": ...}`), the Job is deleted and the
counts become the samples: the canary's measure (or canary - stable with `relativeTo: stable`) with
its interval, and stable's own value beside it. The examples go to stable's pods too whenever there
are some: agreement and relativeTo need its answers, and every verdict quotes its value.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from modeldeploy.api.revision import Role
from modeldeploy.api.spec import GoldenSetMeasure, GoldenSetProvider, Metric, RelativeTo
from modeldeploy.canary.decide import Measurement
from modeldeploy.canary.quality import Estimate, agreement, confusion, difference, estimate, sample_of
from modeldeploy.evaluation.evaluator import Evaluation
from modeldeploy.evaluation.job import evaluation_job, job_name
from modeldeploy.metrics.base import ProviderError, ProviderJobs, Target
from modeldeploy.settings import OperatorIdentity


class EvaluationProblem(ProviderError):
    """The evaluation ran and reported why it could not count (the set unreadable, a line malformed)."""


class GoldenSetMetrics:
    """Golden-set metrics, one Job per measurement."""

    kind = GoldenSetProvider.kind

    def __init__(self, jobs: ProviderJobs, operator: OperatorIdentity) -> None:
        self._jobs = jobs
        self._operator = operator

    async def measure(self, metric: Metric, target: Target, window_start: datetime, now: datetime) -> Measurement:
        def error(message: str) -> Measurement:
            return Measurement(metric=metric.name, at=now, window_start=window_start, error=message)

        provider = metric.provider
        md = target.deployment
        if not isinstance(provider, GoldenSetProvider) or md is None or target.canary_revision is None:
            return error(f"metric {metric.name} is not a golden-set metric of a canary on trial")
        compares = provider.measure is GoldenSetMeasure.AGREEMENT or metric.relative_to is RelativeTo.STABLE
        inference = f"{md.spec.serving.port}/predictions/{md.spec.model.name}"
        urls = {role: tuple(f"http://{pod.ip}:{inference}" for pod in target.pods if pod.role is role)
                for role in Role}
        if not urls[Role.CANARY]:
            # No canary pod has loaded its model yet: nothing to ask, the window only begins.
            return Measurement(metric=metric.name, at=now, window_start=window_start)
        if compares and not urls[Role.STABLE]:
            return error(f"{provider.measure} compares with stable, and no stable pod is serving")
        name = job_name(md, metric, target.canary_revision, int(window_start.timestamp()))
        try:
            outcome = await self._jobs.outcome(md.namespace, name)
            if outcome is None:
                await self._jobs.create(evaluation_job(
                    md, metric, name, target.canary_revision, urls[Role.CANARY], urls[Role.STABLE], self._operator,
                    active_deadline_seconds=md.spec.rollout.progress_deadline_seconds))
                return Measurement(metric=metric.name, at=now, window_start=window_start, pending=True)
            if not outcome.finished:
                return Measurement(metric=metric.name, at=now, window_start=window_start, pending=True)
            await self._jobs.delete(md.namespace, name)
        except ProviderError as failed:
            return error(f"golden-set Job {name}: {failed}")
        try:
            evaluation = result_of(outcome.last_line)
        except EvaluationProblem as problem:  # the evaluation named it: the set, the line, what is wrong
            return error(f"golden set {provider.source.uri}: {problem}")
        except ProviderError as failed:
            return error(f"golden set {provider.source.uri}: {failed}"
                         + (f" (Job {name}: {outcome.failure})" if outcome.failure else ""))
        try:
            return judged(metric, provider, evaluation, now, window_start)
        except ValueError as failed:  # such as a measure that needs labels, counted without
            return error(f"golden set {provider.source.uri}: {failed}")

    async def close(self) -> None:
        """Nothing held between measurements."""


def result_of(line: str) -> Evaluation:
    """The counts a finished evaluation printed as its last line; ProviderError with its problem."""
    try:
        found: Any = json.loads(line)
    except ValueError:
        raise ProviderError(f"the evaluation ended without a result: {line[-300:]!r}") from None
    if not isinstance(found, dict):
        raise ProviderError(f"the evaluation printed {line[-300:]!r}, not a result")
    if "error" in found:
        raise EvaluationProblem(str(found["error"]))
    try:
        return Evaluation.from_dict(found["evaluation"])
    except (KeyError, TypeError, ValueError) as bad:
        raise ProviderError(f"the evaluation's result is malformed: {bad}") from None


def judged(metric: Metric, provider: GoldenSetProvider, evaluation: Evaluation, now: datetime,
           window_start: datetime) -> Measurement:
    """The measurement's samples: canary's estimate (or canary - stable) and stable's own."""
    measure = provider.measure
    stable_estimate: Estimate | None = None
    if measure is GoldenSetMeasure.AGREEMENT:
        if evaluation.paired is None:
            raise ValueError("agreement needs stable's answers, and the result has none")
        canary_estimate = agreement(evaluation.paired)
    else:
        canary_estimate = estimate(measure, evaluation.canary)
        if evaluation.stable is not None:
            stable_estimate = estimate(measure, evaluation.stable)
        if metric.relative_to is RelativeTo.STABLE:
            if evaluation.stable is None or evaluation.paired is None:
                raise ValueError("relativeTo: stable needs stable's answers, and the result has none")
            canary_estimate = difference(measure, evaluation.canary, evaluation.stable, evaluation.paired)
    detail = confusion(evaluation.canary) if measure is not GoldenSetMeasure.AGREEMENT or evaluation.canary.labels \
        else ""
    if evaluation.problems:
        detail += ("; " if detail else "") + "first problems: " + "; ".join(evaluation.problems)
    return Measurement(metric=metric.name, at=now, window_start=window_start,
                       canary=sample_of(canary_estimate, detail),
                       stable=sample_of(stable_estimate) if stable_estimate is not None else None)
