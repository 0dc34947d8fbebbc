"""Probes and lifecycle handlers: startup, readiness and liveness probes (httpGet, tcpSocket, exec)
run on their own thread per container, and the preStop handler run before SIGTERM."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import threading
import time
from typing import TYPE_CHECKING

from localcluster.agent.common import Obj
from localcluster.agent.env import DEFAULT_PATH

if TYPE_CHECKING:
    from localcluster.agent.containers import Container
    from localcluster.agent.pods import PodWorker

PROBE_KINDS = ("startupProbe", "readinessProbe", "livenessProbe")


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


def start_probes(worker: PodWorker, pod: Obj, c: Container) -> None:
    """Starts a thread per probe of a container that has just started; they end when it stops."""
    for kind in PROBE_KINDS:
        if kind in c.spec:
            threading.Thread(target=probe_loop, args=(worker, pod, c, kind, c.stop_probes), daemon=True).start()
    if "readinessProbe" not in c.spec:
        c.ready = c.started


def probe_loop(worker: PodWorker, pod: Obj, c: Container, kind: str, stop: threading.Event) -> None:
    """One probe of one container: marks it started or ready, or has it killed after too many failures."""
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
        ok, detail = worker.agent.prober.run(probe, c, worker.sandbox.pod_ip or "")
        if stop.is_set():
            return
        if ok:
            successes, failures = successes + 1, 0
            if successes >= success_needed:
                if kind == "startupProbe":
                    c.started = True
                    if "readinessProbe" not in c.spec:
                        c.ready = True
                    worker.wakeup.set()
                    return
                if kind == "readinessProbe" and not c.ready:
                    c.ready = True
                    worker.wakeup.set()
        else:
            successes, failures = 0, failures + 1
            label = {"startupProbe": "Startup", "readinessProbe": "Readiness", "livenessProbe": "Liveness"}[kind]
            worker.agent.event(pod, "Warning", "Unhealthy", f"{label} probe failed: {detail}")
            if failures >= failure_limit:
                if kind == "readinessProbe":
                    if c.ready:
                        c.ready = False
                        worker.wakeup.set()
                else:
                    worker.agent.event(pod, "Normal", "Killing",
                                       f"Container {c.name} failed {label.lower()} probe, will be restarted")
                    worker.sandbox.stop_container(pod, c, worker.grace_seconds(pod), reason="Error")
                    return
        if stop.wait(period):
            return
