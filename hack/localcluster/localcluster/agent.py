"""The node agent: registers one Node and runs the pods bound to it as local processes.

Each pod gets its own network namespace and IP on the cluster bridge; each container its own
mount/PID/UTS/IPC namespaces with the pod's volumes at their mountPaths (see launcher.py).
Probes, restarts with back-off, preStop, SIGTERM, grace period, SIGKILL and pod status
follow the kubelet's behaviour closely enough for Deployments, ReplicaSets, Jobs and
EndpointSlices to behave as on a real cluster. Images are not pulled: commands run from the host.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import http.client
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from localcluster import kubeletapi
from localcluster.network import Bridge

log = logging.getLogger("localcluster.agent")

LAUNCHER = str(Path(__file__).with_name("launcher.py"))
PROVISIONER = "localcluster.modeldeploy.dev/hostpath"
STORAGE_CLASS = "local"
DEFAULT_PATH = os.pathsep.join(
    [str(Path(sys.executable).parent), "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
)
MAX_TERMINATION_MESSAGE = 4096
Obj = dict[str, Any]


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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


class StartError(Exception):
    """A container cannot be created; reason and message go to its waiting state."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class Container:
    spec: Obj
    init: bool = False
    restart_count: int = 0
    process: subprocess.Popen[bytes] | None = None
    init_pid: int | None = None
    state: Obj = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: Obj = field(default_factory=dict)
    started_at: float = 0.0
    ready: bool = False
    started: bool = False
    backoff_until: float = 0.0
    backoff_seconds: float = 0.0
    restart_pending: bool = False
    stop_probes: threading.Event = field(default_factory=threading.Event)
    kill_reason: str | None = None
    log_path: Path | None = None
    config: Obj = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    @property
    def running(self) -> bool:
        # Cleared by the exit watcher only after it recorded the terminated state: a process that has
        # just exited still counts as running, so it is never started a second time in between.
        return self.process is not None


