"""Fixtures shared by every test tier.

`cluster` starts the local cluster once per test session (see hack/localcluster); `namespace`
gives each test a fresh namespace and removes it afterwards; `prometheus` is the address of a
Prometheus that scrapes the cluster's annotated pods, started once per session for the tests that
ask for it. `observed_objects` is the folder where the whole-flow tests keep the objects the
operator wrote, for the GitOps health checks (tests/gitops.py).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from localcluster import LocalCluster
from support import wait_for


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "judges_observed_objects: judges the objects the whole-flow tests kept "
                                       "(`observed_objects`), so runs after them")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A test that stops the session's cluster runs last, and a judge of the objects the other tests kept
    # just before it (a stable sort keeps the others' order).
    items.sort(key=lambda item: (item.get_closest_marker("stops_session_cluster") is not None,
                                 item.get_closest_marker("judges_observed_objects") is not None))


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


@pytest.fixture(scope="session")
def prometheus(cluster: LocalCluster) -> str:
    """`http://CLUSTER-IP:9090` of the Prometheus in namespace monitoring (the Service
    prometheus.monitoring.svc:9090, reached from the host through kube-proxy)."""
    return cluster.install_prometheus()


@pytest.fixture(scope="session")
def observed_objects(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """$MODELDEPLOY_OBSERVED_OBJECTS when set (kept for a later run of tests/unit/test_gitops_health.py),
    else a folder of this session."""
    folder = os.environ.get("MODELDEPLOY_OBSERVED_OBJECTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("observed-objects")
    path.mkdir(parents=True, exist_ok=True)
    return path
