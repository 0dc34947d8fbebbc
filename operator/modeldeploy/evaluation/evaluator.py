"""Sending a golden set to a revision's pods and counting the answers.

Each example goes once to one canary pod and, when stable takes part, once to one stable pod: the
examples are dealt out over the pods in turn, and at most `concurrency` examples are in flight. Pods
are addressed directly (`http://POD-IP:PORT/predictions/MODEL`), never through the Service users reach,
so no user gets these answers and no user request waits behind them. An answer that is not 2xx, that
comes after `timeout`, or whose label cannot be read counts as wrong and as an error; the first few are
quoted with their line. The examples are read as they are sent and the answers counted as they come,
so memory stays bounded whatever the size of the set.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterable, Mapping
from typing import Any

import aiohttp

from modeldeploy.canary.quality import Answer, Counter, PairCounter, PairedTally, Tally
from modeldeploy.evaluation.goldenset import Example
from modeldeploy.evaluation.prediction import Prediction, PredictionError, read_label

PROBLEMS_QUOTED = 3
"""How many unreadable answers a result quotes (it counts them all)."""


@dataclasses.dataclass(frozen=True)
class Pods:
    """One revision's inference endpoints, one per ready pod."""

    role: str
    urls: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """One measurement's result: canary's counts, stable's and the paired counts when stable answered
    too, the first problems quoted, and how long it took."""

    canary: Tally
    stable: Tally | None = None
    paired: PairedTally | None = None
    problems: tuple[str, ...] = ()
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"canary": self.canary.to_dict(), "problems": list(self.problems),
                               "seconds": round(self.seconds, 3)}
        if self.stable is not None:
            out["stable"] = self.stable.to_dict()
        if self.paired is not None:
            out["paired"] = self.paired.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Evaluation:
        return cls(Tally.from_dict(data["canary"]),
                   Tally.from_dict(data["stable"]) if data.get("stable") else None,
                   PairedTally.from_dict(data["paired"]) if data.get("paired") else None,
                   tuple(str(p) for p in data.get("problems") or ()), float(data.get("seconds", 0.0)))


class _Problems:
    def __init__(self) -> None:
        self.quoted: list[str] = []

    def note(self, example: Example, role: str, why: str) -> None:
        if len(self.quoted) < PROBLEMS_QUOTED:
            self.quoted.append(f"line {example.line}, {role}: {why}")


async def _answer(session: aiohttp.ClientSession, url: str, example: Example, prediction: Prediction,
                  role: str, problems: _Problems) -> Answer:
    try:
        async with session.post(url, data=example.body, headers={"Content-Type": example.content_type}) as response:
            body = await response.read()
            if not 200 <= response.status < 300:
                text = body[:80].decode("utf-8", errors="replace").strip()
                problems.note(example, role, f"HTTP {response.status} {text!r}")
                return Answer(example.label, None)
    except TimeoutError:
        problems.note(example, role, "no answer within the response timeout")
        return Answer(example.label, None)
    except aiohttp.ClientError as error:
        problems.note(example, role, f"no answer: {error}")
        return Answer(example.label, None)
    try:
        return Answer(example.label, read_label(prediction, body))
    except PredictionError as error:
        problems.note(example, role, str(error))
        return Answer(example.label, None)


async def evaluate(examples: Iterable[Example], prediction: Prediction, canary: Pods, stable: Pods | None = None,
                   *, concurrency: int = 8, response_timeout: float = 30.0) -> Evaluation:
    """Send every example to canary (and stable) and count the answers."""
    if not canary.urls or (stable is not None and not stable.urls):
        empty = canary if not canary.urls else stable
        assert empty is not None
        raise ValueError(f"no ready {empty.role} pod to send the examples to")
    started = time.monotonic()
    problems = _Problems()
    alone, both = Counter(), PairCounter()
    queue: asyncio.Queue[tuple[int, Example] | None] = asyncio.Queue(maxsize=2 * concurrency)
    client_timeout = aiohttp.ClientTimeout(total=response_timeout)

    async def work(session: aiohttp.ClientSession) -> None:
        while (item := await queue.get()) is not None:
            index, example = item
            ours = _answer(session, canary.urls[index % len(canary.urls)], example, prediction, canary.role,
                           problems)
            if stable is None:
                alone.add(await ours)
                continue
            theirs = _answer(session, stable.urls[index % len(stable.urls)], example, prediction, stable.role,
                             problems)
            both.add(*await asyncio.gather(ours, theirs))

    async def produce() -> None:
        for index, example in enumerate(examples):
            await queue.put((index, example))
        for _ in range(concurrency):
            await queue.put(None)

    connector = aiohttp.TCPConnector(limit=2 * concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(concurrency):
                    group.create_task(work(session))
                group.create_task(produce())
        except ExceptionGroup as failed:
            raise failed.exceptions[0] from None  # a bad line of the set, say: the others were cancelled
    seconds = time.monotonic() - started
    if stable is None:
        return Evaluation(alone.tally(), problems=tuple(problems.quoted), seconds=seconds)
    return Evaluation(both.canary.tally(), both.stable.tally(), both.paired(), tuple(problems.quoted), seconds)
