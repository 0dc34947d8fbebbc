"""A ModelDeployment goes from kubectl apply to predictions, and says honestly what went wrong."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from e2e.helpers import (
    RESYNC_SECONDS,
    OperatorProcess,
    apply,
    condition,
    iris,
    mdep,
    predict,
    ready_addresses,
    wait_phase,
)
from localcluster import LocalCluster
from support import kubectl_json, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.torchserve]

SETOSA, VIRGINICA = [5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]


def children(cluster: LocalCluster, namespace: str) -> dict[str, list[str]]:
    kinds = "deployments,replicasets,pods,services,configmaps,jobs,networkpolicies,poddisruptionbudgets"
    items = kubectl_json(cluster, "get", kinds, "-n", namespace, "-l", "modeldeploy.dev/deployment=iris")["items"]
    found: dict[str, list[str]] = {}
    for item in items:
        found.setdefault(item["kind"], []).append(item["metadata"]["name"])
    return found


def test_apply_builds_serves_and_answers_from_every_pod_in_a_restricted_namespace(
    cluster: LocalCluster, operator: OperatorProcess, namespace: str, models: Path
) -> None:
    # Every pod modeldeploy makes (build Job and TorchServe) must pass Pod Security "restricted".
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    apply(cluster, namespace, iris())

    waited = cluster.kubectl("wait", "mdep/iris", "-n", namespace, "--for=condition=Ready", "--timeout=240s",
                             check=False)
    assert waited.returncode == 0, waited.stderr + cluster.kubectl("get", "events", "-n", namespace).stdout
    body = mdep(cluster, namespace)
    status = body["status"]
    assert status["phase"] == "Healthy"
    assert status["stableRevision"] == status["revision"]
    archive = status["archive"]
    assert archive["uri"].startswith("pvc://model-store/") and archive["uri"].endswith("/iris.mar")
    assert len(archive["sha256"]) == 64 and archive["format"] == "zip-store" and archive["reused"] is False
    store = cluster.claim_path(namespace, "model-store")
    assert (store / archive["uri"].removeprefix("pvc://model-store/")).is_file()

    listing = cluster.kubectl("get", "mdep", "-n", namespace).stdout
    assert "Healthy" in listing and status["revision"] in listing

    addresses = wait_for(lambda: (lambda a: a if len(a) == 2 else None)(ready_addresses(cluster, namespace, "iris")),
                         timeout=30, message="two ready endpoints")
    assert isinstance(addresses, list)
    for address in addresses:
        code, answer = predict(address, [SETOSA, VIRGINICA])
        assert code == 200, answer
        assert answer["labels"] == ["setosa", "virginica"]

    pods = kubectl_json(cluster, "get", "pods", "-n", namespace)["items"]
    assert pods and all(p["status"]["phase"] in ("Running", "Succeeded") for p in pods)


def test_management_port_is_unreachable_from_other_pods(
    cluster: LocalCluster, operator: OperatorProcess, namespace: str, models: Path
) -> None:
    apply(cluster, namespace, iris(replicas=1))
    wait_phase(cluster, namespace, "Healthy", timeout=240)
    address = ready_addresses(cluster, namespace, "iris")[0]
    probe = (
        "import socket,sys\n"
        "out=[]\n"
        "for port in (8080, 8081, 8082):\n"
        "    s=socket.socket(); s.settimeout(5)\n"
        "    out.append(f'{port}:{s.connect_ex((sys.argv[1], port))}')\n"
        "open('/dev/termination-log','w').write(' '.join(out))\n"
    )
    client = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "client"},
              "spec": {"restartPolicy": "Never", "containers": [
                  {"name": "c", "image": "python:3.11", "command": ["python3", "-c", probe, address]}]}}
    apply(cluster, namespace, client)
    state = wait_for(lambda: ((kubectl_json(cluster, "get", "pod", "client", "-n", namespace)["status"]
                               .get("containerStatuses") or [{}])[0].get("state", {}).get("terminated")),
                     timeout=60, message="the client pod to finish")
    assert isinstance(state, dict)
    results = dict(item.split(":") for item in state["message"].split())
    assert results["8080"] == "0" and results["8082"] == "0"  # inference and metrics answer
    assert results["8081"] != "0"  # the management API refuses: it listens on the pod's loopback only


def test_a_replica_change_scales_without_a_new_revision(
    cluster: LocalCluster, operator: OperatorProcess, namespace: str, models: Path
) -> None:
    apply(cluster, namespace, iris(replicas=1))
    first = wait_phase(cluster, namespace, "Healthy", timeout=240)
    assert "PodDisruptionBudget" not in children(cluster, namespace)
    apply(cluster, namespace, iris(replicas=2))
    wait_for(lambda: len(ready_addresses(cluster, namespace, "iris")) == 2, timeout=180, message="two endpoints")
    second = wait_phase(cluster, namespace, "Healthy")
    assert second["status"]["revision"] == first["status"]["revision"]
    assert children(cluster, namespace)["PodDisruptionBudget"] == ["iris-stable"]
    jobs = children(cluster, namespace)["Job"]
    assert len(jobs) == 1  # no rebuild: the archive of this revision exists


def test_reapplying_reuses_the_archive_and_a_new_object_reuses_the_stored_one(
    cluster: LocalCluster, operator: OperatorProcess, namespace: str, models: Path
) -> None:
    apply(cluster, namespace, iris(replicas=1))
    first = wait_phase(cluster, namespace, "Healthy", timeout=240)
    apply(cluster, namespace, iris(replicas=1))  # the same spec again
    assert mdep(cluster, namespace)["metadata"]["generation"] == first["metadata"]["generation"]
    jobs = kubectl_json(cluster, "get", "jobs", "-n", namespace)["items"]
    assert [j["metadata"]["name"] for j in jobs] == [f"iris-build-{first['status']['archive']['buildKey']}"]

    # Another object with the same model: its build finds the artifact in the store and does no work.
    apply(cluster, namespace, iris(name="iris-copy", replicas=1))
    copy_body = wait_for(lambda: (lambda b: b if (b.get("status") or {}).get("archive") else None)(
        mdep(cluster, namespace, "iris-copy")), timeout=120, message="the copy's archive")
    assert isinstance(copy_body, dict)
    assert copy_body["status"]["archive"]["reused"] is True
    assert copy_body["status"]["archive"]["sha256"] == first["status"]["archive"]["sha256"]


def test_a_missing_handler_file_fails_the_build_with_a_clear_message_and_creates_nothing_else(
    cluster: LocalCluster, operator: OperatorProcess, namespace: str, models: Path
) -> None:
    apply(cluster, namespace, iris(model__handler={"uri": "pvc://models/iris/missing_handler.py"}))
    body = wait_phase(cluster, namespace, "Failed", timeout=120)
    archive_ready = condition(body, "ArchiveReady")
    assert archive_ready["status"] == "False" and archive_ready["reason"] == "ArchiveBuildFailed"
    assert "missing_handler.py" in archive_ready["message"]
    assert set(children(cluster, namespace)) <= {"Job", "Pod"}  # only the build: nothing served
    assert not list(cluster.claim_path(namespace, "model-store").rglob("*.mar"))


def test_a_tampered_archive_is_refused_by_the_pods_and_named_in_the_condition(
    cluster: LocalCluster, operator: OperatorProcess, namespace: str, models: Path
) -> None:
    apply(cluster, namespace, iris(replicas=1))
    body = wait_phase(cluster, namespace, "Healthy", timeout=240)
    artifact = cluster.claim_path(namespace, "model-store") / body["status"]["archive"]["uri"].removeprefix(
        "pvc://model-store/")
    with open(artifact, "ab") as f:
        f.write(b"tampered")
    cluster.kubectl("delete", "pods", "-n", namespace, "-l", "modeldeploy.dev/role=stable", "--wait=false")

    degraded = wait_phase(cluster, namespace, "Degraded", timeout=120)
    ready = condition(degraded, "Ready")
    assert ready["reason"] == "DigestMismatch"
    assert body["status"]["archive"]["sha256"][:12] in ready["message"] or "sha256" in ready["message"]


def test_a_handler_that_fails_to_load_is_reported_with_torchserves_log_line(
    cluster: LocalCluster, operator: OperatorProcess, namespace: str, models: Path
) -> None:
    (models / "iris" / "broken_handler.py").write_text(
        "from ts.torch_handler.base_handler import BaseHandler\n\n\n"
        "class Broken(BaseHandler):\n"
        "    def initialize(self, context):\n"
        "        raise RuntimeError('the weights do not match this handler')\n\n\n"
        "_service = Broken()\n\n\n"
        "def handle(data, context):\n"
        "    if not _service.initialized:\n"
        "        _service.initialize(context)\n"
        "    return _service.handle(data, context)\n")
    apply(cluster, namespace, iris(replicas=1, model__handler={"uri": "pvc://models/iris/broken_handler.py"}))
    body = wait_phase(cluster, namespace, "Degraded", timeout=240)
    ready = condition(body, "Ready")
    assert ready["reason"] == "ModelLoadFailed"
    assert "the weights do not match this handler" in ready["message"]


def torchserve_java_pids(cluster: LocalCluster, namespace: str) -> list[int]:
    pids = []
    for pod in kubectl_json(cluster, "get", "pods", "-n", namespace, "-l", "modeldeploy.dev/role=stable")["items"]:
        for pidfile in (cluster.dir / "pods" / pod["metadata"]["uid"]).glob("containers/torchserve/pid"):
            init = int(pidfile.read_text())
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit():
                    try:
                        cmdline = (entry / "cmdline").read_bytes()
                        status = (entry / "status").read_text()
                    except OSError:
                        continue
                    # TorchServe's JVM in the same PID namespace as the container's init.
                    if (b"java" in cmdline.split(b"\0")[0] and status
                            and os.readlink(f"/proc/{entry.name}/ns/pid") == os.readlink(f"/proc/{init}/ns/pid")):
                        pids.append(int(entry.name))
    return pids


def test_a_hung_torchserve_is_restarted_by_the_liveness_probe(
    cluster: LocalCluster, operator: OperatorProcess, namespace: str, models: Path
) -> None:
    apply(cluster, namespace, iris(replicas=1))
    wait_phase(cluster, namespace, "Healthy", timeout=240)
    pids = wait_for(lambda: torchserve_java_pids(cluster, namespace), timeout=30, message="TorchServe's JVM")
    assert isinstance(pids, list)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)  # hangs /ping: only the liveness probe can notice

    def restarts() -> int:
        pod = kubectl_json(cluster, "get", "pods", "-n", namespace, "-l", "modeldeploy.dev/role=stable")["items"][0]
        return int(pod["status"]["containerStatuses"][0]["restartCount"])

    wait_for(lambda: restarts() >= 1, timeout=240, interval=1, message="a restart by the liveness probe")
    wait_phase(cluster, namespace, "Healthy", timeout=240)
    address = ready_addresses(cluster, namespace, "iris")[0]
    assert predict(address, [SETOSA])[0] == 200


def test_a_settled_deployment_makes_no_writes_and_deleting_it_removes_every_child(
    cluster: LocalCluster, operator: OperatorProcess, namespace: str, models: Path
) -> None:
    apply(cluster, namespace, iris(replicas=1))
    wait_phase(cluster, namespace, "Healthy", timeout=240)
    kinds = "modeldeployments,deployments,services,configmaps,networkpolicies,jobs"

    def versions() -> dict[str, str]:
        items = kubectl_json(cluster, "get", kinds, "-n", namespace)["items"]
        return {f"{i['kind']}/{i['metadata']['name']}": i["metadata"]["resourceVersion"] for i in items}

    # Let the last updates driven by pod status land, then watch two full resync periods.
    seen: list[dict[str, str]] = []

    def unchanged_since_last_look() -> bool:
        seen.append(versions())
        return len(seen) > 1 and seen[-1] == seen[-2]

    wait_for(unchanged_since_last_look, timeout=60, interval=RESYNC_SECONDS, message="the objects to settle")
    before = seen[-1]
    settled_log = operator.log_path.read_text().count(f"{namespace}/iris: nothing to write")
    wait_for(lambda: operator.log_path.read_text().count(f"{namespace}/iris: nothing to write") >= settled_log + 2,
             timeout=20 * RESYNC_SECONDS, interval=0.5, message="two resyncs")
    assert versions() == before

    pod_uids = [p["metadata"]["uid"] for p in kubectl_json(cluster, "get", "pods", "-n", namespace)["items"]]
    cluster.kubectl("delete", "mdep", "iris", "-n", namespace, "--timeout=60s")
    wait_for(lambda: not kubectl_json(cluster, "get", "deployments,services,configmaps,networkpolicies,jobs,pods",
                                      "-n", namespace, "-l", "modeldeploy.dev/deployment=iris")["items"],
             timeout=90, message="every child to be deleted")
    wait_for(lambda: not any((cluster.dir / "pods" / uid).exists() for uid in pod_uids), timeout=60,
             message="every pod's processes and files to be gone")


def test_pickled_weights_are_packaged_with_a_warning_event(
    cluster: LocalCluster, operator: OperatorProcess, namespace: str, models: Path
) -> None:
    import torch

    torch.save({"weight": torch.zeros(3, 4)}, models / "iris" / "state_dict.pt")  # a pickle, not TorchScript
    (models / "iris" / "state_dict.pt").chmod(0o644)
    apply(cluster, namespace, iris(replicas=1, model__serializedFile={"uri": "pvc://models/iris/state_dict.pt"}))
    body = wait_for(lambda: (lambda b: b if (b.get("status") or {}).get("archive") else None)(mdep(cluster, namespace)),
                    timeout=120, message="the archive to be recorded")
    assert isinstance(body, dict)
    events = kubectl_json(cluster, "get", "events", "-n", namespace, "--field-selector",
                          "involvedObject.name=iris")["items"]
    warnings = [e["message"] for e in events if e["type"] == "Warning" and e["reason"] == "ArchiveWarning"]
    assert warnings and any("safetensors" in w or "TorchScript" in w for w in warnings), events


def test_a_new_revision_is_promoted_over_the_stable_one_and_leaves_no_old_configuration(
    cluster: LocalCluster, operator: OperatorProcess, namespace: str, models: Path
) -> None:
    # One step at 100 %: the canary is promoted at once, stable rolls to it (no analysis).
    apply(cluster, namespace, iris(replicas=1, rollout={"steps": [{"weight": 100}]}))
    first = wait_phase(cluster, namespace, "Healthy", timeout=240)
    apply(cluster, namespace, iris(replicas=1, rollout={"steps": [{"weight": 100}]},
                                   model__config={"batchSize": 4, "maxBatchDelayMs": 10}))

    def served_revision() -> str | None:
        status = mdep(cluster, namespace).get("status") or {}
        healthy = status.get("phase") == "Healthy" and status.get("stableRevision") != first["status"]["revision"]
        return str(status["stableRevision"]) if healthy else None

    revision = wait_for(served_revision, timeout=240, interval=0.5, message="the new revision to be served")
    configmaps = wait_for(lambda: (lambda names: names if len(names) == 1 else None)(
        [c["metadata"]["name"] for c in kubectl_json(cluster, "get", "configmaps", "-n", namespace,
                                                        "-l", "modeldeploy.dev/deployment=iris")["items"]]),
        timeout=30, message="only the new revision's ConfigMap")
    assert configmaps == [f"iris-{revision}"]
    assert predict(ready_addresses(cluster, namespace, "iris")[0], [SETOSA])[0] == 200
    reasons = [e["reason"] for e in kubectl_json(cluster, "get", "events", "-n", namespace)["items"]]
    assert "Promoting" in reasons and "Promoted" in reasons
