"""The operator's metrics, read back from the exposition the way Prometheus reads them."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Mapping
from typing import Any

import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from memory_cluster import MemoryCluster
from modeldeploy.api.events import Event, EventReason
from modeldeploy.observability import OperatorMetrics, serve_metrics
from modeldeploy.reconcile import reconcile_and_report
from modeldeploy.settings import OperatorIdentity
from support import REPO

OPERATOR = OperatorIdentity(image="registry.example/modeldeploy-operator:0.1.0")

Labels = Mapping[str, str]


def samples(metrics: OperatorMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = generate_latest(metrics.registry).decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(metrics: OperatorMetrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, frozenset(labels.items())))


def iris(metrics: OperatorMetrics, name: str, **labels: str) -> float | None:
    """A per-object sample of the ModelDeployment ml/iris."""
    return value(metrics, name, namespace="ml", modeldeployment="iris", **labels)


def canary_status(*, weight: int = 20, effective: int = 10, step: int = 1, phase: str = "Progressing",
                  **rollout: Any) -> dict[str, Any]:
    return {
        "phase": phase,
        "rollout": {
            "stableRevision": "aaaa", "canaryRevision": "bbbb", "stepIndex": step, "weight": weight,
            "effectiveWeight": effective,
            "metrics": {"error-rate": {"measurements": [
                {"at": "2026-01-01T00:00:00Z", "verdict": "Successful", "value": 0.5, "weight": 10},
                {"at": "2026-01-01T00:01:00Z", "verdict": "Failed", "value": 7.5, "weight": 10}]}},
            **rollout,
        },
    }


def test_a_canary_reconcile_shows_phase_weights_step_and_the_last_analysis() -> None:
    metrics = OperatorMetrics()
    metrics.record_reconcile("ml", "iris", seconds=0.2, result="written", status=canary_status())

    assert iris(metrics, "modeldeploy_phase", phase="Progressing") == 1
    assert iris(metrics, "modeldeploy_phase", phase="Healthy") == 0
    assert iris(metrics, "modeldeploy_canary_weight_ratio", kind="desired") == 0.2
    assert iris(metrics, "modeldeploy_canary_weight_ratio", kind="effective") == 0.1
    assert iris(metrics, "modeldeploy_canary_step") == 1
    assert iris(metrics, "modeldeploy_analysis_value", metric="error-rate") == 7.5
    assert iris(metrics, "modeldeploy_analysis_verdict", metric="error-rate",
                 verdict="Failed") == 1
    assert iris(metrics, "modeldeploy_analysis_verdict", metric="error-rate",
                 verdict="Successful") == 0
    assert value(metrics, "modeldeploy_reconcile_duration_seconds_count", result="written") == 1
    assert value(metrics, "modeldeploy_reconcile_duration_seconds_sum", result="written") == 0.2


def test_weights_drop_to_zero_when_the_canary_ends() -> None:
    metrics = OperatorMetrics()
    metrics.record_reconcile("ml", "iris", seconds=0.1, result="written", status=canary_status())
    done = {"phase": "Healthy", "rollout": {"stableRevision": "bbbb", "stepIndex": 0, "weight": 0,
                                           "effectiveWeight": 0, "metrics": {}}}
    metrics.record_reconcile("ml", "iris", seconds=0.1, result="written", status=done)
    assert iris(metrics, "modeldeploy_canary_weight_ratio", kind="effective") == 0
    assert iris(metrics, "modeldeploy_canary_active") == 0
    assert iris(metrics, "modeldeploy_phase", phase="Healthy") == 1
    assert iris(metrics, "modeldeploy_phase", phase="Progressing") == 0


def test_rollbacks_and_promotions_count_once_per_event_with_their_reason() -> None:
    metrics = OperatorMetrics()
    rollback = Event("Warning", EventReason("AnalysisFailed"), "revision bbbb rolled back to aaaa: error-rate 7.5 > 1")
    metrics.record_reconcile("ml", "iris", seconds=0.1, result="written", status=canary_status(), events=[rollback])
    metrics.record_reconcile("ml", "iris", seconds=0.1, result="settled", status=canary_status())
    promoted = Event("Normal", EventReason("Promoted"), "revision cccc is stable at full size")
    by_user = canary_status(lastRequest={"action": "promote", "revision": "cccc", "at": "x"})
    metrics.record_reconcile("ml", "iris", seconds=0.1, result="written", status=by_user, events=[promoted])
    metrics.record_reconcile("ml", "iris", seconds=0.1, result="written", status=canary_status(), events=[promoted])

    assert iris(metrics, "modeldeploy_rollbacks_total", reason="AnalysisFailed") == 1
    assert iris(metrics, "modeldeploy_promotions_total", reason="UserRequest") == 1
    assert iris(metrics, "modeldeploy_promotions_total", reason="Analysis") == 1
    # Other Events are neither.
    metrics.record_events("ml", "iris", [Event("Normal", EventReason("CanaryStep"), "step 2")])
    assert sum(v for (name, _), v in samples(metrics).items() if name == "modeldeploy_rollbacks_total") == 1


def test_errors_are_counted_by_kind_and_every_reconcile_stamps_the_time() -> None:
    metrics = OperatorMetrics()
    metrics.record_reconcile("ml", "iris", seconds=1.5, result="error", error="KubeApiError")
    assert value(metrics, "modeldeploy_reconcile_errors_total", error="KubeApiError") == 1
    assert value(metrics, "modeldeploy_reconcile_duration_seconds_count", result="error") == 1
    stamp = value(metrics, "modeldeploy_last_reconcile_timestamp_seconds")
    assert stamp is not None and stamp > 1.7e9


def reconcile_a_build(metrics: OperatorMetrics, result: dict[str, Any]) -> dict[str, Any]:
    """The sample's first reconciles against an in-memory cluster: the build Job starts, finishes with
    `result`, and its archive is recorded; each reconcile is fed to `metrics` as the handler feeds it."""
    cluster = MemoryCluster()
    cluster.claims |= {("ml", "models"), ("ml", "model-store")}
    body = yaml.safe_load((REPO / "manifests/samples/iris.yaml").read_text())
    body["metadata"]["namespace"] = "ml"
    cluster.create(body)

    def once() -> None:
        report = asyncio.run(reconcile_and_report(cluster.body("ml", "iris"), cluster, OPERATOR))
        assert report.outcome is not None
        metrics.record_reconcile("ml", "iris", seconds=0.1, result="written" if report.written else "settled",
                                 status={**report.outcome.status.render(),
                                         "phase": report.outcome.verdict.phase.value},
                                 events=report.outcome.notes if report.written else ())

    once()
    job = next(name for (_, kind, _, name) in cluster.children.objects if kind == "Job")
    cluster.children.finish_job("ml", job, succeeded=True, message=json.dumps(result))
    once()
    once()
    archive: dict[str, Any] = cluster.body("ml", "iris")["status"]["archive"]
    return archive


BUILD_RESULT = {"inputsDigest": "a" * 64, "sha256": "b" * 64, "uri": "file:///store/" + "a" * 64 + "/iris.mar",
                "format": "zip-store", "bytes": 14694, "seconds": 42.5, "reused": False}


def test_a_built_archive_is_counted_and_its_build_time_observed_once() -> None:
    metrics = OperatorMetrics()

    archive = reconcile_a_build(metrics, BUILD_RESULT)

    assert archive["buildSeconds"] == 42.5  # users see it in the status too
    assert value(metrics, "modeldeploy_archive_builds_total", result="built") == 1
    assert not value(metrics, "modeldeploy_archive_builds_total", result="reused")
    assert value(metrics, "modeldeploy_archive_build_duration_seconds_count") == 1
    assert value(metrics, "modeldeploy_archive_build_duration_seconds_sum") == 42.5
    assert value(metrics, "modeldeploy_archive_build_duration_seconds_bucket", le="30.0") == 0
    assert value(metrics, "modeldeploy_archive_build_duration_seconds_bucket", le="60.0") == 1


def test_a_reused_archive_is_counted_as_reused_without_a_build_time() -> None:
    metrics = OperatorMetrics()

    reconcile_a_build(metrics, {**BUILD_RESULT, "seconds": 0.8, "reused": True})

    assert value(metrics, "modeldeploy_archive_builds_total", result="reused") == 1
    assert not value(metrics, "modeldeploy_archive_builds_total", result="built")
    assert value(metrics, "modeldeploy_archive_build_duration_seconds_count") == 0


def test_a_build_result_without_a_time_counts_the_build_and_observes_nothing() -> None:
    metrics = OperatorMetrics()

    archive = reconcile_a_build(metrics, {k: v for k, v in BUILD_RESULT.items() if k != "seconds"})

    assert "buildSeconds" not in archive
    assert value(metrics, "modeldeploy_archive_builds_total", result="built") == 1
    assert value(metrics, "modeldeploy_archive_build_duration_seconds_count") == 0


def test_a_deleted_object_leaves_no_series_behind() -> None:
    metrics = OperatorMetrics()
    rollback = Event("Warning", EventReason("ProgressDeadlineExceeded"), "rolled back")
    metrics.record_reconcile("ml", "iris", seconds=0.1, result="written", status=canary_status(), events=[rollback])
    metrics.record_reconcile("ml", "other", seconds=0.1, result="written", status=canary_status())
    metrics.forget("ml", "iris")
    left = {dict(labels).get("modeldeployment") for (_, labels) in samples(metrics)}
    assert "iris" not in left
    assert "other" in left


def test_metric_names_follow_prometheus_conventions() -> None:
    metrics = OperatorMetrics()
    metrics.record_reconcile("ml", "iris", seconds=0.1, result="written", status=canary_status(),
                             events=[Event("Warning", EventReason("AnalysisFailed"), "x")])
    text = generate_latest(metrics.registry).decode()
    for family in text_string_to_metric_families(text):
        assert family.name.startswith("modeldeploy_")
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples)
        if family.type == "histogram":
            assert family.name.endswith("_seconds")


def test_the_metrics_endpoint_serves_the_exposition_format() -> None:
    metrics = OperatorMetrics()
    metrics.record_reconcile("ml", "iris", seconds=0.1, result="written", status=canary_status())
    port = serve_metrics("127.0.0.1", 0, metrics)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    names = {s.name for family in text_string_to_metric_families(text) for s in family.samples}
    assert "modeldeploy_canary_weight_ratio" in names


def test_each_object_has_its_last_reconcile_and_its_last_progress_apart() -> None:
    """A reconcile that writes is progress; one that changes nothing stamps the reconcile only, so the two
    drift apart while a rollout does not move (the stuck-rollout alert reads the gap)."""
    metrics = OperatorMetrics()
    metrics.record_reconcile("ml", "iris", seconds=0.1, result="written", status=canary_status())
    progressed = iris(metrics, "modeldeploy_progress_timestamp_seconds")
    reconciled = iris(metrics, "modeldeploy_reconcile_timestamp_seconds")
    assert progressed is not None and reconciled is not None and progressed > 1.7e9
    metrics.record_reconcile("ml", "iris", seconds=0.1, result="settled", status=canary_status())
    later = iris(metrics, "modeldeploy_reconcile_timestamp_seconds")
    assert later is not None and later >= reconciled
    assert iris(metrics, "modeldeploy_progress_timestamp_seconds") == progressed
    assert value(metrics, "modeldeploy_reconcile_timestamp_seconds", namespace="ml", modeldeployment="other") is None


def test_after_a_restart_the_last_progress_comes_from_the_status() -> None:
    metrics = OperatorMetrics()
    metrics.record_reconcile("ml", "iris", seconds=0.1, result="settled",
                             status={**canary_status(), "lastProgressTime": "2026-01-01T00:01:00Z"})
    assert iris(metrics, "modeldeploy_progress_timestamp_seconds") == 1767225660.0
    metrics.record_reconcile("ml", "iris", seconds=0.1, result="settled",
                             status={**canary_status(), "lastProgressTime": "not a time"})
    assert iris(metrics, "modeldeploy_progress_timestamp_seconds") == 1767225660.0
    metrics.forget("ml", "iris")
    assert iris(metrics, "modeldeploy_progress_timestamp_seconds") is None



def test_a_golden_set_metric_shows_the_canarys_value_and_stables_beside_it() -> None:
    metrics = OperatorMetrics()
    quality = {"quality": {"measurements": [{"at": "2026-01-01T00:00:00Z", "verdict": "Failed", "value": 0.651,
                                             "stableValue": 0.973, "requests": 1000, "weight": 0}]}}
    metrics.record_reconcile("ml", "iris", seconds=0.1, result="written",
                             status=canary_status(weight=0, effective=0, step=0, metrics=quality))

    assert iris(metrics, "modeldeploy_analysis_value", metric="quality") == 0.651
    assert iris(metrics, "modeldeploy_analysis_stable_value", metric="quality") == 0.973
    metrics.forget("ml", "iris")
    assert iris(metrics, "modeldeploy_analysis_stable_value", metric="quality") is None
