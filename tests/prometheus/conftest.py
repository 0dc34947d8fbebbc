"""Fixtures: the exporter and one Prometheus for the session (see local_prometheus.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from local_prometheus import LABELS, Exporter, Prometheus, free_port, start_prometheus
from prometheus_client import CollectorRegistry, Gauge, start_http_server


@pytest.fixture(scope="session")
def exporter() -> Iterator[Exporter]:
    registry = CollectorRegistry()
    gauge = Gauge("modeldeploy_test_value", "A value the tests set", LABELS, registry=registry)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    yield Exporter(port=port, gauge=gauge)
    server.shutdown()
    thread.join(timeout=5)


@pytest.fixture(scope="session")
def prometheus(exporter: Exporter, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """One Prometheus for the session, scraping the exporter, with the exporter's series already stored."""
    running = start_prometheus(tmp_path_factory.mktemp("prometheus"), [f"127.0.0.1:{exporter.port}"])
    exporter.set(0.0, name="warm-up")
    deadline = time.monotonic() + 60
    while not running.instant('modeldeploy_test_value{name="warm-up"}'):
        if time.monotonic() > deadline:
            running.stop()
            pytest.fail(f"prometheus scraped nothing in 60 s: {running.log.read_text()[-2000:]}")
        time.sleep(0.3)
    yield running
    running.stop()
