"""Pod lifecycle: one worker thread per pod, from admission to deletion. It decides what runs when
(sandbox, volumes, init containers in order, containers, restarts with the kubelet's crash back-off),
works out the phase and conditions, terminates the pod on deletion, and reports the pod's status."""

from __future__ import annotations

import contextlib
import functools
import logging
import shutil
import threading
import time
from typing import TYPE_CHECKING

from kubernetes import client
from kubernetes.client.rest import ApiException

from localcluster.agent.api import Backoff, OutageLog, call_until, transient
from localcluster.agent.common import Obj, StartError, now
from localcluster.agent.containers import Container, PodSandbox
from localcluster.agent.probes import start_probes

if TYPE_CHECKING:
    from pathlib import Path

    from localcluster.agent.nodeagent import NodeAgent

log = logging.getLogger("localcluster.agent")


class PodWorker(threading.Thread):
    """Owns one pod from admission to deletion: sandbox, volumes, containers, probes, status."""

    def __init__(self, agent: NodeAgent, pod: Obj) -> None:
        super().__init__(name=f"pod-{pod['metadata']['namespace']}/{pod['metadata']['name']}", daemon=True)
        self.agent = agent
        self.pod = pod
        self.uid: str = pod["metadata"]["uid"]
        self.wakeup = threading.Event()
        self.sandbox = PodSandbox(agent, self.uid, self.wakeup)
        self.dir = self.sandbox.dir
        self.lock = threading.RLock()
        self.gone = False
        self.volumes: dict[str, str] = {}
        self.init_containers = [Container(c, init=True) for c in pod["spec"].get("initContainers") or []]
        self.containers = [Container(c) for c in pod["spec"]["containers"]]
        self.conditions: dict[str, Obj] = {}
        self.phase = "Pending"
        self.start_time = now()
        self.sandbox_message = ""
        self.last_status: Obj | None = None
        self.status_backoff = Backoff()
        self.status_outage = OutageLog(f"status of pod {self.name}")
        self.api_backoff = Backoff()
        self.api_outage = OutageLog(f"starting pod {self.name}")

    @property
    def all_containers(self) -> list[Container]:
        return self.init_containers + self.containers

    # ---- entry points used by the agent -------------------------------------------------
    def update(self, pod: Obj, resync: bool = False) -> None:
        """The pod as the API server has it now; with `resync`, its status is written again in full."""
        with self.lock:
            self.pod = pod
            if resync:
                self.last_status = None
        self.wakeup.set()

    def vanish(self) -> None:
        """The pod object is gone from the API (e.g. force-deleted): stop at once."""
        self.gone = True
        self.wakeup.set()

    def log_path(self, container: str, restart: int) -> Path:
        return self.sandbox.log_path(container, restart)

    # ---- main loop ----------------------------------------------------------------------
    def run(self) -> None:
        try:
            while True:
                with self.lock:
                    pod = self.pod
                if self.gone or pod["metadata"].get("deletionTimestamp"):
                    self.terminate(pod)
                    return
                try:
                    if self.phase in ("Succeeded", "Failed"):
                        self.teardown()
                    else:
                        self.sync(pod)
                    self.api_backoff.succeeded()
                    self.api_outage.landed()
                except Exception as error:
                    # A read the pod's start needs (a ConfigMap, a token) found no API server: try again.
                    if not transient(error):
                        raise
                    self.api_outage.failed(error)
                    self.wakeup.wait(self.api_backoff.failed(error))
                self.report_status()
                self.wakeup.wait(0.25)
                self.wakeup.clear()
        except Exception as error:
            # Never run a pod twice: stop it, report it Failed, and stay registered until it is deleted.
            log.exception("pod worker %s failed", self.name)
            with contextlib.suppress(Exception):
                self.kill_all(grace=0)
                self.teardown()
            self.phase = "Failed"
            self.sandbox_message = f"node agent error: {error}"
            with contextlib.suppress(Exception):
                self.report_status()
            self.await_deletion()
        finally:
            self.agent.worker_done(self.uid)

    def await_deletion(self) -> None:
        while not self.gone and not self.pod["metadata"].get("deletionTimestamp"):
            with contextlib.suppress(Exception):
                self.report_status()
            self.wakeup.wait(1)
            self.wakeup.clear()
        if not self.gone:
            with contextlib.suppress(Exception):
                self.terminate(self.pod)

    def sync(self, pod: Obj) -> None:
        if not self.sandbox.ready:
            try:
                self.sandbox.create(pod)
                self.set_condition("PodReadyToStartContainers", True)
            except Exception as e:
                self.sandbox_message = str(e)
                return
        if not self.volumes_ready(pod):
            return
        if not self.sync_init_containers(pod):
            return
        self.set_condition("Initialized", True)
        self.sync_containers(pod, self.containers)
        self.update_phase(pod)

    def volumes_ready(self, pod: Obj) -> bool:
        if self.volumes:
            return True
        try:
            self.volumes = self.agent.volumes.prepare(pod, self.dir / "volumes")
            return True
        except StartError as e:
            for c in self.all_containers:
                c.state = {"waiting": {"reason": "ContainerCreating", "message": e.message}}
            self.agent.event(pod, "Warning", "FailedMount", e.message)
            self.wakeup.wait(2)
            return False

    def sync_init_containers(self, pod: Obj) -> bool:
        """Runs init containers one at a time; True once all completed successfully."""
        policy = pod["spec"].get("restartPolicy", "Always")
        for c in self.init_containers:
            terminated = c.state.get("terminated")
            if terminated and terminated["exitCode"] == 0:
                continue
            self.set_condition("Initialized", False, "ContainersNotInitialized",
                               f"containers with incomplete status: [{c.name}]")
            if c.running:
                return False
            if terminated:
                if policy == "Never":
                    self.phase = "Failed"
                else:
                    self.schedule_restart(c)
                return False
            if self.restart_ready(c):
                self.start_container(pod, c)
            return False
        return True

    def sync_containers(self, pod: Obj, containers: list[Container]) -> None:
        policy = pod["spec"].get("restartPolicy", "Always")
        for c in containers:
            if c.running:
                continue
            terminated = c.state.get("terminated")
            if terminated is not None:
                failed = terminated["exitCode"] != 0
                if policy == "Always" or (policy == "OnFailure" and failed):
                    self.schedule_restart(c)
                continue
            if self.restart_ready(c):
                self.start_container(pod, c)

    def start_container(self, pod: Obj, c: Container) -> None:
        if self.sandbox.start_container(pod, c, self.volumes) and not c.init:
            start_probes(self, pod, c)

    def schedule_restart(self, c: Container) -> None:
        """The kubelet's crash back-off: wait (10s, doubling up to 5 min) before a restart, counted once."""
        ran_for = time.monotonic() - c.started_at
        c.backoff_seconds = (
            self.agent.backoff_base if ran_for > 600 or c.backoff_seconds == 0
            else min(c.backoff_seconds * 2, self.agent.backoff_max)
        )
        c.backoff_until = time.monotonic() + c.backoff_seconds
        c.restart_pending = True
        c.last_state = {"terminated": c.state["terminated"]}
        c.state = {"waiting": {"reason": "CrashLoopBackOff",
                              "message": f"back-off {int(c.backoff_seconds)}s restarting failed container "
                                         f"{c.name} in pod {self.name}"}}
        self.agent.event(self.pod, "Warning", "BackOff", f"Back-off restarting failed container {c.name}")

    @staticmethod
    def restart_ready(c: Container) -> bool:
        """Whether a waiting container may start now; a pending restart is counted when it does."""
        if time.monotonic() < c.backoff_until:
            return False
        if c.restart_pending:
            c.restart_pending = False
            c.restart_count += 1
        return True

    def update_phase(self, pod: Obj) -> None:
        policy = pod["spec"].get("restartPolicy", "Always")
        states = [c.state for c in self.containers]
        all_terminated = all("terminated" in s for s in states)
        if all_terminated and policy != "Always":
            codes = [s["terminated"]["exitCode"] for s in states]
            if all(code == 0 for code in codes):
                self.phase = "Succeeded"
            elif policy == "Never":
                self.phase = "Failed"
        elif any(c.running for c in self.containers):
            self.phase = "Running"
        ready = all(c.ready for c in self.containers)
        not_ready = [c.name for c in self.containers if not c.ready]
        message = f"containers with unready status: [{' '.join(not_ready)}]"
        self.set_condition("ContainersReady", ready, "" if ready else "ContainersNotReady", "" if ready else message)
        if not ready:
            self.set_condition("Ready", False, "ContainersNotReady", message)
            return
        # As the kubelet: a pod is Ready once its containers are and every readiness gate's condition,
        # set by whoever owns it, is True.
        unmet = self.unmet_readiness_gate(pod)
        if unmet:
            self.set_condition("Ready", False, "ReadinessGatesNotReady", unmet)
        else:
            self.set_condition("Ready", True)

    @staticmethod
    def unmet_readiness_gate(pod: Obj) -> str:
        found = {c.get("type"): c.get("status") for c in (pod.get("status") or {}).get("conditions") or []}
        for gate in pod["spec"].get("readinessGates") or []:
            kind = gate.get("conditionType")
            if kind not in found:
                return f'corresponding condition of pod readiness gate "{kind}" does not exist.'
            if found[kind] != "True":
                return f'the status of pod readiness gate "{kind}" is not "True", but {found[kind]}'
        return ""

    # ---- termination ------------------------------------------------------------------------
    def grace_seconds(self, pod: Obj) -> float:
        grace = pod["metadata"].get("deletionGracePeriodSeconds")
        if grace is None:
            grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
        return float(grace)

    def kill_all(self, grace: float) -> None:
        self.sandbox.kill_all(self.pod, self.all_containers, grace)

    def terminate(self, pod: Obj) -> None:
        if not self.gone:
            self.agent.event(pod, "Normal", "Killing", "Stopping containers")
        self.kill_all(0 if self.gone else self.grace_seconds(pod))
        for c in self.all_containers:
            if c.process is not None:
                c.process.wait()
        self.teardown()
        shutil.rmtree(self.dir, ignore_errors=True)
        # All containers stopped: as the kubelet does, finish the deletion with a zero grace period,
        # retried until it lands or the pod is gone.
        body = client.V1DeleteOptions(grace_period_seconds=0, preconditions=client.V1Preconditions(uid=self.uid))
        name, namespace = pod["metadata"]["name"], pod["metadata"]["namespace"]
        finished = functools.partial(self.agent.core.delete_namespaced_pod, name, namespace, body=body)

        def give_up() -> bool:
            if not self.gone:
                self.report_status()
            return self.gone or self.agent.stopping.is_set()

        try:
            call_until(f"final delete of pod {self.name}", finished, give_up=give_up, wait=self.wakeup.wait)
        except ApiException as e:
            if e.status not in (404, 409):  # gone already, or another pod of the same name now
                log.warning("final delete of %s: %s", self.name, e.reason)

    def teardown(self) -> None:
        self.sandbox.remove(self.all_containers, self.pod)

    # ---- status --------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return f"{self.pod['metadata']['namespace']}/{self.pod['metadata']['name']}"

    def set_condition(self, kind: str, status: bool, reason: str = "", message: str = "") -> None:
        value = "True" if status else "False"
        old = self.conditions.get(kind)
        if old and old["status"] == value and old.get("reason", "") == reason:
            return
        cond: Obj = {"type": kind, "status": value,
                     "lastTransitionTime": old["lastTransitionTime"] if old and old["status"] == value else now(),
                     "lastProbeTime": None}
        if reason:
            cond["reason"] = reason
        if message:
            cond["message"] = message
        self.conditions[kind] = cond

    def container_status(self, c: Container) -> Obj:
        image = c.spec.get("image", "")
        status: Obj = {"name": c.name, "image": image, "imageID": f"local://{image}",
                       "ready": c.ready, "restartCount": c.restart_count, "state": c.state,
                       "lastState": c.last_state, "started": c.started if not c.init else c.running}
        if c.running or "terminated" in c.state:
            status["containerID"] = self.sandbox.container_id(c)
        return status

    def build_status(self) -> Obj:
        for kind in ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready"):
            if kind not in self.conditions:
                self.set_condition(kind, False)
        if self.phase in ("Succeeded", "Failed"):
            self.set_condition("PodReadyToStartContainers", False)
            self.set_condition("Ready", False, "PodCompleted")
            self.set_condition("ContainersReady", False, "PodCompleted")
        with self.lock:
            existing = {c["type"]: c for c in (self.pod.get("status") or {}).get("conditions") or []}
        conditions = [existing["PodScheduled"]] if "PodScheduled" in existing else []
        conditions += list(self.conditions.values())
        pod_ip = self.sandbox.pod_ip
        status: Obj = {
            "phase": self.phase,
            "conditions": conditions,
            "hostIP": self.agent.bridge.gateway,
            "hostIPs": [{"ip": self.agent.bridge.gateway}],
            "startTime": self.start_time,
            "containerStatuses": [self.container_status(c) for c in self.containers],
        }
        if self.init_containers:
            status["initContainerStatuses"] = [self.container_status(c) for c in self.init_containers]
        if pod_ip and self.phase not in ("Succeeded", "Failed"):
            status["podIP"] = pod_ip
            status["podIPs"] = [{"ip": pod_ip}]
        if self.sandbox_message and (not self.sandbox.ready or self.phase == "Failed"):
            status["message"] = self.sandbox_message
        return status

    def report_status(self) -> None:
        """Writes the pod's current status if the API server does not have it yet.

        Level-triggered: a write that fails is not queued; the next pass (a quarter second later, or
        after back-off while the API server is away) writes whatever the status is then."""
        if self.gone or not self.status_backoff.ready():
            return
        status = self.build_status()
        with self.lock:
            if status == self.last_status:
                return
        ns, name = self.pod["metadata"]["namespace"], self.pod["metadata"]["name"]
        try:
            self.agent.core.patch_namespaced_pod_status(name, ns, {"status": status})
        except ApiException as e:
            if e.status == 404:
                self.gone = True
                return
            if not transient(e):
                log.warning("status of %s: %s", self.name, e.reason)
            self.status_outage.failed(e)
            self.status_backoff.failed(e)
            return
        except Exception as e:
            if not transient(e):
                raise
            self.status_outage.failed(e)
            self.status_backoff.failed(e)
            return
        with self.lock:
            self.last_status = status
        self.status_backoff.succeeded()
        self.status_outage.landed()
