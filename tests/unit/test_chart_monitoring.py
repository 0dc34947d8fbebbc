"""The chart's alerts and dashboard, checked by Prometheus itself (Debian's prometheus package):
promtool parses every expression and runs the alerts' unit tests, and a real Prometheus on loopback
scrapes the operator's real /metrics endpoint and answers every dashboard query.

The operator's metrics are fed here the way the reconcile feeds them (one call per reconcile with
the rendered status and the Events).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboard import FROM_TORCHSERVE, dashboard_expressions, rule_groups
from modeldeploy.api.events import Event, EventReason
from modeldeploy.observability import OperatorMetrics, serve_metrics
from support import REPO, wait_for

FIXTURES = REPO / "tests" / "fixtures" / "modeldeployments"

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None or shutil.which("prometheus") is None,
                                reason="Prometheus is not installed (hack/install-system-packages.sh)")


@pytest.fixture(scope="module")
def helm() -> str:
    return subprocess.run(["bash", str(REPO / "hack/install-helm.sh")], check=True, capture_output=True,
                          text=True).stdout.strip()


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, cwd=cwd)


def test_every_alert_parses_in_promtool(helm: str, tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule_groups(helm)}))
    checked = promtool("check", "rules", str(tmp_path / "rules.yaml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 4 rules found" in checked.stdout


def test_every_dashboard_query_parses_in_promtool(tmp_path: Path) -> None:
    # Each query becomes a recording rule: promtool then parses it with Prometheus's own parser.
    rules = [{"record": f"dashboard:query_{i}", "expr": expr} for i, (_, expr) in enumerate(dashboard_expressions())]
    (tmp_path / "dashboard.yaml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = promtool("check", "rules", str(tmp_path / "dashboard.yaml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_error_rate_panel_shows_a_role_without_any_5xx_at_zero(tmp_path: Path) -> None:
    """TorchServe exposes its labelled Requests5XX counter only after the first 5xx: a healthy stable
    role has no such series at all, and must still show a line (at 0) beside the failing canary."""
    expr = next(e for where, e in dashboard_expressions() if "Error rate" in where)
    pod = 'namespace="ml", modeldeploy_dev_deployment="iris", model_name="iris", model_version="1.0"'
    (tmp_path / "empty.yaml").write_text(yaml.safe_dump({"groups": []}))
    tests = {
        "rule_files": ["empty.yaml"],
        "evaluation_interval": "15s",
        "tests": [{
            "interval": "15s",  # 4 requests a second per role; the canary answers 1 in 4 with a 5xx
            "input_series": [
                {"series": f'ts_inference_requests_total{{{pod}, modeldeploy_dev_role="stable"}}',
                 "values": "0+60x20"},
                {"series": f'ts_inference_requests_total{{{pod}, modeldeploy_dev_role="canary"}}',
                 "values": "0+60x20"},
                {"series": 'Requests5XX{namespace="ml", modeldeploy_dev_deployment="iris", '
                           'modeldeploy_dev_role="canary", Level="Host", Hostname="iris-canary-1"}',
                 "values": "0+15x20"},
            ],
            "promql_expr_test": [{"expr": expr, "eval_time": "4m", "exp_samples": [
                {"labels": '{modeldeploy_dev_role="canary"}', "value": 0.25},
                {"labels": '{modeldeploy_dev_role="stable"}', "value": 0},
            ]}],
        }],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    tested = promtool("test", "rules", "tests.yaml", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_alerts_fire_on_a_rollback_a_stuck_rollout_and_an_idle_operator(helm: str, tmp_path: Path) -> None:
    """promtool's rule unit tests: Prometheus's own engine evaluates the alerts over given series."""
    groups = rule_groups(helm, "--set", "metrics.prometheusRule.stuckFor=30m",
                         "--set", "metrics.prometheusRule.notReconcilingFor=10m")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    md = 'namespace="ml", modeldeployment="iris"'
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {   # The counter exists at 0 from the first reconcile; one rollback at minute 3.
                "interval": "1m",
                "input_series": [
                    {"series": f'modeldeploy_rollbacks_total{{{md}, reason="AnalysisFailed"}}',
                     "values": "0 0 0 1 1 1"},
                    {"series": f'modeldeploy_rollbacks_total{{{md}, reason="Aborted"}}', "values": "0x5"},
                ],
                "alert_rule_test": [
                    {"eval_time": "2m", "alertname": "ModelDeploymentRolledBack", "exp_alerts": []},
                    {"eval_time": "4m", "alertname": "ModelDeploymentRolledBack", "exp_alerts": [{
                        "exp_labels": {"namespace": "ml", "modeldeployment": "iris", "reason": "AnalysisFailed",
                                       "severity": "warning"},
                        "exp_annotations": {
                            "summary": "ModelDeployment ml/iris rolled back a canary (AnalysisFailed)",
                            "description": "The canary revision was rolled back (AnalysisFailed). kubectl describe "
                                           "mdep -n ml iris names the metric, its value and its threshold."}}]},
                ],
            },
            {   # Progressing with no status change since minute 1 is stuck past 30m; one whose status changes
                # every minute moves however long it takes; Paused is a human's choice, never stuck.
                "interval": "1m",
                "input_series": [
                    {"series": f'modeldeploy_phase{{{md}, phase="Progressing"}}', "values": "1x40"},
                    {"series": f'modeldeploy_progress_timestamp_seconds{{{md}}}', "values": "60x40"},
                    {"series": 'modeldeploy_phase{namespace="ml", modeldeployment="bert", phase="Progressing"}',
                     "values": "1x40"},
                    {"series": 'modeldeploy_progress_timestamp_seconds{namespace="ml", modeldeployment="bert"}',
                     "values": "0+60x40"},
                    {"series": 'modeldeploy_phase{namespace="ml", modeldeployment="resnet", phase="Paused"}',
                     "values": "1x40"},
                    {"series": 'modeldeploy_progress_timestamp_seconds{namespace="ml", modeldeployment="resnet"}',
                     "values": "60x40"},
                ],
                "alert_rule_test": [
                    {"eval_time": "20m", "alertname": "ModelDeploymentRolloutStuck", "exp_alerts": []},
                    {"eval_time": "35m", "alertname": "ModelDeploymentRolloutStuck", "exp_alerts": [{
                        "exp_labels": {"namespace": "ml", "modeldeployment": "iris", "severity": "warning"},
                        "exp_annotations": {
                            "summary": "ModelDeployment ml/iris has not settled",
                            "description": "It has been building, deploying, progressing or rolling back with no "
                                           "change of its status for more than 30m: the operator is not moving it "
                                           "(modeldeploy status shows when it last changed)."}}]},
                ],
            },
            {   # The last reconcile finished at t=60s and none since, while an object exists.
                "interval": "1m",
                "input_series": [
                    {"series": "modeldeploy_last_reconcile_timestamp_seconds", "values": "60x20"},
                    {"series": f'modeldeploy_phase{{{md}, phase="Healthy"}}', "values": "1x20"},
                ],
                "alert_rule_test": [
                    {"eval_time": "5m", "alertname": "ModelDeployOperatorNotReconciling", "exp_alerts": []},
                    {"eval_time": "12m", "alertname": "ModelDeployOperatorNotReconciling", "exp_alerts": [{
                        "exp_labels": {"severity": "critical"},
                        "exp_annotations": {
                            "summary": "The modeldeploy operator has stopped reconciling",
                            "description": "No reconcile finished for 10m while ModelDeployments exist; check the "
                                           "operator's pod and log."}}]},
                    {"eval_time": "12m", "alertname": "ModelDeployOperatorDown", "exp_alerts": []},
                ],
            },
        ],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    tested = promtool("test", "rules", "tests.yaml", cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr


# --- a real Prometheus scraping the real endpoint -----------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=10) as response:
            return json.loads(response.read())

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = self.get("/api/v1/query", query=expr)
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def firing(self, name: str) -> list[dict[str, Any]]:
        return [a for a in self.get("/api/v1/alerts")["data"]["alerts"]
                if a["labels"]["alertname"] == name and a["state"] == "firing"]


@pytest.fixture
def operator_metrics() -> tuple[OperatorMetrics, int]:
    metrics = OperatorMetrics()
    return metrics, serve_metrics("127.0.0.1", 0, metrics)


@pytest.fixture
def prometheus(helm: str, tmp_path: Path, operator_metrics: tuple[OperatorMetrics, int]) -> Iterator[Prometheus]:
    _, metrics_port = operator_metrics
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule_groups(helm)}))
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp_path / "rules.yaml")],
        "scrape_configs": [{"job_name": "modeldeploy-operator", "honor_labels": True,
                            "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}]}],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (tmp_path / "prometheus.log").open("w")
    process = subprocess.Popen(["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
                                f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                               stdout=log, stderr=subprocess.STDOUT)
    server = Prometheus(f"http://127.0.0.1:{port}")

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    try:
        wait_for(ready, timeout=60, message="Prometheus ready")
        yield server
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def fixture_status(name: str) -> dict[str, Any]:
    status: dict[str, Any] = yaml.safe_load((FIXTURES / f"{name}.yaml").read_text())["status"]
    return status


def test_prometheus_scrapes_the_operator_and_the_dashboard_and_alerts_see_a_canary_roll_back(
        prometheus: Prometheus, operator_metrics: tuple[OperatorMetrics, int]) -> None:
    metrics, _ = operator_metrics
    # A canary in progress, as the reconcile records it; an earlier revision was promoted meanwhile.
    metrics.record_reconcile("ml", "iris", seconds=0.05, result="written", status=fixture_status("progressing-canary"))
    wait_for(lambda: prometheus.query('modeldeploy_canary_weight_ratio{kind="effective"} == 0.25'), timeout=30,
             message="the canary's weight in Prometheus")
    metrics.record_events("ml", "iris", [Event("Normal", EventReason("Promoted"), "revision 7f3a9c2e1b40 is stable")],
                          fixture_status("healthy"))
    metrics.record_reconcile("ml", "iris", seconds=0.01, result="error", error="ConflictError")

    # Every dashboard query is accepted by Prometheus; those fed by the operator return series.
    for where, expr in dashboard_expressions():
        if any(marker in expr for marker in FROM_TORCHSERVE) or "rollbacks" in expr:
            assert prometheus.query(expr) == [], f"{where}: {expr}"
        else:
            wait_for(lambda expr=expr: prometheus.query(expr), timeout=30, message=f"{where} to return series")

    # The canary fails its analysis and is rolled back: the alert fires, naming the reason.
    rollback = Event("Warning", EventReason("AnalysisFailed"), "revision c41d08e95a77 rolled back to 7f3a9c2e1b40")
    metrics.record_reconcile("ml", "iris", seconds=0.05, result="written", status=fixture_status("rolledback"),
                             events=[rollback])
    alerts = wait_for(lambda: prometheus.firing("ModelDeploymentRolledBack"), timeout=30,
                      message="the rollback alert firing")
    assert alerts[0]["labels"]["reason"] == "AnalysisFailed"
    assert alerts[0]["labels"]["modeldeployment"] == "iris"
    assert prometheus.query('modeldeploy_phase{phase="RolledBack"} == 1')
    for where, expr in dashboard_expressions():
        if "rollbacks" in expr:
            wait_for(lambda expr=expr: prometheus.query(expr), timeout=30, message=f"{where} to show the rollback")
