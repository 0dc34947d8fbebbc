"""Helpers of the whole-flow tests: the operator process, the iris sample, status and endpoint reads."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from localcluster import LocalCluster
from support import REPO, kubectl_json, wait_for

RESYNC_SECONDS = 3
SAMPLE = REPO / "manifests" / "samples" / "iris.yaml"


class OperatorProcess:
    """`modeldeploy operator --all-namespaces`, started as a user starts it."""

    def __init__(self, cluster: LocalCluster, log_path: Path, command: list[str] | None = None,
                 env: dict[str, str] | None = None, resync_seconds: float | None = RESYNC_SECONDS) -> None:
        self.cluster = cluster
        self.log_path = log_path
        self.command = command or [sys.executable, "-m", "modeldeploy"]
        self.extra_env = env or {}
        self.resync_seconds = resync_seconds
        """None: the operator's default, as a user runs it."""
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**self.cluster.env(), "POD_NAMESPACE": "modeldeploy-system", **self.extra_env}
        if self.resync_seconds is not None:
            env["MODELDEPLOY_RESYNC_SECONDS"] = str(self.resync_seconds)
        with open(self.log_path, "ab") as log:
            argv = [*self.command, "operator", "--all-namespaces", "--verbose"]
            self.process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def iris(name: str = "iris", replicas: int = 2, **spec_changes: Any) -> dict[str, Any]:
    """The iris sample, sized for a 2-core machine."""
    document = yaml.safe_load(SAMPLE.read_text())
    document["metadata"]["name"] = name
    document["spec"]["serving"]["replicas"] = replicas
    document["spec"]["serving"]["resources"] = {"requests": {"cpu": "100m", "memory": "256Mi"},
                                                "limits": {"memory": "2Gi"}}
    for path, value in spec_changes.items():
        target = document["spec"]
        keys = path.split("__")
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        target[keys[-1]] = copy.deepcopy(value)
    return document  # type: ignore[no-any-return]


def apply(cluster: LocalCluster, namespace: str, document: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(document))


def mdep(cluster: LocalCluster, namespace: str, name: str = "iris") -> dict[str, Any]:
    return kubectl_json(cluster, "get", "mdep", name, "-n", namespace)  # type: ignore[no-any-return]


def condition(body: dict[str, Any], kind: str) -> dict[str, Any]:
    for cond in (body.get("status") or {}).get("conditions") or []:
        if cond["type"] == kind:
            return cond  # type: ignore[no-any-return]
    return {}


def wait_phase(cluster: LocalCluster, namespace: str, phase: str, name: str = "iris",
               timeout: float = 180) -> dict[str, Any]:
    try:
        body = wait_for(lambda: (lambda b: b if (b.get("status") or {}).get("phase") == phase else None)(
            mdep(cluster, namespace, name)), timeout=timeout, interval=0.5, message=f"phase {phase}")
    except AssertionError as timed_out:
        raise AssertionError(f"{timed_out}\n{where_it_stands(cluster, namespace, name)}") from None
    assert isinstance(body, dict)
    return body


def where_it_stands(cluster: LocalCluster, namespace: str, name: str = "iris") -> str:
    """The object's status, its children and its latest Events: what a wait that timed out shows."""
    status = json.dumps(mdep(cluster, namespace, name).get("status"), indent=1, default=str)
    children = cluster.kubectl("get", "deployments,pods", "-n", namespace, "-o", "wide", check=False).stdout
    listed = cluster.kubectl("get", "events", "-n", namespace, "--sort-by=.lastTimestamp", check=False).stdout
    return f"status: {status}\n{children}\nevents (latest last):\n{chr(10).join(listed.splitlines()[-25:])}"


def predict(address: str, rows: list[list[float]], timeout: float = 10) -> tuple[int, Any]:
    request = urllib.request.Request(f"http://{address}:8080/predictions/iris", method="POST",
                                     data=json.dumps({"data": rows}).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def ready_addresses(cluster: LocalCluster, namespace: str, service: str) -> list[str]:
    slices = kubectl_json(cluster, "get", "endpointslices", "-n", namespace,
                          "-l", f"kubernetes.io/service-name={service}")["items"]
    return [a for s in slices for e in s.get("endpoints") or [] if e["conditions"].get("ready")
            for a in e["addresses"]]
