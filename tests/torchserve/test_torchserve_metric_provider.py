"""The canary's test models against real TorchServe 0.12, measured by the torchserve metric provider.

A faulty archive whose model-config.yaml asks for 30 % failures answers 30 % 5xx, and the
provider, scraping TorchServe's own Prometheus page, counts exactly those; a slow archive's added
latency shows in the mean latency; a metrics port nobody listens on is an Error, never a pass.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from test_archive_serving import iris_request, iris_rows, serving_directory

from modeldeploy.api.revision import Role
from modeldeploy.api.rollout import MeasurementVerdict
from modeldeploy.api.spec import Metric, TorchServeMetric, TorchServeProvider
from modeldeploy.archives import build_archive
from modeldeploy.canary.verdicts import Bounds, judge
from modeldeploy.metrics import Pod, Target
from modeldeploy.metrics.torchserve import TorchServeMetrics

pytestmark = pytest.mark.torchserve

ERROR_RATE = Metric("error-rate", TorchServeProvider(TorchServeMetric.ERROR_RATE), max=0.01)
LATENCY = Metric("latency", TorchServeProvider(TorchServeMetric.MEAN_LATENCY_MS), max=250)
T0 = datetime(2026, 11, 26, 2, 0, 0, tzinfo=UTC)
TRAIN_SCRIPT = Path(__file__).resolve().parents[2] / "model_archives" / "iris" / "train.py"


def unused_port() -> int:
    """A 127.0.0.1 port nobody listens on: a metrics port that refuses."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def train(out: Path, version: str, *options: str) -> Path:
    subprocess.run([sys.executable, str(TRAIN_SCRIPT), "--out", str(out), "--version", version, *options],
                   check=True, stdout=subprocess.DEVNULL, timeout=300)
    return out


def test_a_faulty_archive_answers_30_percent_5xx_and_the_provider_counts_them(
    tmp_path: Path, torchserve_factory: Any
) -> None:
    faulty = train(tmp_path / "faulty", "faulty", "--failure-fraction", "0.3")
    slow = train(tmp_path / "slow", "slow", "--latency-ms", "120")
    assert "failure_fraction: 0.3" in (faulty / "model-config.yaml").read_text()
    store = tmp_path / "store"
    results = {
        "iris-faulty": build_archive(iris_request(faulty, "iris-faulty", "2-faulty", "zip-store"), str(store)),
        "iris-slow": build_archive(iris_request(slow, "iris-slow", "2-slow", "zip-store"), str(store)),
    }
    served = serving_directory(tmp_path / "serve", results)
    server = torchserve_factory(served, {name: Path(result.key).name for name, result in results.items()},
                                extra_config=["metrics_mode=prometheus"])
    server.wait_ready(list(results))
    rows, _ = iris_rows()
    provider = TorchServeMetrics()
    pod = Pod("ts", "uid-ts", "127.0.0.1", Role.CANARY)

    async def measure(metric: Metric, model: str, window_start: datetime, now: datetime) -> Any:
        target = Target("default", "iris", model, (pod,), metrics_port=server.metrics_port)
        return await provider.measure(metric, target, window_start, now)

    async def scenario() -> None:
        try:
            begun = await measure(ERROR_RATE, "iris-faulty", T0, T0)
            assert begun.error is None and begun.canary is None, begun
            statuses = [server.predict("iris-faulty", {"data": rows[:2]})[0] for _ in range(100)]
            assert statuses.count(200) == 70, statuses
            assert all(500 <= status < 600 for status in statuses if status != 200)
            later = T0 + timedelta(seconds=30)
            measured = await measure(ERROR_RATE, "iris-faulty", T0, later)
            assert measured.error is None, measured.error
            assert measured.canary is not None
            assert (measured.canary.requests, measured.canary.events) == (100, 30), measured.canary
            judgement = judge("error-rate", measured.canary, Bounds(max=0.01), 20)
            assert judgement.verdict is MeasurementVerdict.FAILED, judgement.message

            await measure(LATENCY, "iris-slow", later, later)
            assert all(server.predict("iris-slow", {"data": rows[:2]})[0] == 200 for _ in range(10))
            latency = await measure(LATENCY, "iris-slow", later, later + timedelta(seconds=30))
            assert latency.canary is not None and latency.canary.requests == 10, latency
            assert latency.canary.value is not None and 120 <= latency.canary.value < 1000, latency.canary

            nobody = Target("default", "iris", "iris-faulty", (pod,), metrics_port=unused_port())
            refused = await provider.measure(ERROR_RATE, nobody, later, later + timedelta(seconds=60))
            assert refused.error is not None and "failed" in refused.error
        finally:
            await provider.close()

    asyncio.run(scenario())
