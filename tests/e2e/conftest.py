"""Fixtures of the whole-flow tests: the operator as users run it, claims holding the iris model."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from e2e.helpers import OperatorProcess
from localcluster import LocalCluster
from support import REPO


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
    claims = [{"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
               "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}
              for name in ("models", "model-store")]
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(claims))
    root = cluster.claim_path(namespace, "models")
    (root / "iris" / "1").mkdir(parents=True)
    shutil.copy(iris_files / "model.pt", root / "iris" / "1" / "model.pt")
    for name in ("handler.py", "index_to_name.json"):
        shutil.copy(iris_files / name, root / "iris" / name)
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return root
