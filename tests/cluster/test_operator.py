"""The operator started as users start it (`modeldeploy operator --namespace NS`), against a real API server.

Each test runs its own operator process with a short resync period, so "a settled object is never
written" is checked over several real resyncs, not assumed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from localcluster import LocalCluster
from support import wait_for

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "manifests" / "samples"
CRD_NAME = "modeldeployments.modeldeploy.dev"
RESYNC_SECONDS = 1.0

pytestmark = pytest.mark.cluster


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Operator:
    """One `modeldeploy operator` process watching one namespace."""

    def __init__(self, cluster: LocalCluster, namespace: str, log_path: Path) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.log_path = log_path
        self.liveness = f"http://127.0.0.1:{free_port()}/healthz"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "KUBECONFIG": self.cluster.kubeconfig,
               "MODELDEPLOY_RESYNC_SECONDS": str(RESYNC_SECONDS)}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "modeldeploy", "operator", "--namespace", self.namespace,
                 "--liveness", self.liveness, "--verbose"],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(self.alive, timeout=30, message="the operator's liveness endpoint")

    def alive(self) -> bool:
        assert self.process is not None and self.process.poll() is None, self.log()
        try:
            with urllib.request.urlopen(self.liveness, timeout=1) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def settled_count(self, name: str) -> int:
        """How many reconciles of `name` found nothing to write so far."""
        return self.log().count(f"{self.namespace}/{name}: nothing to write")


@pytest.fixture(scope="module")
def crd(cluster: LocalCluster) -> LocalCluster:
    cluster.kubectl("apply", "-f", str(REPO / "manifests" / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
    return cluster


@pytest.fixture
def operator(crd: LocalCluster, namespace: str, tmp_path: Path) -> Iterator[Operator]:
    running = Operator(crd, namespace, tmp_path / "operator.log")
    running.start()
    yield running
    # Delete our objects while an operator runs: it releases its finalizer.
    if running.process is None or running.process.poll() is not None:
        running.start()
    crd.kubectl("delete", "mdep", "--all", "-n", namespace, "--timeout=30s", check=False)
    running.stop()


def kubectl_apply(cluster: LocalCluster, namespace: str, document: dict[str, Any] | Path) -> None:
    if isinstance(document, Path):
        cluster.kubectl("apply", "-n", namespace, "-f", str(document))
    else:
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(document))


def get(cluster: LocalCluster, namespace: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(cluster.kubectl("get", "mdep", name, "-n", namespace, "-o", "json").stdout)
    return found


def condition(body: dict[str, Any], kind: str) -> dict[str, Any]:
    for found in body.get("status", {}).get("conditions", []):
        if found["type"] == kind:
            return dict(found)
    return {}


def create_claims(cluster: LocalCluster, namespace: str, *names: str) -> None:
    for name in names:
        kubectl_apply(cluster, namespace, {
            "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        })


def events_of(cluster: LocalCluster, namespace: str, name: str) -> list[dict[str, Any]]:
    items = json.loads(cluster.kubectl("get", "events", "-n", namespace, "-o", "json",
                                       "--field-selector", f"involvedObject.name={name}").stdout)["items"]
    return list(items)


def event_reasons(cluster: LocalCluster, namespace: str, name: str) -> set[str]:
    return {event["reason"] for event in events_of(cluster, namespace, name)}


def settled(cluster: LocalCluster, namespace: str, name: str, generation: int) -> dict[str, Any] | None:
    body = get(cluster, namespace, name)
    return body if body.get("status", {}).get("observedGeneration") == generation else None


def test_new_deployment_gets_status_and_conditions_within_a_second(operator: Operator, crd: LocalCluster,
                                                                    namespace: str) -> None:
    create_claims(crd, namespace, "models", "model-store")

    started = time.monotonic()
    kubectl_apply(crd, namespace, SAMPLES / "iris.yaml")
    body = wait_for(lambda: settled(crd, namespace, "iris", 1), timeout=10, interval=0.05,
                    message="the first status")
    elapsed = time.monotonic() - started

    assert isinstance(body, dict)
    assert elapsed < 2.0, f"first status after {elapsed:.2f}s"
    assert body["status"]["phase"] == "Building"
    revision = body["status"]["revision"]
    assert len(revision) == 10
    ready, progressing = condition(body, "Ready"), condition(body, "Progressing")
    assert (ready["status"], ready["reason"]) == ("False", "ArchiveBuilding")
    assert (progressing["status"], progressing["reason"]) == ("True", "ArchiveBuilding")
    for kind in ("Ready", "Progressing", "Degraded", "ArchiveReady"):
        assert condition(body, kind)["observedGeneration"] == 1
        assert condition(body, kind)["lastTransitionTime"].endswith("Z")
    waited = crd.kubectl("wait", "mdep/iris", "-n", namespace, f"--for=jsonpath={{.status.revision}}={revision}",
                         "--timeout=10s", check=False)
    assert waited.returncode == 0, waited.stderr
    waited = crd.kubectl("wait", "mdep/iris", "-n", namespace, "--for=condition=ArchiveReady=False",
                         "--timeout=10s", check=False)
    assert waited.returncode == 0, waited.stderr
    wait_for(lambda: {"NewRevision", "ArchiveBuilding"} <= event_reasons(crd, namespace, "iris"), timeout=10,
             message="the NewRevision and ArchiveBuilding Events")


def test_missing_claims_are_named_in_a_condition_until_they_exist(operator: Operator, crd: LocalCluster,
                                                                   namespace: str) -> None:
    kubectl_apply(crd, namespace, SAMPLES / "iris.yaml")

    body = wait_for(lambda: settled(crd, namespace, "iris", 1), timeout=10, message="the first status")
    assert isinstance(body, dict)
    degraded = condition(body, "Degraded")
    assert (body["status"]["phase"], degraded["status"], degraded["reason"]) == (
        "Pending", "True", "ReferenceNotFound")
    assert 'PersistentVolumeClaim "models" (spec.model.serializedFile.uri)' in degraded["message"]
    assert 'PersistentVolumeClaim "model-store" (spec.archive.store.pvc.claimName)' in degraded["message"]
    warning = wait_for(lambda: [e for e in events_of(crd, namespace, "iris") if e["type"] == "Warning"],
                       timeout=10, message="a Warning Event")
    assert isinstance(warning, list) and warning[0]["reason"] == "ReferenceNotFound"

    create_claims(crd, namespace, "models", "model-store")

    recovered = wait_for(lambda: condition(get(crd, namespace, "iris"), "Degraded").get("status") == "False",
                         timeout=10 * RESYNC_SECONDS, message="Degraded=False once the claims exist")
    assert recovered
    # With the claims in place the archive build starts (and, the claim being empty, fails).
    assert condition(get(crd, namespace, "iris"), "ArchiveReady")["reason"] in ("ArchiveBuilding",
                                                                                "ArchiveBuildFailed")


def test_missing_secret_is_named_in_a_condition(operator: Operator, crd: LocalCluster, namespace: str) -> None:
    kubectl_apply(crd, namespace, SAMPLES / "iris-s3.yaml")

    body = wait_for(lambda: settled(crd, namespace, "iris-s3", 1), timeout=10, message="the first status")

    assert isinstance(body, dict)
    message = condition(body, "Degraded")["message"]
    assert 'Secret "iris-s3-credentials" (spec.model.sourceSecretRef.name)' in message
    assert 'Secret "iris-s3-credentials" (spec.archive.store.s3.secretRef.name)' in message


def test_a_spec_the_domain_refuses_fails_with_a_condition_naming_the_field(operator: Operator,
                                                                            crd: LocalCluster,
                                                                            namespace: str) -> None:
    # Admitted by the CRD, refused by the domain: two files would land on one archive name.
    document = {
        "apiVersion": "modeldeploy.dev/v1alpha1", "kind": "ModelDeployment", "metadata": {"name": "clash"},
        "spec": {"model": {
            "name": "clash",
            "serializedFile": {"uri": "pvc://models/a/model.pt"},
            "handler": {"builtin": "image_classifier"},
            "extraFiles": [{"uri": "pvc://models/b/weights.bin", "name": "model.pt"}],
        }},
    }
    kubectl_apply(crd, namespace, document)

    body = wait_for(lambda: settled(crd, namespace, "clash", 1), timeout=10, message="the first status")

    assert isinstance(body, dict)
    degraded = condition(body, "Degraded")
    assert (body["status"]["phase"], degraded["status"], degraded["reason"]) == ("Failed", "True", "InvalidSpec")
    assert "spec.model.extraFiles[0]" in degraded["message"] and "'model.pt'" in degraded["message"]


def build_failed(cluster: LocalCluster, namespace: str, name: str) -> bool:
    """The sample's claim is empty: its build fails and the object settles in phase Failed."""
    body = get(cluster, namespace, name)
    return (body.get("status") or {}).get("phase") == "Failed" and (
        condition(body, "ArchiveReady").get("reason") == "ArchiveBuildFailed")


