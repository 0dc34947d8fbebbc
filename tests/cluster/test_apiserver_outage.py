"""No pod is orphaned by an API server outage: whatever happens to a pod while the API server is
away (it starts, a probe fails, it exits, it finishes terminating), the API shows the pod's real
state within seconds of the API server's return, and the node agent itself carries on."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from localcluster import LocalCluster
from support import kubectl_json, wait_for, wait_for_controllers

pytestmark = pytest.mark.cluster

CONVERGE_SECONDS = 15
# The Job controller learns of the pod's new status through kube-controller-manager's own watches,
# which re-list after an outage with client-go's back-off (0.8 s doubling to 30 s, up to twice that with
# jitter, reset only after 2 quiet minutes): that, not the node, bounds how soon a Job completes.
CONTROLLER_SECONDS = 120


@dataclass
class AgentWatch:
    pid: int
    log: Path
    offset: int


@pytest.fixture(scope="module", autouse=True)
def controllers_caught_up_afterwards(cluster: LocalCluster) -> Iterator[None]:
    """Later tests create namespaces and pods at once: leave only when the controllers are back."""
    yield
    settle(cluster)
    wait_for_controllers(cluster)


@pytest.fixture(autouse=True)
def fresh_watches_afterwards(cluster: LocalCluster) -> Iterator[None]:
    """After each outage the controllers and the scheduler start again, so the next test does not wait
    out their watches' back-off (the Job test measures that recovery itself)."""
    yield
    for name in ("kube-controller-manager", "kube-scheduler"):
        cluster.restart_component(name)


@pytest.fixture
def agent(cluster: LocalCluster) -> Iterator[AgentWatch]:
    """The node agent's process and log as the test starts; afterwards, the same process and no dead worker."""
    log = cluster.dir / "logs" / "node-agent.log"
    watch = AgentWatch(cluster.processes["node-agent"].pid, log, log.stat().st_size)
    yield watch
    process = cluster.processes["node-agent"]
    assert process.pid == watch.pid and process.poll() is None, "the node agent was restarted or died"
    with open(log, "rb") as f:
        f.seek(watch.offset)
        written = f.read().decode(errors="replace")
    assert "pod worker" not in written and "Traceback" not in written, written[-3000:]


def settle(cluster: LocalCluster) -> None:
    """Waits until the controllers caught up after the outage: a new namespace gets its ServiceAccount."""
    name = f"settle-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", name)
    try:
        wait_for(lambda: cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0,
                 timeout=CONTROLLER_SECONDS, message="the controllers to catch up")
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def apply(cluster: LocalCluster, namespace: str, *docs: dict[str, Any]) -> None:
    # Pods are refused until the namespace's ServiceAccount exists.
    wait_for(lambda: cluster.kubectl("get", "serviceaccount", "default", "-n", namespace, check=False).returncode == 0,
             timeout=CONTROLLER_SECONDS, message="the namespace's default ServiceAccount")
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(docs))


def get_pod(cluster: LocalCluster, namespace: str, name: str) -> dict[str, Any]:
    return kubectl_json(cluster, "get", "pod", name, "-n", namespace)


def container_state(pod: dict[str, Any], name: str, init: bool = False) -> dict[str, Any]:
    key = "initContainerStatuses" if init else "containerStatuses"
    for status in pod.get("status", {}).get(key) or []:
        if status["name"] == name:
            return status  # type: ignore[no-any-return]
    return {}


def is_ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions") or [])


def init_pid(cluster: LocalCluster, pod: dict[str, Any], container: str) -> int | None:
    """The PID of the container's init on this host (PID 1 in the container), once it started."""
    path = cluster.dir / "pods" / pod["metadata"]["uid"] / "containers" / container / "pid"
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


def alive(pid: int | None) -> bool:
    return pid is not None and os.path.exists(f"/proc/{pid}")


