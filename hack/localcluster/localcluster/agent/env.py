"""A container's environment, resolved the way the kubelet does: defaults, envFrom, env with
$(VAR) expansion, and valueFrom (fieldRef, resourceFieldRef, configMapKeyRef, secretKeyRef)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from localcluster.agent.common import Obj, StartError

if TYPE_CHECKING:
    from localcluster.agent.nodeagent import NodeAgent

DEFAULT_PATH = os.pathsep.join(
    [str(Path(sys.executable).parent), "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
)


def parse_quantity(value: str | int | float) -> float:
    """Kubernetes quantity -> float in base units (cores, bytes)."""
    s = str(value)
    suffixes = {
        "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
        "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
    }
    for suffix in sorted(suffixes, key=len, reverse=True):
        if s.endswith(suffix):
            return float(s[: -len(suffix)]) * suffixes[suffix]
    return float(s)


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes $(VAR) expansion: known names are replaced, $$ escapes, unknown stay as written."""

    def repl(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", repl, text)


class EnvResolver:
    """Builds a container's environment the way the kubelet does (env, envFrom, valueFrom)."""

    def __init__(self, agent: NodeAgent) -> None:
        self.agent = agent

    def resolve(self, pod: Obj, spec: Obj, pod_ip: str) -> dict[str, str]:
        ns = pod["metadata"]["namespace"]
        env: dict[str, str] = {
            "PATH": DEFAULT_PATH,
            "HOSTNAME": pod["spec"].get("hostname") or pod["metadata"]["name"],
            "HOME": "/root",
            "KUBERNETES_SERVICE_HOST": self.agent.api_host,
            "KUBERNETES_SERVICE_PORT": str(self.agent.api_port),
            "KUBERNETES_SERVICE_PORT_HTTPS": str(self.agent.api_port),
            "KUBERNETES_PORT": f"tcp://{self.agent.api_host}:{self.agent.api_port}",
        }
        for source in spec.get("envFrom") or []:
            prefix = source.get("prefix", "")
            if "configMapRef" in source:
                data = self.agent.volumes.config_map(ns, source["configMapRef"]["name"],
                                                     source["configMapRef"].get("optional", False))
            else:
                data = self.agent.volumes.secret(ns, source["secretRef"]["name"],
                                                 source["secretRef"].get("optional", False))
            env.update({prefix + k: v.decode(errors="replace") for k, v in data.items()})
        for var in spec.get("env") or []:
            if "valueFrom" in var:
                value = self.value_from(pod, spec, var["valueFrom"], pod_ip)
                if value is None:
                    continue
                env[var["name"]] = value
            else:
                env[var["name"]] = expand(var.get("value", ""), env)
        return env

    def value_from(self, pod: Obj, spec: Obj, source: Obj, pod_ip: str) -> str | None:
        ns = pod["metadata"]["namespace"]
        if "fieldRef" in source:
            return field_value(pod, source["fieldRef"]["fieldPath"], pod_ip, self.agent.bridge.gateway)
        if "resourceFieldRef" in source:
            ref = source["resourceFieldRef"]
            kind, resource = ref["resource"].split(".", 1)
            value = ((spec.get("resources") or {}).get(kind) or {}).get(resource)
            if value is None:
                value = str(os.cpu_count()) if resource == "cpu" else str(self.agent.memory_bytes)
            divisor = parse_quantity(ref.get("divisor", "1"))
            return str(max(1, int(-(-parse_quantity(value) // divisor))))
        for key, getter in (("configMapKeyRef", self.agent.volumes.config_map),
                            ("secretKeyRef", self.agent.volumes.secret)):
            if key in source:
                ref = source[key]
                data = getter(ns, ref["name"], ref.get("optional", False))
                if ref["key"] not in data:
                    if ref.get("optional"):
                        return None
                    raise StartError("CreateContainerConfigError",
                                     f"couldn't find key {ref['key']} in {key[:-6]} {ns}/{ref['name']}")
                return data[ref["key"]].decode(errors="replace")
        return None


def field_value(pod: Obj, path: str, pod_ip: str, host_ip: str) -> str:
    """The downward API: a pod field by its fieldPath, as env values and downwardAPI files see it."""
    meta = pod["metadata"]
    m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    simple = {
        "metadata.name": meta["name"], "metadata.namespace": meta["namespace"], "metadata.uid": meta["uid"],
        "spec.nodeName": pod["spec"].get("nodeName", ""),
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName", ""),
        "status.podIP": pod_ip, "status.podIPs": pod_ip, "status.hostIP": host_ip, "status.hostIPs": host_ip,
    }
    if path in ("metadata.labels", "metadata.annotations"):
        items = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    if path not in simple:
        raise StartError("CreateContainerConfigError", f"unsupported fieldPath {path!r}")
    return str(simple[path])
