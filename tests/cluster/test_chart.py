"""The Helm chart installs the same operator as manifests/, and the installed operator works."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from localcluster import LocalCluster
from support import REPO, kubectl_json, wait_for

CHART = REPO / "charts" / "modeldeploy-operator"


@pytest.fixture(scope="module")
def helm() -> str:
    return subprocess.run(["bash", str(REPO / "hack/install-helm.sh")], check=True, capture_output=True,
                          text=True).stdout.strip()


def render(helm: str, *args: str) -> list[dict]:  # type: ignore[type-arg]
    out = subprocess.run([helm, "template", "md", str(CHART), "-n", "modeldeploy-system", *args], check=True,
                         capture_output=True, text=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_the_charts_crd_is_the_one_source() -> None:
    source = REPO / "manifests/crds/modeldeploy.dev_modeldeployments.yaml"
    assert (CHART / "crds" / source.name).read_bytes() == source.read_bytes()


def test_the_charts_rbac_grants_exactly_what_the_manifests_grant(helm: str) -> None:
    rendered = {d["metadata"]["name"]: d for d in render(helm) if d["kind"] == "ClusterRole"}
    manifests = yaml.safe_load((REPO / "manifests/rbac/cluster_role.yaml").read_text())
    assert rendered["md-modeldeploy-operator"]["rules"] == manifests["rules"]
    user_roles = (REPO / "manifests/rbac/user_roles.yaml").read_text()
    users = {d["metadata"]["name"]: d for d in yaml.safe_load_all(user_roles)}
    assert set(rendered) == {"md-modeldeploy-operator", *(f"md-{name}" for name in users)}
    for name, role in users.items():
        assert rendered[f"md-{name}"]["rules"] == role["rules"]
        aggregated = {k: v for k, v in role["metadata"]["labels"].items() if k.startswith("rbac.authorization")}
        assert aggregated.items() <= rendered[f"md-{name}"]["metadata"]["labels"].items()
    assert {d["metadata"]["name"] for d in render(helm, "--set", "userRoles=false")
            if d["kind"] == "ClusterRole"} == {"md-modeldeploy-operator"}
    with_check = {d["metadata"]["name"] for d in render(helm, "--set", "secretReferenceCheck=true")
                  if d["kind"] == "ClusterRole"}
    assert "md-modeldeploy-secret-reference-check" in with_check


def test_the_chart_grants_get_on_each_named_prometheus_secret_only(helm: str) -> None:
    rendered = render(helm, "--set", "prometheusSecrets[0].namespace=team-a,prometheusSecrets[0].name=prom-client")
    roles = [d for d in rendered if d["kind"] == "Role"]
    assert [(r["metadata"]["namespace"], r["rules"]) for r in roles] == [
        ("team-a", [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["prom-client"], "verbs": ["get"]}])]
    bindings = [d for d in rendered if d["kind"] == "RoleBinding"]
    assert bindings[0]["subjects"] == [{"kind": "ServiceAccount", "name": "modeldeploy-operator",
                                        "namespace": "modeldeploy-system"}]


def test_helm_install_runs_an_operator_that_posts_status(cluster: LocalCluster, helm: str, namespace: str) -> None:
    system = "modeldeploy-system"
    cluster.kubectl("create", "namespace", system, check=False)
    cluster.kubectl("label", "namespace", system, "pod-security.kubernetes.io/enforce=restricted", "--overwrite")
    env = cluster.env()
    install = subprocess.run([helm, "install", "md", str(CHART), "-n", system, "--set", "resyncSeconds=5",
                              "--wait", "--timeout", "120s"], env=env, capture_output=True, text=True)
    try:
        assert install.returncode == 0, "\n".join([
            install.stderr, cluster.kubectl("get", "pods,events", "-n", system, check=False).stdout,
            cluster.kubectl("logs", "-n", system, "deploy/modeldeploy-operator", "--tail=30", check=False).stdout,
            (cluster.dir / "logs" / "node-agent.log").read_text(errors="replace")[-3000:]])
        deployment = kubectl_json(cluster, "get", "deployment", "modeldeploy-operator", "-n", system)
        assert deployment["status"]["availableReplicas"] == 1

        # The in-cluster operator (service-account login) reports a missing claim on a new object.
        sample = yaml.safe_load((REPO / "manifests/samples/iris.yaml").read_text())
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(sample))

        def degraded_reason() -> str | None:
            status = kubectl_json(cluster, "get", "mdep", "iris", "-n", namespace).get("status") or {}
            return next((c["reason"] for c in status.get("conditions") or [] if c["type"] == "Degraded"), None)

        assert wait_for(degraded_reason, timeout=60, message="status from the installed operator") == (
            "ReferenceNotFound")
        cluster.kubectl("delete", "mdep", "iris", "-n", namespace, "--timeout=60s")
    finally:
        subprocess.run([helm, "uninstall", "md", "-n", system, "--wait"], env=env, capture_output=True)
