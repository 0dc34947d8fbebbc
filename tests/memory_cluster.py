"""An in-memory cluster: a real implementation of the reconcile's Cluster and Children protocols.

It keeps objects in dictionaries the way the API server would for the calls the reconcile makes:
label selectors (`k=v`, `k!=v`, `k`), server-side apply that writes only what changed, merge patches
of status with a resourceVersion precondition (ConflictError when stale), background deletes, pod
logs. The controllers the reconcile waits for (Job, Deployment, kubelet) are not simulated: tests
move the world on with the `finish_job`, `start_pods` and `roll_out` helpers.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from typing import Any

from modeldeploy.reconcile import ConflictError, NotFoundError

Key = tuple[str, str, str, str]  # apiVersion, kind, namespace, name


def _key(obj: Mapping[str, Any]) -> Key:
    meta = obj["metadata"]
    return obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"]


def _matches(labels: Mapping[str, str], selector: str) -> bool:
    for term in filter(None, selector.split(",")):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.split("=", 1)
            if labels.get(key) != value:
                return False
        elif term not in labels:
            return False
    return True


def merge_patch(target: dict[str, Any], patch: Mapping[str, Any]) -> None:
    """Apply a JSON merge patch (RFC 7386) in place, as the API server does for a status merge patch."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(target.get(key), dict):
            merge_patch(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


class MemoryChildren:
    """Children of ModelDeployments, kept in memory; records every write in `writes`."""

    def __init__(self) -> None:
        self.objects: dict[Key, dict[str, Any]] = {}
        self.applied: dict[Key, dict[str, Any]] = {}
        self.logs: dict[tuple[str, str, str], str] = {}
        self.writes: list[tuple[str, str, str]] = []  # (verb, kind, name)

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        found = self.objects.get((api_version, kind, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    async def list(self, api_version: str, kind: str, namespace: str, selector: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(obj) for (version, k, ns, _), obj in sorted(self.objects.items())
                if (version, k, ns) == (api_version, kind, namespace)
                and _matches(obj["metadata"].get("labels") or {}, selector)]

    async def apply(self, desired: Mapping[str, Any], live: Mapping[str, Any] | None = None,
                    *, known: bool = False) -> tuple[dict[str, Any], bool]:
        key = _key(desired)
        if key in self.objects and self.applied.get(key) == desired:
            return copy.deepcopy(self.objects[key]), False
        previous = self.objects.get(key) or {}
        stored = copy.deepcopy(dict(desired))
        generation = int((previous.get("metadata") or {}).get("generation") or 0)
        changed = previous.get("spec") != stored.get("spec")
        stored["metadata"]["generation"] = generation + 1 if changed or not previous else generation
        if "status" in previous:
            stored["status"] = previous["status"]
        self.objects[key] = stored
        self.applied[key] = copy.deepcopy(dict(desired))
        self.writes.append(("apply", key[1], key[3]))
        return copy.deepcopy(stored), True

    async def scale(self, api_version: str, kind: str, namespace: str, name: str, replicas: int) -> dict[str, Any]:
        key = (api_version, kind, namespace, name)
        stored = self.objects[key]
        if stored["spec"].get("replicas") != replicas:
            stored["spec"]["replicas"] = replicas
            stored["metadata"]["generation"] = int(stored["metadata"].get("generation") or 0) + 1
        self.applied.pop(key, None)
        self.writes.append(("scale", kind, name))
        return copy.deepcopy(stored)

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        key = (api_version, kind, namespace, name)
        if key not in self.objects:
            return False
        del self.objects[key]
        self.applied.pop(key, None)
        self.writes.append(("delete", kind, name))
        return True

    async def pod_log_tail(self, namespace: str, pod: str, container: str, lines: int = 20) -> str:
        text = self.logs.get((namespace, pod, container), "")
        return "\n".join(text.splitlines()[-lines:])

    async def set_pod_condition(self, namespace: str, pod: str, condition: Mapping[str, Any]) -> None:
        found = self.objects[("v1", "Pod", namespace, pod)]
        status = found.setdefault("status", {})
        status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != condition["type"]]
        status["conditions"].append(dict(condition))
        self.writes.append(("pod-condition", "Pod", pod))

    # --- the controllers' side, moved on by the tests ----------------------------------------------

    def put(self, obj: Mapping[str, Any]) -> None:
        """Store an object the way a controller would create it (not a write of the operator)."""
        self.objects[_key(obj)] = copy.deepcopy(dict(obj))

    def finish_job(self, namespace: str, name: str, *, succeeded: bool, message: str) -> None:
        """The Job controller ends the build: a pod terminated with `message`, the Job Complete or Failed."""
        job = self.objects[("batch/v1", "Job", namespace, name)]
        job["status"] = {"conditions": [{"type": "Complete" if succeeded else "Failed", "status": "True"}]}
        self.put({"apiVersion": "v1", "kind": "Pod",
                  "metadata": {"name": f"{name}-x1", "namespace": namespace, "labels": {"job-name": name}},
                  "status": {"containerStatuses": [{"name": "build", "state": {"terminated": {
                      "exitCode": 0 if succeeded else 1, "message": message,
                      "finishedAt": "2026-01-01T00:00:00Z"}}}]}})

    def start_pods(self, namespace: str, deployment: str, count: int,
                   status: Callable[[int], dict[str, Any]] | None = None) -> None:
        """The Deployment's ReplicaSet starts `count` pods carrying its template's labels."""
        template = self.objects[("apps/v1", "Deployment", namespace, deployment)]["spec"]["template"]
        for i in range(count):
            self.put({"apiVersion": "v1", "kind": "Pod",
                      "metadata": {"name": f"{deployment}-{i}", "namespace": namespace, "uid": f"uid-{deployment}-{i}",
                                   "labels": dict(template["metadata"]["labels"])},
                      "spec": {k: v for k, v in template["spec"].items() if k == "readinessGates"},
                      "status": status(i) if status is not None else {}})

    def roll_out(self, namespace: str, deployment: str) -> None:
        """The Deployment controller reports every replica updated and available."""
        obj = self.objects[("apps/v1", "Deployment", namespace, deployment)]
        replicas = obj["spec"]["replicas"]
        obj["status"] = {"observedGeneration": obj["metadata"]["generation"], "replicas": replicas,
                         "updatedReplicas": replicas, "availableReplicas": replicas}


class MemoryCluster:
    """ModelDeployments, PersistentVolumeClaims and Secrets in memory, with `children` beside them."""

    def __init__(self, *, secrets_visible: bool = True) -> None:
        self.children = MemoryChildren()
        self.model_deployments: dict[tuple[str, str], dict[str, Any]] = {}
        self.claims: set[tuple[str, str]] = set()
        self.secrets: set[tuple[str, str]] = set()
        self.secrets_visible = secrets_visible
        self.status_writes = 0
        self.before_status_write: Callable[[], None] | None = None
        """Runs once before the next status write: another writer's change, racing the operator's."""

    def create(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Store a ModelDeployment as the API server would (uid, generation 1, resourceVersion)."""
        stored = copy.deepcopy(dict(body))
        meta = stored["metadata"]
        meta.setdefault("uid", "0f0e0d0c-0000-4000-8000-000000000001")
        meta["generation"], meta["resourceVersion"] = 1, "1"
        self.model_deployments[(meta["namespace"], meta["name"])] = stored
        return copy.deepcopy(stored)

    def update_spec(self, namespace: str, name: str, change: Callable[[dict[str, Any]], None]) -> None:
        """A user's write of the spec: a new generation and resourceVersion."""
        stored = self.model_deployments[(namespace, name)]
        change(stored["spec"])
        meta = stored["metadata"]
        meta["generation"] += 1
        meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)

    def body(self, namespace: str, name: str) -> dict[str, Any]:
        """The object as stored now (what a watch event would carry)."""
        return copy.deepcopy(self.model_deployments[(namespace, name)])

    async def claim_exists(self, namespace: str, name: str) -> bool:
        return (namespace, name) in self.claims

    async def secret_exists(self, namespace: str, name: str) -> bool | None:
        return (namespace, name) in self.secrets if self.secrets_visible else None

    async def get_model_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        found = self.model_deployments.get((namespace, name))
        return copy.deepcopy(found) if found is not None else None

    async def patch_model_deployment_status(self, namespace: str, name: str, status: Mapping[str, Any], *,
                                            resource_version: str | None) -> dict[str, Any]:
        if self.before_status_write is not None:
            race, self.before_status_write = self.before_status_write, None
            race()
        stored = self.model_deployments.get((namespace, name))
        if stored is None:
            raise NotFoundError(404, "NotFound", f"{namespace}/{name}")
        meta = stored["metadata"]
        if resource_version is not None and resource_version != meta["resourceVersion"]:
            raise ConflictError(409, "Conflict", "the object has been modified")
        merge_patch(stored.setdefault("status", {}), json.loads(json.dumps(dict(status))))
        meta["resourceVersion"] = str(int(meta["resourceVersion"]) + 1)
        self.status_writes += 1
        return copy.deepcopy(stored)
