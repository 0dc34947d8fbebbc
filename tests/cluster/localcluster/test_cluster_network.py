"""The local cluster's network: endpoints, readiness in EndpointSlices, fresh pod addresses, DNS policies."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest

from cluster.localcluster.localcluster_support import apply, http_server_deployment, pod, pod_status, terminated
from localcluster import LocalCluster
from support import kubectl_json, wait_for

pytestmark = pytest.mark.cluster


def test_deployment_becomes_available_and_every_endpoint_answers(cluster: LocalCluster, namespace: str) -> None:
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
               "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8000}]}}
    assert apply(cluster, namespace, http_server_deployment("web", 3), service).returncode == 0
    cluster.kubectl("wait", "-n", namespace, "--for=condition=Available", "deploy/web", "--timeout=90s")

    def ready_addresses() -> list[str]:
        slices = kubectl_json(cluster, "get", "endpointslices", "-n", namespace,
                              "-l", "kubernetes.io/service-name=web")["items"]
        return [a for s in slices for e in s.get("endpoints") or [] if e["conditions"].get("ready")
                for a in e["addresses"]]

    addresses = wait_for(lambda: (lambda a: a if len(a) == 3 else None)(ready_addresses()), timeout=30,
                         message="3 ready endpoints")
    assert isinstance(addresses, list) and len(set(addresses)) == 3
    for address in addresses:
        with urllib.request.urlopen(f"http://{address}:8000/", timeout=5) as response:
            assert response.status == 200


def test_failing_readiness_takes_the_pod_out_of_the_endpoint_slice(
    cluster: LocalCluster, namespace: str, tmp_path: Path
) -> None:
    flags = tmp_path / "flags"
    flags.mkdir()
    (flags / "ready").write_text("yes")
    deployment = http_server_deployment("flappy", 1, volumes=[{"name": "flags", "hostPath": {"path": str(flags)}}])
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"] = {"exec": {"command": ["test", "-f", "/flags/ready"]},
                                   "periodSeconds": 1, "failureThreshold": 1}
    container["volumeMounts"] = [{"name": "flags", "mountPath": "/flags"}]
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "flappy"},
               "spec": {"selector": {"app": "flappy"}, "ports": [{"port": 80, "targetPort": 8000}]}}
    assert apply(cluster, namespace, deployment, service).returncode == 0

    def endpoint_ready() -> list[bool]:
        slices = kubectl_json(cluster, "get", "endpointslices", "-n", namespace,
                              "-l", "kubernetes.io/service-name=flappy")["items"]
        return [bool(e["conditions"].get("ready")) for s in slices for e in s.get("endpoints") or []]

    wait_for(lambda: endpoint_ready() == [True], timeout=60, message="the endpoint to be ready")
    (flags / "ready").unlink()
    wait_for(lambda: endpoint_ready() == [False], timeout=30, message="the endpoint to turn not ready")


def test_a_pod_replacing_another_gets_a_fresh_address_and_answers_its_first_request_at_once(
    cluster: LocalCluster, namespace: str
) -> None:
    # Probed only from inside, as our serving pods are: the host never talks to the pod before it is ready.
    probe = {"exec": {"command": ["python3", "-c", "import socket; socket.create_connection(('127.0.0.1', 8000), 1)"]},
             "periodSeconds": 1}
    server = {"container": {"readinessProbe": probe}, "restartPolicy": "Always"}

    def started(name: str) -> str:
        assert apply(cluster, namespace, pod(name, ["python3", "-m", "http.server", "8000"], **server)).returncode == 0
        wait_for(lambda: any(c["type"] == "Ready" and c["status"] == "True"
                             for c in pod_status(cluster, namespace, name).get("conditions") or []),
                 timeout=60, message=f"pod {name} ready")
        return str(pod_status(cluster, namespace, name)["podIP"])

    def answer_within(address: str, seconds: float) -> int:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://{address}:8000/", timeout=seconds) as response:
            return int(response.status)

    first = started("first")
    assert answer_within(first, 5) == 200   # the host now maps the address to this pod
    cluster.kubectl("delete", "pod", "first", "-n", namespace, "--wait=true")
    second = started("second")

    assert second != first
    assert answer_within(second, 2) == 200


def test_each_pod_sees_the_resolv_conf_its_dns_policy_gives(cluster: LocalCluster, namespace: str) -> None:
    show = ["sh", "-c", "cat /etc/resolv.conf > /dev/termination-log"]
    custom = {"nameservers": ["192.0.2.1"], "searches": ["a.example"], "options": [{"name": "ndots", "value": "2"}]}
    assert apply(cluster, namespace, pod("cluster-first", show),
                 pod("none", show, dnsPolicy="None", dnsConfig=custom)).returncode == 0
    seen = {}
    for name in ("cluster-first", "none"):
        state = wait_for(lambda name=name: terminated(cluster, namespace, name), timeout=60,
                         message=f"{name} to finish")
        assert isinstance(state, dict) and state["exitCode"] == 0, state
        seen[name] = state.get("message", "")
    dns, domain = cluster.settings.cluster_dns, cluster.settings.cluster_domain
    if dns:
        assert seen["cluster-first"] == (f"search {namespace}.svc.{domain} svc.{domain} {domain}\n"
                                         f"nameserver {dns}\noptions ndots:5\n")
    else:  # no cluster DNS: the kubelet's fallback, which never reaches the host's resolvers
        assert seen["cluster-first"] == "search .\nnameserver 127.0.0.1\n"
    assert seen["none"] == "search a.example\nnameserver 192.0.2.1\noptions ndots:2\n"