def test_a_settled_object_is_never_written_by_resyncs(operator: Operator, crd: LocalCluster,
                                                     namespace: str) -> None:
    create_claims(crd, namespace, "models", "model-store")
    kubectl_apply(crd, namespace, SAMPLES / "iris.yaml")
    wait_for(lambda: build_failed(crd, namespace, "iris"), timeout=60, message="the build to fail and settle")
    before = get(crd, namespace, "iris")
    resyncs = operator.settled_count("iris")

    wait_for(lambda: operator.settled_count("iris") >= resyncs + 3, timeout=20 * RESYNC_SECONDS,
             message="three resyncs that found nothing to write")

    after = get(crd, namespace, "iris")
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after["status"] == before["status"]
    annotations = after["metadata"].get("annotations", {})
    assert sorted(k for k in annotations if k.startswith("modeldeploy.dev/")) == [
        "modeldeploy.dev/kopf-managed", "modeldeploy.dev/last-handled-configuration"]
    assert after["metadata"]["finalizers"] == ["modeldeploy.dev/finalizer"]


def test_a_restarted_operator_resumes_without_writing(operator: Operator, crd: LocalCluster,
                                                      namespace: str) -> None:
    create_claims(crd, namespace, "models", "model-store")
    kubectl_apply(crd, namespace, SAMPLES / "iris.yaml")
    wait_for(lambda: build_failed(crd, namespace, "iris"), timeout=60, message="the build to fail and settle")
    wait_for(lambda: operator.settled_count("iris") >= 1, timeout=10, message="a settled resync")
    version = get(crd, namespace, "iris")["metadata"]["resourceVersion"]

    operator.stop()
    resyncs = operator.settled_count("iris")
    operator.start()
    wait_for(lambda: operator.settled_count("iris") >= resyncs + 2, timeout=20,
             message="the resumed operator's reconciles")

    assert get(crd, namespace, "iris")["metadata"]["resourceVersion"] == version


