"""Starts and stops the whole local cluster: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, kube-proxy (one upstream-built binary, a process each), the node agent, and the
cluster DNS (CoreDNS, a pod behind the Service kube-dns)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import yaml

from localcluster import addons
from localcluster.certs import PKI
from localcluster.hostrules import HostRules, kube_proxy_tables, nft
from localcluster.network import Bridge, remove_leftovers

HERE = Path(__file__).resolve().parent
CONTROLPLANE_SRC = HERE.parent / "controlplane"
COREDNS_SRC = HERE.parent / "coredns"
PROMETHEUS_SRC = HERE.parent / "prometheus"
REPO = HERE.parents[2]
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"


@dataclass
class Settings:
    state_dir: Path = field(default_factory=lambda: Path(os.environ.get("LOCALCLUSTER_DIR", REPO / ".localcluster")))
    bridge: str = "lcbr0"
    pod_cidr: str = "10.244.0.0/16"
    service_cidr: str = "10.96.0.0/16"
    api_port: int = 6443
    etcd_client_port: int = 23790
    etcd_peer_port: int = 23800
    node_name: str = "localnode"
    controller_manager_port: int = 10257
    scheduler_port: int = 10259
    kube_proxy_healthz_port: int = 10256
    kube_proxy_metrics_port: int = 10249
    # The kubelet's --cluster-dns: the ClusterIP of the Service kube-dns, in front of the CoreDNS pod
    # LocalCluster installs at start. None: no cluster DNS, and pods' resolv.conf points at nothing
    # (the host's resolvers are never inherited).
    cluster_dns: str | None = "10.96.0.10"
    cluster_domain: str = "cluster.local"


class LocalCluster:
    """`with LocalCluster() as cluster:` gives a running cluster; leaving the block removes it all."""

    def __init__(self, settings: Settings | None = None, log: bool = False) -> None:
        self.settings = s = settings or Settings()
        self.dir = s.state_dir
        self.pki = PKI(self.dir / "pki")
        self.bridge = Bridge(s.bridge, s.pod_cidr)
        self.host_rules = HostRules(s.bridge, s.pod_cidr, s.service_cidr, self.dir)
        self.binary = ""
        self.kubeconfig = str(self.dir / "kubeconfig")
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.argv: dict[str, tuple[list[str], dict[str, str] | None]] = {}
        self.log = log
        self.timings: dict[str, float] = {}

    # ---- public ---------------------------------------------------------------------------------
    def __enter__(self) -> LocalCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def kubectl(self, *args: str, check: bool = True, input: str | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([kubectl_command(), "--kubeconfig", self.kubeconfig, *args], capture_output=True,
                              text=True, check=check, input=input, timeout=timeout)

    def claim_path(self, namespace: str, claim: str, timeout: float = 30) -> Path:
        """The host directory behind a bound claim: how files are put on a volume of this cluster."""
        deadline = time.monotonic() + timeout
        while True:
            out = self.kubectl("get", "pvc", claim, "-n", namespace, "-o", "jsonpath={.spec.volumeName}",
                               check=False)
            if out.returncode == 0 and out.stdout.strip():
                volume = out.stdout.strip()
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"claim {namespace}/{claim} not bound after {timeout}s")
            time.sleep(0.2)
        path = self.kubectl("get", "pv", volume, "-o", "jsonpath={.spec.hostPath.path}").stdout.strip()
        return Path(path)

    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": self.kubeconfig}

    @staticmethod
    def build() -> str:
        """Builds the control-plane binary (cached) and returns its path."""
        return _build(CONTROLPLANE_SRC)

    @staticmethod
    def build_dns() -> str:
        """Builds the cluster DNS server (cached) and returns its path."""
        return _build(COREDNS_SRC)

    def install_prometheus(self, timeout: float = 120) -> str:
        """Installs addons/prometheus.yaml (namespace monitoring) and returns its address from the
        host, `http://CLUSTER-IP:9090`, once it answers there (prometheus.monitoring.svc:9090 in pods)."""
        self.kubectl("apply", "-f", "-", input=addons.prometheus(_build(PROMETHEUS_SRC)))
        self.kubectl("rollout", "status", "-n", "monitoring", "deploy/prometheus", f"--timeout={int(timeout)}s",
                     timeout=timeout + 10)
        ip = self.kubectl("get", "svc", "prometheus", "-n", "monitoring", "-o", "jsonpath={.spec.clusterIP}").stdout
        url = f"http://{ip}:9090"
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return url
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"Prometheus not answering at {url} after {timeout}s")
            time.sleep(0.2)

    def start(self) -> None:
        s = self.settings
        t0 = time.monotonic()
        self.binary = binary = self.build()
        dns_binary = self.build_dns()
        self.timings["build"] = time.monotonic() - t0
        self.clean_leftovers()
        t1 = time.monotonic()
        for d in ("logs", "etcd", "pods", "volumes", "kubeconfigs"):
            (self.dir / d).mkdir(parents=True, exist_ok=True)
        self.bridge.up()
        self.host_rules.apply()
        self.pki.ensure(
            serving_ips=["127.0.0.1", self.bridge.gateway, str(self.service_ip())],
            serving_names=["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                           "kubernetes.default.svc.cluster.local"],
        )
        self.pki.issue("node-agent", f"system:node:{s.node_name}", "system:masters")
        self.pki.issue("kube-proxy", "system:kube-proxy", None)
        self.pki.issue("kubelet", f"system:node:{s.node_name}", "system:nodes", server=True,
                       ips=[self.bridge.gateway], names=[s.node_name])
        admin = self.write_kubeconfig("admin", self.kubeconfig)
        cm_kc = self.write_kubeconfig("controller-manager", str(self.dir / "kubeconfigs" / "controller-manager"))
        sched_kc = self.write_kubeconfig("scheduler", str(self.dir / "kubeconfigs" / "scheduler"))
        agent_kc = self.write_kubeconfig("node-agent", str(self.dir / "kubeconfigs" / "node-agent"))
        proxy_kc = self.write_kubeconfig("kube-proxy", str(self.dir / "kubeconfigs" / "kube-proxy"))
        pki = self.pki.dir

        self.spawn("etcd", [binary, "etcd", f"--data-dir={self.dir / 'etcd'}",
                            f"--listen-client-url=http://127.0.0.1:{s.etcd_client_port}",
                            f"--listen-peer-url=http://127.0.0.1:{s.etcd_peer_port}"])
        self.spawn("kube-apiserver", [
            binary, "kube-apiserver",
            f"--etcd-servers=http://127.0.0.1:{s.etcd_client_port}",
            "--bind-address=0.0.0.0", f"--secure-port={s.api_port}",
            f"--advertise-address={self.bridge.gateway}",
            f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-cluster-ip-range={s.service_cidr}",
            "--authorization-mode=RBAC",
            "--allow-privileged=true",
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            "--kubelet-preferred-address-types=InternalIP",
            "--profiling=false", "--v=0",
        ])
        self.wait_ready(admin)
        self.timings["apiserver_ready"] = time.monotonic() - t1
        self.spawn("kube-controller-manager", [
            binary, "kube-controller-manager",
            f"--kubeconfig={cm_kc}", f"--authentication-kubeconfig={cm_kc}", f"--authorization-kubeconfig={cm_kc}",
            "--bind-address=127.0.0.1", f"--secure-port={s.controller_manager_port}", "--leader-elect=false",
            f"--service-account-private-key-file={pki / 'sa.key'}", f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}", f"--cluster-signing-key-file={pki / 'ca.key'}",
            "--use-service-account-credentials=true",
            f"--service-cluster-ip-range={s.service_cidr}",
            "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service,-route",
            "--profiling=false", "--v=0",
        ])
        self.spawn("kube-scheduler", [
            binary, "kube-scheduler",
            f"--kubeconfig={sched_kc}", f"--authentication-kubeconfig={sched_kc}",
            f"--authorization-kubeconfig={sched_kc}",
            "--bind-address=127.0.0.1", f"--secure-port={s.scheduler_port}", "--leader-elect=false",
            "--profiling=false", "--v=0",
        ])
        self.spawn("node-agent", self.agent_argv(agent_kc), env={**os.environ, "PYTHONPATH": str(HERE.parent)})
        self.wait_node_ready()
        self.timings["node_ready"] = time.monotonic() - t1
        self.spawn("kube-proxy", [binary, "kube-proxy", f"--config={self.write_kube_proxy_config(proxy_kc)}"])
        if s.cluster_dns:
            self.kubectl("apply", "-f", "-", input=addons.cluster_dns(dns_binary, s.cluster_dns, s.cluster_domain))
        self.wait_kube_proxy_synced()
        self.timings["kube_proxy_ready"] = time.monotonic() - t1
        if s.cluster_dns:
            self.wait_dns_ready()
        self.timings["cluster_ready"] = time.monotonic() - t1

    def stop(self) -> None:
        # The agent first: it stops every pod and removes their namespaces.
        for name in ("node-agent", "kube-proxy", "kube-scheduler", "kube-controller-manager", "kube-apiserver",
                     "etcd"):
            process = self.processes.pop(name, None)
            if process is None:
                continue
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.clean_leftovers(keep_logs=True)

    # ---- pieces -------------------------------------------------------------------------------------
    def agent_argv(self, kubeconfig: str) -> list[str]:
        """How the node agent is started: the kubelet's flags that matter here."""
        s = self.settings
        argv = [
            sys.executable, "-m", "localcluster.agent", "--kubeconfig", kubeconfig,
            "--node-name", s.node_name, "--state-dir", str(self.dir), "--bridge", s.bridge,
            "--pod-cidr", s.pod_cidr, "--api-port", str(s.api_port), "--pki-dir", str(self.pki.dir),
            "--image-path", str(REPO), "--cluster-domain", s.cluster_domain,
            # Pods never use the host's resolvers: name lookups stay on this machine.
            "--resolv-conf", "",
        ]
        if s.cluster_dns:
            argv += ["--cluster-dns", s.cluster_dns]
        return argv

    def service_ip(self) -> str:
        import ipaddress

        return str(next(ipaddress.ip_network(self.settings.service_cidr).hosts()))

    def clean_leftovers(self, keep_logs: bool = False) -> None:
        """Kills any process of a previous run, removes namespaces, veths, bridge and cluster data.

        With `keep_logs`, the components' logs stay for a post-mortem until the next start."""
        pidfile = self.dir / "pids.json"
        if pidfile.exists():
            with contextlib.suppress(ValueError, OSError):
                for pid in json.loads(pidfile.read_text()).values():
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(pid, signal.SIGKILL)
            pidfile.unlink(missing_ok=True)
        kill_pod_processes(self.dir)
        self.remove_service_rules()
        remove_leftovers(self.settings.bridge)
        for d in ("etcd", "pods", "volumes", *(() if keep_logs else ("logs",))):
            shutil.rmtree(self.dir / d, ignore_errors=True)

    def remove_service_rules(self) -> None:
        """kube-proxy's rules (removed by `kube-proxy --cleanup`, as upstream does) and ours."""
        if kube_proxy_tables():
            binary = self.binary or self.build()
            out = subprocess.run([binary, "kube-proxy", "--cleanup", "--v=0"], capture_output=True, text=True)
            for family, table in kube_proxy_tables():
                # Only when the upstream cleanup could not (its output says why).
                print(f"kube-proxy --cleanup left {family} {table}: {out.stderr[-500:]}", file=sys.stderr)
                nft("delete", "table", family, table, check=False)
        self.host_rules.remove()

    def write_kube_proxy_config(self, kubeconfig: str) -> str:
        s = self.settings
        # nftables mode: kube-proxy keeps every rule in tables of its own (ip/ip6 kube-proxy).
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
            "mode": "nftables",
            "clientConnection": {"kubeconfig": kubeconfig},
            "hostnameOverride": s.node_name,
            "clusterCIDR": s.pod_cidr,
            "bindAddress": self.bridge.gateway,
            "healthzBindAddress": f"127.0.0.1:{s.kube_proxy_healthz_port}",
            "metricsBindAddress": f"127.0.0.1:{s.kube_proxy_metrics_port}",
            # NodePorts only on the bridge's address, never on the machine's own interfaces.
            "nodePortAddresses": [f"{self.bridge.gateway}/32"],
            # Leave the host's conntrack settings as they are.
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
            "oomScoreAdj": 0,
        }
        path = self.dir / "kube-proxy.yaml"
        path.write_text(yaml.safe_dump(config))
        return str(path)

    def wait_kube_proxy_synced(self, timeout: float = 60) -> None:
        """kube-proxy's healthz answers 200 once its rules are in place."""
        url = f"http://127.0.0.1:{self.settings.kube_proxy_healthz_port}/healthz"
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"kube-proxy not synced after {timeout}s; see {self.dir / 'logs'}")
            time.sleep(0.2)

    def wait_dns_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        jsonpath = "{.items[*].endpoints[*].conditions.ready}"
        while True:
            self.check_alive()
            out = self.kubectl("get", "endpointslices", "-n", "kube-system", "-l",
                               "kubernetes.io/service-name=kube-dns", "-o", f"jsonpath={jsonpath}", check=False)
            if "true" in out.stdout.split():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"cluster DNS not ready after {timeout}s: "
                                   + self.kubectl("get", "pods", "-n", "kube-system", check=False).stdout)
            time.sleep(0.2)

    def restart_apiserver(self) -> None:
        """Stops kube-apiserver and starts it again (clients must re-list and re-watch)."""
        self.stop_apiserver()
        self.start_apiserver()

    def stop_apiserver(self) -> None:
        """Stops kube-apiserver alone: an outage of the API, while everything else keeps running."""
        self._stop_component("kube-apiserver")
        self.write_pids()

    def restart_component(self, name: str) -> None:
        """Stops one control-plane process (kube-controller-manager, kube-scheduler) and starts it again
        with the same arguments: its informers list afresh at once, where after an API server outage
        they would wait out client-go's back-off."""
        self._stop_component(name)
        self.spawn(name, *self.argv[name])

    def _stop_component(self, name: str) -> None:
        """Stops one control-plane process: SIGTERM, then SIGKILL after 10 s (open watches can hold a
        graceful shutdown for long; a crash is a restart too)."""
        process = self.processes.pop(name)
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def start_apiserver(self) -> float:
        """Starts kube-apiserver again after stop_apiserver(); returns when /readyz answered (monotonic)."""
        self.spawn("kube-apiserver", *self.argv["kube-apiserver"])
        self.wait_ready(self.kubeconfig)
        return time.monotonic()

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.argv[name] = (argv, env)
        logfile = open(self.dir / "logs" / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
        self.processes[name] = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=None if self.log else logfile, stderr=logfile,
            start_new_session=True, env=env,
        )
        logfile.close()
        self.write_pids()

    def write_pids(self) -> None:
        """What clean_leftovers() kills should a run end without stop()."""
        (self.dir / "pids.json").write_text(json.dumps({n: p.pid for n, p in self.processes.items()}))

    def write_kubeconfig(self, user: str, path: str) -> str:
        def b64(p: Path) -> str:
            return base64.b64encode(p.read_bytes()).decode()

        doc = {
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "localcluster", "cluster": {
                "server": f"https://127.0.0.1:{self.settings.api_port}",
                "certificate-authority-data": b64(self.pki.ca_cert)}}],
            "users": [{"name": user, "user": {
                "client-certificate-data": b64(self.pki.dir / f"{user}.crt"),
                "client-key-data": b64(self.pki.dir / f"{user}.key")}}],
            "contexts": [{"name": "localcluster", "context": {"cluster": "localcluster", "user": user}}],
            "current-context": "localcluster",
        }
        Path(path).write_text(yaml.safe_dump(doc))
        Path(path).chmod(0o600)
        return path

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                tail = (self.dir / "logs" / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{tail}")

    def wait_ready(self, kubeconfig: str, timeout: float = 120) -> None:
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        context.load_cert_chain(str(self.pki.dir / "admin.crt"), str(self.pki.dir / "admin.key"))
        url = f"https://127.0.0.1:{self.settings.api_port}/readyz"
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            try:
                with urllib.request.urlopen(url, context=context, timeout=5) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"kube-apiserver not ready after {timeout}s; see {self.dir / 'logs'}")
            time.sleep(0.2)

    def wait_node_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        jsonpath = "{.status.conditions[?(@.type=='Ready')].status} {.spec.taints}"
        while True:
            self.check_alive()
            out = self.kubectl("get", "node", self.settings.node_name, "-o", f"jsonpath={jsonpath}",
                               check=False)
            sa = self.kubectl("get", "serviceaccount", "default", "-n", "default", check=False)
            if out.returncode == 0 and out.stdout.strip() == "True" and sa.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"node not ready after {timeout}s: {out.stdout} {out.stderr}")
            time.sleep(0.2)


def _build(source: Path) -> str:
    out = subprocess.run(["bash", str(source / "build.sh")], check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def kubectl_command() -> str:
    """The machine's kubectl, or else the one built into the control-plane binary."""
    found = shutil.which("kubectl")
    if found:
        return found
    link = Path(os.environ.get("LOCALCLUSTER_BIN_DIR", Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                               / "modeldeploy" / "localcluster")) / "kubectl"
    if not link.exists():
        LocalCluster.build()
    return str(link)


def kill_pod_processes(state_dir: Path) -> None:
    """Kills every container launcher whose config lives under this cluster's state directory."""
    marker = str(state_dir / "pods")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            if any(marker.encode() in part for part in cmdline) and b"launcher.py" in b" ".join(cmdline):
                os.kill(int(entry.name), signal.SIGKILL)
