"""The reconcile chain against an in-memory cluster: each step's early return, the settled verdict, a
conflict on the status write, a missing reference. No kopf, no API server: each case runs in milliseconds."""

from __future__ import annotations

import asyncio
import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from memory_cluster import MemoryCluster
from modeldeploy.api.conditions import format_time
from modeldeploy.api.revision import build_key_of
from modeldeploy.api.spec import Metric, parse
from modeldeploy.canary.decide import Measurement
from modeldeploy.canary.verdicts import Sample
from modeldeploy.k8s import ChildJobs
from modeldeploy.metrics import OperatorAccess, Providers, Target, build_providers
from modeldeploy.reconcile import Report, reconcile_and_report
from modeldeploy.settings import OperatorIdentity
from support import REPO

NS, NAME = "ml", "iris"
OPERATOR = OperatorIdentity(image="registry.example/modeldeploy-operator:0.1.0")
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
RESULT = {"inputsDigest": "a" * 64, "sha256": "b" * 64, "uri": "file:///store/" + "a" * 64 + "/iris.mar",
          "format": "zip-store", "bytes": 14694, "reused": False, "warnings": ["no requirements file"]}


def sample() -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load((REPO / "manifests/samples/iris.yaml").read_text())
    body["metadata"]["namespace"] = NS
    return body


@pytest.fixture
def cluster() -> MemoryCluster:
    memory = MemoryCluster()
    memory.claims |= {(NS, "models"), (NS, "model-store")}
    memory.create(sample())
    return memory


def run(cluster: MemoryCluster) -> Report:
    """One reconcile of the stored object, as a handler would run it."""
    return asyncio.run(reconcile_and_report(cluster.body(NS, NAME), cluster, OPERATOR, now=lambda: NOW))


def status(cluster: MemoryCluster) -> dict[str, Any]:
    return dict(cluster.body(NS, NAME).get("status") or {})


def condition(cluster: MemoryCluster, kind: str) -> dict[str, Any]:
    return next(c for c in status(cluster)["conditions"] if c["type"] == kind)


def build_job_name() -> str:
    return f"{NAME}-build-{build_key_of(parse(sample()).spec).short}"


def built(cluster: MemoryCluster) -> None:
    """The first reconcile starts the build Job; the Job controller then finishes it with RESULT."""
    run(cluster)
    cluster.children.finish_job(NS, build_job_name(), succeeded=True, message=json.dumps(RESULT))


def served(cluster: MemoryCluster) -> None:
    """Built, then the stable Deployment applied and rolled out."""
    built(cluster)
    run(cluster)
    cluster.children.roll_out(NS, f"{NAME}-stable")


def test_a_missing_claim_stops_the_chain_naming_the_field(cluster: MemoryCluster) -> None:
    cluster.claims.discard((NS, "models"))

    report = run(cluster)

    assert report.outcome is not None and report.outcome.verdict.requeue_after is None
    assert status(cluster)["phase"] == "Pending"
    ready = condition(cluster, "Ready")
    assert ready["reason"] == "ReferenceNotFound"
    assert 'PersistentVolumeClaim "models" (spec.model.serializedFile.uri)' in ready["message"]
    assert cluster.children.writes == []


def test_a_secret_the_operator_may_not_read_does_not_stop_the_chain() -> None:
    cluster = MemoryCluster(secrets_visible=False)
    cluster.claims |= {(NS, "models"), (NS, "model-store")}
    body = sample()
    body["spec"]["model"]["sourceSecretRef"] = {"name": "source-credentials"}
    cluster.create(body)

    run(cluster)

    assert status(cluster)["phase"] == "Building"


def test_an_invalid_spec_fails_without_touching_the_children(cluster: MemoryCluster) -> None:
    cluster.update_spec(NS, NAME, lambda spec: spec["serving"].update(replicas=0))

    run(cluster)

    assert status(cluster)["phase"] == "Failed"
    assert condition(cluster, "Ready")["reason"] == "InvalidSpec"
    assert "spec.serving.replicas" in condition(cluster, "Ready")["message"]
    assert cluster.children.writes == []


def test_the_first_reconcile_starts_the_build_job_and_looks_again_soon(cluster: MemoryCluster) -> None:
    report = run(cluster)

    assert report.outcome is not None and report.outcome.verdict.requeue_after == 2.0
    assert cluster.children.writes == [("apply", "Job", build_job_name())]
    assert status(cluster)["phase"] == "Building"
    assert status(cluster)["revision"] == report.outcome.status.revision
    assert "stableRevision" not in status(cluster)


