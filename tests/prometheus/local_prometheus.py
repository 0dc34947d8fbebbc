"""A real Prometheus (Debian's /usr/bin/prometheus) on loopback, scraping a tiny local exporter.

The exporter (prometheus_client) publishes `modeldeploy_test_value` series labelled like a
ModelDeployment's pods; each test sets the values it queries. Prometheus scrapes it every second.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import Gauge

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
LABELS = ("namespace", "name", "revision", "role")


def free_port() -> int:
    """A TCP port nobody listens on right now (127.0.0.1)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Exporter:
    """The scrape target: one gauge family the tests set."""

    port: int
    gauge: Gauge

    def set(self, value: float, namespace: str = "team", name: str = "iris", revision: str = "1b2c3d4e5f",
            role: str = "canary") -> None:
        self.gauge.labels(namespace=namespace, name=name, revision=revision, role=role).set(value)


@dataclass
class Prometheus:
    """A running Prometheus: its address and how to stop it."""

    address: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def instant(self, query: str) -> list[dict]:  # type: ignore[type-arg]
        """The raw result of an instant query (for waiting on scrapes), [] on any failure."""
        url = f"{self.address}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return list(json.load(response)["data"]["result"])
        except (urllib.error.URLError, OSError, KeyError, ValueError):
            return []


def start_prometheus(directory: Path, targets: list[str], web_config: Path | None = None) -> Prometheus:
    """Start Prometheus on a free loopback port scraping `targets` every second; wait until it is ready."""
    if not Path(PROMETHEUS).exists():
        pytest.fail("Debian's prometheus package is required (hack/install-system-packages.sh installs it)")
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "prometheus.yml"
    config.write_text(json.dumps({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "exporter", "static_configs": [{"targets": targets}]}],
    }))
    port = free_port()
    log = directory / "prometheus.log"
    argv = [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}"]
    scheme = "http"
    if web_config is not None:
        argv.append(f"--web.config.file={web_config}")
        scheme = "https"
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    running = Prometheus(address=f"{scheme}://127.0.0.1:{port}", process=process, log=log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"prometheus exited: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return running
        time.sleep(0.2)
    running.stop()
    pytest.fail(f"prometheus did not listen within 60 s: {log.read_text()[-2000:]}")
