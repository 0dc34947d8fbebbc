"""Real TorchServe 0.12 processes for tests: free 127.0.0.1 ports, token auth off, clean stop."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
TRAIN_SCRIPT = REPO / "model_archives" / "iris" / "train.py"
STARTUP_DEADLINE_SECONDS = 180.0
STOP_DEADLINE_SECONDS = 60.0


def free_port() -> int:
    """A TCP port nobody listens on right now (127.0.0.1)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_json(method: str, url: str, body: Any = None, timeout: float = 30.0) -> tuple[int, Any]:
    """(status, decoded JSON or text) of one HTTP request; HTTP errors are returned, not raised."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


@dataclass
class TorchServe:
    """One running TorchServe: its addresses and logs."""

    process: subprocess.Popen[bytes]
    home: Path
    env: dict[str, str]
    inference: str
    management: str
    models: dict[str, str]
    metrics_port: int = 0

    def log_tail(self, lines: int = 80) -> str:
        """The end of TorchServe's own log and of its console output, for failure messages."""
        parts = []
        for name in ("logs/ts_log.log", "logs/model_log.log", "console.log"):
            path = self.home / name
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {name}\n" + "\n".join(text))
        return "\n".join(parts)

    def model_status(self, name: str) -> tuple[int, Any]:
        """GET /models/NAME on the management API."""
        return http_json("GET", f"{self.management}/models/{name}", timeout=5)

    def wait_ready(self, names: Sequence[str], deadline_seconds: float = STARTUP_DEADLINE_SECONDS) -> None:
        """Poll the management API until every model has a READY worker, or fail with the logs."""
        deadline = time.monotonic() + deadline_seconds
        pending = set(names)
        while pending:
            if self.process.poll() is not None:
                pytest.fail(f"TorchServe exited with {self.process.returncode}\n{self.log_tail()}")
            for name in sorted(pending):
                with contextlib.suppress(OSError):
                    status, body = self.model_status(name)
                    workers = body[0].get("workers", []) if status == 200 and isinstance(body, list) else []
                    if any(worker.get("status") == "READY" for worker in workers):
                        pending.discard(name)
            if pending and time.monotonic() > deadline:
                pytest.fail(f"models {sorted(pending)} not READY within {deadline_seconds}s\n{self.log_tail()}")
            if pending:
                time.sleep(0.5)

    def predict(self, name: str, body: Any) -> tuple[int, Any]:
        """POST /predictions/NAME."""
        return http_json("POST", f"{self.inference}/predictions/{name}", body)

    def stop(self) -> None:
        """torchserve --stop (same TMPDIR as the start, so the same pid file), then reap the process group;
        kill the group if it does not end in time."""
        if self.process.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                subprocess.run(
                    [str(VENV_BIN / "torchserve"), "--stop"],
                    env=self.env,
                    cwd=self.home,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    timeout=STOP_DEADLINE_SECONDS,
                )
            try:
                self.process.wait(timeout=STOP_DEADLINE_SECONDS)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        # Workers live in the same process group: make sure none outlives the test.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)


def start_torchserve(home: Path, model_store: Path, models: dict[str, str],
                     extra_config: Sequence[str] = ()) -> TorchServe:
    """Start TorchServe in the foreground of its own process group, serving models (name -> store entry).

    Every port is a free 127.0.0.1 port, token authorization is off, snapshots are off, and TMPDIR /
    TEMP point into home so that several instances never share a pid file or an unpack directory.
    """
    home.mkdir(parents=True, exist_ok=True)
    tmp = home / "tmp"
    tmp.mkdir(exist_ok=True)
    ports = {key: free_port() for key in ("inference", "management", "metrics", "grpc_inf", "grpc_mgmt")}
    config = home / "config.properties"
    config.write_text(
        "\n".join(
            [
                f"inference_address=http://127.0.0.1:{ports['inference']}",
                f"management_address=http://127.0.0.1:{ports['management']}",
                f"metrics_address=http://127.0.0.1:{ports['metrics']}",
                "grpc_inference_address=127.0.0.1",
                "grpc_management_address=127.0.0.1",
                f"grpc_inference_port={ports['grpc_inf']}",
                f"grpc_management_port={ports['grpc_mgmt']}",
                f"model_store={model_store}",
                "disable_token_authorization=true",
                "enable_model_api=false",
                "install_py_dep_per_model=false",
                "disable_system_metrics=true",
                "default_workers_per_model=1",
                "number_of_netty_threads=2",
                "vmargs=-Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1",
                *extra_config,
                "",
            ]
        )
    )
    env = dict(os.environ)
    env.update(
        TMPDIR=str(tmp),
        TEMP=str(tmp),
        LOG_LOCATION=str(home / "logs"),
        METRICS_LOCATION=str(home / "logs"),
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        OMP_NUM_THREADS="1",
    )
    env.pop("TS_CONFIG_FILE", None)
    command = [
        str(VENV_BIN / "torchserve"),
        "--start",
        "--foreground",
        "--ncs",
        "--disable-token-auth",
        "--model-store",
        str(model_store),
        "--ts-config",
        str(config),
        "--models",
        *[f"{name}={entry}" for name, entry in models.items()],
    ]
    console = open(home / "console.log", "wb")  # noqa: SIM115 - owned by the process for its lifetime
    process = subprocess.Popen(
        command, cwd=home, env=env, stdout=console, stderr=subprocess.STDOUT, start_new_session=True
    )
    console.close()
    return TorchServe(
        process=process,
        home=home,
        env=env,
        inference=f"http://127.0.0.1:{ports['inference']}",
        management=f"http://127.0.0.1:{ports['management']}",
        models=dict(models),
        metrics_port=ports["metrics"],
    )


@pytest.fixture
def torchserve_factory(tmp_path: Path) -> Iterator[Any]:
    """Start TorchServe instances on demand; every one is stopped when the test ends."""
    started: list[TorchServe] = []

    def start(model_store: Path, models: dict[str, str], name: str = "ts",
              extra_config: Sequence[str] = ()) -> TorchServe:
        server = start_torchserve(tmp_path / name, model_store, models, extra_config)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def iris_versions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """model_archives/iris trained once per session: {version: directory with the archive inputs}."""
    root = tmp_path_factory.mktemp("iris")
    found: dict[str, Path] = {}
    for version in ("v1", "v2", "faulty"):
        out = root / version
        subprocess.run(
            [sys.executable, str(TRAIN_SCRIPT), "--out", str(out), "--version", version],
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=300,
        )
        found[version] = out
    return found