def test_a_running_build_keeps_the_chain_at_the_archive_step(cluster: MemoryCluster) -> None:
    run(cluster)

    run(cluster)

    assert cluster.children.writes == [("apply", "Job", build_job_name())]
    assert status(cluster)["phase"] == "Building"


def test_a_failed_build_stops_the_chain_with_the_builds_reason(cluster: MemoryCluster) -> None:
    run(cluster)
    refusal = {"reason": "InputRefused", "message": "handler: /sources/models/iris/handler.py does not exist"}
    cluster.children.finish_job(NS, build_job_name(), succeeded=False, message=json.dumps(refusal))

    report = run(cluster)

    assert report.outcome is not None and report.outcome.verdict.requeue_after is None
    assert status(cluster)["phase"] == "Failed"
    ready = condition(cluster, "Ready")
    assert ready["reason"] == "ArchiveBuildFailed"
    assert "InputRefused" in ready["message"] and "handler.py does not exist" in ready["message"]


def test_a_built_archive_is_recorded_and_serving_starts(cluster: MemoryCluster) -> None:
    built(cluster)

    report = run(cluster)

    archive = status(cluster)["archive"]
    assert archive["sha256"] == "b" * 64 and archive["uri"] == "pvc://model-store/" + "a" * 64 + "/iris.mar"
    assert status(cluster)["phase"] == "Deploying"
    assert status(cluster)["stableRevision"] == status(cluster)["revision"]
    assert condition(cluster, "ArchiveReady")["status"] == "True"
    kinds = [kind for verb, kind, _ in cluster.children.writes if verb == "apply"]
    assert kinds == ["Job", "ConfigMap", "NetworkPolicy", "Deployment", "PodDisruptionBudget",
                     "Service", "Service", "Service"]
    assert [(e.type, e.reason) for e in report.events][-2:] == [("Normal", "ArchiveReady"),
                                                                ("Warning", "ArchiveWarning")]


def test_a_pod_failing_the_digest_check_degrades_the_deployment(cluster: MemoryCluster) -> None:
    built(cluster)
    run(cluster)
    mismatch = {"initContainerStatuses": [{"name": "verify-archive", "state": {"terminated": {
        "exitCode": 1, "message": "sha256 mismatch: expected bbbb, got cccc"}}}]}
    cluster.children.start_pods(NS, f"{NAME}-stable", 1, lambda _: mismatch)

    report = run(cluster)

    assert report.outcome is not None and report.outcome.verdict.requeue_after == 10.0
    assert status(cluster)["phase"] == "Degraded"
    assert condition(cluster, "Ready")["reason"] == "DigestMismatch"
    assert "sha256 mismatch" in condition(cluster, "Ready")["message"]


def test_a_pod_whose_store_refuses_its_credentials_says_so_and_not_digest_mismatch(cluster: MemoryCluster) -> None:
    built(cluster)
    run(cluster)
    refused = {"initContainerStatuses": [{"name": "verify-archive", "state": {"terminated": {
        "exitCode": 3, "message": "modeldeploy archive verify: ACCESS DENIED: s3://b/k: the store refused the "
                                  "credentials (InvalidAccessKeyId)"}}}]}
    cluster.children.start_pods(NS, f"{NAME}-stable", 1, lambda _: refused)

    run(cluster)

    assert status(cluster)["phase"] == "Degraded"
    assert condition(cluster, "Ready")["reason"] == "StoreCredentialsRefused"
    assert "secretRef" in condition(cluster, "Ready")["message"]
    assert "InvalidAccessKeyId" in condition(cluster, "Ready")["message"]


def test_a_model_that_fails_to_load_is_named_from_the_pod_log(cluster: MemoryCluster) -> None:
    built(cluster)
    run(cluster)
    loading = {"containerStatuses": [{"name": "torchserve", "ready": False, "state": {"running": {}}}]}
    cluster.children.start_pods(NS, f"{NAME}-stable", 1, lambda _: loading)
    cluster.children.logs[(NS, f"{NAME}-stable-0", "torchserve")] = (
        "2026-01-01T00:00:00,000 [INFO ] W-9000 MODEL_LOG - Failed to load model iris, exception boom")

    run(cluster)

    assert condition(cluster, "Ready")["reason"] == "ModelLoadFailed"
    assert "Failed to load model iris, exception boom" in condition(cluster, "Ready")["message"]


