"""The local cluster behaves as a real Kubernetes cluster for everything modeldeploy relies on."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path

import pytest
import yaml

from localcluster import LocalCluster, Settings
from localcluster.hostrules import table_name, tables
from localcluster.network import link_names, netns_names, netns_prefix, veth_prefix
from support import REPO, kubectl_json, wait_for, wait_for_controllers

pytestmark = pytest.mark.cluster

RESTRICTED = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "runAsGroup": 1000,
    "seccompProfile": {"type": "RuntimeDefault"},
}
RESTRICTED_CONTAINER = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def apply(cluster: LocalCluster, namespace: str, *docs: dict) -> subprocess.CompletedProcess[str]:  # type: ignore[type-arg]
    return cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(docs), check=False)


def http_server_deployment(name: str, replicas: int, **pod_extra: object) -> dict:  # type: ignore[type-arg]
    container = {"name": "web", "image": "python:3.11", "command": ["python3", "-m", "http.server", "8000"],
                 "ports": [{"containerPort": 8000}],
                 "readinessProbe": {"tcpSocket": {"port": 8000}, "periodSeconds": 1}}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"terminationGracePeriodSeconds": 5, "containers": [container], **pod_extra}}},
    }


def pod(name: str, command: list[str], **spec: object) -> dict:  # type: ignore[type-arg]
    container = {"name": "main", "image": "busybox", "command": command, **spec.pop("container", {})}  # type: ignore[dict-item]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 2, "containers": [container], **spec}}


def pod_status(cluster: LocalCluster, namespace: str, name: str) -> dict:  # type: ignore[type-arg]
    return kubectl_json(cluster, "get", "pod", name, "-n", namespace).get("status", {})  # type: ignore[no-any-return]


def terminated(cluster: LocalCluster, namespace: str, name: str) -> dict | None:  # type: ignore[type-arg]
    statuses = pod_status(cluster, namespace, name).get("containerStatuses") or [{}]
    return statuses[0].get("state", {}).get("terminated")  # type: ignore[no-any-return]


def test_kubectl_version_reports_the_built_release(cluster: LocalCluster) -> None:
    release = (REPO / "hack/localcluster/controlplane/K8S_VERSION").read_text().strip()
    version = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == release


def test_api_resources_list_the_groups_we_use(cluster: LocalCluster) -> None:
    out = cluster.kubectl("api-resources", "-o", "wide").stdout
    for group, kind in (("apps/v1", "Deployment"), ("batch/v1", "Job"), ("discovery.k8s.io/v1", "EndpointSlice")):
        assert any(group in line and kind in line for line in out.splitlines()), f"{group} {kind} missing"


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


def test_job_runs_to_completion(cluster: LocalCluster, namespace: str) -> None:
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "ok"},
           "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
               {"name": "c", "image": "busybox", "command": ["sh", "-c", "echo done"]}]}}}}
    assert apply(cluster, namespace, job).returncode == 0
    cluster.kubectl("wait", "-n", namespace, "--for=condition=Complete", "job/ok", "--timeout=60s")
    status = kubectl_json(cluster, "get", "job", "ok", "-n", namespace)["status"]
    assert status["succeeded"] == 1 and status["completionTime"]
    # The API server proxies `kubectl logs` to the node agent, as to a kubelet.
    assert cluster.kubectl("logs", "-n", namespace, "job/ok").stdout == "done\n"


def test_failing_job_ends_failed_after_its_backoff_limit(cluster: LocalCluster, namespace: str) -> None:
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "bad"},
           "spec": {"backoffLimit": 1, "template": {"spec": {"restartPolicy": "Never", "containers": [
               {"name": "c", "image": "busybox", "command": ["sh", "-c", "exit 1"]}]}}}}
    assert apply(cluster, namespace, job).returncode == 0
    cluster.kubectl("wait", "-n", namespace, "--for=condition=Failed", "job/bad", "--timeout=120s")
    status = kubectl_json(cluster, "get", "job", "bad", "-n", namespace)["status"]
    assert status["failed"] == 2  # the first try and one retry
    reasons = [c.get("reason") for c in status["conditions"] if c["type"] == "Failed"]
    assert reasons == ["BackoffLimitExceeded"]


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


def test_failing_liveness_probe_restarts_the_container(cluster: LocalCluster, namespace: str) -> None:
    manifest = pod("live", ["python3", "-m", "http.server", "8000"], restartPolicy="Always", container={
        "livenessProbe": {"httpGet": {"path": "/missing", "port": 8000}, "periodSeconds": 1, "failureThreshold": 2}})
    assert apply(cluster, namespace, manifest).returncode == 0

    def restarts() -> int:
        statuses = pod_status(cluster, namespace, "live").get("containerStatuses") or [{}]
        return int(statuses[0].get("restartCount", 0))

    wait_for(lambda: restarts() >= 1, timeout=90, message="a restart after liveness failures")
    events = cluster.kubectl("get", "events", "-n", namespace, "--field-selector", "involvedObject.name=live").stdout
    assert "Liveness probe failed" in events


def test_command_that_does_not_exist_gives_a_clear_waiting_reason(cluster: LocalCluster, namespace: str) -> None:
    assert apply(cluster, namespace, pod("nocmd", ["no-such-command-here"])).returncode == 0

    def waiting() -> dict | None:  # type: ignore[type-arg]
        statuses = pod_status(cluster, namespace, "nocmd").get("containerStatuses") or [{}]
        return statuses[0].get("state", {}).get("waiting", {}).get("message") and statuses[0]["state"]["waiting"]

    state = wait_for(waiting, timeout=30, message="a waiting reason")
    assert isinstance(state, dict)
    assert state["reason"] == "CreateContainerError"
    assert "no-such-command-here" in state["message"]


def test_a_pod_reaches_the_api_server_with_its_service_account_token(cluster: LocalCluster, namespace: str) -> None:
    # The pod's view: KUBERNETES_SERVICE_HOST/PORT, the projected token and CA at the usual path.
    script = (
        "import os, ssl, urllib.request\n"
        "sa = '/var/run/secrets/kubernetes.io/serviceaccount'\n"
        "url = f\"https://{os.environ['KUBERNETES_SERVICE_HOST']}:{os.environ['KUBERNETES_SERVICE_PORT']}\"\n"
        "ctx = ssl.create_default_context(cafile=f'{sa}/ca.crt')\n"
        "token = open(f'{sa}/token').read()\n"
        "ns = open(f'{sa}/namespace').read()\n"
        "req = urllib.request.Request(f'{url}/version', headers={'Authorization': f'Bearer {token}'})\n"
        "with urllib.request.urlopen(req, context=ctx, timeout=10) as r:\n"
        "    open('/dev/termination-log', 'w').write(f'{r.status} {ns}')\n"
    )
    assert apply(cluster, namespace, pod("api-client", ["python3", "-c", script])).returncode == 0
    state = wait_for(lambda: terminated(cluster, namespace, "api-client"), timeout=60, message="the client to finish")
    assert isinstance(state, dict)
    assert state["exitCode"] == 0, state
    assert state["message"] == f"200 {namespace}"


def test_the_node_agent_keeps_running_pods_across_an_api_server_restart(
    cluster: LocalCluster, namespace: str
) -> None:
    assert apply(cluster, namespace, http_server_deployment("steady", 1)).returncode == 0
    cluster.kubectl("wait", "-n", namespace, "--for=condition=Available", "deploy/steady", "--timeout=90s")
    cluster.restart_apiserver()
    # The agent re-lists and re-watches: a pod created after the restart runs too.
    assert apply(cluster, namespace, pod("after", ["sh", "-c", "echo after-restart > /dev/termination-log"])
                 ).returncode == 0
    state = wait_for(lambda: terminated(cluster, namespace, "after"), timeout=90, message="the new pod to run")
    assert isinstance(state, dict) and state["message"].strip() == "after-restart"
    cluster.kubectl("wait", "-n", namespace, "--for=condition=Available", "deploy/steady", "--timeout=30s")
    wait_for_controllers(cluster)


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


def test_commands_stay_available_under_a_volume_mounted_over_their_directory(
    cluster: LocalCluster, namespace: str
) -> None:
    # Commands come from the host (no images); a volume over a parent of their directory must not hide them.
    parent = str(REPO.parent)
    check = pod("shadowed", ["sh", "-c", "python3 -c 'import modeldeploy' && ls /shadow-test > /dev/termination-log"],
                volumes=[{"name": "scratch", "emptyDir": {}}],
                container={"volumeMounts": [{"name": "scratch", "mountPath": parent},
                                            {"name": "scratch", "mountPath": "/shadow-test"}]})
    assert apply(cluster, namespace, check).returncode == 0
    state = wait_for(lambda: terminated(cluster, namespace, "shadowed"), timeout=60, message="the pod to finish")
    assert isinstance(state, dict)
    assert state["exitCode"] == 0, state
    # The volume is really there: the repository's folder was made inside it to keep the sources visible.
    assert REPO.name in state["message"]


def container_init_pids(cluster: LocalCluster, namespace: str, selector: str) -> list[int]:
    pids = []
    for item in kubectl_json(cluster, "get", "pods", "-n", namespace, "-l", selector)["items"]:
        for pidfile in (cluster.dir / "pods" / item["metadata"]["uid"]).glob("containers/*/pid"):
            pids.append(int(pidfile.read_text()))
    return pids


def test_deleting_a_deployment_collects_its_replicasets_pods_and_processes(
    cluster: LocalCluster, namespace: str
) -> None:
    assert apply(cluster, namespace, http_server_deployment("gc", 2)).returncode == 0
    cluster.kubectl("wait", "-n", namespace, "--for=condition=Available", "deploy/gc", "--timeout=90s")
    pids = container_init_pids(cluster, namespace, "app=gc")
    assert len(pids) == 2 and all(os.path.exists(f"/proc/{p}") for p in pids)

    cluster.kubectl("delete", "deployment", "gc", "-n", namespace, "--wait=false")
    wait_for(lambda: not kubectl_json(cluster, "get", "replicasets", "-n", namespace, "-l", "app=gc")["items"],
             timeout=60, message="the ReplicaSet to be collected")
    wait_for(lambda: not kubectl_json(cluster, "get", "pods", "-n", namespace, "-l", "app=gc")["items"],
             timeout=60, message="the pods to be collected")
    wait_for(lambda: not any(os.path.exists(f"/proc/{p}") for p in pids), timeout=30,
             message="the pods' processes to end")


def test_restricted_namespace_rejects_privileged_pods_and_runs_compliant_ones(
    cluster: LocalCluster, namespace: str
) -> None:
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    privileged = pod("priv", ["sh", "-c", "true"], container={"securityContext": {"privileged": True}})
    rejected = apply(cluster, namespace, privileged)
    assert rejected.returncode != 0
    assert 'violates PodSecurity "restricted' in rejected.stderr

    compliant = pod("compliant", ["sh", "-c", "id -u > /dev/termination-log"], securityContext=RESTRICTED,
                    container={"securityContext": RESTRICTED_CONTAINER})
    admitted = apply(cluster, namespace, compliant)
    assert admitted.returncode == 0, admitted.stderr
    state = wait_for(lambda: terminated(cluster, namespace, "compliant"), timeout=60, message="the pod to finish")
    assert isinstance(state, dict)
    assert state["exitCode"] == 0
    assert state["message"].strip() == "1000"  # it really ran as the user it asked for


def test_a_claim_written_by_one_pod_is_read_by_another(cluster: LocalCluster, namespace: str) -> None:
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "shared"},
             "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}
    volume = {"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "shared"}}]}
    mount = {"volumeMounts": [{"name": "data", "mountPath": "/data"}]}
    writer = pod("writer", ["sh", "-c", "echo payload-42 > /data/file"], container=mount, **volume)
    assert apply(cluster, namespace, claim, writer).returncode == 0
    state = wait_for(lambda: terminated(cluster, namespace, "writer"), timeout=60, message="the writer to finish")
    assert isinstance(state, dict) and state["exitCode"] == 0

    reader = pod("reader", ["sh", "-c", "cat /data/file > /dev/termination-log"], container=mount, **volume)
    assert apply(cluster, namespace, reader).returncode == 0
    state = wait_for(lambda: terminated(cluster, namespace, "reader"), timeout=60, message="the reader to finish")
    assert isinstance(state, dict)
    assert state["message"].strip() == "payload-42"


def our_leftovers(settings: Settings) -> list[str]:
    found = [n for n in netns_names() if n.startswith(netns_prefix(settings.bridge))]
    found += [n for n in link_names() if n.startswith(veth_prefix(settings.bridge)) or n == settings.bridge]
    # kube-proxy's tables and ours; the route of the service range.
    found += [f"nft table {f} {t}" for f, t in tables() if t in ("kube-proxy", table_name(settings.bridge))]
    routes = subprocess.run(["ip", "route", "show", settings.service_cidr], capture_output=True, text=True).stdout
    found += [f"route {line}" for line in routes.splitlines()]
    marker = str(settings.state_dir)
    found += [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if marker in line]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in cmdline:
                found.append(f"process {entry.name}: {cmdline[:120]}")
    return found


@pytest.mark.stops_session_cluster
def test_start_and_stop_twice_leaks_nothing(cluster: LocalCluster, tmp_path: Path) -> None:
    # kube-proxy's rules are host-wide (one kube-proxy per machine): this test stops the session's
    # cluster, then starts and stops another twice in a row, serving a ClusterIP each time.
    cluster.stop()
    assert our_leftovers(cluster.settings) == []
    settings = Settings(state_dir=tmp_path / "lc2")
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
               "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8000}]}}
    for _ in range(2):
        with LocalCluster(settings) as second:
            assert apply(second, "default", http_server_deployment("web", 2), service).returncode == 0
            second.kubectl("wait", "--for=condition=Available", "deploy/web", "--timeout=90s")
            ip = second.kubectl("get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}").stdout

            def answers(url: str = f"http://{ip}/") -> bool:
                try:
                    with urllib.request.urlopen(url, timeout=2) as response:
                        return bool(response.status == 200)
                except OSError:
                    return False

            wait_for(answers, timeout=30, message="the ClusterIP to answer")
            assert our_leftovers(settings)  # pods are running: namespaces, veths, rules and processes exist
        assert our_leftovers(settings) == []