def test_a_spec_change_updates_observed_generation_and_revision(operator: Operator, crd: LocalCluster,
                                                                namespace: str) -> None:
    create_claims(crd, namespace, "models", "model-store")
    kubectl_apply(crd, namespace, SAMPLES / "iris.yaml")
    first = wait_for(lambda: settled(crd, namespace, "iris", 1), timeout=10, message="the first status")
    assert isinstance(first, dict)

    crd.kubectl("patch", "mdep", "iris", "-n", namespace, "--type=merge", "-p",
                '{"spec": {"model": {"version": "2", "serializedFile": {"uri": "pvc://models/iris/2/model.pt"}}}}')
    second = wait_for(lambda: settled(crd, namespace, "iris", 2), timeout=10, message="observedGeneration 2")
    assert isinstance(second, dict)

    assert second["status"]["revision"] != first["status"]["revision"]
    assert condition(second, "Ready")["observedGeneration"] == 2
    # Ready stayed False: its lastTransitionTime does not move
    assert condition(second, "Ready")["lastTransitionTime"] == condition(first, "Ready")["lastTransitionTime"]
    replaced = wait_for(lambda: [e for e in events_of(crd, namespace, "iris") if e["reason"] == "NewRevision"
                                 and first["status"]["revision"] in e["message"]],
                        timeout=10, message="a NewRevision Event naming the replaced revision")
    assert replaced

    crd.kubectl("patch", "mdep", "iris", "-n", namespace, "--type=merge", "-p",
                '{"spec": {"serving": {"replicas": 6}}}')
    third = wait_for(lambda: settled(crd, namespace, "iris", 3), timeout=10, message="observedGeneration 3")
    assert isinstance(third, dict)
    assert third["status"]["revision"] == second["status"]["revision"]  # scaling is not a new revision


