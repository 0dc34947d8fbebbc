"""The node agent itself: wires the rooms together, watches the pods bound to this node and hands
each to its worker, records events, and stops every pod when the cluster goes away."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from kubernetes import client, config, watch

from localcluster.agent import kubeletapi
from localcluster.agent.api import EventRecorder, OutageLog, TimeoutApiClient, call_until
from localcluster.agent.common import Obj
from localcluster.agent.dns import host_config
from localcluster.agent.env import EnvResolver
from localcluster.agent.node import NodeRegistration
from localcluster.agent.pods import PodWorker
from localcluster.agent.probes import Prober
from localcluster.agent.volumes import Provisioner, Volumes
from localcluster.network import Bridge

log = logging.getLogger("localcluster.agent")


class NodeAgent:
    def __init__(self, kubeconfig: str, node_name: str, state_dir: Path, bridge: Bridge,
                 api_host: str, api_port: int, image_paths: list[str] | None = None,
                 cluster_dns: list[str] | None = None, cluster_domain: str = "",
                 resolv_conf: str = "/etc/resolv.conf") -> None:
        config.load_kube_config(kubeconfig)
        self.api = TimeoutApiClient()
        self.core = client.CoreV1Api(self.api)
        self.node_name = node_name
        self.state_dir = state_dir
        self.bridge = bridge
        self.api_host, self.api_port = api_host, api_port
        # What stands in for container images: commands run from these host directories.
        self.image_paths = sorted({os.path.realpath(p) for p in image_paths or []} | {sys.prefix})
        # What pods' resolv.conf is made of, as the kubelet's --cluster-dns, --cluster-domain, --resolv-conf.
        self.cluster_dns = list(cluster_dns or [])
        self.cluster_domain = cluster_domain
        self.resolv_conf = resolv_conf
        self.host_dns = host_config(resolv_conf)
        self.workers: dict[str, PodWorker] = {}
        self.workers_lock = threading.Lock()
        self.stopping = threading.Event()
        self.events = EventRecorder(self.core, node_name, self.stopping)
        self.prober = Prober()
        self.env = EnvResolver(self)
        self.volumes = Volumes(self)
        self.provisioner = Provisioner(self)
        self.node = NodeRegistration(self)
        self.backoff_base = float(os.environ.get("LOCALCLUSTER_BACKOFF_SECONDS", "10"))
        self.backoff_max = 300.0
        self.memory_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        (state_dir / "pods").mkdir(parents=True, exist_ok=True)
        (state_dir / "volumes").mkdir(parents=True, exist_ok=True)

    # ---- events ----------------------------------------------------------------------------------
    def event(self, obj: Obj, kind: str, reason: str, message: str) -> None:
        """Records an event about a pod; it lands whenever the API server answers (see api.py)."""
        self.events.event(obj, kind, reason, message)

    # ---- pods -----------------------------------------------------------------------------------
    def worker_done(self, uid: str) -> None:
        with self.workers_lock:
            self.workers.pop(uid, None)

    def dispatch(self, kind: str, pod: Obj, relisted: bool = False) -> None:
        """Hands a pod's change to its worker; `relisted` pods get their whole status written again."""
        uid = pod["metadata"]["uid"]
        with self.workers_lock:
            worker = self.workers.get(uid)
            if kind == "DELETED":
                if worker:
                    worker.vanish()
                return
            if worker is None:
                if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                    return  # finished before this agent started; nothing to run
                worker = PodWorker(self, pod)
                self.workers[uid] = worker
                worker.start()
            else:
                worker.update(pod, resync=relisted)

    def pod_loop(self) -> None:
        """List this node's pods, then watch them; after any error (an API server restart), again.

        Each re-list is a resync: pods gone from the list are stopped, and every worker writes its
        pod's current status, whatever the API server missed or others changed meanwhile."""
        selector = f"spec.nodeName={self.node_name}"
        outage = OutageLog("pod watch")
        while not self.stopping.is_set():
            try:
                listing = self.core.list_pod_for_all_namespaces(field_selector=selector)
                outage.landed()
                seen = set()
                for pod in listing.items:
                    obj = self.api.sanitize_for_serialization(pod)
                    seen.add(obj["metadata"]["uid"])
                    self.dispatch("MODIFIED", obj, relisted=True)
                with self.workers_lock:
                    missing = [w for uid, w in self.workers.items() if uid not in seen]
                for w in missing:
                    w.vanish()
                stream = watch.Watch().stream(
                    self.core.list_pod_for_all_namespaces, field_selector=selector,
                    resource_version=listing.metadata.resource_version, timeout_seconds=300,
                    _request_timeout=330,
                )
                for event in stream:
                    if self.stopping.is_set():
                        return
                    if event["type"] == "ERROR":
                        break
                    self.dispatch(event["type"], self.api.sanitize_for_serialization(event["object"]))
            except Exception as e:  # the API server may be restarting: re-list and re-watch
                if not self.stopping.is_set():
                    outage.failed(e)
                    self.stopping.wait(1)

    def find_log(self, namespace: str, pod: str, container: str,
                 previous: bool) -> tuple[Path, Callable[[], bool]] | None:
        """For the kubelet API: a container's log file (this run's or the previous one's)."""
        with self.workers_lock:
            workers = list(self.workers.values())
        for w in workers:
            meta = w.pod["metadata"]
            if meta["namespace"] != namespace or meta["name"] != pod:
                continue
            for c in w.all_containers:
                if c.name == container:
                    restart = c.restart_count - 1 if previous else c.restart_count
                    if restart < 0:
                        return None
                    return w.log_path(c.name, restart), (lambda c=c: c.running)
        return None

    # ---- the agent as a whole -------------------------------------------------------------------
    def run(self, pki: Path | None = None) -> None:
        if pki is not None:
            kubeletapi.serve(self.bridge.gateway, 10250, pki / "kubelet.crt", pki / "kubelet.key",
                             pki / "ca.crt", self.find_log)
        threading.Thread(target=self.events.loop, name="events", daemon=True).start()
        call_until("node registration", self.node.register, give_up=self.stopping.is_set, wait=self.stopping.wait)
        call_until("storage class", self.provisioner.ensure_storage_class, give_up=self.stopping.is_set,
                   wait=self.stopping.wait)
        threading.Thread(target=self.node.heartbeat, name="heartbeat", daemon=True).start()
        threading.Thread(target=self.provisioner.loop, name="provisioner", daemon=True).start()
        self.pod_loop()

    def shutdown(self) -> None:
        """Stops every pod's processes and removes their namespaces (the cluster is going away)."""
        self.stopping.set()
        with self.workers_lock:
            workers = list(self.workers.values())
        for w in workers:
            w.gone = True
        threads = [threading.Thread(target=lambda w=w: (w.kill_all(0), w.teardown())) for w in workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
