"""Helpers shared by the test tiers (fixtures live in conftest.py files)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

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


def wait_for_controllers(cluster: LocalCluster, timeout: float = 180) -> None:
    """After the API server restarted: wait until a Job created now runs to completion.

    The controller manager's watches back off while the API server is away, for up to a minute after
    it is back; a test that follows a restart would otherwise wait for its Jobs and ReplicaSets as long.
    """
    name = f"controllers-answer-{time.monotonic_ns() % 10**9}"
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "namespace": "default"},
           "spec": {"backoffLimit": 0, "ttlSecondsAfterFinished": 30, "template": {"spec": {
               "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
               "containers": [{"name": "main", "image": "busybox", "command": ["true"]}]}}}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(job))

    def complete() -> bool:
        conditions = (kubectl_json(cluster, "get", "job", name, "-n", "default").get("status") or {}).get("conditions")
        return any(c["type"] == "Complete" and c["status"] == "True" for c in conditions or [])

    try:
        wait_for(complete, timeout=timeout, interval=1, message="a Job to run: the controller manager answering")
    finally:
        cluster.kubectl("delete", "job", name, "-n", "default", "--wait=false", "--cascade=background",
                        check=False)


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, **kwargs)  # type: ignore[no-any-return]

def provide_iris_claims(cluster: LocalCluster, namespace: str, iris_files: Path) -> Path:
    """Claims `models` (holding the iris files where the sample expects them) and `model-store` in
    `namespace`; returns where `models` is on this machine."""
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