def test_a_rolled_out_deployment_settles_the_chain_healthy(cluster: MemoryCluster) -> None:
    served(cluster)

    report = run(cluster)

    assert report.outcome is not None and report.outcome.verdict.requeue_after is None
    assert status(cluster)["phase"] == "Healthy"
    assert condition(cluster, "Ready")["status"] == "True"
    assert status(cluster)["observedGeneration"] == 1


def test_a_settled_object_is_neither_written_nor_its_children(cluster: MemoryCluster) -> None:
    served(cluster)
    run(cluster)
    writes, status_writes = list(cluster.children.writes), cluster.status_writes

    report = run(cluster)

    assert not report.written and report.events == ()
    assert cluster.children.writes == writes
    assert cluster.status_writes == status_writes


def test_a_status_write_says_when_and_a_reconcile_that_changes_nothing_keeps_the_time(cluster: MemoryCluster) -> None:
    served(cluster)
    assert run_at(cluster, 30).written
    assert status(cluster)["lastProgressTime"] == format_time(NOW + timedelta(seconds=30))

    assert not run_at(cluster, 90).written
    assert status(cluster)["lastProgressTime"] == format_time(NOW + timedelta(seconds=30))


def test_turning_the_network_policy_off_removes_the_one_we_created_once(cluster: MemoryCluster) -> None:
    served(cluster)
    policy = ("networking.k8s.io/v1", "NetworkPolicy", NS, NAME)
    assert asyncio.run(cluster.children.get(*policy)) is not None

    cluster.update_spec(NS, NAME, lambda spec: spec.setdefault("serving", {}).update(networkPolicy={"enabled": False}))
    run(cluster)

    assert asyncio.run(cluster.children.get(*policy)) is None
    assert ("delete", "NetworkPolicy", NAME) in cluster.children.writes
    writes = list(cluster.children.writes)
    run(cluster)
    assert cluster.children.writes == writes


def test_a_network_policy_of_the_same_name_not_ours_is_left_alone(cluster: MemoryCluster) -> None:
    cluster.update_spec(NS, NAME, lambda spec: spec.setdefault("serving", {}).update(networkPolicy={"enabled": False}))
    theirs = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
              "metadata": {"name": NAME, "namespace": NS}, "spec": {"podSelector": {}}}
    cluster.children.put(theirs)

    served(cluster)
    run(cluster)

    assert asyncio.run(cluster.children.get("networking.k8s.io/v1", "NetworkPolicy", NS, NAME)) == theirs
    assert not [w for w in cluster.children.writes if w[1] == "NetworkPolicy"]


def test_once_served_the_config_maps_of_earlier_revisions_are_removed(cluster: MemoryCluster) -> None:
    served(cluster)
    earlier = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": f"{NAME}-0123456789", "namespace": NS, "labels": {
            "app.kubernetes.io/managed-by": "modeldeploy", "modeldeploy.dev/deployment": NAME,
            "modeldeploy.dev/revision": "0123456789"}}}
    cluster.children.put(earlier)

    run(cluster)

    assert ("delete", "ConfigMap", f"{NAME}-0123456789") in cluster.children.writes
    remaining = asyncio.run(cluster.children.list("v1", "ConfigMap", NS, "modeldeploy.dev/revision"))
    assert [c["metadata"]["name"] for c in remaining] == [f"{NAME}-{status(cluster)['revision']}"]


def test_a_conflicting_status_write_is_decided_again_on_the_fresh_object(cluster: MemoryCluster) -> None:
    served(cluster)
    # A user scales while the operator decides: its write, made on generation 1, must not land.
    cluster.before_status_write = lambda: cluster.update_spec(
        NS, NAME, lambda spec: spec["serving"].update(replicas=2))

    report = run(cluster)

    assert report.written and report.outcome is not None and report.outcome.generation == 2
    assert status(cluster)["observedGeneration"] == 2
    assert status(cluster)["phase"] == "Deploying"
    assert all(c["observedGeneration"] == 2 for c in status(cluster)["conditions"])


def test_an_object_deleted_before_the_status_write_reports_no_write(cluster: MemoryCluster) -> None:
    cluster.before_status_write = lambda: cluster.model_deployments.clear()

    report = run(cluster)

    assert not report.written and report.events == ()


def test_an_archive_of_the_current_build_key_is_not_built_again(cluster: MemoryCluster) -> None:
    served(cluster)
    run(cluster)
    # The finished Job is gone (ttlSecondsAfterFinished); status.archive still records its archive.
    cluster.children.objects = {k: v for k, v in cluster.children.objects.items() if k[1] != "Job"}

    run(cluster)

    assert [w for w in cluster.children.writes if w[1] == "Job"] == [("apply", "Job", build_job_name())]
    assert status(cluster)["phase"] == "Healthy"


