"""During a canary on the local cluster, the cluster's Prometheus (a standard kubernetes_sd pod scrape,
hack/localcluster/addons/prometheus.yaml) scrapes the operator (installed by the chart, its pod
annotated for scraping) and the serving pods: the dashboard's queries return the weight and each
role's error rate, and the rollback alert's expression names the rollback. Then kstatus and the
Argo CD health script judge the objects the operator wrote in this session, in each phase.

Uses the canary scenarios' fixtures (tests/e2e/test_canary.py, the faulty iris version answers 30 %
of requests with a 503) and the cluster's Prometheus (the `prometheus` fixture).
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dashboard import CHART, FROM_TORCHSERVE, dashboard_expressions, rule_groups
from e2e import canary_support
from e2e.helpers import apply, iris, mdep, wait_phase
from e2e.test_canary import iris_builds, version, versions  # noqa: F401  (fixtures used below)
from gitops import check, healthcheck_binary, observed, save_observed
from localcluster import LocalCluster
from support import REPO, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.torchserve]

SYSTEM = "modeldeploy-system"
ROLES = {"stable", "canary"}


@pytest.fixture(scope="module")
def helm() -> str:
    return subprocess.run(["bash", str(REPO / "hack/install-helm.sh")], check=True, capture_output=True,
                          text=True).stdout.strip()


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


def api(url: str, path: str, **params: str) -> Any:
    with urllib.request.urlopen(f"{url}/api/v1/{path}?{urllib.parse.urlencode(params)}", timeout=10) as response:
        answer = json.loads(response.read())
    assert answer["status"] == "success", answer
    return answer["data"]


def query(url: str, expr: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = api(url, "query", query=expr)["result"]
    return result


def by_role(url: str, expr: str) -> dict[str, float]:
    return {r["metric"].get("modeldeploy_dev_role", ""): float(r["value"][1]) for r in query(url, expr)}


def what_prometheus_sees(url: str, namespace: str) -> str:
    """The namespace's scrape targets and the TorchServe series they gave: the cause when a panel is empty."""
    targets = [(t["labels"].get("pod"), t["labels"].get("modeldeploy_dev_role"), t["health"], t["lastError"])
               for t in api(url, "targets", state="active")["activeTargets"]
               if t["labels"].get("namespace") == namespace]
    series = api(url, "series", **{"match[]": f'{{namespace="{namespace}", __name__=~"Requests.*|ts_.*"}}'})
    return f"targets {targets}; series {sorted({(s['__name__'], s.get('modeldeploy_dev_role')) for s in series})}"


class Phases:
    """Polls a ModelDeployment and keeps the first object seen in each phase (its status for its spec),
    saved to `folder` at once."""

    def __init__(self, cluster: LocalCluster, namespace: str, folder: Path, name: str = "iris") -> None:
        self.cluster, self.namespace, self.folder, self.name = cluster, namespace, folder, name
        self.first: dict[str, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> Phases:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _poll(self) -> None:
        while not self._stop.wait(0.3):
            try:
                body = mdep(self.cluster, self.namespace, self.name)
            except Exception:
                continue
            self.keep(body)

    def keep(self, body: dict[str, Any]) -> None:
        """Keeps `body` when it is the first seen in its phase."""
        status = body.get("status") or {}
        phase = status.get("phase", "")
        if status.get("observedGeneration") == body["metadata"]["generation"] and phase not in self.first:
            self.first[phase] = body
            save_observed(self.folder, body, self.name)


def request(cluster: LocalCluster, namespace: str, action: str, revision: str) -> None:
    """A steering request, as `kubectl modeldeploy` writes it."""
    value = json.dumps({"action": action, "revision": revision, "by": "e2e",
                        "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")})
    cluster.kubectl("annotate", "mdep", "iris", "-n", namespace, f"modeldeploy.dev/request={value}", "--overwrite")


def alerts(helm: str) -> dict[str, str]:
    return {str(r["alert"]): str(r["expr"]) for g in rule_groups(helm) for r in g["rules"] if "alert" in r}


# The phases the scenario below makes the operator write; Degraded (rolling back) lasts a few seconds
# and is judged when it was seen.
SCENARIO_PHASES = ("Healthy", "Progressing", "Paused", "RolledBack", "Failed")


