"""A canary judged by the cluster's own Prometheus, on real TorchServe pods: the README's error-rate query
rolls back a faulty version and promotes a good one; Prometheus gone mid-analysis is Errors, then a
MetricsUnavailable rollback; an empty answer on a live canary under load is never a pass and the deadline
aborts with InsufficientData.

The scenarios share one namespace (2 replicas, short intervals, a bounded load through the Service
`iris`'s ClusterIP), with the canary scenarios' fixtures (tests/e2e/test_canary.py: each begins with its
stable revision Healthy) and the session's Prometheus (the `prometheus` fixture, scraping the serving pods
by their annotations every 5 s). The two rollbacks come first and the promotion last.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from e2e import test_canary
from e2e.canary_support import Load, StatusLine
from e2e.helpers import OperatorProcess, apply, condition, mdep, wait_phase
from e2e.test_canary import Start, deployments, events, iris_builds, version  # noqa: F401
from localcluster import LocalCluster
from support import REPO, kubectl_json, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.torchserve]

# The canary scenarios' namespace of this module's own, with every version on its claim, and their start.
shared = test_canary.shared
namespace = test_canary.namespace
start = test_canary.start

INTERVAL = 10  # two of Prometheus's 5 s scrapes in every window
METRIC = "error-rate-promql"


def readme_queries() -> list[str]:
    """The sample queries of the README's Prometheus section, in order (error rate, then latency)."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"```promql\n(.*?)```", text, re.S)
    assert block is not None, "the README shows no PromQL sample"
    return [" ".join(line.strip() for line in query.splitlines())
            for query in block.group(1).strip().split("\n\n")]


def prometheus_rollout(address: str, query: str, steps: list[dict[str, Any]] | None = None,
                       deadline: int = 120, name: str = "2", **analysis: Any) -> dict[str, Any]:
    """The iris spec of version `name` (v2 by default) judged by one prometheus metric (no torchserve metric)."""
    document = version(name, steps=steps)
    rollout = document["spec"]["rollout"]
    rollout["progressDeadlineSeconds"] = deadline
    rollout["analysis"].update({"interval": f"{INTERVAL}s", "consecutiveErrorLimit": 2, **analysis})
    rollout["analysis"]["metrics"] = [{"name": METRIC, "max": 0.01, "provider": {"prometheus": {
        "address": address, "query": query, "timeout": "3s"}}}]
    return document


def counters(status: dict[str, Any]) -> dict[str, Any]:
    return dict(((status.get("rollout") or {}).get("metrics") or {}).get(METRIC) or {})


def wait_status(cluster: LocalCluster, namespace: str, predicate: Any, message: str,
                timeout: float = 180) -> dict[str, Any]:
    try:
        body = wait_for(lambda: (lambda b: b if predicate(b.get("status") or {}) else None)(mdep(cluster, namespace)),
                        timeout=timeout, interval=0.5, message=message)
    except AssertionError as timed_out:
        # What the rollout and its children looked like when it did not get there.
        state = json.dumps(mdep(cluster, namespace).get("status"), indent=1)
        children = cluster.kubectl("get", "deployments,pods", "-n", namespace, "-o", "wide", check=False).stdout
        raise AssertionError(f"{timed_out}\nstatus: {state}\n{children}") from None
    assert isinstance(body, dict)
    return body


def instant(prometheus: str, query: str) -> list[dict[str, Any]]:
    url = f"{prometheus}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    with urllib.request.urlopen(url, timeout=5) as response:
        result: list[dict[str, Any]] = json.loads(response.read())["data"]["result"]
    return result


@pytest.fixture
def measured_prometheus(prometheus: str, cluster: LocalCluster) -> Iterator[str]:
    """The session's Prometheus, back and answering after the test whatever the test did to it."""
    yield prometheus
    replicas = kubectl_json(cluster, "get", "deployment", "prometheus", "-n", "monitoring")["spec"]["replicas"]
    if replicas != 1:
        cluster.install_prometheus()  # applies the addon again (1 replica) and waits until it answers



