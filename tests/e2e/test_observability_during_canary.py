"""During a canary on the local cluster, the cluster's Prometheus scrapes the operator (installed by the
chart, so its pod is annotated for scraping) and the serving pods: the dashboard's queries return
weight and each role's error rate, and the rollback alert's expression names the rollback.

Uses the canary scenarios' fixtures (tests/e2e/test_canary.py, the faulty iris version) and the
cluster's Prometheus (the `prometheus` fixture). The objects the operator writes are saved to
$MODELDEPLOY_OBSERVED_OBJECTS when set, for tests/unit/test_gitops_health.py to judge.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboard import CHART, FROM_TORCHSERVE, alert_expression, dashboard_expressions
from e2e import canary_support
from e2e.helpers import apply, mdep, wait_phase
from e2e.test_canary import iris_builds, version, versions  # noqa: F401  (fixtures used below)
from localcluster import LocalCluster
from support import REPO, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.torchserve]


SYSTEM = "modeldeploy-system"


@pytest.fixture(scope="module")
def helm() -> str:
    return subprocess.run(["bash", str(REPO / "hack/install-helm.sh")], check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture(scope="module")
def prometheus_url(prometheus: str) -> str:
    return prometheus


@pytest.fixture(scope="module")
def chart_operator(cluster: LocalCluster, helm: str) -> Iterator[None]:
    """The operator as the chart installs it: a pod Prometheus scrapes by its annotations."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds"))
    cluster.kubectl("create", "namespace", SYSTEM, check=False)
    env = cluster.env()
    installed = subprocess.run([helm, "install", "md-obs", str(CHART), "-n", SYSTEM, "--set", "resyncSeconds=3",
                                "--wait", "--timeout", "120s"], env=env, capture_output=True, text=True)
    try:
        assert installed.returncode == 0, installed.stderr
        yield
    finally:
        subprocess.run([helm, "uninstall", "md-obs", "-n", SYSTEM, "--wait"], env=env, capture_output=True)


def query(url: str, expr: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}",
                                timeout=10) as response:
        answer = json.loads(response.read())
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def save_observed(body: dict[str, Any], label: str) -> None:
    folder = os.environ.get("MODELDEPLOY_OBSERVED_OBJECTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        body = {k: body[k] for k in ("apiVersion", "kind", "metadata", "spec", "status") if k in body}
        (Path(folder) / f"observed-{label}.yaml").write_text(yaml.safe_dump(body, sort_keys=False))


@pytest.mark.usefixtures("chart_operator", "versions")
def test_prometheus_shows_a_faulty_canary_and_its_rollback(
    cluster: LocalCluster, helm: str, prometheus_url: str, namespace: str
) -> None:
    md = f'namespace="{namespace}", modeldeployment="iris"'
    apply(cluster, namespace, version("1"))
    save_observed(wait_phase(cluster, namespace, "Healthy", timeout=240), "healthy")

    # Prometheus sees the phase one scrape later than the object does: wait for the scrape that has it.
    phases = wait_for(lambda: query(prometheus_url, f'modeldeploy_phase{{{md}, phase="Healthy"}} == 1'), timeout=60,
                      message="the operator's series in Prometheus, labelled with the ModelDeployment's namespace "
                              "(a scrape job without honor_labels renames it exported_namespace)")
    assert isinstance(phases, list) and [p["metric"]["phase"] for p in phases] == ["Healthy"]

    errors_by_role = next(expr for where, expr in dashboard_expressions(namespace) if "Error rate" in where)
    with canary_support.Load(cluster, namespace, rate=12, seconds=300):
        apply(cluster, namespace, version("faulty"))
        wait_for(lambda: query(prometheus_url, f'modeldeploy_canary_weight_ratio{{{md}, kind="effective"}} > 0'),
                 timeout=180, message="a canary weight above 0 in Prometheus")
        save_observed(mdep(cluster, namespace), "progressing")
        roles = wait_for(lambda: {r["metric"].get("modeldeploy_dev_role")
                                  for r in query(prometheus_url, errors_by_role)} >= {"stable", "canary"}
                         or None, timeout=180, message="stable and canary error rates on the dashboard")
        assert roles
        save_observed(wait_phase(cluster, namespace, "RolledBack", timeout=300), "rolledback")

    # Every dashboard query returns series for this ModelDeployment (errors of reconciles only if any).
    for where, expr in dashboard_expressions(namespace):
        if "reconcile_errors" in expr:
            continue
        wait_for(lambda expr=expr: query(prometheus_url, expr), timeout=60, message=f"{where}: {expr}")
    assert any(marker in expr for _, expr in dashboard_expressions(namespace) for marker in FROM_TORCHSERVE)

    # The rollback alert's expression names the rollback and its reason.
    fired = wait_for(lambda: [r for r in query(prometheus_url, alert_expression(helm, "ModelDeploymentRolledBack"))
                              if r["metric"].get("namespace") == namespace], timeout=60,
                     message="the rollback alert's expression to fire")
    assert isinstance(fired, list) and fired[0]["metric"]["reason"] == "AnalysisFailed"
