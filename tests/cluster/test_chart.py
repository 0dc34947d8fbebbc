"""The Helm chart installs the same operator as manifests/, and the installed operator works: it posts
status, serves its metrics, answers `helm test`, and takes a new CRD version the documented way."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from dashboard import alert_expression
from localcluster import LocalCluster
from support import REPO, kubectl_json, wait_for

CHART = REPO / "charts" / "modeldeploy-operator"
SYSTEM = "modeldeploy-system"
CRD_NAME = "modeldeployments.modeldeploy.dev"
EVERY_OPTION = ("--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.prometheusRule.enabled=true",
                "--set", "grafanaDashboard.enabled=true")


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


def helm_run(helm: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *args], env=env, capture_output=True, text=True)


def test_helm_lint_strict_passes_with_every_option(helm: str) -> None:
    for options in ((), EVERY_OPTION):
        linted = helm_run(helm, "lint", "--strict", str(CHART), *options)
        assert linted.returncode == 0, linted.stdout + linted.stderr


@pytest.mark.parametrize(("value", "field"), [
    ("resyncSeconds=often", "/resyncSeconds"),
    ("metrics.port=99999", "/metrics/port"),
    ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
    ("metrics.prometheusRule.stuckFor=an hour", "/metrics/prometheusRule/stuckFor"),
    ("metrcs.enabled=false", "metrcs"),
])
def test_a_wrong_value_is_refused_naming_the_field(helm: str, value: str, field: str) -> None:
    rendered = helm_run(helm, "template", "md", str(CHART), "--set", value)
    assert rendered.returncode != 0
    assert field in rendered.stderr


def previous_crd() -> dict:  # type: ignore[type-arg]
    """The chart's CRD as an earlier chart version shipped it (one description differs)."""
    crd = yaml.safe_load(next((CHART / "crds").glob("*.yaml")).read_text())
    old = copy.deepcopy(crd)
    status = old["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    status["properties"]["conditions"]["description"] = "Standard conditions (an earlier version)."
    return old  # type: ignore[no-any-return]


def crd_conditions_description(cluster: LocalCluster) -> str:
    crd = kubectl_json(cluster, "get", "crd", CRD_NAME)
    status = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    return str(status["properties"]["conditions"]["description"])


@pytest.fixture(scope="module")
def release(cluster: LocalCluster, helm: str) -> Iterator[dict[str, str]]:
    """The chart installed over an earlier version of the CRD (as a cluster that installed an earlier chart)."""
    cluster.kubectl("create", "namespace", SYSTEM, check=False)
    cluster.kubectl("label", "namespace", SYSTEM, "pod-security.kubernetes.io/enforce=restricted", "--overwrite")
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=yaml.safe_dump(previous_crd()))
    cluster.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
    env = cluster.env()
    install = helm_run(helm, "install", "md", str(CHART), "-n", SYSTEM, "--set", "resyncSeconds=5",
                       "--wait", "--timeout", "120s", env=env)
    try:
        assert install.returncode == 0, "\n".join([
            install.stderr, cluster.kubectl("get", "pods,events", "-n", SYSTEM, check=False).stdout,
            cluster.kubectl("logs", "-n", SYSTEM, "deploy/modeldeploy-operator", "--tail=30", check=False).stdout,
            (cluster.dir / "logs" / "node-agent.log").read_text(errors="replace")[-3000:]])
        yield env
    finally:
        helm_run(helm, "uninstall", "md", "-n", SYSTEM, "--wait", env=env)
        # Leave the CRD as the chart ships it for the tests that follow.
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds"))


@pytest.fixture(scope="module")
def prometheus_operator_crds(cluster: LocalCluster) -> Iterator[Path]:
    """The Prometheus Operator's ServiceMonitor and PrometheusRule CRDs, of the version the README names, applied
    server-side for this module's tests and removed after them: no other test sees monitoring.coreos.com."""
    folder = Path(subprocess.run(["bash", str(REPO / "hack/install-prometheus-operator-crds.sh")], check=True,
                                 capture_output=True, text=True).stdout.strip())
    try:
        cluster.kubectl("apply", "--server-side", "-f", str(folder))
        cluster.kubectl("wait", "--for=condition=Established", "-f", str(folder), "--timeout=60s")
        yield folder
    finally:
        # Deleting a CRD deletes its objects too.
        cluster.kubectl("delete", "--ignore-not-found", "-f", str(folder), "--timeout=120s", check=False)


def server_dry_run(cluster: LocalCluster, docs: list[dict]) -> subprocess.CompletedProcess[str]:  # type: ignore[type-arg]
    """`kubectl apply --dry-run=server` with strict field validation: an unknown field is refused, not pruned."""
    return cluster.kubectl("apply", "--dry-run=server", "--validate=strict", "-n", SYSTEM, "-f", "-",
                           input=yaml.safe_dump_all(docs), check=False)