class PodWorker(threading.Thread):
    """Owns one pod from admission to deletion: sandbox, volumes, containers, probes, status."""

    def __init__(self, agent: NodeAgent, pod: Obj) -> None:
        super().__init__(name=f"pod-{pod['metadata']['namespace']}/{pod['metadata']['name']}", daemon=True)
        self.agent = agent
        self.pod = pod
        self.uid: str = pod["metadata"]["uid"]
        self.key = self.uid.replace("-", "")[:20]
        self.dir = agent.state_dir / "pods" / self.uid
        self.wakeup = threading.Event()
        self.lock = threading.RLock()
        self.gone = False
        self.netns: str | None = None
        self.pod_ip: str | None = None
        self.volumes: dict[str, str] = {}
        self.init_containers = [Container(c, init=True) for c in pod["spec"].get("initContainers") or []]
        self.containers = [Container(c) for c in pod["spec"]["containers"]]
        self.conditions: dict[str, Obj] = {}
        self.phase = "Pending"
        self.start_time = now()
        self.sandbox_message = ""
        self.last_status: Obj | None = None
        self.sandbox_ready = False
        self.torn_down = False

    # ---- entry points used by the agent -------------------------------------------------
    def update(self, pod: Obj) -> None:
        with self.lock:
            self.pod = pod
        self.wakeup.set()

    def vanish(self) -> None:
        """The pod object is gone from the API (e.g. force-deleted): stop at once."""
        self.gone = True
        self.wakeup.set()

    # ---- main loop ----------------------------------------------------------------------
    def run(self) -> None:
        try:
            while True:
                with self.lock:
                    pod = self.pod
                if self.gone or pod["metadata"].get("deletionTimestamp"):
                    self.terminate(pod)
                    return
                if self.phase in ("Succeeded", "Failed"):
                    self.teardown()
                else:
                    self.sync(pod)
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
            self.wakeup.wait(1)
            self.wakeup.clear()
        if not self.gone:
            with contextlib.suppress(Exception):
                self.terminate(self.pod)

    def sync(self, pod: Obj) -> None:
        if not self.sandbox_ready:
            try:
                self.netns, self.pod_ip = self.agent.bridge.add_pod(self.key)
                self.sandbox_ready = True
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
            for c in self.init_containers + self.containers:
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

    def restart_ready(self, c: Container) -> bool:
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
        self.set_condition("Ready", ready, "" if ready else "ContainersNotReady", "" if ready else message)

    # ---- containers -----------------------------------------------------------------------
    def start_container(self, pod: Obj, c: Container) -> None:
        assert self.netns and self.pod_ip
        cdir = self.dir / "containers" / c.name
        cdir.mkdir(parents=True, exist_ok=True)
        try:
            cfg = self.container_config(pod, c, cdir)
        except StartError as e:
            c.state = {"waiting": {"reason": e.reason, "message": e.message}}
            c.backoff_until = time.monotonic() + 2
            return
        cfg_path = cdir / "config.json"
        cfg_path.write_text(json.dumps(cfg))
        c.config = cfg
        status_path = Path(cfg["statusFile"])
        status_path.unlink(missing_ok=True)
        c.log_path = self.log_path(c.name, c.restart_count)
        c.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(c.log_path, "ab") as out:
            c.process = subprocess.Popen(
                [sys.executable, "-I", LAUNCHER, str(cfg_path)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
            )
        # The launcher reports the init's PID and whether the command was found.
        deadline = time.monotonic() + 10
        status: Obj = {}
        while time.monotonic() < deadline:
            if status_path.exists() and status_path.stat().st_size:
                with contextlib.suppress(ValueError):
                    status = json.loads(status_path.read_text())
                    break
            if c.process.poll() is not None:
                break
            time.sleep(0.01)
        if not status.get("started"):
            c.process.wait(timeout=10)
            reason = status.get("reason", "CreateContainerError")
            message = status.get("message") or self.tail(c.log_path, 5) or "container failed to start"
            c.state = {"waiting": {"reason": reason, "message": message}}
            c.process = None
            c.backoff_until = time.monotonic() + max(self.agent.backoff_base, 1)
            self.agent.event(pod, "Warning", "Failed", f"Error: {reason}: {message}")
            return
        with contextlib.suppress(OSError, ValueError):
            c.init_pid = int((cdir / "pid").read_text())
        c.started_at = time.monotonic()
        c.state = {"running": {"startedAt": now()}}
        c.kill_reason = None
        c.ready = False
        c.started = "startupProbe" not in c.spec
        c.stop_probes = threading.Event()
        self.agent.event(pod, "Normal", "Started", f"Started container {c.name}")
        threading.Thread(target=self.watch_exit, args=(c, c.process), daemon=True).start()
        if not c.init:
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                if kind in c.spec:
                    threading.Thread(target=self.probe_loop, args=(pod, c, kind, c.stop_probes),
                                     daemon=True).start()
            if "readinessProbe" not in c.spec:
                c.ready = c.started

    def watch_exit(self, c: Container, process: subprocess.Popen[bytes]) -> None:
        code = process.wait()
        c.stop_probes.set()
        cdir = self.dir / "containers" / c.name
        message = ""
        with contextlib.suppress(OSError):
            message = (cdir / "termination-log").read_bytes()[:MAX_TERMINATION_MESSAGE].decode(errors="replace")
        if not message and code != 0 and c.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            message = self.tail(c.log_path, 80)[-2048:]
        reason = "Completed" if code == 0 else ("Error" if c.kill_reason is None else c.kill_reason)
        terminated: Obj = {"exitCode": code, "reason": reason,
                           "startedAt": c.state.get("running", {}).get("startedAt", now()),
                           "finishedAt": now(), "containerID": self.container_id(c)}
        if code >= 128:
            terminated["signal"] = code - 128
        if message:
            terminated["message"] = message
        c.state = {"terminated": terminated}
        c.ready = False
        c.started = False
        c.process = None
        self.wakeup.set()

    def log_path(self, container: str, restart: int) -> Path:
        return self.dir / "logs" / container / f"{restart}.log"

    def container_id(self, c: Container) -> str:
        return f"local://{self.key}-{c.name}-{c.restart_count}"

    @staticmethod
    def tail(path: Path | None, lines: int) -> str:
        if path is None or not path.exists():
            return ""
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - 65536))
            return b"\n".join(f.read().splitlines()[-lines:]).decode(errors="replace")

    def container_config(self, pod: Obj, c: Container, cdir: Path) -> Obj:
        spec = c.spec
        env = self.agent.env.resolve(pod, spec, self.pod_ip or "")
        command = [expand(a, env) for a in spec.get("command") or []]
        args = [expand(a, env) for a in spec.get("args") or []]
        argv = command + args if command else args
        if not argv:
            raise StartError("CreateContainerConfigError",
                             "no command or args: images are not pulled on this node, so the container "
                             "must name the command to run")
        psc = pod["spec"].get("securityContext") or {}
        csc = spec.get("securityContext") or {}
        uid = csc.get("runAsUser", psc.get("runAsUser"))
        gid = csc.get("runAsGroup", psc.get("runAsGroup"))
        run_as_non_root = csc.get("runAsNonRoot", psc.get("runAsNonRoot"))
        if run_as_non_root and not uid:
            # No image metadata here: an image's user counts as root, as for an image without USER.
            raise StartError("CreateContainerConfigError",
                             "container has runAsNonRoot and image will run as root "
                             f"(pod: {self.name}, container: {c.name}): set runAsUser")
        groups = [g for g in [gid, psc.get("fsGroup"), *(psc.get("supplementalGroups") or [])] if g is not None]
        term_log = cdir / "termination-log"
        term_log.write_bytes(b"")
        term_log.chmod(0o666)
        mounts = []
        for vm in spec.get("volumeMounts") or []:
            source = self.volumes.get(vm["name"])
            if source is None:
                raise StartError("CreateContainerConfigError", f"volume {vm['name']!r} not found")
            if vm.get("subPath"):
                source = os.path.join(source, vm["subPath"])
                if not os.path.exists(source):
                    os.makedirs(source, mode=0o777, exist_ok=True)
            mounts.append({"path": vm["mountPath"], "source": source, "readOnly": bool(vm.get("readOnly")),
                           "file": os.path.isfile(source)})
        mounts.append({"path": spec.get("terminationMessagePath") or "/dev/termination-log",
                       "source": str(term_log), "file": True})
        return {
            "netns": self.netns,
            "scratch": str(cdir / "rootfs"),
            "hostname": pod["spec"].get("hostname") or pod["metadata"]["name"],
            "podIP": self.pod_ip,
            "mounts": mounts,
            "readOnlyRoot": bool(csc.get("readOnlyRootFilesystem")),
            "uid": uid or 0,
            "gid": gid if gid is not None else (uid or 0),
            "groups": groups,
            "noNewPrivs": csc.get("allowPrivilegeEscalation") is False,
            "workingDir": spec.get("workingDir") or "/",
            "imagePaths": self.agent.image_paths,
            "env": env,
            "argv": argv,
            "pidFile": str(cdir / "pid"),
            "statusFile": str(cdir / "status.json"),
        }

    # ---- probes -------------------------------------------------------------------------------
    def probe_loop(self, pod: Obj, c: Container, kind: str, stop: threading.Event) -> None:
        probe = c.spec[kind]
        period = probe.get("periodSeconds", 10)
        success_needed = probe.get("successThreshold", 1)
        failure_limit = probe.get("failureThreshold", 3)
        successes = failures = 0
        if stop.wait(probe.get("initialDelaySeconds", 0)):
            return
        while not stop.is_set():
            if kind != "startupProbe" and not c.started:
                if stop.wait(0.2):
                    return
                continue
            ok, detail = self.agent.prober.run(probe, c, self.pod_ip or "")
            if stop.is_set():
                return
            if ok:
                successes, failures = successes + 1, 0
                if successes >= success_needed:
                    if kind == "startupProbe":
                        c.started = True
                        if "readinessProbe" not in c.spec:
                            c.ready = True
                        self.wakeup.set()
                        return
                    if kind == "readinessProbe" and not c.ready:
                        c.ready = True
                        self.wakeup.set()
            else:
                successes, failures = 0, failures + 1
                label = {"startupProbe": "Startup", "readinessProbe": "Readiness", "livenessProbe": "Liveness"}[kind]
                self.agent.event(pod, "Warning", "Unhealthy", f"{label} probe failed: {detail}")
                if failures >= failure_limit:
                    if kind == "readinessProbe":
                        if c.ready:
                            c.ready = False
                            self.wakeup.set()
                    else:
                        self.agent.event(pod, "Normal", "Killing",
                                         f"Container {c.name} failed {label.lower()} probe, will be restarted")
                        self.stop_container(pod, c, self.grace_seconds(pod), reason="Error")
                        return
            if stop.wait(period):
                return

    # ---- termination ------------------------------------------------------------------------
    def grace_seconds(self, pod: Obj) -> float:
        grace = pod["metadata"].get("deletionGracePeriodSeconds")
        if grace is None:
            grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
        return float(grace)

    def stop_container(self, pod: Obj, c: Container, grace: float, reason: str | None = None) -> None:
        """preStop, then SIGTERM, then SIGKILL once the grace period is over."""
        process = c.process
        if process is None or process.poll() is not None:
            return
        c.kill_reason = reason
        c.stop_probes.set()
        deadline = time.monotonic() + grace
        pre_stop = (c.spec.get("lifecycle") or {}).get("preStop")
        if pre_stop and grace > 0:
            self.agent.prober.run_handler(pre_stop, c, self.pod_ip or "", timeout=grace)
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.force_kill(c, process)

    def force_kill(self, c: Container, process: subprocess.Popen[bytes]) -> None:
        # Killing the container's init ends its whole PID namespace.
        for pid in (c.init_pid, process.pid):
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)

    def kill_all(self, grace: float) -> None:
        threads = [threading.Thread(target=self.stop_container, args=(self.pod, c, grace, None))
                   for c in self.init_containers + self.containers if c.running]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def terminate(self, pod: Obj) -> None:
        if not self.gone:
            self.agent.event(pod, "Normal", "Killing", "Stopping containers")
        self.kill_all(0 if self.gone else self.grace_seconds(pod))
        for c in self.init_containers + self.containers:
            if c.process is not None:
                c.process.wait()
        self.teardown()
        shutil.rmtree(self.dir, ignore_errors=True)
        if self.gone:
            return
        # All containers stopped: as the kubelet does, finish the deletion with a zero grace period.
        with contextlib.suppress(ApiException):
            self.report_status()
        try:
            self.agent.core.delete_namespaced_pod(
                pod["metadata"]["name"], pod["metadata"]["namespace"],
                body=client.V1DeleteOptions(grace_period_seconds=0,
                                            preconditions=client.V1Preconditions(uid=self.uid)),
            )
        except ApiException as e:
            if e.status not in (404, 409):
                log.warning("final delete of %s: %s", self.name, e.reason)

    def teardown(self) -> None:
        if self.torn_down:
            return
        self.kill_all(0)
        self.agent.bridge.remove_pod(self.key, self.pod_ip)
        self.torn_down = True
        # Logs stay until the pod is deleted, so `kubectl logs` works on finished pods.
        shutil.rmtree(self.dir / "containers", ignore_errors=True)

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
            status["containerID"] = self.container_id(c)
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
        if self.pod_ip and self.phase not in ("Succeeded", "Failed"):
            status["podIP"] = self.pod_ip
            status["podIPs"] = [{"ip": self.pod_ip}]
        if self.sandbox_message and (not self.sandbox_ready or self.phase == "Failed"):
            status["message"] = self.sandbox_message
        return status

    def report_status(self) -> None:
        status = self.build_status()
        if status == self.last_status or self.gone:
            return
        ns, name = self.pod["metadata"]["namespace"], self.pod["metadata"]["name"]
        try:
            self.agent.core.patch_namespaced_pod_status(name, ns, {"status": status})
            self.last_status = status
        except ApiException as e:
            if e.status == 404:
                self.gone = True
            else:
                log.warning("status of %s: %s", self.name, e.reason)


