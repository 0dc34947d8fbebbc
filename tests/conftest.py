"""Fixtures shared by every test tier.

`cluster` starts the local cluster once per test session (see hack/localcluster); `namespace`
gives each test a fresh namespace and removes it afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from localcluster import LocalCluster
from support import wait_for


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
    # Pods are refused until the controllers gave the namespace its ServiceAccount; after an API server
    # restart they may take a while (their watches re-list with back-off).
    wait_for(lambda: cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0,
             timeout=120, message=f"namespace {name}'s default ServiceAccount")
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
