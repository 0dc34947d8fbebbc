"""Fixtures of the whole-flow tests: the operator as users run it, claims holding the iris model."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.helpers import OperatorProcess
from gitops import save_observed
from localcluster import LocalCluster
from support import REPO, provide_iris_claims


@pytest.fixture(scope="session")
def iris_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The iris v1 model files, trained here once per session."""
    out = tmp_path_factory.mktemp("iris") / "v1"
    subprocess.run([sys.executable, str(REPO / "model_archives/iris/train.py"), "--out", str(out),
                    "--version", "v1"], check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def operator(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    cluster.kubectl("apply", "-f", str(REPO / "manifests" / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "crd/modeldeployments.modeldeploy.dev",
                    "--timeout=60s")
    running = OperatorProcess(cluster, tmp_path_factory.mktemp("operator") / "operator.log")
    running.start()
    yield running
    running.stop()


@pytest.fixture
def models(cluster: LocalCluster, namespace: str, iris_files: Path) -> Path:
    """Claims `models` (holding the iris files where the sample expects them) and `model-store`."""
    return provide_iris_claims(cluster, namespace, iris_files)


@pytest.fixture(autouse=True)
def keep_the_operators_objects(request: pytest.FixtureRequest, observed_objects: Path) -> Iterator[None]:
    """After each test with a namespace, its ModelDeployments as the operator left them go to
    `observed_objects`: real objects in the phases the scenarios end in, for the GitOps health checks."""
    if "namespace" not in request.fixturenames:
        yield
        return
    # Asked for here, so the namespace is removed only after this fixture read it.
    namespace: str = request.getfixturevalue("namespace")
    cluster: LocalCluster = request.getfixturevalue("cluster")
    yield
    try:
        found = cluster.kubectl("get", "mdep", "-n", namespace, "-o", "json", check=False, timeout=30)
    except subprocess.TimeoutExpired:
        return  # a test that stopped the API server: nothing to keep
    if found.returncode != 0:
        return
    for item in json.loads(found.stdout)["items"]:
        if item.get("status"):
            save_observed(observed_objects, item, f"{request.node.name[:60]}-{item['metadata']['name']}")
