"""Fixtures shared by every test tier.

`cluster` starts the local cluster once per test session (see hack/localcluster); `namespace`
gives each test a fresh namespace and removes it afterwards.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from localcluster import LocalCluster

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    if os.geteuid() != 0:
        pytest.fail("the local cluster needs root (network and mount namespaces)")
    with LocalCluster() as running:
        yield running


@pytest.fixture
def namespace(cluster: LocalCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    base = request.node.name.lower().replace("_", "-")[:40].strip("-")
    name = f"{base}-{uuid.uuid4().hex[:5]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


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


def kubectl_json(cluster: LocalCluster, *args: str) -> dict:  # type: ignore[type-arg]
    import json

    return json.loads(cluster.kubectl(*args, "-o", "json").stdout)  # type: ignore[no-any-return]


def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload,no-any-return]
