"""A ModelDeployment gets through an API server restart in the middle of its build."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from e2e.helpers import OperatorProcess, apply, iris, ready_addresses, wait_phase
from localcluster import LocalCluster
from support import kubectl_json, wait_for, wait_for_controllers

pytestmark = [pytest.mark.cluster, pytest.mark.torchserve]


def running_build_pod(cluster: LocalCluster, namespace: str) -> dict[str, Any] | None:
    for pod in kubectl_json(cluster, "get", "pods", "-n", namespace)["items"]:
        owners = pod["metadata"].get("ownerReferences") or []
        if any(o["kind"] == "Job" for o in owners) and pod.get("status", {}).get("phase") == "Running":
            return pod  # type: ignore[no-any-return]
    return None


def test_a_build_running_across_an_api_server_restart_still_reaches_healthy(
    cluster: LocalCluster, operator: OperatorProcess, namespace: str, models: Path
) -> None:
    agent_pid = cluster.processes["node-agent"].pid
    agent_log = cluster.dir / "logs" / "node-agent.log"
    offset = agent_log.stat().st_size
    apply(cluster, namespace, iris(replicas=1))
    build = wait_for(lambda: running_build_pod(cluster, namespace), timeout=120, interval=0.2,
                     message="the build Job's pod to run")
    assert isinstance(build, dict)

    started = time.monotonic()
    cluster.restart_apiserver()
    print(f"\nAPI server restarted in {time.monotonic() - started:.1f}s during build pod "
          f"{build['metadata']['name']}")

    body = wait_phase(cluster, namespace, "Healthy", timeout=240)
    print(f"Healthy {time.monotonic() - started:.1f}s after the restart began")
    assert body["status"]["stableRevision"] == body["status"]["revision"]
    pod = kubectl_json(cluster, "get", "pod", build["metadata"]["name"], "-n", namespace)
    assert pod["status"]["phase"] == "Succeeded"
    assert wait_for(lambda: ready_addresses(cluster, namespace, "iris"), timeout=60, message="a ready endpoint")

    assert cluster.processes["node-agent"].pid == agent_pid and cluster.processes["node-agent"].poll() is None
    written = agent_log.read_bytes()[offset:].decode(errors="replace")
    assert "pod worker" not in written and "Traceback" not in written, written[-3000:]
    wait_for_controllers(cluster)  # the scenarios that follow need the Job and ReplicaSet controllers
