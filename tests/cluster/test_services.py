"""Services route for real on the local cluster: upstream kube-proxy, cluster DNS, Prometheus,
and no traffic of the cluster leaves the machine."""

from __future__ import annotations

import collections
import json
import socket
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
import yaml

from localcluster import LocalCluster
from localcluster.hostrules import POD_EGRESS, UNROUTED_SERVICE_OUTPUT, counter, table_name
from support import kubectl_json, wait_for

pytestmark = pytest.mark.cluster

# Answers GET / with the pod's name and GET /metrics with a counter of the requests it answered.
NAME_SERVER = """
import http.server, os, socket
name = socket.gethostname()
served = 0
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        global served
        if self.path == "/metrics":
            body = f"# TYPE demo_requests_total counter\\ndemo_requests_total {served}\\n".encode()
        else:
            served += 1
            body = name.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("", 8000), Handler).serve_forever()
"""


def apply(cluster: LocalCluster, namespace: str, *docs: dict) -> None:  # type: ignore[type-arg]
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(docs))


def name_server(name: str, replicas: int, pre_stop_seconds: int = 0, annotations: dict[str, str] | None = None
                ) -> list[dict]:  # type: ignore[type-arg]
    """A Deployment of pods that answer with their own name, and its Service on port 80."""
    container: dict[str, object] = {
        "name": "web", "image": "python:3.11", "command": ["python3", "-c", NAME_SERVER],
        "ports": [{"containerPort": 8000}],
        "readinessProbe": {"httpGet": {"path": "/", "port": 8000}, "periodSeconds": 1},
    }
    if pre_stop_seconds:
        # As our serving pods do: keep answering while the endpoint is taken out of the Service.
        container["lifecycle"] = {"preStop": {"exec": {"command": ["sleep", str(pre_stop_seconds)]}}}
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}, "annotations": annotations or {}},
                              "spec": {"terminationGracePeriodSeconds": pre_stop_seconds + 5,
                                       "containers": [container]}}},
    }
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
               "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8000}]}}
    return [deployment, service]


def cluster_ip(cluster: LocalCluster, namespace: str, service: str) -> str:
    return cluster.kubectl("get", "svc", service, "-n", namespace, "-o", "jsonpath={.spec.clusterIP}").stdout


def get(url: str, timeout: float = 5) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()  # type: ignore[no-any-return]


def answer(url: str) -> str | None:
    """The body, or None while the address does not answer (yet)."""
    try:
        return get(url, timeout=2)
    except OSError:
        return None


def pod_names(cluster: LocalCluster, namespace: str, selector: str) -> set[str]:
    items = kubectl_json(cluster, "get", "pods", "-n", namespace, "-l", selector)["items"]
    return {p["metadata"]["name"] for p in items if not p["metadata"].get("deletionTimestamp")}


def job_output(cluster: LocalCluster, namespace: str, name: str, script: str, timeout: float = 90) -> str:
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
           "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [
               {"name": "c", "image": "python:3.11", "command": ["python3", "-c", script]}]}}}}
    apply(cluster, namespace, job)

    def finished() -> bool:
        status = kubectl_json(cluster, "get", "job", name, "-n", namespace).get("status", {})
        return bool(status.get("succeeded") or status.get("failed"))

    wait_for(finished, timeout=timeout, message=f"job {name} to finish")
    logs = cluster.kubectl("logs", "-n", namespace, f"job/{name}", check=False)
    status = kubectl_json(cluster, "get", "job", name, "-n", namespace)["status"]
    assert status.get("succeeded") == 1, f"job {name} failed: {logs.stdout}{logs.stderr}"
    return logs.stdout


