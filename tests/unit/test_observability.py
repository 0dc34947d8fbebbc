"""The operator's metrics, read back from the exposition the way Prometheus reads them."""

from __future__ import annotations

import urllib.request
from collections.abc import Mapping
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from modeldeploy.api.conditions import EventNote
from modeldeploy.observability import OperatorMetrics, serve_metrics

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
    rollback = EventNote("Warning", "AnalysisFailed", "revision bbbb rolled back to aaaa: error-rate 7.5 > 1")
    metrics.record_reconcile("ml", "iris", seconds=0.1, result="written", status=canary_status(), events=[rollback])
    metrics.record_reconcile("ml", "iris", seconds=0.1, result="settled", status=canary_status())
    promoted = EventNote("Normal", "Promoted", "revision cccc is stable at full size")
    by_user = canary_status(lastRequest={"action": "promote", "revision": "cccc", "at": "x"})
    metrics.record_reconcile("ml", "iris", seconds=0.1, result="written", status=by_user, events=[promoted])
    metrics.record_reconcile("ml", "iris", seconds=0.1, result="written", status=canary_status(), events=[promoted])

    assert iris(metrics, "modeldeploy_rollbacks_total", reason="AnalysisFailed") == 1
    assert iris(metrics, "modeldeploy_promotions_total", reason="UserRequest") == 1
    assert iris(metrics, "modeldeploy_promotions_total", reason="Analysis") == 1
    # Other Events are neither.
    metrics.record_events("ml", "iris", [EventNote("Normal", "CanaryStep", "step 2")])
    assert sum(v for (name, _), v in samples(metrics).items() if name == "modeldeploy_rollbacks_total") == 1


def test_errors_are_counted_by_kind_and_every_reconcile_stamps_the_time() -> None:
    metrics = OperatorMetrics()
    metrics.record_reconcile("ml", "iris", seconds=1.5, result="error", error="KubeApiError")
    assert value(metrics, "modeldeploy_reconcile_errors_total", error="KubeApiError") == 1
    assert value(metrics, "modeldeploy_reconcile_duration_seconds_count", result="error") == 1
    stamp = value(metrics, "modeldeploy_last_reconcile_timestamp_seconds")
    assert stamp is not None and stamp > 1.7e9


def test_archive_builds_count_built_and_reused_and_time_the_job() -> None:
    metrics = OperatorMetrics()
    ready = EventNote("Normal", "ArchiveReady", "Archive 1234 built")
    metrics.record_events("ml", "iris", [ready], {"archive": {"reused": False}})
    metrics.record_events("ml", "iris", [ready], {"archive": {"reused": True}})
    metrics.record_archive_build_duration(42.0)
    assert value(metrics, "modeldeploy_archive_builds_total", result="built") == 1
    assert value(metrics, "modeldeploy_archive_builds_total", result="reused") == 1
    assert value(metrics, "modeldeploy_archive_build_duration_seconds_sum") == 42.0
    assert value(metrics, "modeldeploy_archive_build_duration_seconds_bucket", le="60.0") == 1


def test_a_deleted_object_leaves_no_series_behind() -> None:
    metrics = OperatorMetrics()
    rollback = EventNote("Warning", "ProgressDeadlineExceeded", "rolled back")
    metrics.record_reconcile("ml", "iris", seconds=0.1, result="written", status=canary_status(), events=[rollback])
    metrics.record_reconcile("ml", "other", seconds=0.1, result="written", status=canary_status())
    metrics.forget("ml", "iris")
    left = {dict(labels).get("modeldeployment") for (_, labels) in samples(metrics)}
    assert "iris" not in left
    assert "other" in left


def test_metric_names_follow_prometheus_conventions() -> None:
    metrics = OperatorMetrics()
    metrics.record_reconcile("ml", "iris", seconds=0.1, result="written", status=canary_status(),
                             events=[EventNote("Warning", "AnalysisFailed", "x")])
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