class Prober:
    """Runs httpGet, tcpSocket and exec probes and lifecycle handlers against a container."""

    def run(self, probe: Obj, c: Container, pod_ip: str) -> tuple[bool, str]:
        timeout = float(probe.get("timeoutSeconds", 1))
        try:
            if "httpGet" in probe:
                return self.http_get(probe["httpGet"], c, pod_ip, timeout)
            if "tcpSocket" in probe:
                port = self.port(probe["tcpSocket"]["port"], c)
                with socket.create_connection((probe["tcpSocket"].get("host") or pod_ip, port), timeout=timeout):
                    return True, ""
            if "exec" in probe:
                return self.exec(probe["exec"]["command"], c, timeout)
            if "grpc" in probe:
                return False, "grpc probes are not supported on this node"
        except (OSError, http.client.HTTPException) as e:
            return False, str(e)
        return False, "probe has no handler"

    @staticmethod
    def port(value: int | str, c: Container) -> int:
        if isinstance(value, int) or str(value).isdigit():
            return int(value)
        for p in c.spec.get("ports") or []:
            if p.get("name") == value:
                return int(p["containerPort"])
        raise OSError(f"port {value!r} not found in container {c.name}")

    def http_get(self, action: Obj, c: Container, pod_ip: str, timeout: float) -> tuple[bool, str]:
        port = self.port(action["port"], c)
        conn_cls = http.client.HTTPSConnection if action.get("scheme") == "HTTPS" else http.client.HTTPConnection
        kwargs: Obj = {"timeout": timeout}
        if conn_cls is http.client.HTTPSConnection:
            import ssl

            kwargs["context"] = ssl._create_unverified_context()  # the kubelet does not verify either
        conn = conn_cls(action.get("host") or pod_ip, port, **kwargs)
        try:
            headers = {h["name"]: h["value"] for h in action.get("httpHeaders") or []}
            headers.setdefault("User-Agent", "kube-probe/1.33")
            conn.request("GET", action.get("path") or "/", headers=headers)
            response = conn.getresponse()
            response.read(10240)
            ok = 200 <= response.status < 400
            return ok, "" if ok else f"HTTP probe failed with statuscode: {response.status}"
        finally:
            conn.close()

    def exec(self, command: list[str], c: Container, timeout: float) -> tuple[bool, str]:
        if not c.init_pid:
            return False, "container is not running"
        cfg = c.config
        argv = ["nsenter", "-t", str(c.init_pid), "-n", "-m", "-p", "-u", "-i", "-r", "-w"]
        if cfg.get("uid"):
            argv += ["-S", str(cfg["uid"]), "-G", str(cfg.get("gid", cfg["uid"]))]
        env = cfg.get("env") or {"PATH": DEFAULT_PATH}
        process = subprocess.Popen([*argv, "--", *command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   env=env, start_new_session=True)
        try:
            out, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return False, f"command timed out after {timeout:g}s"
        text = out.decode(errors="replace").strip()[-500:]
        return process.returncode == 0, text or f"exit code {process.returncode}"

    def run_handler(self, handler: Obj, c: Container, pod_ip: str, timeout: float) -> None:
        if "sleep" in handler:
            time.sleep(min(float(handler["sleep"]["seconds"]), timeout))
        elif "exec" in handler:
            self.exec(handler["exec"]["command"], c, timeout)
        elif "httpGet" in handler:
            with contextlib.suppress(OSError, http.client.HTTPException):
                self.http_get(handler["httpGet"], c, pod_ip, timeout)


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


class Volumes:
    """Materialises a pod's volumes as host directories the launcher binds into containers."""

    def __init__(self, agent: NodeAgent) -> None:
        self.agent = agent

    def config_map(self, ns: str, name: str, optional: bool) -> dict[str, bytes]:
        try:
            cm = self.agent.core.read_namespaced_config_map(name, ns)
        except ApiException as e:
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


class NodeAgent:
    def __init__(self, kubeconfig: str, node_name: str, state_dir: Path, bridge: Bridge,
                 api_host: str, api_port: int, image_paths: list[str] | None = None) -> None:
        config.load_kube_config(kubeconfig)
        self.api = client.ApiClient()
        self.core = client.CoreV1Api(self.api)
        self.node_name = node_name
        self.state_dir = state_dir
        self.bridge = bridge
        self.api_host, self.api_port = api_host, api_port
        # What stands in for container images: commands run from these host directories.
        self.image_paths = sorted({os.path.realpath(p) for p in image_paths or []} | {sys.prefix})
        self.workers: dict[str, PodWorker] = {}
        self.workers_lock = threading.Lock()
        self.stopping = threading.Event()
        self.prober = Prober()
        self.env = EnvResolver(self)
        self.volumes = Volumes(self)
        self.backoff_base = float(os.environ.get("LOCALCLUSTER_BACKOFF_SECONDS", "10"))
        self.backoff_max = 300.0
        self.memory_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        (state_dir / "pods").mkdir(parents=True, exist_ok=True)
        (state_dir / "volumes").mkdir(parents=True, exist_ok=True)

    # ---- events ----------------------------------------------------------------------------------
    def event(self, obj: Obj, kind: str, reason: str, message: str) -> None:
        meta = obj["metadata"]
        stamp = now()
        body = {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {"kind": obj.get("kind", "Pod"), "apiVersion": obj.get("apiVersion", "v1"),
                               "name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]},
            "type": kind, "reason": reason, "message": message[:1024], "count": 1,
            "firstTimestamp": stamp, "lastTimestamp": stamp,
            "source": {"component": "kubelet", "host": self.node_name},
            "reportingComponent": "kubelet", "reportingInstance": self.node_name,
        }
        with contextlib.suppress(Exception):
            self.core.create_namespaced_event(meta["namespace"], body)

    # ---- node -----------------------------------------------------------------------------------
    def node_status(self) -> Obj:
        capacity = {"cpu": str(os.cpu_count()), "memory": f"{self.memory_bytes // 1024}Ki", "pods": "110",
                    "ephemeral-storage": f"{shutil.disk_usage(self.state_dir).total // 1024}Ki"}
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
            "addresses": [{"type": "InternalIP", "address": self.bridge.gateway},
                          {"type": "Hostname", "address": self.node_name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {"architecture": "amd64", "bootID": "", "containerRuntimeVersion": "localcluster://1",
                         "kernelVersion": os.uname().release, "kubeProxyVersion": "",
                         "kubeletVersion": "v1.33.13", "machineID": "", "operatingSystem": "linux",
                         "osImage": "localcluster node agent", "systemUUID": ""},
        }

    def register(self) -> None:
        body = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.node_name,
                             "labels": {"kubernetes.io/hostname": self.node_name, "kubernetes.io/os": "linux",
                                        "kubernetes.io/arch": "amd64", "node.kubernetes.io/instance-type": "local"}},
                "spec": {}}
        try:
            self.core.create_node(body)
        except ApiException as e:
            if e.status != 409:
                raise
        self.core.patch_node_status(self.node_name, {"status": self.node_status()})
        # The node lifecycle controller taints a new node not-ready until it sees Ready; lift it now.
        node = self.core.read_node(self.node_name)
        taints = [t for t in node.spec.taints or [] if not t.key.startswith("node.kubernetes.io/not-ready")]
        self.core.patch_node(self.node_name, {"spec": {"taints": [self.api.sanitize_for_serialization(t)
                                                                    for t in taints] or None}})

    def heartbeat(self) -> None:
        coord = client.CoordinationV1Api(self.api)
        lease_name, ns = self.node_name, "kube-node-lease"
        last_status = 0.0
        while not self.stopping.wait(5):
            stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            try:
                try:
                    coord.patch_namespaced_lease(lease_name, ns, {"spec": {"renewTime": stamp,
                                                                           "holderIdentity": self.node_name}})
                except ApiException as e:
                    if e.status != 404:
                        raise
                    coord.create_namespaced_lease(ns, {
                        "metadata": {"name": lease_name, "namespace": ns},
                        "spec": {"holderIdentity": self.node_name, "leaseDurationSeconds": 40,
                                 "renewTime": stamp}})
                if time.monotonic() - last_status > 30:
                    self.core.patch_node_status(self.node_name, {"status": self.node_status()})
                    last_status = time.monotonic()
            except Exception as e:
                log.warning("heartbeat: %s", e)

    # ---- storage --------------------------------------------------------------------------------
    def ensure_storage_class(self) -> None:
        storage = client.StorageV1Api(self.api)
        body = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                "metadata": {"name": STORAGE_CLASS,
                             "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
                "provisioner": PROVISIONER, "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate"}
        try:
            storage.create_storage_class(body)
        except ApiException as e:
            if e.status != 409:
                raise

    def provision_loop(self) -> None:
        """A small dynamic provisioner: a host directory per claim of the `local` class."""
        while not self.stopping.is_set():
            try:
                for pvc in self.core.list_persistent_volume_claim_for_all_namespaces().items:
                    if (pvc.status.phase == "Pending" and not pvc.spec.volume_name
                            and (pvc.spec.storage_class_name or STORAGE_CLASS) == STORAGE_CLASS):
                        self.provision(pvc)
                for pv in self.core.list_persistent_volume().items:
                    annotations = pv.metadata.annotations or {}
                    if (pv.status.phase == "Released" and pv.spec.persistent_volume_reclaim_policy == "Delete"
                            and annotations.get("pv.kubernetes.io/provisioned-by") == PROVISIONER):
                        shutil.rmtree(pv.spec.host_path.path, ignore_errors=True)
                        with contextlib.suppress(ApiException):
                            self.core.delete_persistent_volume(pv.metadata.name)
            except Exception as e:
                log.warning("provisioner: %s", e)
            self.stopping.wait(1)

    def provision(self, pvc: Any) -> None:
        name = f"pvc-{pvc.metadata.uid}"
        path = self.state_dir / "volumes" / name
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
            self.core.create_persistent_volume(body)
        except ApiException as e:
            if e.status != 409:
                raise

    # ---- pods -----------------------------------------------------------------------------------
    def worker_done(self, uid: str) -> None:
        with self.workers_lock:
            self.workers.pop(uid, None)

    def dispatch(self, kind: str, pod: Obj) -> None:
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
                worker.update(pod)

    def pod_loop(self) -> None:
        selector = f"spec.nodeName={self.node_name}"
        while not self.stopping.is_set():
            try:
                listing = self.core.list_pod_for_all_namespaces(field_selector=selector)
                seen = set()
                for pod in listing.items:
                    obj = self.api.sanitize_for_serialization(pod)
                    seen.add(obj["metadata"]["uid"])
                    self.dispatch("MODIFIED", obj)
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
                    log.warning("pod watch: %s; re-listing", e)
                    self.stopping.wait(1)

    def find_log(self, namespace: str, pod: str, container: str,
                 previous: bool) -> tuple[Path, Callable[[], bool]] | None:
        with self.workers_lock:
            workers = list(self.workers.values())
        for w in workers:
            meta = w.pod["metadata"]
            if meta["namespace"] != namespace or meta["name"] != pod:
                continue
            for c in w.init_containers + w.containers:
                if c.name == container:
                    restart = c.restart_count - 1 if previous else c.restart_count
                    if restart < 0:
                        return None
                    return w.log_path(c.name, restart), (lambda c=c: c.running)
        return None

    def run(self, pki: Path | None = None) -> None:
        if pki is not None:
            kubeletapi.serve(self.bridge.gateway, 10250, pki / "kubelet.crt", pki / "kubelet.key",
                             pki / "ca.crt", self.find_log)
        self.register()
        self.ensure_storage_class()
        threading.Thread(target=self.heartbeat, name="heartbeat", daemon=True).start()
        threading.Thread(target=self.provision_loop, name="provisioner", daemon=True).start()
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


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="localcluster node agent")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--node-name", default="localnode")
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--bridge", default="lcbr0")
    parser.add_argument("--pod-cidr", default="10.244.0.0/16")
    parser.add_argument("--api-port", type=int, default=6443)
    parser.add_argument("--pki-dir", help="serve the kubelet's log API with kubelet.crt/key from here")
    parser.add_argument("--image-path", action="append", default=[],
                        help="a host directory containers run commands from (kept visible under volumes)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    bridge = Bridge(args.bridge, args.pod_cidr)
    bridge.up()
    agent = NodeAgent(args.kubeconfig, args.node_name, Path(args.state_dir), bridge, bridge.gateway, args.api_port,
                      args.image_path)

    def stop(_signum: int, _frame: object) -> None:
        agent.shutdown()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    agent.run(Path(args.pki_dir) if args.pki_dir else None)


if __name__ == "__main__":
    main()