def test_a_cluster_ip_spreads_requests_evenly_and_loses_none_while_scaling_down(
    cluster: LocalCluster, namespace: str
) -> None:
    apply(cluster, namespace, *name_server("names", 3, pre_stop_seconds=5))
    cluster.kubectl("rollout", "status", "-n", namespace, "deploy/names", "--timeout=90s")
    url = f"http://{cluster_ip(cluster, namespace, 'names')}/"
    pods = pod_names(cluster, namespace, "app=names")
    assert len(pods) == 3
    # kube-proxy syncs the ready endpoints within a second or so of them turning ready.
    wait_for(lambda: {answer(url) for _ in range(30)} == pods, timeout=30, message="all 3 pods behind the ClusterIP")

    answers = collections.Counter(get(url) for _ in range(300))
    assert set(answers) == pods
    for pod, count in answers.items():
        assert 0.23 * 300 <= count <= 0.43 * 300, f"{pod} answered {count} of 300: {dict(answers)}"

    failures: list[str] = []
    seen: collections.Counter[str] = collections.Counter()
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                seen[get(url, timeout=5)] += 1
            except (urllib.error.URLError, OSError) as e:
                failures.append(repr(e))

    worker = threading.Thread(target=load)
    worker.start()
    try:
        cluster.kubectl("scale", "-n", namespace, "deploy/names", "--replicas=1")
        wait_for(lambda: len(kubectl_json(cluster, "get", "pods", "-n", namespace, "-l", "app=names")["items"]) == 1,
                 timeout=90, message="the scale-down to end (pods gone after their preStop)")
    finally:
        stop.set()
        worker.join()
    assert failures == [], f"{len(failures)} of {sum(seen.values()) + len(failures)} requests failed: {failures[:3]}"
    assert sum(seen.values()) > 50
    (remaining,) = pod_names(cluster, namespace, "app=names")
    assert collections.Counter(get(url) for _ in range(300)) == {remaining: 300}


def test_a_pod_reaches_a_service_by_its_dns_names(cluster: LocalCluster, namespace: str) -> None:
    apply(cluster, namespace, *name_server("greeter", 1))
    cluster.kubectl("rollout", "status", "-n", namespace, "deploy/greeter", "--timeout=90s")
    (pod,) = pod_names(cluster, namespace, "app=greeter")
    script = (
        "import urllib.request\n"
        f"for url in ('http://greeter.{namespace}.svc.cluster.local:80/', 'http://greeter:80/'):\n"
        "    print(url, urllib.request.urlopen(url, timeout=10).read().decode())\n"
    )
    out = job_output(cluster, namespace, "client", script)
    assert out.splitlines() == [f"http://greeter.{namespace}.svc.cluster.local:80/ {pod}", f"http://greeter:80/ {pod}"]


def dns_query(server: str, name: str) -> list[str]:
    """The A records the server gives for `name` (a minimal DNS client over UDP)."""
    query = struct.pack(">HHHHHH", 0x4D44, 0x0100, 1, 0, 0, 0)
    query += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(query, (server, 53))
        reply = s.recv(4096)
    answers = struct.unpack(">H", reply[6:8])[0]
    offset = len(query)
    records = []
    for _ in range(answers):
        while reply[offset] and reply[offset] < 0xC0:  # the owner name: labels, then 0 or a pointer
            offset += 1 + reply[offset]
        offset += 2 if reply[offset] >= 0xC0 else 1
        rtype, _cls, _ttl, length = struct.unpack(">HHIH", reply[offset:offset + 10])
        offset += 10
        if rtype == 1:
            records.append(socket.inet_ntoa(reply[offset:offset + length]))
        offset += length
    return records


def test_cluster_dns_answers_at_its_fixed_cluster_ip(cluster: LocalCluster, namespace: str) -> None:
    apply(cluster, namespace, *name_server("named", 1))
    ip = cluster_ip(cluster, namespace, "named")
    dns = cluster.settings.cluster_dns
    assert dns == "10.96.0.10"  # the kubelet's --cluster-dns: kube-dns at its fixed ClusterIP
    name = f"named.{namespace}.svc.cluster.local"
    # CoreDNS answers once its watch has seen the new Service.
    wait_for(lambda: dns_query(dns, name) == [ip], timeout=30, message=f"{name} -> {ip}")
    assert dns_query(dns, "kubernetes.default.svc.cluster.local") == [cluster.service_ip()]


def test_a_pod_reaches_itself_through_its_own_service(cluster: LocalCluster, namespace: str) -> None:
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "self"},
               "spec": {"selector": {"app": "self"}, "ports": [{"port": 80, "targetPort": 8000}]}}
    apply(cluster, namespace, service)
    url = f"http://{cluster_ip(cluster, namespace, 'self')}/"
    # The only pod behind the Service serves, then asks the Service's ClusterIP until it answers:
    # the answer can only be its own (hairpin), and is written as its termination message.
    script = NAME_SERVER.replace("http.server.ThreadingHTTPServer", "server = http.server.ThreadingHTTPServer")
    script = script.replace(".serve_forever()", "") + (
        "import threading, time, urllib.request\n"
        "threading.Thread(target=server.serve_forever, daemon=True).start()\n"
        "deadline = time.monotonic() + 60\n"
        "while True:\n"
        "    try:\n"
        f"        answer = urllib.request.urlopen('{url}', timeout=2).read().decode()\n"
        "        break\n"
        "    except OSError:\n"
        "        if time.monotonic() > deadline:\n"
        "            raise\n"
        "        time.sleep(0.5)\n"
        "open('/dev/termination-log', 'w').write(f'{name} {answer}')\n"
    )
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "selfie", "labels": {"app": "self"}},
           "spec": {"restartPolicy": "Never", "containers": [{
               "name": "web", "image": "python:3.11", "command": ["python3", "-c", script],
               "ports": [{"containerPort": 8000}],
               "readinessProbe": {"tcpSocket": {"port": 8000}, "periodSeconds": 1}}]}}
    apply(cluster, namespace, pod)

    def terminated() -> dict | None:  # type: ignore[type-arg]
        statuses = kubectl_json(cluster, "get", "pod", "selfie", "-n", namespace).get("status", {}).get(
            "containerStatuses") or [{}]
        return statuses[0].get("state", {}).get("terminated")  # type: ignore[no-any-return]

    state = wait_for(terminated, timeout=90, message="the pod to reach itself")
    assert isinstance(state, dict)
    assert state["exitCode"] == 0, state
    assert state["message"] == "selfie selfie"


