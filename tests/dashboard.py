"""The chart's Grafana dashboard and alerts as PromQL a test can run: Grafana's variables substituted."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import yaml

from support import REPO

CHART = REPO / "charts" / "modeldeploy-operator"
DASHBOARD = CHART / "files" / "grafana-dashboard.json"
FROM_TORCHSERVE = ("Requests5XX", "ts_inference_")
"""Markers of the queries fed by TorchServe's counters on the serving pods, not by the operator."""


def dashboard_expressions(namespace: str = "ml", name: str = "iris") -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and annotation, for the ModelDeployment namespace/name."""
    variables = {"$namespace": namespace, "$modeldeployment": name, "$__rate_interval": "1m", "$__range": "1h",
                 "$__interval": "15s"}
    board = json.loads(DASHBOARD.read_text())
    found = [(f"panel {p['title']!r} {t['refId']}", t["expr"]) for p in board["panels"] for t in p["targets"]]
    found += [(f"annotation {a['name']!r}", a["expr"]) for a in board["annotations"]["list"]]
    substituted = []
    for where, expr in found:
        for variable in sorted(variables, key=len, reverse=True):
            expr = expr.replace(variable, variables[variable])
        substituted.append((where, expr))
    return substituted


def rule_groups(helm: str, *args: str) -> list[dict[str, Any]]:
    """The alert groups of the chart's PrometheusRule, rendered with `args`."""
    out = subprocess.run([helm, "template", "md", str(CHART), "-n", "modeldeploy-system", "--set",
                          "metrics.prometheusRule.enabled=true", *args], check=True, capture_output=True,
                         text=True).stdout
    rules = [d for d in yaml.safe_load_all(out) if d and d["kind"] == "PrometheusRule"]
    assert len(rules) == 1
    groups: list[dict[str, Any]] = rules[0]["spec"]["groups"]
    return groups


def alert_expression(helm: str, name: str) -> str:
    """The PromQL of one of the chart's alerts."""
    return next(str(r["expr"]) for g in rule_groups(helm) for r in g["rules"] if r.get("alert") == name)