def test_the_rendered_chart_passes_the_api_servers_dry_run(cluster: LocalCluster, helm: str,
                                                           prometheus_operator_crds: Path) -> None:
    cluster.kubectl("create", "namespace", SYSTEM, check=False)
    # Every option: the ServiceMonitor and PrometheusRule are checked by the Prometheus Operator's own schemas.
    applied = server_dry_run(cluster, render(helm, *EVERY_OPTION))
    assert applied.returncode == 0, applied.stderr
    kinds = {line.split("/")[0] for line in applied.stdout.splitlines()}
    assert {"service", "deployment.apps", "configmap", "clusterrole.rbac.authorization.k8s.io",
            "servicemonitor.monitoring.coreos.com", "prometheusrule.monitoring.coreos.com"} <= kinds


@pytest.mark.parametrize(("kind", "change", "refused"), [
    ("ServiceMonitor", lambda spec: spec["endpoints"][0].update(honourLabels=True),
     'unknown field "spec.endpoints[0].honourLabels"'),
    ("ServiceMonitor", lambda spec: spec["endpoints"][0].update(interval="30 seconds"),
     "spec.endpoints[0].interval"),
    ("PrometheusRule", lambda spec: spec["groups"][0]["rules"][1].update({"for": "an hour"}),
     "spec.groups[0].rules[1].for"),
], ids=["unknown-field", "bad-interval", "bad-for"])
def test_the_dry_run_refuses_what_the_prometheus_operators_schemas_refuse(
        cluster: LocalCluster, helm: str, prometheus_operator_crds: Path, kind: str,
        change: Callable[[dict], None], refused: str) -> None:  # type: ignore[type-arg]
    cluster.kubectl("create", "namespace", SYSTEM, check=False)
    doc = next(d for d in render(helm, *EVERY_OPTION) if d["kind"] == kind)
    change(doc["spec"])
    applied = server_dry_run(cluster, [doc])
    assert applied.returncode != 0
    assert refused in applied.stderr, applied.stderr


def test_helm_install_with_a_wrong_value_is_refused_naming_the_field(cluster: LocalCluster, helm: str) -> None:
    refused = helm_run(helm, "install", "md-wrong", str(CHART), "-n", SYSTEM, "--set", "resyncSeconds=often",
                       env=cluster.env())
    assert refused.returncode != 0
    assert "/resyncSeconds" in refused.stderr and "want number" in refused.stderr
    assert helm_run(helm, "status", "md-wrong", "-n", SYSTEM, env=cluster.env()).returncode != 0


