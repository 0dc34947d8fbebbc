"""The evaluator against real HTTP servers on loopback: every example sent once per role, dealt out over
the pods, and every unusable answer counted as wrong with its reason."""

from __future__ import annotations

import asyncio
import collections
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from modeldeploy.api.spec import GoldenSetMeasure
from modeldeploy.canary.quality import accuracy, agreement, difference
from modeldeploy.evaluation.evaluator import Evaluation, Pods, evaluate
from modeldeploy.evaluation.goldenset import Example, GoldenSetError, read_examples
from modeldeploy.evaluation.prediction import JsonPath

LABELS = ("setosa", "versicolor", "virginica")
PREDICTION = JsonPath("$.labels[0]")


def golden_set(size: int) -> list[Example]:
    return [Example(i + 1, json.dumps({"data": [[float(i), 1.0, 1.0, 1.0]]}).encode(), "application/json",
                    LABELS[i % 3]) for i in range(size)]


def labels_for(version: str, x: int) -> tuple[int, str]:
    """What each fake model version answers for input x: (HTTP status, label)."""
    right = LABELS[x % 3]
    if version == "swapped" and x % 3 == 0:
        return 200, LABELS[(x + 1) % 3]
    if version == "flaky" and x % 10 == 0:
        return 503, ""
    return 200, right


@asynccontextmanager
async def servers(count: int, seen: collections.Counter[str]) -> AsyncIterator[list[str]]:
    """`count` HTTP servers on 127.0.0.1 answering POST /predictions/{version} like the iris model."""
    runners, bases = [], []
    for n in range(count):
        async def predict(request: web.Request, n: int = n) -> web.Response:
            body = await request.json()
            x = int(body["data"][0][0])
            seen[f"{n}:{x}"] += 1
            version = request.match_info["version"]
            if version == "slow" and x == 4:
                await asyncio.sleep(2)
            if version == "text":
                return web.Response(text="<html>oops</html>")
            status, label = labels_for(version, x)
            if status != 200:
                return web.Response(status=status, text="Prediction failed")
            return web.json_response({"labels": [label], "probabilities": [[0.9, 0.05, 0.05]]})

        app = web.Application()
        app.router.add_post("/predictions/{version}", predict)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        runners.append(runner)
        bases.append(f"http://127.0.0.1:{port}/predictions")
    try:
        yield bases
    finally:
        for runner in runners:
            await runner.cleanup()


def run(scenario: Callable[[list[str], collections.Counter[str]], Awaitable[Evaluation]],
        pods: int = 2) -> tuple[Evaluation, collections.Counter[str]]:
    seen: collections.Counter[str] = collections.Counter()

    async def main() -> Evaluation:
        async with servers(pods, seen) as bases:
            return await scenario(bases, seen)

    return asyncio.run(main()), seen


def test_each_example_goes_once_to_one_pod_of_each_role_dealt_out_in_turn() -> None:
    async def scenario(bases: list[str], seen: collections.Counter[str]) -> Evaluation:
        canary = Pods("canary", (f"{bases[0]}/good",))
        stable = Pods("stable", (f"{bases[1]}/good",))
        return await evaluate(golden_set(90), PREDICTION, canary, stable, concurrency=4)

    result, seen = run(scenario)

    assert sorted(seen.values()) == [1] * 180  # 90 examples, once to canary's pod and once to stable's
    assert result.stable is not None and result.canary.examples == result.stable.examples == 90
    assert accuracy(result.canary).value == 1.0 and result.problems == ()
    assert result.paired is not None and agreement(result.paired).value == 1.0


def test_the_examples_are_dealt_out_over_the_pods_of_a_role() -> None:
    async def scenario(bases: list[str], seen: collections.Counter[str]) -> Evaluation:
        return await evaluate(golden_set(30), PREDICTION, Pods("canary", (f"{bases[0]}/good", f"{bases[1]}/good")))

    _, seen = run(scenario)

    per_pod = collections.Counter(key.split(":")[0] for key in seen)
    assert per_pod == {"0": 15, "1": 15}


def test_wrong_labels_lose_accuracy_against_stable_on_the_same_examples() -> None:
    async def scenario(bases: list[str], seen: collections.Counter[str]) -> Evaluation:
        return await evaluate(golden_set(150), PREDICTION, Pods("canary", (f"{bases[0]}/swapped",)),
                              Pods("stable", (f"{bases[1]}/good",)))

    result, _ = run(scenario)

    assert result.stable is not None and result.paired is not None
    assert accuracy(result.canary).value == pytest.approx(2 / 3)
    assert result.paired.stable_only == 50 and result.paired.canary_only == 0
    assert difference(GoldenSetMeasure.ACCURACY, result.canary, result.stable, result.paired).high < -0.02
    assert result.canary.labels["setosa"].confused_with == "versicolor"


def test_errors_timeouts_and_unreadable_answers_count_as_wrong_and_are_quoted_with_their_line() -> None:
    async def flaky(bases: list[str], seen: collections.Counter[str]) -> Evaluation:
        return await evaluate(golden_set(30), PREDICTION, Pods("canary", (f"{bases[0]}/flaky",)))

    async def slow(bases: list[str], seen: collections.Counter[str]) -> Evaluation:
        return await evaluate(golden_set(6), PREDICTION, Pods("canary", (f"{bases[0]}/slow",)), response_timeout=0.5)

    async def text(bases: list[str], seen: collections.Counter[str]) -> Evaluation:
        return await evaluate(golden_set(2), PREDICTION, Pods("canary", (f"{bases[0]}/text",)))

    failed, _ = run(flaky, pods=1)
    assert (failed.canary.errors, failed.canary.right) == (3, 27)
    assert "line 1, canary: HTTP 503 'Prediction failed'" in failed.problems
    timed_out, _ = run(slow, pods=1)
    assert timed_out.canary.errors == 1 and timed_out.problems == ("line 5, canary: no answer within the response "
                                                                  "timeout",)
    unreadable, _ = run(text, pods=1)
    assert unreadable.canary.errors == 2 and "the answer is not JSON" in unreadable.problems[0]
    assert Evaluation.from_dict(json.loads(json.dumps(failed.to_dict()))) == dataclass_rounded(failed)


def dataclass_rounded(result: Evaluation) -> Evaluation:
    return Evaluation(result.canary, result.stable, result.paired, result.problems, round(result.seconds, 3))


def test_a_bad_line_stops_the_measurement_with_the_sets_error() -> None:
    lines = [b'{"input": {"data": [[0, 1, 1, 1]]}, "label": "setosa"}\n'] * 20 + [b"broken\n"]

    async def scenario(bases: list[str], seen: collections.Counter[str]) -> Evaluation:
        examples = read_examples(lines, "pvc://models/golden.jsonl", needs_labels=True)
        return await evaluate(examples, PREDICTION, Pods("canary", (f"{bases[0]}/good",)), concurrency=2)

    with pytest.raises(GoldenSetError, match=re.escape("pvc://models/golden.jsonl: line 21: is not JSON")):
        run(scenario, pods=1)


def test_no_ready_pod_is_an_error_not_an_empty_pass() -> None:
    with pytest.raises(ValueError, match="no ready stable pod"):
        asyncio.run(evaluate(golden_set(3), PREDICTION, Pods("canary", ("http://127.0.0.1:9/p",)), Pods("stable", ())))