def test_no_traffic_of_the_cluster_leaves_the_machine(cluster: LocalCluster, namespace: str) -> None:
    bridge = cluster.settings.bridge
    # The service range goes to the bridge, never out by the default route.
    unassigned = "10.96.255.254"
    route = subprocess.run(["ip", "route", "get", unassigned], capture_output=True, text=True, check=True).stdout
    assert f"dev {bridge} " in route, route
    # A ClusterIP without a rule fails at once, here on the host.
    before = counter(bridge, "output", UNROUTED_SERVICE_OUTPUT)
    started = time.monotonic()
    with pytest.raises(OSError), socket.create_connection((unassigned, 80), timeout=5):
        pass
    assert time.monotonic() - started < 1
    assert counter(bridge, "output", UNROUTED_SERVICE_OUTPUT) == before + 1

    # A pod's connection to an address outside the cluster is rejected by our rule, here, before
    # it could leave (the rule is checked first: no packet is sent to an outside address otherwise).
    outside = "203.0.113.7"  # TEST-NET-3, documentation only
    ruleset = subprocess.run(["nft", "list", "chain", "inet", table_name(bridge), "forward"], capture_output=True,
                             text=True, check=True).stdout
    assert f'iifname "{bridge}" oifname != "{bridge}" counter' in ruleset and "reject" in ruleset
    before = counter(bridge, "forward", POD_EGRESS)
    script = (
        "import socket, time\n"
        "t = time.monotonic()\n"
        "try:\n"
        f"    socket.create_connection(('{outside}', 80), timeout=5)\n"
        "    print('connected')\n"
        "except OSError as e:\n"
        "    print(f'refused {time.monotonic() - t:.2f} {e}')\n"
    )
    out = job_output(cluster, namespace, "escape", script)
    assert out.startswith("refused "), out
    assert float(out.split()[1]) < 1, out
    assert counter(bridge, "forward", POD_EGRESS) >= before + 1


def test_prometheus_scrapes_annotated_pods(cluster: LocalCluster, namespace: str, prometheus: str) -> None:
    annotations = {"prometheus.io/scrape": "true", "prometheus.io/port": "8000", "prometheus.io/path": "/metrics"}
    apply(cluster, namespace, *name_server("scraped", 2, annotations=annotations))
    cluster.kubectl("rollout", "status", "-n", namespace, "deploy/scraped", "--timeout=90s")
    url = f"http://{cluster_ip(cluster, namespace, 'scraped')}/"
    wait_for(lambda: answer(url), timeout=30, message="the Service to answer")

    def query(promql: str) -> list[dict]:  # type: ignore[type-arg]
        body = get(f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
        return json.loads(body)["data"]["result"]  # type: ignore[no-any-return]

    def up_targets() -> list[dict] | None:  # type: ignore[type-arg]
        result = query(f'up{{namespace="{namespace}"}} == 1')
        return result if len(result) == 2 else None

    targets = wait_for(up_targets, timeout=60, interval=1, message="both pods as up targets")
    assert isinstance(targets, list)
    assert {t["metric"]["pod"] for t in targets} == pod_names(cluster, namespace, "app=scraped")

    def rate() -> list[dict] | None:  # type: ignore[type-arg]
        get(url)
        result = query(f'sum(rate(demo_requests_total{{namespace="{namespace}"}}[30s]))')
        return result or None

    result = wait_for(rate, timeout=60, interval=1, message="a rate over the pods' counter")
    assert isinstance(result, list) and len(result) == 1
    assert float(result[0]["value"][1]) >= 0  # a number, not NaN or an error
