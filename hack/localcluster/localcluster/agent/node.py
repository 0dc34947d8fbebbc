"""Node registration and heartbeat: the Node object with its capacity, addresses and conditions,
the not-ready taint lifted once Ready, and the lease renewed every few seconds."""

from __future__ import annotations

import datetime
import os
import shutil
import time
from typing import TYPE_CHECKING

from kubernetes import client
from kubernetes.client.rest import ApiException

from localcluster.agent.api import Backoff, OutageLog
from localcluster.agent.common import Obj, now

if TYPE_CHECKING:
    from localcluster.agent.nodeagent import NodeAgent

LEASE_NAMESPACE = "kube-node-lease"
LEASE_SECONDS = 40
RENEW_SECONDS = 5
STATUS_SECONDS = 30


class NodeRegistration:
    """Registers this node and keeps it alive in the API's eyes."""

    def __init__(self, agent: NodeAgent) -> None:
        self.agent = agent
        self.name = agent.node_name

    def status(self) -> Obj:
        agent = self.agent
        capacity = {"cpu": str(os.cpu_count()), "memory": f"{agent.memory_bytes // 1024}Ki", "pods": "110",
                    "ephemeral-storage": f"{shutil.disk_usage(agent.state_dir).total // 1024}Ki"}
        stamp = now()
        ready: Obj = {"type": "Ready", "status": "True", "reason": "KubeletReady",
                      "message": "local node agent is posting ready status",
                      "lastHeartbeatTime": stamp, "lastTransitionTime": stamp}
        conditions = [ready] + [
            {"type": t, "status": "False", "reason": r, "lastHeartbeatTime": stamp, "lastTransitionTime": stamp,
             "message": m}
            for t, r, m in (("MemoryPressure", "KubeletHasSufficientMemory", "sufficient memory"),
                            ("DiskPressure", "KubeletHasNoDiskPressure", "no disk pressure"),
                            ("PIDPressure", "KubeletHasSufficientPID", "sufficient PID"))
        ]
        return {
            "capacity": capacity, "allocatable": capacity, "conditions": conditions,
            "addresses": [{"type": "InternalIP", "address": agent.bridge.gateway},
                          {"type": "Hostname", "address": self.name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {"architecture": "amd64", "bootID": "", "containerRuntimeVersion": "localcluster://1",
                         "kernelVersion": os.uname().release, "kubeProxyVersion": "",
                         "kubeletVersion": "v1.33.13", "machineID": "", "operatingSystem": "linux",
                         "osImage": "localcluster node agent", "systemUUID": ""},
        }

    def register(self) -> None:
        core = self.agent.core
        body = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.name,
                             "labels": {"kubernetes.io/hostname": self.name, "kubernetes.io/os": "linux",
                                        "kubernetes.io/arch": "amd64", "node.kubernetes.io/instance-type": "local"}},
                "spec": {}}
        try:
            core.create_node(body)
        except ApiException as e:
            if e.status != 409:
                raise
        core.patch_node_status(self.name, {"status": self.status()})
        # The node lifecycle controller taints a new node not-ready until it sees Ready; lift it now.
        node = core.read_node(self.name)
        taints = [t for t in node.spec.taints or [] if not t.key.startswith("node.kubernetes.io/not-ready")]
        core.patch_node(self.name, {"spec": {"taints": [self.agent.api.sanitize_for_serialization(t)
                                                        for t in taints] or None}})

    def heartbeat(self) -> None:
        """Renews the node's lease every few seconds and posts its status now and then, until stopped.

        A failed renewal is retried with back-off; the first one to land after an outage posts the
        node's status at once, so the node is Ready again within seconds of the API server's return."""
        coord = client.CoordinationV1Api(self.agent.api)
        backoff = Backoff(maximum=RENEW_SECONDS)
        outage = OutageLog("node heartbeat")
        last_status = 0.0
        wait = float(RENEW_SECONDS)
        while not self.agent.stopping.wait(wait):
            try:
                self.renew_lease(coord)
                if backoff.failures or time.monotonic() - last_status > STATUS_SECONDS:
                    self.agent.core.patch_node_status(self.name, {"status": self.status()})
                    last_status = time.monotonic()
            except Exception as e:
                outage.failed(e)
                wait = backoff.failed(e)
                continue
            backoff.succeeded()
            outage.landed()
            wait = RENEW_SECONDS

    def renew_lease(self, coord: client.CoordinationV1Api) -> None:
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        try:
            coord.patch_namespaced_lease(self.name, LEASE_NAMESPACE,
                                         {"spec": {"renewTime": stamp, "holderIdentity": self.name}})
        except ApiException as e:
            if e.status != 404:
                raise
            coord.create_namespaced_lease(LEASE_NAMESPACE, {
                "metadata": {"name": self.name, "namespace": LEASE_NAMESPACE},
                "spec": {"holderIdentity": self.name, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": stamp}})