@pytest.mark.usefixtures("chart_operator", "versions")
def test_prometheus_shows_a_faulty_canary_and_its_rollback(
    cluster: LocalCluster, helm: str, prometheus: str, namespace: str, observed_objects: Path
) -> None:
    started = time.monotonic()
    md = f'namespace="{namespace}", modeldeployment="iris"'
    # A second object whose spec the operator refuses (an extra file named like the model): phase Failed.
    clash = iris("clash", replicas=1, model__extraFiles=[{"uri": "pvc://models/iris/1/model.pt", "name": "model.pt"}])
    apply(cluster, namespace, clash)
    apply(cluster, namespace, version("1"))
    save_observed(observed_objects, wait_phase(cluster, namespace, "Failed", name="clash", timeout=60), "clash")
    save_observed(observed_objects, wait_phase(cluster, namespace, "Healthy", timeout=240), "iris")
    healthy_at = time.monotonic()

    # Prometheus sees the phase one scrape later than the object does: wait for the scrape that has it.
    phases = wait_for(lambda: query(prometheus, f'modeldeploy_phase{{{md}, phase="Healthy"}} == 1'), timeout=60,
                      message="the operator's series in Prometheus, labelled with the ModelDeployment's namespace "
                              "(a scrape job without honor_labels renames it exported_namespace)")
    assert isinstance(phases, list) and [p["metric"]["phase"] for p in phases] == ["Healthy"]
    # The operator (fresh in this module) built v1's archive in a Job: counted, and its build time observed.
    built = wait_for(lambda: query(prometheus, 'sum(modeldeploy_archive_build_duration_seconds_count) > 0 and '
                                               'sum(modeldeploy_archive_builds_total{result="built"}) > 0'),
                     timeout=30, message="the archive build's count and duration in Prometheus")
    assert isinstance(built, list) and float(built[0]["value"][1]) >= 1

    panels = dict(dashboard_expressions(namespace))
    errors = next(expr for where, expr in panels.items() if "Error rate" in where)
    requests = next(expr for where, expr in panels.items() if "Requests:" in where)
    weight = next(expr for where, expr in panels.items() if "Canary weight" in where)
    # failureLimit 3: the canary lives for a few analysis intervals, long enough to pause it.
    with (canary_support.Load(cluster, namespace, rate=12, seconds=300),
          Phases(cluster, namespace, observed_objects) as seen):
        apply(cluster, namespace, version("faulty", failureLimit=3))
        running = wait_for(lambda: (lambda b: b if (b.get("status") or {}).get("rollout", {}).get("effectiveWeight")
                                    else None)(mdep(cluster, namespace)), timeout=180,
                           message="the canary taking traffic")
        assert isinstance(running, dict)
        canary_at = time.monotonic()
        # Paused by a user, the analysis goes on and still rolls the faulty canary back.
        request(cluster, namespace, "pause", running["status"]["canaryRevision"])

        weights = wait_for(lambda: (lambda w: w if w.get("effective", 0) > 0 else None)(
            {r["metric"]["kind"]: float(r["value"][1]) for r in query(prometheus, weight)}), timeout=60,
            message="the weight panel's effective weight above 0")
        assert isinstance(weights, dict) and weights["desired"] >= weights["effective"] > 0
        rates = wait_for(lambda: (lambda r: r if set(r) >= ROLES and r["canary"] > 0 else None)(
            by_role(prometheus, errors)), timeout=90,
            message=f"stable and canary error rates on the dashboard ({what_prometheus_sees(prometheus, namespace)})")
        assert isinstance(rates, dict)
        # What a user reads on the panel: the canary fails about 30 % of requests, stable none.
        assert rates["stable"] == 0 and 0.1 < rates["canary"] < 0.6, rates
        assert set(by_role(prometheus, requests)) >= ROLES
        panels_at = time.monotonic()
        seen.keep(wait_phase(cluster, namespace, "RolledBack", timeout=180))
        rolled_back_at = time.monotonic()
    assert {"Progressing", "Paused", "RolledBack"} <= set(seen.first), sorted(seen.first)

    # Every dashboard query is accepted and returns series for this ModelDeployment (reconcile errors
    # only if there were any); nothing was promoted, so the promotions' annotation marks nothing.
    for where, expr in panels.items():
        if "reconcile_errors" in expr:
            query(prometheus, expr)
        elif where == "annotation 'Promotions'":
            assert query(prometheus, expr) == [], where
        else:
            wait_for(lambda expr=expr: query(prometheus, expr), timeout=60, message=f"{where}: {expr}")
    assert any(marker in expr for expr in panels.values() for marker in FROM_TORCHSERVE)

    # Every alert expression runs; the rollback's names it and its reason, the others stay quiet for it.
    rules = alerts(helm)
    fired = wait_for(lambda: [r["metric"] for r in query(prometheus, rules["ModelDeploymentRolledBack"])
                              if r["metric"].get("namespace") == namespace], timeout=60,
                     message="the rollback alert's expression to fire")
    assert fired == [{"namespace": namespace, "modeldeployment": "iris", "reason": "AnalysisFailed"}]
    # The phase gauge read Degraded while the rollback ran: the stuck expression quiets once a scrape
    # after RolledBack is in (the rule's `for` keeps the alert itself from firing meanwhile).
    wait_for(lambda: not [r for r in query(prometheus, rules["ModelDeploymentRolloutStuck"])
                          if r["metric"].get("namespace") == namespace], timeout=60,
             message="the stuck rollout expression quiet for a rolled-back object")
    assert query(prometheus, rules["ModelDeployOperatorNotReconciling"]) == []
    assert query(prometheus, rules["ModelDeployOperatorDown"]) == []
    print(f"\nhealthy {healthy_at - started:.0f} s, canary serving {canary_at - healthy_at:.0f} s later, "
          f"panels answering {panels_at - canary_at:.0f} s after that, rolled back {rolled_back_at - canary_at:.0f} s "
          f"after the canary served; whole scenario {time.monotonic() - started:.0f} s")


@pytest.fixture(scope="module")
def healthcheck() -> str:
    return healthcheck_binary()


@pytest.mark.judges_observed_objects
@pytest.mark.parametrize("phase", [*SCENARIO_PHASES, "Degraded"])
def test_kstatus_and_argocd_judge_the_objects_the_operator_wrote(
    healthcheck: str, observed_objects: Path, phase: str
) -> None:
    """Table-driven over the objects of this session (the scenario above and every other whole-flow test,
    this test runs after them all): kstatus and the Argo CD script, run as their tools run them, give each
    phase its expected status."""
    objects = [(path, obj) for path, obj in observed(observed_objects)
               if (obj.get("status") or {}).get("phase") == phase]
    if not objects:
        if phase in SCENARIO_PHASES:
            pytest.fail(f"no object in phase {phase} was observed: run with test_prometheus_shows_a_faulty_canary...")
        pytest.skip(f"no object in phase {phase} was observed in this session")
    wrong = {path.name: problems for path, obj in objects if (problems := check(healthcheck, obj))}
    assert not wrong