def processes_of(cluster: LocalCluster, uid: str) -> list[int]:
    marker = str(cluster.dir / "pods" / uid).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def converge(ready_at: float, condition: Any, message: str, within: float = CONVERGE_SECONDS) -> float:
    """Waits for the API to show the real state; returns the seconds since /readyz answered."""
    wait_for(condition, timeout=within - (time.monotonic() - ready_at), interval=0.2, message=message)
    took = time.monotonic() - ready_at
    print(f"\n{message}: {took:.1f}s after /readyz")
    return took


def flags_volume(path: Path) -> dict[str, Any]:
    path.chmod(0o777)
    return {"volumes": [{"name": "flags", "hostPath": {"path": str(path)}}]}


FLAGS_MOUNT = {"volumeMounts": [{"name": "flags", "mountPath": "/flags"}]}
WEB = {"name": "web", "image": "python:3.11", "command": ["python3", "-m", "http.server", "8000"],
       "readinessProbe": {"tcpSocket": {"port": 8000}, "periodSeconds": 1}}


def test_a_job_whose_pod_exits_while_the_api_server_is_away_completes(
    cluster: LocalCluster, namespace: str, tmp_path: Path, agent: AgentWatch
) -> None:
    (tmp_path / "run").write_text("")
    work = ["sh", "-c", "while [ -f /flags/run ]; do sleep 0.1; done; echo finished > /dev/termination-log"]
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "exiting"},
           "spec": {"backoffLimit": 0, "template": {"spec": {
               "restartPolicy": "Never", **flags_volume(tmp_path),
               "containers": [{"name": "work", "image": "busybox", "command": work, **FLAGS_MOUNT}]}}}}
    apply(cluster, namespace, job)

    def job_pod() -> dict[str, Any] | None:
        pods = kubectl_json(cluster, "get", "pods", "-n", namespace, "-l", "job-name=exiting")["items"]
        return pods[0] if pods and pods[0].get("status", {}).get("phase") == "Running" else None

    pod = wait_for(job_pod, timeout=60, message="the Job's pod to run")
    assert isinstance(pod, dict)
    pid = init_pid(cluster, pod, "work")
    assert alive(pid)

    cluster.stop_apiserver()
    (tmp_path / "run").unlink()
    wait_for(lambda: not alive(pid), timeout=30, message="the container to exit")
    ready_at = cluster.start_apiserver()

    def pod_succeeded() -> bool:
        now = get_pod(cluster, namespace, pod["metadata"]["name"])
        terminated = container_state(now, "work").get("state", {}).get("terminated", {})
        return bool(now["status"]["phase"] == "Succeeded" and terminated.get("exitCode") == 0
                    and terminated.get("message", "").strip() == "finished")

    def job_complete() -> bool:
        status = kubectl_json(cluster, "get", "job", "exiting", "-n", namespace).get("status", {})
        return any(c["type"] == "Complete" and c["status"] == "True" for c in status.get("conditions") or [])

    converge(ready_at, pod_succeeded, "exited pod Succeeded")
    converge(ready_at, job_complete, "Job Complete", within=CONTROLLER_SECONDS)


def test_a_pod_that_starts_while_the_api_server_is_away_shows_running_and_ready(
    cluster: LocalCluster, namespace: str, tmp_path: Path, agent: AgentWatch
) -> None:
    gate = ["sh", "-c", "while [ ! -f /flags/go ]; do sleep 0.1; done"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "starting"},
           "spec": {"initContainers": [{"name": "gate", "image": "busybox", "command": gate, **FLAGS_MOUNT}],
                    "containers": [WEB], **flags_volume(tmp_path)}}
    apply(cluster, namespace, pod)
    wait_for(lambda: "running" in container_state(get_pod(cluster, namespace, "starting"), "gate", init=True)
             .get("state", {}), timeout=60, message="the init container to run")
    created = get_pod(cluster, namespace, "starting")

    cluster.stop_apiserver()
    (tmp_path / "go").write_text("")  # the init container completes, the pod's container starts
    wait_for(lambda: alive(init_pid(cluster, created, "web")), timeout=30, message="the web container to start")
    ready_at = cluster.start_apiserver()

    def shows_running_and_ready() -> bool:
        pod = get_pod(cluster, namespace, "starting")
        gate_state = container_state(pod, "gate", init=True).get("state", {})
        return (pod["status"]["phase"] == "Running" and is_ready(pod)
                and gate_state.get("terminated", {}).get("reason") == "Completed")

    converge(ready_at, shows_running_and_ready, "starting pod Running and Ready")
    assert alive(init_pid(cluster, created, "web"))


