"""The goldenSet provider: one Job per measurement, pending while it runs, its counts judged once it finished."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from modeldeploy.api.revision import Role
from modeldeploy.api.spec import ModelDeployment, parse
from modeldeploy.canary.quality import Answer, pair, tally
from modeldeploy.evaluation.evaluator import Evaluation
from modeldeploy.metrics.base import JobOutcome, Pod, ProviderError, Target
from modeldeploy.metrics.golden_set import GoldenSetMetrics
from modeldeploy.metrics.registry import NoJobs
from modeldeploy.settings import OperatorIdentity

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
WINDOW = NOW - timedelta(seconds=30)


class Jobs:
    """The Jobs of one namespace as the API would keep them."""

    def __init__(self) -> None:
        self.created: dict[str, Mapping[str, Any]] = {}
        self.outcomes: dict[str, JobOutcome] = {}
        self.deleted: list[str] = []
        self.fail_with: str | None = None

    async def create(self, manifest: Mapping[str, Any]) -> None:
        if self.fail_with:
            raise ProviderError(self.fail_with)
        self.created[manifest["metadata"]["name"]] = manifest
        self.outcomes[manifest["metadata"]["name"]] = JobOutcome()

    async def outcome(self, namespace: str, name: str) -> JobOutcome | None:
        return self.outcomes.get(name)

    async def delete(self, namespace: str, name: str) -> None:
        self.deleted.append(name)
        self.outcomes.pop(name, None)

    def finish(self, last_line: str, failure: str = "") -> None:
        for name in self.outcomes:
            self.outcomes[name] = JobOutcome(finished=True, failure=failure, last_line=last_line)


def deployment(**metric: Any) -> ModelDeployment:
    provider = {"source": {"uri": "pvc://models/iris/golden.jsonl"}, **metric.pop("provider", {})}
    return parse({"metadata": {"name": "iris", "namespace": "team", "uid": "u-1"}, "spec": {
        "model": {"name": "iris", "serializedFile": {"uri": "pvc://models/iris/1/model.pt"},
                  "handler": {"uri": "pvc://models/iris/handler.py"}},
        "rollout": {"steps": [{"weight": 50}, {"weight": 100}], "analysis": {"metrics": [
            {"name": "quality", "min": 0.9, "provider": {"goldenSet": provider}, **metric}]}}}})


def target(md: ModelDeployment, *roles: Role) -> Target:
    pods = tuple(Pod(name=f"{role}-{i}", uid=f"{role}-{i}", ip=f"10.244.0.{10 * n + i}", role=role)
                 for n, role in enumerate(roles, start=1) for i in range(2))
    return Target(namespace=md.namespace, name=md.name, model_name="iris", pods=pods, canary_revision="abc123",
                  deployment=md)


def answers(right: int, wrong: int) -> list[Answer]:
    return [Answer("setosa", "setosa")] * right + [Answer("setosa", "virginica")] * wrong


def result(canary: list[Answer], stable: list[Answer] | None = None) -> str:
    evaluation = Evaluation(tally(canary), tally(stable) if stable else None,
                            pair(canary, stable) if stable else None)
    return json.dumps({"evaluation": evaluation.to_dict()})


def measure(provider: GoldenSetMetrics, md: ModelDeployment, tgt: Target) -> Any:
    return asyncio.run(provider.measure(md.spec.rollout.analysis.metrics[0], tgt, WINDOW, NOW))


def test_a_measurement_is_one_job_pending_while_it_runs_then_its_counts_with_their_interval() -> None:
    jobs = Jobs()
    provider = GoldenSetMetrics(jobs, OperatorIdentity(image="modeldeploy:test"))
    md = deployment()
    tgt = target(md, Role.STABLE, Role.CANARY)

    first, second = measure(provider, md, tgt), measure(provider, md, tgt)
    assert first.pending and second.pending and first.canary is None and first.error is None
    (name, job), = jobs.created.items()
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    # the pods' IPs on the inference port; stable's too, for its accuracy quoted beside the canary's
    assert args[args.index("--canary") + 1] == "http://10.244.0.20:8080/predictions/iris"
    assert args[args.index("--stable") + 1] == "http://10.244.0.10:8080/predictions/iris"

    jobs.finish(result(answers(97, 3), answers(98, 2)))
    done = measure(provider, md, tgt)
    assert not done.pending and done.error is None
    assert done.stable is not None and done.stable.value == 0.98
    assert done.canary.detail == "setosa 97/100 right (3 as virginica), virginica predicted 3, never expected"
    assert (done.canary.value, done.canary.requests, done.canary.unit) == (0.97, 100, "examples")
    low, high = done.canary.interval
    assert 0.91 < low < 0.97 < high < 0.995
    assert jobs.deleted == [name]


def test_relative_to_stable_judges_canary_minus_stable_on_the_same_examples_with_stables_value_beside() -> None:
    jobs = Jobs()
    provider = GoldenSetMetrics(jobs, OperatorIdentity())
    md = deployment(relativeTo="stable", min=-0.02)
    tgt = target(md, Role.STABLE, Role.CANARY)

    measure(provider, md, tgt)
    args = next(iter(jobs.created.values()))["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--stable") + 1] == "http://10.244.0.10:8080/predictions/iris"
    jobs.finish(result(answers(800, 200), answers(900, 100)))
    done = measure(provider, md, tgt)

    assert done.canary.value == pytest.approx(-0.10)
    assert done.canary.interval[1] < -0.02  # ten points worse, shown at 95 % on 1,000 paired examples
    assert done.stable.value == pytest.approx(0.90)


@pytest.mark.parametrize(("line", "failure", "expected"), [
    ('{"error": "golden set /golden/models/iris/golden.jsonl, line 7: not JSON"}', "",
     "line 7: not JSON"),
    ("Traceback (most recent call last):", "BackoffLimitExceeded: Job has reached the specified backoff limit",
     "ended without a result"),
    ("", "DeadlineExceeded: Job was active longer than specified deadline", "DeadlineExceeded"),
])
def test_a_job_that_reports_a_problem_or_none_is_an_error_naming_the_set_never_a_pass(
        line: str, failure: str, expected: str) -> None:
    jobs = Jobs()
    provider = GoldenSetMetrics(jobs, OperatorIdentity())
    md = deployment()
    measure(provider, md, target(md, Role.CANARY))
    jobs.finish(line, failure)

    done = measure(provider, md, target(md, Role.CANARY))

    assert done.canary is None and done.error is not None
    assert "pvc://models/iris/golden.jsonl" in done.error and expected in done.error


def test_without_stable_to_compare_with_or_a_job_it_may_create_the_measurement_is_an_error() -> None:
    md = deployment(provider={"measure": "agreement"})
    no_stable = measure(GoldenSetMetrics(Jobs(), OperatorIdentity()), md, target(md, Role.CANARY))
    no_canary = measure(GoldenSetMetrics(Jobs(), OperatorIdentity()), md, target(md, Role.STABLE))
    refused_jobs = Jobs()
    refused_jobs.fail_with = "jobs.batch is forbidden"
    refused = measure(GoldenSetMetrics(refused_jobs, OperatorIdentity()), md, target(md, Role.STABLE, Role.CANARY))
    no_access = measure(GoldenSetMetrics(NoJobs(), OperatorIdentity()), md, target(md, Role.STABLE, Role.CANARY))

    assert "agreement compares with stable, and no stable pod is serving" in no_stable.error
    assert (no_canary.error, no_canary.canary, no_canary.pending) == (None, None, False)  # a window begun
    assert "jobs.batch is forbidden" in refused.error
    assert "runs no provider Jobs" in no_access.error