def template_revision(cluster: MemoryCluster, deployment: str) -> str:
    found = asyncio.run(cluster.children.get("apps/v1", "Deployment", NS, deployment))
    assert found is not None
    return str(found["spec"]["template"]["metadata"]["labels"]["modeldeploy.dev/revision"])


def test_a_new_revision_starts_a_canary_beside_an_untouched_stable(cluster: MemoryCluster) -> None:
    served(cluster)
    run(cluster)
    stable_revision = status(cluster)["stableRevision"]
    stable_before = asyncio.run(cluster.children.get("apps/v1", "Deployment", NS, f"{NAME}-stable"))
    cluster.update_spec(NS, NAME, lambda spec: spec["serving"].update(image="pytorch/torchserve:0.12.0-gpu"))

    report = run(cluster)

    now = status(cluster)
    assert now["revision"] != stable_revision
    assert (now["phase"], now["stableRevision"], now["canaryRevision"]) == ("Progressing", stable_revision,
                                                                           now["revision"])
    assert now["rollout"]["canaryRevision"] == now["revision"] and now["rollout"]["weight"] == 25
    assert condition(cluster, "Ready")["status"] == "False"
    assert condition(cluster, "Progressing")["status"] == "True"
    assert asyncio.run(cluster.children.get("apps/v1", "Deployment", NS, f"{NAME}-stable")) == stable_before
    assert template_revision(cluster, f"{NAME}-canary") == now["revision"]
    canary = asyncio.run(cluster.children.get("apps/v1", "Deployment", NS, f"{NAME}-canary"))
    assert canary is not None and canary["spec"]["replicas"] == 1  # 25 % of 4
    configmaps = asyncio.run(cluster.children.list("v1", "ConfigMap", NS, "modeldeploy.dev/revision"))
    assert sorted(c["metadata"]["name"] for c in configmaps) == sorted(
        [f"{NAME}-{stable_revision}", f"{NAME}-{now['revision']}"])
    assert ("Normal", "CanaryStarted") in [(e.type, e.reason) for e in report.events]


READY_POD = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}


def test_the_spec_set_back_to_stable_removes_the_canary_at_once(cluster: MemoryCluster) -> None:
    served(cluster)
    cluster.children.start_pods(NS, f"{NAME}-stable", 4, lambda i: READY_POD)
    run(cluster)
    stable_revision = status(cluster)["stableRevision"]
    cluster.update_spec(NS, NAME, lambda spec: spec["serving"].update(image="pytorch/torchserve:0.12.0-gpu"))
    run(cluster)
    cluster.update_spec(NS, NAME, lambda spec: spec["serving"].update(image="pytorch/torchserve:0.12.0-cpu"))

    report = run(cluster)

    assert status(cluster)["revision"] == stable_revision
    assert "canaryRevision" not in status(cluster)
    assert ("Normal", "CanaryCancelled") in [(e.type, e.reason) for e in report.events]
    canary = asyncio.run(cluster.children.get("apps/v1", "Deployment", NS, f"{NAME}-canary"))
    assert canary is not None and canary["spec"]["replicas"] == 0  # stable is whole: the canary drains
    run(cluster)
    assert asyncio.run(cluster.children.get("apps/v1", "Deployment", NS, f"{NAME}-canary")) is None


def test_a_copy_of_the_object_older_than_the_stored_one_never_brings_a_removed_canary_back(
    cluster: MemoryCluster,
) -> None:
    """The watch's copy lags the API while handlers are busy: a reconcile handed the copy from before the
    spec went back to stable must act on the stored object, not re-create the canary it just removed."""
    served(cluster)
    cluster.children.start_pods(NS, f"{NAME}-stable", 4, lambda i: READY_POD)
    run(cluster)
    cluster.update_spec(NS, NAME, lambda spec: spec["serving"].update(image="pytorch/torchserve:0.12.0-gpu"))
    run(cluster)
    during_canary = copy.deepcopy(cluster.body(NS, NAME))  # what a lagging watch still holds
    cluster.update_spec(NS, NAME, lambda spec: spec["serving"].update(image="pytorch/torchserve:0.12.0-cpu"))
    run(cluster)
    run(cluster)  # stable is whole: the canary drained, then deleted
    assert asyncio.run(cluster.children.get("apps/v1", "Deployment", NS, f"{NAME}-canary")) is None
    writes = list(cluster.children.writes)

    report = asyncio.run(reconcile_and_report(during_canary, cluster, OPERATOR, now=lambda: NOW))

    assert report.behind_generation == during_canary["metadata"]["generation"]
    assert report.outcome is not None and report.outcome.generation == cluster.body(NS, NAME)["metadata"]["generation"]
    assert asyncio.run(cluster.children.get("apps/v1", "Deployment", NS, f"{NAME}-canary")) is None
    assert cluster.children.writes == writes


