"""The local cluster's node agent runs pods as a kubelet does: probes, waiting reasons, volumes, claims."""

from __future__ import annotations

import pytest

from cluster.localcluster.localcluster_support import apply, pod, pod_status, terminated
from localcluster import LocalCluster
from support import REPO, wait_for

pytestmark = pytest.mark.cluster


def test_failing_liveness_probe_restarts_the_container(cluster: LocalCluster, namespace: str) -> None:
    manifest = pod("live", ["python3", "-m", "http.server", "8000"], restartPolicy="Always", container={
        "livenessProbe": {"httpGet": {"path": "/missing", "port": 8000}, "periodSeconds": 1, "failureThreshold": 2}})
    assert apply(cluster, namespace, manifest).returncode == 0

    def restarts() -> int:
        statuses = pod_status(cluster, namespace, "live").get("containerStatuses") or [{}]
        return int(statuses[0].get("restartCount", 0))

    wait_for(lambda: restarts() >= 1, timeout=90, message="a restart after liveness failures")
    events = cluster.kubectl("get", "events", "-n", namespace, "--field-selector", "involvedObject.name=live").stdout
    assert "Liveness probe failed" in events


def test_command_that_does_not_exist_gives_a_clear_waiting_reason(cluster: LocalCluster, namespace: str) -> None:
    assert apply(cluster, namespace, pod("nocmd", ["no-such-command-here"])).returncode == 0

    def waiting() -> dict | None:  # type: ignore[type-arg]
        statuses = pod_status(cluster, namespace, "nocmd").get("containerStatuses") or [{}]
        return statuses[0].get("state", {}).get("waiting", {}).get("message") and statuses[0]["state"]["waiting"]

    state = wait_for(waiting, timeout=30, message="a waiting reason")
    assert isinstance(state, dict)
    assert state["reason"] == "CreateContainerError"
    assert "no-such-command-here" in state["message"]


def test_commands_stay_available_under_a_volume_mounted_over_their_directory(
    cluster: LocalCluster, namespace: str
) -> None:
    # Commands come from the host (no images); a volume over a parent of their directory must not hide them.
    parent = str(REPO.parent)
    check = pod("shadowed", ["sh", "-c", "python3 -c 'import modeldeploy' && ls /shadow-test > /dev/termination-log"],
                volumes=[{"name": "scratch", "emptyDir": {}}],
                container={"volumeMounts": [{"name": "scratch", "mountPath": parent},
                                            {"name": "scratch", "mountPath": "/shadow-test"}]})
    assert apply(cluster, namespace, check).returncode == 0
    state = wait_for(lambda: terminated(cluster, namespace, "shadowed"), timeout=60, message="the pod to finish")
    assert isinstance(state, dict)
    assert state["exitCode"] == 0, state
    # The volume is really there: the repository's folder was made inside it to keep the sources visible.
    assert REPO.name in state["message"]


def test_a_claim_written_by_one_pod_is_read_by_another(cluster: LocalCluster, namespace: str) -> None:
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "shared"},
             "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}
    volume = {"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "shared"}}]}
    mount = {"volumeMounts": [{"name": "data", "mountPath": "/data"}]}
    writer = pod("writer", ["sh", "-c", "echo payload-42 > /data/file"], container=mount, **volume)
    assert apply(cluster, namespace, claim, writer).returncode == 0
    state = wait_for(lambda: terminated(cluster, namespace, "writer"), timeout=60, message="the writer to finish")
    assert isinstance(state, dict) and state["exitCode"] == 0

    reader = pod("reader", ["sh", "-c", "cat /data/file > /dev/termination-log"], container=mount, **volume)
    assert apply(cluster, namespace, reader).returncode == 0
    state = wait_for(lambda: terminated(cluster, namespace, "reader"), timeout=60, message="the reader to finish")
    assert isinstance(state, dict)
    assert state["message"].strip() == "payload-42"


def test_a_readiness_gate_holds_a_started_pod_unready_until_its_condition_is_true(
    cluster: LocalCluster, namespace: str
) -> None:
    gated = pod("gated", ["python3", "-m", "http.server", "8000"], restartPolicy="Always",
                readinessGates=[{"conditionType": "example.dev/let-in"}],
                container={"readinessProbe": {"httpGet": {"path": "/", "port": 8000}, "periodSeconds": 1}})
    assert apply(cluster, namespace, gated).returncode == 0

    def conditions() -> dict[str, dict]:  # type: ignore[type-arg]
        return {c["type"]: c for c in pod_status(cluster, namespace, "gated").get("conditions") or []}

    wait_for(lambda: conditions().get("ContainersReady", {}).get("status") == "True", timeout=60,
             message="the container to be ready")
    held = conditions()["Ready"]
    assert (held["status"], held["reason"]) == ("False", "ReadinessGatesNotReady")
    assert 'pod readiness gate "example.dev/let-in" does not exist' in held["message"]

    let_in = '{"status": {"conditions": [{"type": "example.dev/let-in", "status": "True"}]}}'
    cluster.kubectl("patch", "pod", "gated", "-n", namespace, "--subresource=status", "--type=strategic",
                    "-p", let_in)

    wait_for(lambda: conditions().get("Ready", {}).get("status") == "True", timeout=30,
             message="Ready once the gate's condition is True")
    assert conditions()["example.dev/let-in"]["status"] == "True"  # the node agent's writes keep it
