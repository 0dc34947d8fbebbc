"""The local cluster as a whole: the release it serves, the API groups modeldeploy uses, and a clean stop."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

import pytest

from cluster.localcluster.localcluster_support import apply, http_server_deployment
from localcluster import LocalCluster, Settings
from localcluster.hostrules import table_name, tables
from localcluster.network import link_names, netns_names, netns_prefix, veth_prefix
from support import REPO, wait_for

pytestmark = pytest.mark.cluster


def test_kubectl_version_reports_the_built_release(cluster: LocalCluster) -> None:
    release = (REPO / "hack/localcluster/controlplane/K8S_VERSION").read_text().strip()
    version = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == release


def test_api_resources_list_the_groups_we_use(cluster: LocalCluster) -> None:
    out = cluster.kubectl("api-resources", "-o", "wide").stdout
    for group, kind in (("apps/v1", "Deployment"), ("batch/v1", "Job"), ("discovery.k8s.io/v1", "EndpointSlice")):
        assert any(group in line and kind in line for line in out.splitlines()), f"{group} {kind} missing"


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
