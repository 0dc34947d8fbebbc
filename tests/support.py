"""Helpers shared by the test tiers (fixtures live in conftest.py files)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from localcluster import LocalCluster

REPO = Path(__file__).resolve().parents[1]


def wait_for(condition: Callable[[], object], timeout: float = 60, interval: float = 0.2,
             message: str = "condition") -> object:
    """Polls until `condition()` returns something truthy; fails with the last value otherwise."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}; last value: {last!r}")


def kubectl_json(cluster: LocalCluster, *args: str) -> dict[str, Any]:
    return json.loads(cluster.kubectl(*args, "-o", "json").stdout)  # type: ignore[no-any-return]


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, **kwargs)  # type: ignore[no-any-return]