def run_at(cluster: MemoryCluster, seconds: float) -> Report:
    moment = NOW + timedelta(seconds=seconds)
    return asyncio.run(reconcile_and_report(cluster.body(NS, NAME), cluster, OPERATOR, now=lambda: moment))


def test_provider_errors_past_the_limit_roll_back_to_a_whole_stable_then_drop_the_canary(
    cluster: MemoryCluster
) -> None:
    served(cluster)
    cluster.children.start_pods(NS, f"{NAME}-stable", 4, lambda i: READY_POD)
    run(cluster)
    stable_before = asyncio.run(cluster.children.get("apps/v1", "Deployment", NS, f"{NAME}-stable"))
    cluster.update_spec(NS, NAME, lambda spec: spec["serving"].update(image="pytorch/torchserve:0.12.0-gpu"))
    run(cluster)
    cluster.children.start_pods(NS, f"{NAME}-canary", 1, lambda i: READY_POD)

    # No metrics provider here: every measurement is an Error, never a pass; the 5th in a row aborts.
    for seconds in (30, 40, 50, 60):
        run_at(cluster, seconds)
        assert status(cluster)["phase"] == "Progressing"
    assert status(cluster)["rollout"]["metrics"]["error-rate"]["consecutiveErrors"] == 4
    report = run_at(cluster, 70)

    rollout = status(cluster)["rollout"]
    assert rollout["aborted"]["reason"] == "MetricsUnavailable"
    assert ("Warning", "MetricsUnavailable") in [(e.type, e.reason) for e in report.events]
    assert status(cluster)["stableRevision"] != status(cluster)["revision"]
    # stable was never re-rendered from the spec (only scaled) and is whole: the canary drains, then goes
    stable_after = asyncio.run(cluster.children.get("apps/v1", "Deployment", NS, f"{NAME}-stable"))
    assert stable_before is not None and stable_after is not None
    assert stable_after["spec"]["template"] == stable_before["spec"]["template"]
    assert stable_after["spec"]["replicas"] == 4
    assert ("scale", "Deployment", f"{NAME}-stable") in cluster.children.writes
    asyncio.run(cluster.children.delete("v1", "Pod", NS, f"{NAME}-canary-0"))
    run_at(cluster, 71)
    run_at(cluster, 72)
    assert asyncio.run(cluster.children.get("apps/v1", "Deployment", NS, f"{NAME}-canary")) is None
    assert status(cluster)["phase"] == "RolledBack"
    assert (condition(cluster, "Ready")["status"], condition(cluster, "Ready")["reason"]) == (
        "False", "MetricsUnavailable")
    assert condition(cluster, "Degraded")["status"] == "True"
    assert condition(cluster, "Progressing")["status"] == "False"


def test_a_malformed_request_annotation_is_warned_of_once_not_on_every_reconcile(cluster: MemoryCluster) -> None:
    served(cluster)
    cluster.children.start_pods(NS, f"{NAME}-stable", 4, lambda i: READY_POD)
    run(cluster)
    cluster.update_spec(NS, NAME, lambda spec: spec["serving"].update(image="pytorch/torchserve:0.12.0-gpu"))
    run(cluster)
    cluster.model_deployments[(NS, NAME)]["metadata"]["annotations"] = {"modeldeploy.dev/request": "{promote"}

    warnings = [e for seconds in (1, 2, 3, 4) for e in run_at(cluster, seconds).events if e.reason == "InvalidRequest"]

    assert len(warnings) == 1 and warnings[0].type == "Warning"
    assert "modeldeploy.dev/request is not JSON" in warnings[0].message
    assert status(cluster)["phase"] == "Progressing"   # the canary goes on


