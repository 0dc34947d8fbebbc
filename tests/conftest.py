"""Fixtures shared by every test tier.

`cluster` starts the local cluster once per test session (see hack/localcluster); `namespace`
gives each test a fresh namespace and removes it afterwards; `prometheus` is the address of a
Prometheus that scrapes the cluster's annotated pods, started once per session for the tests that
ask for it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from localcluster import LocalCluster


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A test that stops the session's cluster runs last (a stable sort keeps the others' order).
    items.sort(key=lambda item: item.get_closest_marker("stops_session_cluster") is not None)


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


@pytest.fixture(scope="session")
def prometheus(cluster: LocalCluster) -> str:
    """`http://CLUSTER-IP:9090` of the Prometheus in namespace monitoring (the Service
    prometheus.monitoring.svc:9090, reached from the host through kube-proxy)."""
    return cluster.install_prometheus()
