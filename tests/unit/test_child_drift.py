"""A child is compared with what we render, for the fields we own: server defaults are no drift, hand edits are."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from modeldeploy.api.spec import ModelConfig, PvcStore
from modeldeploy.k8s.children import drift_event, hand_edits, is_current, with_hash
from modeldeploy.k8s.drift import drifted, quantity_value
from modeldeploy.serving import ArchiveRef, ServingPlan, build_objects
from modeldeploy.settings import OperatorIdentity

UID = "6c1f0e52-8a7b-4d2c-9e3f-0a1b2c3d4e5f"
PLAN = ServingPlan(
    name="iris", namespace="models", uid=UID, revision="7f3a9c01de", role="stable", replicas=2,
    model_name="iris", model_version="2",
    archive=ArchiveRef(uri="pvc://model-store/4f6d2c1b9e8a7d3c/iris.mar", sha256="a" * 64, format="zip-store",
                       store=PvcStore("model-store")),
    operator=OperatorIdentity(image="ghcr.io/example/modeldeploy:0.1.0"),
    model_config=ModelConfig(batch_size=8, max_batch_delay_ms=20, min_workers=1, max_workers=2,
                             response_timeout_seconds=30, startup_timeout_seconds=120),
    # Written as a user may write them; the API server stores 1000m as "1" and 0.5Gi as "512Mi".
    resources={"requests": {"cpu": "1000m", "memory": "0.5Gi"}, "limits": {"memory": "2048Mi"}},
)
STORED_QUANTITIES = {"1000m": "1", "0.5Gi": "512Mi", "2048Mi": "2Gi"}


def rendered(kind: str) -> dict[str, Any]:
    """The first object of `kind` that serving the plan renders (the ConfigMap, NAME-stable, the Service NAME…)."""
    return next(o for o in build_objects(PLAN) if o["kind"] == kind)


def _container_defaults(container: dict[str, Any]) -> None:
    container.setdefault("imagePullPolicy", "IfNotPresent")
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        if probe in container:
            container[probe].setdefault("successThreshold", 1)
            if "httpGet" in container[probe]:
                container[probe]["httpGet"].setdefault("scheme", "HTTP")
    for values in (container.get("resources") or {}).values():
        for name, quantity in values.items():
            values[name] = STORED_QUANTITIES.get(quantity, quantity)


def as_the_api_server_returns(obj: dict[str, Any]) -> dict[str, Any]:
    """`obj` applied with our hash, then read back: metadata, defaults, normalised quantities and status added."""
    live = copy.deepcopy(with_hash(obj))
    meta = live["metadata"]
    meta.update(uid="0d9c...-live", resourceVersion="4711", generation=1, creationTimestamp="2026-01-01T00:00:00Z",
                managedFields=[{"manager": "modeldeploy", "operation": "Apply", "fieldsType": "FieldsV1"}])
    if live["kind"] == "Deployment":
        meta["annotations"]["deployment.kubernetes.io/revision"] = "1"
        live["spec"].update(progressDeadlineSeconds=600)
        template = live["spec"]["template"]
        template["metadata"]["creationTimestamp"] = None
        pod = template["spec"]
        pod.update(dnsPolicy="ClusterFirst", restartPolicy="Always", schedulerName="default-scheduler")
        for container in pod["containers"] + pod["initContainers"]:
            _container_defaults(container)
        live["status"] = {"observedGeneration": 1, "replicas": 2, "readyReplicas": 2}
    if live["kind"] == "Service":
        live["spec"].update(clusterIP="10.0.0.17", clusterIPs=["10.0.0.17"], sessionAffinity="None",
                            ipFamilies=["IPv4"], ipFamilyPolicy="SingleStack", internalTrafficPolicy="Cluster")
        live["status"] = {"loadBalancer": {}}
    return live


@pytest.mark.parametrize("kind", ["Deployment", "Service", "ConfigMap", "NetworkPolicy", "PodDisruptionBudget"])
def test_a_child_as_the_api_server_returns_it_is_current(kind: str) -> None:
    desired = rendered(kind)

    live = as_the_api_server_returns(desired)

    assert drifted(desired, live) == []
    assert is_current(live, desired)


def test_a_changed_image_is_drift_naming_the_container_and_both_values() -> None:
    desired = rendered("Deployment")
    live = as_the_api_server_returns(desired)
    live["spec"]["template"]["spec"]["containers"][0]["image"] = "busybox:latest"  # kubectl set image

    edits = hand_edits(live, desired)

    assert edits is not None
    assert [d.path for d in edits] == ["spec.template.spec.containers[torchserve].image"]
    assert not is_current(live, desired)
    text = edits[0].describe()
    assert '"busybox:latest"' in text and '"pytorch/torchserve:0.12.0-cpu"' in text


def test_a_removed_security_context_is_drift_found_absent() -> None:
    desired = rendered("Deployment")
    live = as_the_api_server_returns(desired)
    del live["spec"]["template"]["spec"]["containers"][0]["securityContext"]

    [edit] = drifted(desired, live)

    assert edit.path == "spec.template.spec.containers[torchserve].securityContext"
    assert edit.found is None
    assert "was absent" in edit.describe()


def test_a_scaled_deployment_and_a_changed_quantity_are_drift() -> None:
    desired = rendered("Deployment")
    live = as_the_api_server_returns(desired)
    live["spec"]["replicas"] = 5
    live["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "900m"

    assert [d.path for d in drifted(desired, live)] == [
        "spec.replicas", "spec.template.spec.containers[torchserve].resources.requests.cpu"]


def test_a_changed_command_is_one_drift_of_the_whole_list() -> None:
    desired = rendered("Deployment")
    live = as_the_api_server_returns(desired)
    live["spec"]["template"]["spec"]["containers"][0]["command"] = ["/bin/sh", "-c", "sleep infinity"]

    assert [d.path for d in drifted(desired, live)] == ["spec.template.spec.containers[torchserve].command"]


def test_items_another_manager_added_are_left_alone() -> None:
    # An apply with our field manager would not remove them either: only what we render is ours.
    desired = rendered("Deployment")
    live = as_the_api_server_returns(desired)
    pod = live["spec"]["template"]["spec"]
    pod["containers"].append({"name": "sidecar", "image": "envoy"})
    pod["containers"][0]["env"].append({"name": "EXTRA", "value": "1"})
    live["metadata"]["labels"]["team"] = "search"

    assert drifted(desired, live) == []


def test_a_new_rendering_is_not_a_hand_edit() -> None:
    desired = rendered("Deployment")
    live = as_the_api_server_returns(desired)
    changed = copy.deepcopy(desired)
    changed["spec"]["replicas"] = 3

    assert hand_edits(live, changed) is None
    assert not is_current(live, changed)
    assert hand_edits(None, desired) is None


def test_the_event_names_the_owner_the_child_and_the_fields_put_back() -> None:
    desired = rendered("Deployment")
    live = as_the_api_server_returns(desired)
    live["spec"]["template"]["spec"]["containers"][0]["image"] = "busybox:latest"
    edits = hand_edits(live, desired)
    assert edits

    event = drift_event(desired, edits, datetime(2026, 1, 1, tzinfo=UTC))

    assert event["involvedObject"] == {"apiVersion": "modeldeploy.dev/v1alpha1", "kind": "ModelDeployment",
                                       "name": "iris", "uid": UID, "namespace": "models"}
    assert (event["type"], event["reason"]) == ("Warning", "DriftReverted")
    assert event["message"].startswith("Put back Deployment iris-stable")
    assert "spec.template.spec.containers[torchserve].image" in event["message"]


@pytest.mark.parametrize(("text", "value"), [
    ("1", Decimal(1)), ("1000m", Decimal(1)), ("500m", Decimal("0.5")), ("0.5Gi", Decimal(512 * 1024 ** 2)),
    ("512Mi", Decimal(512 * 1024 ** 2)), ("1e3", Decimal(1000)), ("2k", Decimal(2000)), (2, Decimal(2)),
    ("25%", None), ("abc", None), (True, None),
])
def test_quantities_are_read_by_value(text: Any, value: Decimal | None) -> None:
    assert quantity_value(text) == value
