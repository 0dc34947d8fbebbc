"""The local cluster's API server, admission and controllers: Jobs, garbage collection, Pod Security,
service-account tokens, and an API server restart."""

from __future__ import annotations

import os

import pytest

from cluster.localcluster.localcluster_support import (
    RESTRICTED,
    RESTRICTED_CONTAINER,
    apply,
    http_server_deployment,
    pod,
    terminated,
)
from localcluster import LocalCluster
from support import kubectl_json, wait_for, wait_for_controllers

pytestmark = pytest.mark.cluster


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