def test_stable_deleted_mid_canary_comes_back_at_its_own_revision_not_the_canarys(cluster: MemoryCluster) -> None:
    served(cluster)
    cluster.children.start_pods(NS, f"{NAME}-stable", 4, lambda i: READY_POD)
    run(cluster)
    stable_revision = status(cluster)["stableRevision"]
    assert status(cluster)["rollout"]["stable"]["revision"] == stable_revision
    stable_before = asyncio.run(cluster.children.get("apps/v1", "Deployment", NS, f"{NAME}-stable"))
    cluster.update_spec(NS, NAME, lambda spec: spec["serving"].update(image="pytorch/torchserve:0.12.0-gpu"))
    run(cluster)
    cluster.children.start_pods(NS, f"{NAME}-canary", 1, lambda i: READY_POD)
    run_at(cluster, 1)

    asyncio.run(cluster.children.delete("apps/v1", "Deployment", NS, f"{NAME}-stable"))
    for index in range(4):
        asyncio.run(cluster.children.delete("v1", "Pod", NS, f"{NAME}-stable-{index}"))
    run_at(cluster, 2)

    stable_after = asyncio.run(cluster.children.get("apps/v1", "Deployment", NS, f"{NAME}-stable"))
    assert stable_before is not None and stable_after is not None
    assert stable_after["spec"]["template"] == stable_before["spec"]["template"]   # the cpu image, stable's archive
    assert template_revision(cluster, f"{NAME}-stable") == stable_revision != status(cluster)["revision"]
    assert (status(cluster)["stableRevision"], status(cluster)["canaryRevision"]) == (
        stable_revision, status(cluster)["revision"])
    assert status(cluster)["rollout"]["stable"]["revision"] == stable_revision


class RecordingPrometheus:
    """Stands in for the Prometheus client in this in-memory tier: answers `value` and keeps what it was asked."""

    kind = "prometheus"

    def __init__(self, value: float | None) -> None:
        self.value = value
        self.asked: list[tuple[str, str | None, str, datetime, datetime]] = []

    async def close(self) -> None:
        """Holds no connection."""

    async def measure(self, metric: Metric, target: Target, window_start: datetime, now: datetime) -> Measurement:
        self.asked.append((metric.name, target.canary_revision, target.namespace, window_start, now))
        return Measurement(metric=metric.name, at=now, window_start=window_start, canary=Sample(value=self.value))


PROMETHEUS_METRIC = {"name": "error-rate-promql", "max": 0.01,
                     "provider": {"prometheus": {"address": "http://prometheus.monitoring:9090",
                                                 "query": 'sum(up{revision="{{revision}}"})'}}}


def canary_judged_by(cluster: MemoryCluster, prometheus: RecordingPrometheus | None) -> None:
    served(cluster)
    cluster.children.start_pods(NS, f"{NAME}-stable", 4, lambda i: READY_POD)
    run(cluster)
    cluster.update_spec(NS, NAME, lambda spec: spec["rollout"]["analysis"].update(metrics=[PROMETHEUS_METRIC]))
    cluster.update_spec(NS, NAME, lambda spec: spec["serving"].update(image="pytorch/torchserve:0.12.0-gpu"))
    providers = Providers(() if prometheus is None else (prometheus,))
    for seconds in (0, 1, 31):
        if seconds == 1:
            cluster.children.start_pods(NS, f"{NAME}-canary", 1, lambda i: READY_POD)
        moment = NOW + timedelta(seconds=seconds)
        asyncio.run(reconcile_and_report(cluster.body(NS, NAME), cluster, OPERATOR, providers=providers,
                                         now=lambda moment=moment: moment))  # type: ignore[misc]


def test_a_prometheus_metric_is_asked_of_the_operators_client_for_the_canarys_revision(
    cluster: MemoryCluster
) -> None:
    prometheus = RecordingPrometheus(0.0)
    canary_judged_by(cluster, prometheus)

    now = status(cluster)
    assert [(name, revision, namespace) for name, revision, namespace, _, _ in prometheus.asked] == [
        ("error-rate-promql", now["canaryRevision"], NS)]
    _, _, _, window_start, at = prometheus.asked[0]
    assert (at - window_start) == timedelta(seconds=30)
    counters = now["rollout"]["metrics"]["error-rate-promql"]
    assert counters.get("consecutiveErrors", 0) == 0
    assert (counters["measurements"][-1]["verdict"], counters["measurements"][-1]["value"]) == ("Successful", 0.0)


def test_an_empty_prometheus_answer_is_never_evidence(cluster: MemoryCluster) -> None:
    canary_judged_by(cluster, RecordingPrometheus(None))
    counters = status(cluster)["rollout"]["metrics"]["error-rate-promql"]
    assert counters.get("successesAtStep", 0) == 0 and counters.get("consecutiveErrors", 0) == 0
    assert counters["measurements"][-1]["verdict"] == "Inconclusive"


