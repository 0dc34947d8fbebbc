"""Objects and reads shared by the local cluster's own tests."""

from __future__ import annotations

import subprocess

import yaml

from localcluster import LocalCluster
from support import kubectl_json

RESTRICTED = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "runAsGroup": 1000,
    "seccompProfile": {"type": "RuntimeDefault"},
}
RESTRICTED_CONTAINER = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def apply(cluster: LocalCluster, namespace: str, *docs: dict) -> subprocess.CompletedProcess[str]:  # type: ignore[type-arg]
    return cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(docs), check=False)


def http_server_deployment(name: str, replicas: int, **pod_extra: object) -> dict:  # type: ignore[type-arg]
    container = {"name": "web", "image": "python:3.11", "command": ["python3", "-m", "http.server", "8000"],
                 "ports": [{"containerPort": 8000}],
                 "readinessProbe": {"tcpSocket": {"port": 8000}, "periodSeconds": 1}}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"terminationGracePeriodSeconds": 5, "containers": [container], **pod_extra}}},
    }


def pod(name: str, command: list[str], **spec: object) -> dict:  # type: ignore[type-arg]
    container = {"name": "main", "image": "busybox", "command": command, **spec.pop("container", {})}  # type: ignore[dict-item]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 2, "containers": [container], **spec}}


def pod_status(cluster: LocalCluster, namespace: str, name: str) -> dict:  # type: ignore[type-arg]
    return kubectl_json(cluster, "get", "pod", name, "-n", namespace).get("status", {})  # type: ignore[no-any-return]


def terminated(cluster: LocalCluster, namespace: str, name: str) -> dict | None:  # type: ignore[type-arg]
    statuses = pod_status(cluster, namespace, name).get("containerStatuses") or [{}]
    return statuses[0].get("state", {}).get("terminated")  # type: ignore[no-any-return]