def test_prometheus_stopped_mid_analysis_is_errors_then_a_metrics_unavailable_rollback_to_a_whole_stable(
    cluster: LocalCluster, operator: OperatorProcess, namespace: str, measured_prometheus: str, start: Start
) -> None:
    first = start.body
    # A step without a pause waits for a promote request: analysis runs on while it holds.
    document = prometheus_rollout(measured_prometheus, readme_queries()[0],
                                  steps=[{"weight": 50}, {"weight": 100}], consecutiveErrorLimit=1)
    with Load(cluster, namespace, rate=10, seconds=240) as load:
        apply(cluster, namespace, document)
        wait_status(cluster, namespace, lambda s: s.get("phase") == "Paused"
                    and counters(s).get("successesAtStep", 0) >= 1, "the canary paused on Prometheus's evidence")
        stopped = time.monotonic()
        cluster.kubectl("scale", "deployment", "prometheus", "-n", "monitoring", "--replicas=0")
        errored = wait_status(cluster, namespace, lambda s: counters(s).get("consecutiveErrors", 0) >= 1,
                              "a provider error", timeout=60)
        body = wait_phase(cluster, namespace, "RolledBack", timeout=180)
        rolled_back = time.monotonic()
    print(f"Prometheus stopped -> rolled back: {rolled_back - stopped:.1f} s; requests {load.codes()}")
    last = counters(errored["status"])["measurements"][-1]
    print(f"  the error: {last.get('message')}")
    assert last["verdict"] == "Error" and measured_prometheus in last["message"]
    status = body["status"]
    aborted = status["rollout"]["aborted"]
    assert aborted["reason"] == "MetricsUnavailable", aborted
    assert METRIC in aborted["message"] and "provider errors in a row" in aborted["message"]
    assert (condition(body, "Ready")["status"], condition(body, "Ready")["reason"]) == ("False", "MetricsUnavailable")
    assert status["stableRevision"] == first["status"]["revision"] and "canaryRevision" not in status
    # stable whole and serving, the canary gone; no request was lost while it happened
    stable = wait_for(lambda: (lambda d: d if (d.get("status") or {}).get("readyReplicas") == 2 else None)(
        kubectl_json(cluster, "get", "deployment", "iris-stable", "-n", namespace)), timeout=60,
        message="stable at full size")
    assert stable["spec"]["replicas"] == 2
    assert wait_for(lambda: deployments(cluster, namespace) == ["iris-stable"], timeout=60)
    assert min(count for at, count in load.capacity if at >= stopped) >= 2


def test_an_empty_prometheus_answer_on_a_live_canary_under_load_is_never_a_pass_and_the_deadline_aborts(
    cluster: LocalCluster, operator: OperatorProcess, namespace: str, prometheus: str, start: Start
) -> None:
    # The 5XX count alone: a healthy TorchServe writes no Requests5XX series, so the answer is an empty
    # vector however many requests succeed.
    labels = ('namespace="{{namespace}}", modeldeploy_dev_deployment="{{name}}", '
              'modeldeploy_dev_role="{{role}}", modeldeploy_dev_revision="{{revision}}"')
    errors_only = f"sum(increase(Requests5XX{{{labels}}}[{{{{interval}}}}]))"
    requests = f"sum(increase(ts_inference_requests_total{{{labels}}}[{{{{interval}}}}]))"
    document = prometheus_rollout(prometheus, errors_only, deadline=45)
    with Load(cluster, namespace, rate=12, seconds=240) as load:
        apply(cluster, namespace, document)
        started = wait_status(cluster, namespace, lambda s: s.get("canaryRevision"), "the canary to start")
        revision = started["status"]["canaryRevision"]
        filled = {"namespace": namespace, "name": "iris", "role": "canary", "revision": revision,
                  "interval": "30s"}
        # The canary is live: Prometheus counts its requests, and the metric still answers nothing.
        wait_for(lambda: any(float(r["value"][1]) > 0 for r in instant(prometheus, fill(requests, filled))),
                 timeout=120, message="Prometheus counting the canary's requests")
        assert instant(prometheus, fill(errors_only, filled)) == []
        body = wait_phase(cluster, namespace, "RolledBack", timeout=120)
    status = body["status"]
    aborted = status["rollout"]["aborted"]
    print(f"aborted: {aborted['message']}; requests {load.codes()}")
    assert aborted["reason"] == "InsufficientData", aborted
    assert f"no Successful measurement of {METRIC}" in aborted["message"]
    measured = counters(status)
    verdicts = [m["verdict"] for m in measured.get("measurements") or []]
    assert verdicts and set(verdicts) == {"Inconclusive"}, measured
    assert measured.get("successesAtStep", 0) == 0 and status["rollout"].get("stepIndex", 0) == 0
    reasons = {e["reason"] for e in events(cluster, namespace, start.since)}
    assert "InsufficientData" in reasons and "Promoting" not in reasons and "Promoted" not in reasons


