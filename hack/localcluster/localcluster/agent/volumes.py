"""Volumes: a pod's volumes materialised as host directories the launcher binds into containers,
and the small dynamic provisioner behind the `local` StorageClass.

Reading a ConfigMap, Secret or claim may fail because the API server is away: that error is raised
as it is (the pod worker tries again), never turned into "not found"."""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from localcluster.agent.api import Backoff, OutageLog, transient
from localcluster.agent.common import Obj, StartError
from localcluster.agent.env import field_value

if TYPE_CHECKING:
    from localcluster.agent.nodeagent import NodeAgent

PROVISIONER = "localcluster.modeldeploy.dev/hostpath"
STORAGE_CLASS = "local"


class Volumes:
    """Materialises a pod's volumes as host directories the launcher binds into containers."""

    def __init__(self, agent: NodeAgent) -> None:
        self.agent = agent

    def config_map(self, ns: str, name: str, optional: bool) -> dict[str, bytes]:
        try:
            cm = self.agent.core.read_namespaced_config_map(name, ns)
        except ApiException as e:
            if transient(e):
                raise
            if e.status == 404 and optional:
                return {}
            raise StartError("CreateContainerConfigError", f'configmap "{name}" not found') from e
        data = {k: v.encode() for k, v in (cm.data or {}).items()}
        data.update({k: base64.b64decode(v) for k, v in (cm.binary_data or {}).items()})
        return data

    def secret(self, ns: str, name: str, optional: bool) -> dict[str, bytes]:
        try:
            secret = self.agent.core.read_namespaced_secret(name, ns)
        except ApiException as e:
            if transient(e):
                raise
            if e.status == 404 and optional:
                return {}
            raise StartError("CreateContainerConfigError", f'secret "{name}" not found') from e
        return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}

    @staticmethod
    def write_items(target: Path, data: dict[str, bytes], items: list[Obj] | None, mode: int) -> None:
        target.mkdir(parents=True, exist_ok=True)
        selected = [(i["key"], i["path"], i.get("mode", mode)) for i in items] if items else [
            (k, k, mode) for k in data]
        for key, rel, file_mode in selected:
            if key not in data:
                continue
            path = target / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data[key])
            path.chmod(file_mode)

    def token(self, pod: Obj, source: Obj) -> bytes:
        body = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(
            audiences=[source["audience"]] if source.get("audience") else [],
            expiration_seconds=source.get("expirationSeconds", 3607),
            bound_object_ref=client.V1BoundObjectReference(
                api_version="v1", kind="Pod", name=pod["metadata"]["name"], uid=pod["metadata"]["uid"]),
        ))
        sa = pod["spec"].get("serviceAccountName") or "default"
        result = self.agent.core.create_namespaced_service_account_token(sa, pod["metadata"]["namespace"], body)
        return str(result.status.token).encode()

    def prepare(self, pod: Obj, root: Path) -> dict[str, str]:
        """Every volume of the pod as {name: host path}; raises StartError when one cannot be made yet."""
        ns = pod["metadata"]["namespace"]
        fs_group = (pod["spec"].get("securityContext") or {}).get("fsGroup")
        paths: dict[str, str] = {}
        for vol in pod["spec"].get("volumes") or []:
            name = vol["name"]
            target = root / name
            if "emptyDir" in vol:
                target.mkdir(parents=True, exist_ok=True)
                target.chmod(0o777)
            elif "configMap" in vol:
                src = vol["configMap"]
                data = self.config_map(ns, src["name"], src.get("optional", False))
                self.write_items(target, data, src.get("items"), src.get("defaultMode", 0o644))
            elif "secret" in vol:
                src = vol["secret"]
                data = self.secret(ns, src["secretName"], src.get("optional", False))
                self.write_items(target, data, src.get("items"), src.get("defaultMode", 0o644))
            elif "downwardAPI" in vol:
                self.write_downward(pod, target, vol["downwardAPI"])
            elif "projected" in vol:
                self.write_projected(pod, target, vol["projected"])
            elif "persistentVolumeClaim" in vol:
                paths[name] = self.claim_path(ns, vol["persistentVolumeClaim"]["claimName"])
                continue
            elif "hostPath" in vol:
                host = vol["hostPath"]
                if host.get("type") in ("DirectoryOrCreate",) and not os.path.exists(host["path"]):
                    os.makedirs(host["path"], mode=0o755)
                paths[name] = host["path"]
                continue
            else:
                raise StartError("CreateContainerConfigError",
                                 f"volume {name!r}: this volume type is not supported on this node")
            if fs_group is not None:
                for dirpath, _dirs, files in os.walk(target):
                    for p in [dirpath, *(os.path.join(dirpath, f) for f in files)]:
                        os.chown(p, -1, fs_group)
                        os.chmod(p, os.stat(p).st_mode | 0o060)
            paths[name] = str(target)
        return paths

    def write_downward(self, pod: Obj, target: Path, src: Obj) -> None:
        target.mkdir(parents=True, exist_ok=True)
        for item in src.get("items") or []:
            if "fieldRef" in item:
                value = field_value(pod, item["fieldRef"]["fieldPath"], "", self.agent.bridge.gateway)
                path = target / item["path"]
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(value)
                path.chmod(item.get("mode", src.get("defaultMode", 0o644)))

    def write_projected(self, pod: Obj, target: Path, src: Obj) -> None:
        ns = pod["metadata"]["namespace"]
        mode = src.get("defaultMode", 0o644)
        target.mkdir(parents=True, exist_ok=True)
        for source in src.get("sources") or []:
            if "serviceAccountToken" in source:
                sat = source["serviceAccountToken"]
                path = target / sat["path"]
                path.write_bytes(self.token(pod, sat))
                path.chmod(mode)
            elif "configMap" in source:
                cm = source["configMap"]
                self.write_items(target, self.config_map(ns, cm["name"], cm.get("optional", False)),
                                 cm.get("items"), mode)
            elif "secret" in source:
                s = source["secret"]
                self.write_items(target, self.secret(ns, s["name"], s.get("optional", False)), s.get("items"), mode)
            elif "downwardAPI" in source:
                self.write_downward(pod, target, {**source["downwardAPI"], "defaultMode": mode})

    def claim_path(self, ns: str, claim: str) -> str:
        try:
            pvc = self.agent.core.read_namespaced_persistent_volume_claim(claim, ns)
        except ApiException as e:
            if transient(e):
                raise
            raise StartError("CreateContainerConfigError",
                             f'persistentvolumeclaim "{claim}" not found') from e
        if pvc.status.phase != "Bound" or not pvc.spec.volume_name:
            raise StartError("ContainerCreating", f'persistentvolumeclaim "{claim}" is not bound yet')
        pv = self.agent.core.read_persistent_volume(pvc.spec.volume_name)
        if pv.spec.host_path is not None:
            return str(pv.spec.host_path.path)
        if pv.spec.local is not None:
            return str(pv.spec.local.path)
        raise StartError("CreateContainerConfigError",
                         f"persistentvolume {pv.metadata.name}: only hostPath and local volumes are supported")


