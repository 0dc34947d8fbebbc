"""Children edited by hand are put back within one resync, with an Event; untouched children are never written.

The operator runs as users start it, against the real API server, so the comparison meets the fields
the API server defaults and the quantities it normalises. The archive is really built, but the serving
pods ask for more CPU than the node has: they stay Pending, no TorchServe starts, and the children are
still all there to edit.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_operator import RESYNC_SECONDS, Operator, events_of, kubectl_apply

from localcluster import LocalCluster
from support import REPO, provide_iris_claims, wait_for

CRD_NAME = "modeldeployments.modeldeploy.dev"
NAME = "iris"
STABLE = f"{NAME}-stable"
# Written as a user may: the API server stores 64000m as "64" and 0.25Gi as "256Mi".
UNSCHEDULABLE = {"requests": {"cpu": "64000m", "memory": "0.25Gi"}, "limits": {"memory": "512Mi"}}
# A hand edit is noticed by the watch on Deployments or, at the latest, by the next resync.
PUT_BACK_WITHIN = 5 * RESYNC_SECONDS + 5

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def iris_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("iris") / "v1"
    subprocess.run([sys.executable, str(REPO / "model_archives/iris/train.py"), "--out", str(out),
                    "--version", "v1"], check=True, capture_output=True)
    return out


@pytest.fixture
def operator(cluster: LocalCluster, namespace: str, tmp_path: Path) -> Iterator[Operator]:
    cluster.kubectl("apply", "-f", str(REPO / "manifests" / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
    running = Operator(cluster, namespace, tmp_path / "operator.log")
    running.start()
    yield running
    cluster.kubectl("delete", "mdep", "--all", "-n", namespace, "--timeout=30s", check=False)
    running.stop()


def iris() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((REPO / "manifests/samples/iris.yaml").read_text())
    document["spec"]["serving"]["replicas"] = 1
    document["spec"]["serving"]["resources"] = UNSCHEDULABLE
    return document


def child(cluster: LocalCluster, namespace: str, kind: str, name: str) -> dict[str, Any] | None:
    result = cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def children_written(cluster: LocalCluster, namespace: str) -> dict[str, Any]:
    """What changes only when someone writes a child: the resourceVersions of the objects no controller
    updates, and the Deployment's generation and our manager's last write time."""
    items = json.loads(cluster.kubectl("get", "services,configmaps,networkpolicies,deployments", "-n", namespace,
                                       "-l", f"modeldeploy.dev/deployment={NAME}", "-o", "json").stdout)["items"]
    seen: dict[str, Any] = {}
    for item in items:
        meta = item["metadata"]
        ours = [f.get("time") for f in meta.get("managedFields") or [] if f.get("manager") == "modeldeploy"]
        key = f"{item['kind']}/{meta['name']}"
        seen[key] = (meta["generation"], ours) if item["kind"] == "Deployment" else meta["resourceVersion"]
    return seen


def drift_events(cluster: LocalCluster, namespace: str) -> list[str]:
    return [e["message"] for e in events_of(cluster, namespace, NAME) if e["reason"] == "DriftReverted"]


def serving_image(cluster: LocalCluster, namespace: str) -> str:
    deployment = child(cluster, namespace, "deployment", STABLE)
    assert deployment is not None
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return str(next(c for c in containers if c["name"] == "torchserve")["image"])


def test_hand_edits_are_put_back_with_an_event_and_untouched_children_are_never_written(
        operator: Operator, cluster: LocalCluster, namespace: str, iris_files: Path) -> None:
    provide_iris_claims(cluster, namespace, iris_files)
    kubectl_apply(cluster, namespace, iris())
    wait_for(lambda: child(cluster, namespace, "deployment", STABLE) and child(cluster, namespace,
                                                                            "networkpolicy", NAME),
             timeout=180, message="the built revision's Deployment and NetworkPolicy")
    image = serving_image(cluster, namespace)

    # Untouched: over several resyncs, no child is written and nothing is reported put back.
    seen: list[dict[str, Any]] = []

    def unchanged_since_last_look() -> bool:
        seen.append(children_written(cluster, namespace))
        return len(seen) > 1 and seen[-1] == seen[-2]

    wait_for(unchanged_since_last_look, timeout=60, interval=2 * RESYNC_SECONDS, message="the children to settle")
    resyncs = operator.settled_count(NAME)
    wait_for(lambda: operator.settled_count(NAME) >= resyncs + 3, timeout=30 * RESYNC_SECONDS, interval=0.5,
             message="three resyncs that found nothing to write")
    assert children_written(cluster, namespace) == seen[-1]
    assert drift_events(cluster, namespace) == []

    # A changed image: put back, and the Event names the child, the field and the value found.
    cluster.kubectl("set", "image", f"deploy/{STABLE}", "torchserve=busybox:1.36", "-n", namespace)
    wait_for(lambda: serving_image(cluster, namespace) == image, timeout=PUT_BACK_WITHIN, interval=0.2,
             message="the image to be put back")
    [message] = wait_for(lambda: drift_events(cluster, namespace), timeout=10, message="a DriftReverted Event")
    assert f"Deployment {STABLE}" in message
    assert "spec.template.spec.containers[torchserve].image" in message
    assert "busybox:1.36" in message

    # A removed securityContext: put back too.
    cluster.kubectl("patch", "deploy", STABLE, "-n", namespace, "--type=json", "-p", json.dumps([
        {"op": "remove", "path": "/spec/template/spec/containers/0/securityContext"}]))

    def security_context() -> dict[str, Any] | None:
        deployment = child(cluster, namespace, "deployment", STABLE)
        assert deployment is not None
        return deployment["spec"]["template"]["spec"]["containers"][0].get("securityContext")

    context = wait_for(security_context, timeout=PUT_BACK_WITHIN, interval=0.2,
                       message="the securityContext to be put back")
    assert isinstance(context, dict) and context["readOnlyRootFilesystem"] is True
    wait_for(lambda: any("containers[torchserve].securityContext (was absent" in m
                         for m in drift_events(cluster, namespace)), timeout=10, message="its Event")

    # Put back once: later resyncs find nothing to put back again.
    count = len(drift_events(cluster, namespace))
    resyncs = operator.settled_count(NAME)
    wait_for(lambda: operator.settled_count(NAME) >= resyncs + 3, timeout=30 * RESYNC_SECONDS, interval=0.5,
             message="three more resyncs that found nothing to write")
    assert len(drift_events(cluster, namespace)) == count


def test_turning_the_network_policy_off_removes_it(operator: Operator, cluster: LocalCluster, namespace: str,
                                                   iris_files: Path) -> None:
    provide_iris_claims(cluster, namespace, iris_files)
    kubectl_apply(cluster, namespace, iris())
    wait_for(lambda: child(cluster, namespace, "networkpolicy", NAME), timeout=180, message="the NetworkPolicy")

    cluster.kubectl("patch", "mdep", NAME, "-n", namespace, "--type=merge", "-p",
                    json.dumps({"spec": {"serving": {"networkPolicy": {"enabled": False}}}}))

    wait_for(lambda: child(cluster, namespace, "networkpolicy", NAME) is None, timeout=PUT_BACK_WITHIN,
             message="the NetworkPolicy to be removed")
    assert child(cluster, namespace, "deployment", STABLE) is not None
