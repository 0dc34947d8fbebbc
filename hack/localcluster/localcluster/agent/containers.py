"""Containers and namespaces: a pod's sandbox (its network namespace and IP on the bridge) and its
containers, each a launcher process with its own mount/PID/UTS/IPC namespaces (see launcher.py):
start, exit, preStop, SIGTERM, grace period, SIGKILL, and the files a container's state lives in."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from localcluster.agent.common import Obj, StartError, now
from localcluster.agent.dns import pod_dns
from localcluster.agent.env import expand

if TYPE_CHECKING:
    from localcluster.agent.nodeagent import NodeAgent

LAUNCHER = str(Path(__file__).resolve().parent.parent / "launcher.py")
MAX_TERMINATION_MESSAGE = 4096


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


class PodSandbox:
    """One pod's network namespace and the processes of its containers, under the pod's state directory."""

    def __init__(self, agent: NodeAgent, uid: str, wakeup: threading.Event) -> None:
        self.agent = agent
        self.key = uid.replace("-", "")[:20]
        self.dir = agent.state_dir / "pods" / uid
        self.wakeup = wakeup  # set whenever a container exits
        self.netns: str | None = None
        self.pod_ip: str | None = None
        self.resolv_conf = ""
        self.ready = False
        self.removed = False

    # ---- the pod's network namespace ----------------------------------------------------------
    def create(self, pod: Obj) -> None:
        """The network namespace with the pod's IP, and the resolv.conf all its containers share."""
        agent = self.agent
        dns = pod_dns(pod, agent.cluster_dns, agent.cluster_domain, agent.host_dns, agent.resolv_conf)
        self.resolv_conf = dns.config.render()
        self.netns, self.pod_ip = agent.bridge.add_pod(self.key)
        self.ready = True
        for reason, message in dns.warnings:
            agent.event(pod, "Warning", reason, message)

    def remove(self, containers: Iterable[Container], pod: Obj) -> None:
        """Kills what still runs and removes the network namespace; logs stay for `kubectl logs`."""
        if self.removed:
            return
        self.kill_all(pod, containers, 0)
        self.agent.bridge.remove_pod(self.key, self.pod_ip)
        self.removed = True
        shutil.rmtree(self.dir / "containers", ignore_errors=True)

    # ---- one container ------------------------------------------------------------------------
    def start_container(self, pod: Obj, c: Container, volumes: dict[str, str]) -> bool:
        """Starts the container's launcher; True once it runs, else its waiting state says why."""
        assert self.netns and self.pod_ip
        cdir = self.dir / "containers" / c.name
        cdir.mkdir(parents=True, exist_ok=True)
        try:
            cfg = self.container_config(pod, c, cdir, volumes)
        except StartError as e:
            c.state = {"waiting": {"reason": e.reason, "message": e.message}}
            c.backoff_until = time.monotonic() + 2
            return False
        cfg_path = cdir / "config.json"
        cfg_path.write_text(json.dumps(cfg))
        c.config = cfg
        status_path = Path(cfg["statusFile"])
        status_path.unlink(missing_ok=True)
        (cdir / "pid").unlink(missing_ok=True)  # a restart must not read the last run's init
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
            return False
        # The init reports it has started before its parent may have written the init's PID, and the
        # probes that enter the container's namespaces need that PID: wait for it as for the status.
        c.init_pid = self.read_init_pid(cdir / "pid", c.process, deadline)
        c.started_at = time.monotonic()
        c.state = {"running": {"startedAt": now()}}
        c.kill_reason = None
        c.ready = False
        c.started = "startupProbe" not in c.spec
        c.stop_probes = threading.Event()
        self.agent.event(pod, "Normal", "Started", f"Started container {c.name}")
        threading.Thread(target=self.watch_exit, args=(c, c.process), daemon=True).start()
        return True

    @staticmethod
    def read_init_pid(path: Path, process: subprocess.Popen[bytes], deadline: float) -> int | None:
        while True:
            with contextlib.suppress(OSError, ValueError):
                return int(path.read_text())
            if process.poll() is not None or time.monotonic() >= deadline:
                return None
            time.sleep(0.01)

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

    def container_config(self, pod: Obj, c: Container, cdir: Path, volumes: dict[str, str]) -> Obj:
        """What the launcher needs: namespaces, root, mounts, user, environment and command."""
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
            pod_name = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
            raise StartError("CreateContainerConfigError",
                             "container has runAsNonRoot and image will run as root "
                             f"(pod: {pod_name}, container: {c.name}): set runAsUser")
        groups = [g for g in [gid, psc.get("fsGroup"), *(psc.get("supplementalGroups") or [])] if g is not None]
        term_log = cdir / "termination-log"
        term_log.write_bytes(b"")
        term_log.chmod(0o666)
        mounts = []
        for vm in spec.get("volumeMounts") or []:
            source = volumes.get(vm["name"])
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
            "resolvConf": self.resolv_conf,
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

    # ---- stopping -----------------------------------------------------------------------------
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

    @staticmethod
    def force_kill(c: Container, process: subprocess.Popen[bytes]) -> None:
        # Killing the container's init ends its whole PID namespace.
        for pid in (c.init_pid, process.pid):
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)

    def kill_all(self, pod: Obj, containers: Iterable[Container], grace: float) -> None:
        """Stops every running container at once, each with the same grace period."""
        threads = [threading.Thread(target=self.stop_container, args=(pod, c, grace, None))
                   for c in containers if c.running]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
