"""`modeldeploy evaluate`, the measurement Job's command: one JSON line with the counts, or the error
naming the set and the problem (exit 1); a pinned set is checked before any example is sent."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from modeldeploy.canary.quality import Tally, accuracy
from modeldeploy.cli import main

LABELS = ("setosa", "versicolor", "virginica")


@pytest.fixture
def model() -> Iterator[tuple[str, list[int]]]:
    """An HTTP server on 127.0.0.1 answering like the iris model; the requests it saw."""
    seen: list[int] = []
    ready = threading.Event()
    address: list[str] = []
    loop = asyncio.new_event_loop()

    async def predict(request: web.Request) -> web.Response:
        x = int((await request.json())["data"][0][0])
        seen.append(x)
        return web.json_response({"labels": [LABELS[x % 3]]})

    async def serve() -> web.AppRunner:
        app = web.Application()
        app.router.add_post("/predictions/iris", predict)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        address.append(f"http://127.0.0.1:{runner.addresses[0][1]}/predictions/iris")
        return runner

    def run() -> None:
        asyncio.set_event_loop(loop)
        runner = loop.run_until_complete(serve())
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(10)
    yield address[0], seen
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def golden(tmp_path: Path, size: int = 30) -> Path:
    path = tmp_path / "golden.jsonl"
    path.write_text("".join(json.dumps({"input": {"data": [[i, 1, 1, 1]]}, "label": LABELS[i % 3]}) + "\n"
                            for i in range(size)))
    return path


def evaluate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, object]]:
    code = main(["evaluate", *args])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    return code, json.loads(last)


def test_a_pinned_set_is_measured_and_the_counts_printed_as_one_json_line(
    model: tuple[str, list[int]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, seen = model
    path = golden(tmp_path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()

    code, printed = evaluate(capsys, "--golden-set", str(path), "--sha256", digest, "--measure", "accuracy",
                             "--prediction", "$.labels[0]", "--canary", url)

    assert code == 0 and sorted(seen) == list(range(30))
    result = printed["evaluation"]
    assert isinstance(result, dict)
    assert accuracy(Tally.from_dict(result["canary"])).value == 1.0


def test_a_wrong_pin_is_refused_before_any_example_is_sent(
    model: tuple[str, list[int]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, seen = model
    code, printed = evaluate(capsys, "--golden-set", str(golden(tmp_path)), "--sha256", "0" * 64,
                             "--measure", "accuracy", "--canary", url)

    assert code == 1 and seen == []
    assert "sha256" in str(printed["error"]) and "golden set" in str(printed["error"])


def test_a_missing_set_and_a_bad_path_are_errors_naming_them(
    model: tuple[str, list[int]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, seen = model
    missing = tmp_path / "nowhere.jsonl"
    code, printed = evaluate(capsys, "--golden-set", str(missing), "--measure", "accuracy", "--canary", url)
    assert code == 1 and str(missing) in str(printed["error"])

    code, printed = evaluate(capsys, "--golden-set", str(golden(tmp_path)), "--measure", "accuracy",
                             "--prediction", "$..labels", "--canary", url)
    assert code == 1 and "'$..labels' is not a path" in str(printed["error"])
    assert seen == []


def test_a_line_without_a_label_is_an_error_naming_the_line(
    model: tuple[str, list[int]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = model
    path = golden(tmp_path, 3)
    path.write_text(path.read_text() + '{"input": {"data": [[3, 1, 1, 1]]}}\n')

    code, printed = evaluate(capsys, "--golden-set", str(path), "--measure", "macro-f1", "--canary", url)

    assert code == 1 and printed["error"] == f"{path}: line 4: has no label (the measure compares answers with labels)"