def test_without_a_prometheus_client_a_prometheus_metric_is_an_error_naming_it(cluster: MemoryCluster) -> None:
    canary_judged_by(cluster, None)
    counters = status(cluster)["rollout"]["metrics"]["error-rate-promql"]
    assert counters["consecutiveErrors"] == 1
    assert "no prometheus metric provider in this operator" in counters["measurements"][-1]["message"]


def request(cluster: MemoryCluster, action: str, revision: str, seconds: int, **extra: Any) -> None:
    body = {"action": action, "revision": revision, "by": "alice",
            "at": (NOW + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ"), **extra}
    cluster.model_deployments[(NS, NAME)]["metadata"]["annotations"] = {"modeldeploy.dev/request": json.dumps(body)}


def promoting(cluster: MemoryCluster) -> tuple[str, str, dict[str, Any]]:
    """A served stable, then a canary of a new image promoted with --full: (stable's revision, the canary's,
    NAME-stable as it was before the canary)."""
    served(cluster)
    cluster.children.start_pods(NS, f"{NAME}-stable", 4, lambda i: READY_POD)
    run(cluster)
    stable_revision = status(cluster)["stableRevision"]
    stable_before = asyncio.run(cluster.children.get("apps/v1", "Deployment", NS, f"{NAME}-stable"))
    assert stable_before is not None
    cluster.update_spec(NS, NAME, lambda spec: spec["serving"].update(image="pytorch/torchserve:0.12.0-gpu"))
    run(cluster)
    canary_revision = status(cluster)["canaryRevision"]
    cluster.children.start_pods(NS, f"{NAME}-canary", 1, lambda i: READY_POD)
    run_at(cluster, 1)
    request(cluster, "promote", canary_revision, 2, full=True)
    run_at(cluster, 2)
    return str(stable_revision), str(canary_revision), stable_before


@pytest.mark.parametrize("change", ["abort", "new revision", "deadline"])
def test_a_promotion_cut_short_rolls_stable_back_to_its_own_revision(cluster: MemoryCluster, change: str) -> None:
    stable_revision, canary_revision, stable_before = promoting(cluster)
    # The promotion rolls stable to the canary's revision.
    assert template_revision(cluster, f"{NAME}-stable") == canary_revision

    if change == "abort":
        request(cluster, "abort", canary_revision, 3)
        run_at(cluster, 3)
    elif change == "new revision":
        newer = "registry.example/torchserve:0.12.0-patched"
        cluster.update_spec(NS, NAME, lambda spec: spec["serving"].update(image=newer))
        run_at(cluster, 3)
    else:
        # The new stable pods never become ready: the sample's progressDeadlineSeconds (600) from the
        # promotion's start, and not a second before.
        assert not run_at(cluster, 2 + 600).events
        assert status(cluster)["rollout"]["promoting"] is True
        report = run_at(cluster, 2 + 601)
        warning = next(e for e in report.events if e.reason == "ProgressDeadlineExceeded")
        assert warning.type == "Warning"
        assert f"promotion: 0/4 stable pods ready at revision {canary_revision[:10]} 600 s" in warning.message
        assert status(cluster)["rollout"]["aborted"]["reason"] == "ProgressDeadlineExceeded"

    # Stable goes back to the revision status names as stable, with its own template.
    assert status(cluster)["stableRevision"] == stable_revision
    assert template_revision(cluster, f"{NAME}-stable") == stable_revision
    stable_after = asyncio.run(cluster.children.get("apps/v1", "Deployment", NS, f"{NAME}-stable"))
    assert stable_after is not None
    assert stable_after["spec"]["template"] == stable_before["spec"]["template"]


def test_the_stable_revisions_config_map_stays_until_the_promotion_is_done(cluster: MemoryCluster) -> None:
    stable_revision, canary_revision, _ = promoting(cluster)
    run_at(cluster, 3)
    assert template_revision(cluster, f"{NAME}-stable") == canary_revision

    def config_maps() -> set[str]:
        found = asyncio.run(cluster.children.list("v1", "ConfigMap", NS, "modeldeploy.dev/revision"))
        return {c["metadata"]["labels"]["modeldeploy.dev/revision"] for c in found}

    # Pods of the old ReplicaSet still serve, and one restarted must find its config.
    assert config_maps() == {stable_revision, canary_revision}

    cluster.children.start_pods(NS, f"{NAME}-stable", 4, lambda i: READY_POD)
    cluster.children.roll_out(NS, f"{NAME}-stable")
    for seconds in range(4, 10):
        run_at(cluster, seconds)
    assert status(cluster)["stableRevision"] == canary_revision and "canaryRevision" not in status(cluster)
    assert config_maps() == {canary_revision}


GOLDEN_METRIC = {"name": "quality", "min": 0.9,
                 "provider": {"goldenSet": {"source": {"uri": "pvc://models/iris/golden.jsonl"},
                                            "prediction": {"jsonPath": "$.labels[0]"}}}}
HELD_POD = {"phase": "Running", "podIP": "10.244.0.50",
            "conditions": [{"type": "ContainersReady", "status": "True"}, {"type": "Ready", "status": "False"}],
            "containerStatuses": [{"name": "torchserve", "started": True, "ready": True}]}


def test_a_gated_canary_runs_one_pod_behind_no_service_then_lets_it_in_once_its_golden_set_passes(
    cluster: MemoryCluster
) -> None:
    served(cluster)
    cluster.children.start_pods(NS, f"{NAME}-stable", 4, lambda i: READY_POD)
    run(cluster)
    cluster.update_spec(NS, NAME, lambda spec: spec.update(rollout={
        "steps": [{"weight": 0}, {"weight": 50}, {"weight": 100}],
        "analysis": {"interval": "30s", "metrics": [GOLDEN_METRIC]}}))
    cluster.update_spec(NS, NAME, lambda spec: spec["serving"].update(image="pytorch/torchserve:0.12.0-gpu"))
    providers = build_providers(OperatorAccess(jobs=ChildJobs(cluster.children), operator=OPERATOR))

    def at(seconds: int) -> Report:
        moment = NOW + timedelta(seconds=seconds)
        return asyncio.run(reconcile_and_report(cluster.body(NS, NAME), cluster, OPERATOR, providers=providers,
                                                now=lambda: moment))

    at(0)
    canary = asyncio.run(cluster.children.get("apps/v1", "Deployment", NS, f"{NAME}-canary"))
    assert canary is not None and canary["spec"]["replicas"] == 1
    assert canary["spec"]["template"]["spec"]["readinessGates"] == [{"conditionType": "modeldeploy.dev/traffic"}]
    stable = asyncio.run(cluster.children.get("apps/v1", "Deployment", NS, f"{NAME}-stable"))
    assert stable is not None and stable["spec"]["replicas"] == 4
    assert "readinessGates" not in stable["spec"]["template"]["spec"]  # stable's pods are never held
    cluster.children.start_pods(NS, f"{NAME}-canary", 1, lambda i: HELD_POD)
    at(1)
    assert any("at the gate (step 1/3)" in c["message"] for c in status(cluster)["conditions"])

    at(31)  # the measurement is due: its Job is created
    (job,) = asyncio.run(cluster.children.list("batch/v1", "Job", NS,
                                               "app.kubernetes.io/component=golden-set-evaluation"))
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--canary") + 1] == "http://10.244.0.50:8080/predictions/iris"
    assert not status(cluster)["rollout"]["metrics"]["quality"].get("measurements")  # pending: nothing recorded
    name = job["metadata"]["name"]
    cluster.children.put({**job, "status": {"conditions": [{"type": "Complete", "status": "True"}]}})
    cluster.children.put({"apiVersion": "v1", "kind": "Pod",
                          "metadata": {"name": f"{name}-x1", "namespace": NS, "labels": {"job-name": name}},
                          "spec": {"containers": [{"name": "evaluate"}]}})
    right = {"expected": 1000, "predicted": 1000, "hits": 995}
    cluster.children.logs[(NS, f"{name}-x1", "evaluate")] = "started\n" + json.dumps({"evaluation": {
        "canary": {"examples": 1000, "unlabelled": 0, "errors": 0, "labels": {"setosa": right}}}})

    at(32)

    now = status(cluster)
    (measured,) = now["rollout"]["metrics"]["quality"]["measurements"]
    assert measured["verdict"] == "Successful" and "quality = 0.995 over 1000 examples" in measured["message"]
    assert now["rollout"]["stepIndex"] == 1
    pod = asyncio.run(cluster.children.get("v1", "Pod", NS, f"{NAME}-canary-0"))
    assert pod is not None
    assert {"type": "modeldeploy.dev/traffic", "status": "True"}.items() <= next(
        c for c in pod["status"]["conditions"] if c["type"] == "modeldeploy.dev/traffic").items()
    assert asyncio.run(cluster.children.get("batch/v1", "Job", NS, name)) is None  # read once, then removed