def test_a_status_only_change_does_not_trigger_a_reconcile_write(operator: Operator, crd: LocalCluster,
                                                                 namespace: str) -> None:
    create_claims(crd, namespace, "models", "model-store")
    kubectl_apply(crd, namespace, SAMPLES / "iris.yaml")
    wait_for(lambda: settled(crd, namespace, "iris", 1), timeout=10, message="the first status")
    foreign = {"type": "example.com/Audited", "status": "True", "reason": "Reviewed", "message": "ok",
               "lastTransitionTime": "2026-01-01T00:00:00Z"}

    crd.kubectl("patch", "mdep", "iris", "-n", namespace, "--subresource=status", "--type=json", "-p",
                json.dumps([{"op": "add", "path": "/status/conditions/-", "value": foreign}]))
    patched = get(crd, namespace, "iris")
    resyncs = operator.settled_count("iris")
    wait_for(lambda: operator.settled_count("iris") >= resyncs + 3, timeout=20 * RESYNC_SECONDS,
             message="three resyncs after the status change")

    after = get(crd, namespace, "iris")
    assert after["metadata"]["resourceVersion"] == patched["metadata"]["resourceVersion"]
    assert after["metadata"]["generation"] == 1 and after["status"]["observedGeneration"] == 1
    assert condition(after, "example.com/Audited") == foreign


def test_deleting_a_deployment_releases_the_finalizer(operator: Operator, crd: LocalCluster,
                                                      namespace: str) -> None:
    kubectl_apply(crd, namespace, SAMPLES / "image-classifier-builtin.yaml")
    wait_for(lambda: settled(crd, namespace, "digits", 1), timeout=10, message="the first status")

    result = crd.kubectl("delete", "mdep", "digits", "-n", namespace, "--timeout=20s", check=False)

    assert result.returncode == 0, result.stderr
    assert crd.kubectl("get", "mdep", "digits", "-n", namespace, check=False).returncode != 0


def probe(operator: Operator) -> dict[str, Any]:
    with urllib.request.urlopen(operator.liveness, timeout=5) as response:
        assert response.status == 200
        found: dict[str, Any] = json.loads(response.read())
        return found


def test_liveness_endpoint_reports_the_last_successful_api_call(operator: Operator, crd: LocalCluster,
                                                                namespace: str) -> None:
    kubectl_apply(crd, namespace, SAMPLES / "image-classifier-builtin.yaml")
    wait_for(lambda: settled(crd, namespace, "digits", 1), timeout=10, message="the first status")

    # kopf caches probe results for 10 seconds (the start-up check already asked once).
    wait_for(lambda: probe(operator)["apiLastSuccess"] != "never", timeout=30, interval=1,
             message="the probe to report an API call")
    reported = datetime.fromisoformat(probe(operator)["apiLastSuccess"])

    assert datetime.now(UTC) - reported < timedelta(seconds=30)
