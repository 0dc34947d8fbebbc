"""The node agent learns a container's init PID even when the launcher writes it after the start."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from localcluster.agent.containers import PodSandbox


@pytest.fixture
def running() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    process.kill()
    process.wait()


def test_a_pid_written_after_the_start_report_is_waited_for(tmp_path: Path,
                                                            running: subprocess.Popen[bytes]) -> None:
    pid_file = tmp_path / "pid"

    def launcher_writes_late() -> None:
        (tmp_path / "pid.partial").write_text("4242")
        (tmp_path / "pid.partial").replace(pid_file)

    late = threading.Timer(0.3, launcher_writes_late)  # the launcher's parent, descheduled after its fork
    late.start()
    assert PodSandbox.read_init_pid(pid_file, running, time.monotonic() + 10) == 4242
    late.join()


def test_no_pid_when_the_launcher_exits_without_writing_one(tmp_path: Path) -> None:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    assert PodSandbox.read_init_pid(tmp_path / "pid", process, time.monotonic() + 10) is None


def test_no_pid_past_the_deadline(tmp_path: Path, running: subprocess.Popen[bytes]) -> None:
    assert PodSandbox.read_init_pid(tmp_path / "pid", running, time.monotonic()) is None