def test_the_readmes_prometheus_query_rolls_back_a_faulty_version_then_passes_and_promotes_a_good_one(
    cluster: LocalCluster, operator: OperatorProcess, namespace: str, prometheus: str, start: Start
) -> None:
    first = start.body
    error_rate = readme_queries()[0]
    with Load(cluster, namespace, rate=12, seconds=300) as load, StatusLine(cluster, namespace) as line:
        # The query sees errors: the faulty version (30 % answered 503) is failed on Prometheus's numbers.
        faulty_at = time.monotonic()
        apply(cluster, namespace, prometheus_rollout(prometheus, error_rate, name="faulty"))
        rolled_back = wait_phase(cluster, namespace, "RolledBack", timeout=180)
        print(f"faulty: apply -> rolled back by Prometheus: {time.monotonic() - faulty_at:.1f} s")
        aborted = rolled_back["status"]["rollout"]["aborted"]
        print(f"  {aborted['message']}")
        assert aborted["reason"] == "AnalysisFailed", aborted
        assert f"{METRIC} = 0." in aborted["message"] and "above max 0.01" in aborted["message"]
        assert rolled_back["status"]["stableRevision"] == first["status"]["revision"]
        faulty_revision = rolled_back["status"]["revision"]
        wait_for(lambda: deployments(cluster, namespace) == ["iris-stable"], timeout=60, message="canary gone")
        line.lines.clear()

        applied = time.monotonic()
        apply(cluster, namespace, prometheus_rollout(prometheus, error_rate))
        seen: dict[str, dict[str, Any]] = {}

        def promoted(status: dict[str, Any]) -> bool:
            if status.get("canaryRevision") not in (None, faulty_revision):  # v2's own measurements only
                for measurement in counters(status).get("measurements") or []:
                    seen[json.dumps(measurement, sort_keys=True)] = measurement
            return status.get("phase") == "Healthy" and status.get("stableRevision") != first["status"]["revision"]

        body = wait_status(cluster, namespace, promoted, "v2 promoted", timeout=240)
        promoted_at = time.monotonic()
    status = body["status"]
    print(f"apply -> promoted by Prometheus: {promoted_at - applied:.1f} s; requests {load.codes()}")
    measurements = sorted(seen.values(), key=lambda m: str(m["at"]))
    for measurement in measurements:
        print(f"  {measurement['at']} {measurement['verdict']:12} weight={measurement['weight']} "
              f"{measurement.get('message', '')}")

    assert status["stableRevision"] == status["revision"] and "canaryRevision" not in status
    assert line.weights() == [50, 100]
    # Prometheus's answers were the evidence: a finite value within bounds, at each step's weight
    successful = [m for m in measurements if m["verdict"] == "Successful" and "not evidence" not in m["message"]]
    assert successful and {m["weight"] for m in successful} <= {50, 100}, measurements
    assert all(m.get("value", 1.0) <= 0.01 for m in successful)
    reasons = {e["reason"] for e in events(cluster, namespace, start.since)}
    assert {"Promoting", "Promoted"} <= reasons and "MetricsUnavailable" not in reasons
    # the faulty version's own 503s, and nothing else: no request was lost to missing capacity
    assert set(load.codes()) <= {200, 503}, load.failures(faulty_at)
    assert set(load.codes(since=applied)) == {200}, load.failures(applied)
    assert wait_for(lambda: deployments(cluster, namespace) == ["iris-stable"], timeout=60)


def fill(query: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        query = query.replace("{{" + key + "}}", value)
    return query