class Provisioner:
    """A small dynamic provisioner: a host directory per claim of the `local` class, removed with it."""

    def __init__(self, agent: NodeAgent) -> None:
        self.agent = agent
        self.root = agent.state_dir / "volumes"

    def ensure_storage_class(self) -> None:
        storage = client.StorageV1Api(self.agent.api)
        body = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                "metadata": {"name": STORAGE_CLASS,
                             "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
                "provisioner": PROVISIONER, "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate"}
        try:
            storage.create_storage_class(body)
        except ApiException as e:
            if e.status != 409:
                raise

    def loop(self) -> None:
        """Level-triggered: every second, each pending claim gets a volume and each released one goes.

        A volume whose creation failed is made again on the next pass, until it lands."""
        core = self.agent.core
        backoff = Backoff(initial=1.0, maximum=5.0)
        outage = OutageLog("provisioner")
        while not self.agent.stopping.is_set():
            try:
                for pvc in core.list_persistent_volume_claim_for_all_namespaces().items:
                    if (pvc.status.phase == "Pending" and not pvc.spec.volume_name
                            and (pvc.spec.storage_class_name or STORAGE_CLASS) == STORAGE_CLASS):
                        self.provision(pvc)
                for pv in core.list_persistent_volume().items:
                    annotations = pv.metadata.annotations or {}
                    if (pv.status.phase == "Released" and pv.spec.persistent_volume_reclaim_policy == "Delete"
                            and annotations.get("pv.kubernetes.io/provisioned-by") == PROVISIONER):
                        shutil.rmtree(pv.spec.host_path.path, ignore_errors=True)
                        with contextlib.suppress(ApiException):
                            core.delete_persistent_volume(pv.metadata.name)
            except Exception as e:
                outage.failed(e)
                self.agent.stopping.wait(backoff.failed(e))
                continue
            backoff.succeeded()
            outage.landed()
            self.agent.stopping.wait(1)

    def provision(self, pvc: Any) -> None:
        name = f"pvc-{pvc.metadata.uid}"
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o777)
        body = {"apiVersion": "v1", "kind": "PersistentVolume",
                "metadata": {"name": name, "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER}},
                "spec": {"capacity": {"storage": pvc.spec.resources.requests["storage"]},
                         "accessModes": pvc.spec.access_modes, "persistentVolumeReclaimPolicy": "Delete",
                         "storageClassName": STORAGE_CLASS, "volumeMode": "Filesystem",
                         "hostPath": {"path": str(path), "type": "Directory"},
                         "claimRef": {"namespace": pvc.metadata.namespace, "name": pvc.metadata.name,
                                      "uid": pvc.metadata.uid}}}
        try:
            self.agent.core.create_persistent_volume(body)
        except ApiException as e:
            if e.status != 409:
                raise