def test_helm_install_runs_an_operator_that_posts_status_and_metrics(cluster: LocalCluster, release: dict[str, str],
                                                                     namespace: str) -> None:
    deployment = kubectl_json(cluster, "get", "deployment", "modeldeploy-operator", "-n", SYSTEM)
    assert deployment["status"]["availableReplicas"] == 1

    # The in-cluster operator (service-account login) reports a missing claim on a new object.
    sample = yaml.safe_load((REPO / "manifests/samples/iris.yaml").read_text())
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(sample))

    def degraded_reason() -> str | None:
        status = kubectl_json(cluster, "get", "mdep", "iris", "-n", namespace).get("status") or {}
        return next((c["reason"] for c in status.get("conditions") or [] if c["type"] == "Degraded"), None)

    assert wait_for(degraded_reason, timeout=60, message="status from the installed operator") == (
        "ReferenceNotFound")

    # Its metrics say the same, on the port the chart opened.
    pod_ip = cluster.kubectl("get", "pods", "-n", SYSTEM, "-l", "app.kubernetes.io/name=modeldeploy-operator",
                             "-o", "jsonpath={.items[0].status.podIP}").stdout

    def pending_in_metrics() -> bool:
        with urllib.request.urlopen(f"http://{pod_ip}:8081/metrics", timeout=5) as response:
            text = response.read().decode()
        return any(s.labels == {"namespace": namespace, "modeldeployment": "iris", "phase": "Pending"}
                   and s.value == 1 for f in text_string_to_metric_families(text) for s in f.samples)

    wait_for(pending_in_metrics, timeout=30, message="phase Pending in the operator's metrics")

    # The kubectl plugin reads the same object.
    plugin_env = {**release, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    status = subprocess.run(["kubectl", "modeldeploy", "status", "iris", "-n", namespace], env=plugin_env,
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    assert status.stdout.startswith(f"{namespace}/iris  phase Pending")
    assert "PersistentVolumeClaim" in status.stdout
    cluster.kubectl("delete", "mdep", "iris", "-n", namespace, "--timeout=60s")


def test_the_clusters_prometheus_scrapes_the_installed_operator(cluster: LocalCluster, helm: str, prometheus: str,
                                                              release: dict[str, str], namespace: str) -> None:
    sample = yaml.safe_load((REPO / "manifests/samples/iris.yaml").read_text())
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(sample))
    pending = f'modeldeploy_phase{{namespace="{namespace}", modeldeployment="iris", phase="Pending"}} == 1'

    def query(expr: str) -> list[dict]:  # type: ignore[type-arg]
        url = f"{prometheus}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
        with urllib.request.urlopen(url, timeout=10) as response:
            answer = json.loads(response.read())
        assert answer["status"] == "success", answer
        return answer["data"]["result"]  # type: ignore[no-any-return]

    # Found by its pod's annotations, each series labelled with its ModelDeployment's namespace.
    wait_for(lambda: query(pending), timeout=90, message="the operator's phase series in Prometheus")
    # Reconciling, scraped: neither operator alert holds.
    for alert in ("ModelDeployOperatorNotReconciling", "ModelDeployOperatorDown"):
        assert query(alert_expression(helm, alert)) == [], alert
    cluster.kubectl("delete", "mdep", "iris", "-n", namespace, "--timeout=60s")
    # A deleted object's series go stale: Prometheus stops returning them.
    wait_for(lambda: not query(pending), timeout=90, message="the deleted object's series to end")


def test_users_take_a_new_crd_version_with_server_side_apply(cluster: LocalCluster, helm: str,
                                                             release: dict[str, str]) -> None:
    # Helm installs crds/ only when the CRD is absent, and never upgrades it.
    assert crd_conditions_description(cluster) == "Standard conditions (an earlier version)."
    upgraded = helm_run(helm, "upgrade", "md", str(CHART), "-n", SYSTEM, "--reuse-values", env=release)
    assert upgraded.returncode == 0, upgraded.stderr
    assert crd_conditions_description(cluster) == "Standard conditions (an earlier version)."

    # The README's command: the chart's CRDs, applied server-side before `helm upgrade`.
    crds = subprocess.run([helm, "show", "crds", str(CHART)], check=True, capture_output=True, text=True).stdout
    applied = subprocess.run(["kubectl", "apply", "--server-side", "--force-conflicts", "-f", "-"], input=crds,
                             env=release, capture_output=True, text=True)
    assert applied.returncode == 0, applied.stderr
    assert "Stalled" in crd_conditions_description(cluster)


def test_helm_test_finds_the_operator_answering(cluster: LocalCluster, helm: str, release: dict[str, str]) -> None:
    if not cluster.settings.cluster_dns:
        pytest.skip("the test pod reaches the operator by its Service's DNS name: needs the cluster DNS")
    tested = helm_run(helm, "test", "md", "-n", SYSTEM, "--logs", "--timeout", "120s", env=release)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "the operator answers on http://md-modeldeploy-metrics.modeldeploy-system.svc:8081/metrics" in tested.stdout


def test_helm_upgrade_with_every_option_creates_a_service_monitor_and_alerts_the_prometheus_operator_would_use(
        cluster: LocalCluster, helm: str, release: dict[str, str], prometheus_operator_crds: Path) -> None:
    upgraded = helm_run(helm, "upgrade", "md", str(CHART), "-n", SYSTEM, "--reuse-values", *EVERY_OPTION, env=release)
    try:
        assert upgraded.returncode == 0, upgraded.stderr
        rendered = {d["kind"]: d for d in render(helm, *EVERY_OPTION)}
        monitors = kubectl_json(cluster, "get", "servicemonitors", "-n", SYSTEM)["items"]
        assert [m["metadata"]["name"] for m in monitors] == ["md-modeldeploy-metrics"]
        spec = monitors[0]["spec"]
        assert spec == rendered["ServiceMonitor"]["spec"]  # stored whole: nothing pruned by the schema

        # What the Prometheus Operator would scrape: the Services its selector picks, on the named port, at the
        # ready endpoints behind it.
        selector = ",".join(f"{k}={v}" for k, v in spec["selector"]["matchLabels"].items())
        services = [s for ns in spec["namespaceSelector"]["matchNames"]
                    for s in kubectl_json(cluster, "get", "services", "-n", ns, "-l", selector)["items"]]
        assert [s["metadata"]["name"] for s in services] == ["md-modeldeploy-metrics"]
        port = spec["endpoints"][0]["port"]
        assert port in {p.get("name") for p in services[0]["spec"]["ports"]}
        slices = kubectl_json(cluster, "get", "endpointslices", "-n", SYSTEM, "-l",
                              "kubernetes.io/service-name=md-modeldeploy-metrics")["items"]
        assert any(p.get("name") == port for s in slices for p in s.get("ports") or [])
        assert any(e.get("conditions", {}).get("ready") for s in slices for e in s.get("endpoints") or [])

        rules = kubectl_json(cluster, "get", "prometheusrules", "-n", SYSTEM)["items"]
        assert [r["spec"] for r in rules] == [rendered["PrometheusRule"]["spec"]]
        assert {r["alert"] for g in rules[0]["spec"]["groups"] for r in g["rules"]} == {
            "ModelDeploymentRolledBack", "ModelDeploymentRolloutStuck", "ModelDeployOperatorNotReconciling",
            "ModelDeployOperatorDown"}
    finally:
        off = [arg.replace("=true", "=false") for arg in EVERY_OPTION]
        back = helm_run(helm, "upgrade", "md", str(CHART), "-n", SYSTEM, "--reuse-values", *off, env=release)
    # Turned off again, they are gone.
    assert back.returncode == 0, back.stderr
    for resource in ("servicemonitors", "prometheusrules"):
        assert kubectl_json(cluster, "get", resource, "-n", SYSTEM)["items"] == [], resource