def test_a_readiness_failure_while_the_api_server_is_away_shows_once_it_returns(
    cluster: LocalCluster, namespace: str, tmp_path: Path, agent: AgentWatch
) -> None:
    (tmp_path / "ready").write_text("")
    check = "test -f /flags/ready || { touch /flags/probe-failed; exit 1; }"
    web = {**WEB, **FLAGS_MOUNT,
           "readinessProbe": {"exec": {"command": ["sh", "-c", check]}, "periodSeconds": 1, "failureThreshold": 1}}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "running"},
           "spec": {"containers": [web], **flags_volume(tmp_path)}}
    apply(cluster, namespace, pod)
    wait_for(lambda: is_ready(get_pod(cluster, namespace, "running")), timeout=60, message="the pod to be ready")
    running = get_pod(cluster, namespace, "running")
    pid = init_pid(cluster, running, "web")

    cluster.stop_apiserver()
    (tmp_path / "ready").unlink()
    wait_for(lambda: (tmp_path / "probe-failed").exists(), timeout=30, message="the readiness probe to fail")
    ready_at = cluster.start_apiserver()

    def shows_not_ready() -> bool:
        pod = get_pod(cluster, namespace, "running")
        return pod["status"]["phase"] == "Running" and not is_ready(pod)

    converge(ready_at, shows_not_ready, "running pod not Ready")
    assert alive(pid) and init_pid(cluster, running, "web") == pid  # still running, never restarted


def test_a_pod_that_finishes_terminating_while_the_api_server_is_away_is_gone_with_its_processes(
    cluster: LocalCluster, namespace: str, tmp_path: Path, agent: AgentWatch
) -> None:
    (tmp_path / "hold").write_text("")
    stop = "touch /flags/terminating; while [ -f /flags/hold ]; do sleep 0.1; done; exit 0"
    work = ["sh", "-c", f"trap '{stop}' TERM; while true; do sleep 0.1; done"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "terminating"},
           "spec": {"terminationGracePeriodSeconds": 120, **flags_volume(tmp_path),
                    "containers": [{"name": "work", "image": "busybox", "command": work, **FLAGS_MOUNT}]}}
    apply(cluster, namespace, pod)
    wait_for(lambda: get_pod(cluster, namespace, "terminating")["status"].get("phase") == "Running",
             timeout=60, message="the pod to run")
    running = get_pod(cluster, namespace, "terminating")
    uid = running["metadata"]["uid"]
    pid = init_pid(cluster, running, "work")
    assert alive(pid) and processes_of(cluster, uid)

    cluster.kubectl("delete", "pod", "terminating", "-n", namespace, "--wait=false")
    wait_for(lambda: (tmp_path / "terminating").exists(), timeout=30, message="the container to get SIGTERM")
    cluster.stop_apiserver()
    (tmp_path / "hold").unlink()  # the container finishes its shutdown while no API server answers
    wait_for(lambda: not alive(pid) and not processes_of(cluster, uid), timeout=30,
             message="the pod's processes to end")
    ready_at = cluster.start_apiserver()

    def pod_gone() -> bool:
        out = cluster.kubectl("get", "pod", "terminating", "-n", namespace, check=False)
        return out.returncode != 0 and "NotFound" in out.stderr

    converge(ready_at, pod_gone, "terminated pod gone from the API")
    assert not alive(pid) and not processes_of(cluster, uid)
