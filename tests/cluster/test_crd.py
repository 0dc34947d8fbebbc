"""The ModelDeployment CRD as a real API server enforces it: rejections, defaults, explain, columns."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from localcluster import LocalCluster
from modeldeploy.api.events import EventReason
from modeldeploy.api.rollout import (
    Aborted,
    HandledRequest,
    MeasurementRecord,
    MeasurementVerdict,
    MetricState,
    Pause,
    PauseReason,
    RolloutState,
)
from modeldeploy.api.spec import parse_spec

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO / "manifests" / "crds"
CRD_NAME = "modeldeployments.modeldeploy.dev"
SAMPLES = sorted(p for p in (REPO / "manifests" / "samples").glob("*.yaml") if p.name != "kustomization.yaml")
INVALID_SPECS = sorted((Path(__file__).parent / "invalid_specs").glob("*.yaml"))

pytestmark = pytest.mark.cluster

MINIMAL: dict[str, Any] = {
    "apiVersion": "modeldeploy.dev/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "iris"},
    "spec": {"model": {
        "name": "iris",
        "serializedFile": {"uri": "pvc://models/iris/1/model.pt"},
        "handler": {"uri": "pvc://models/iris/handler.py"},
    }},
}


def install_crd(cluster: LocalCluster) -> None:
    """Apply the CRD the way a user does, and wait until the API serves it."""
    cluster.kubectl("apply", "-f", str(CRD_DIR))
    cluster.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")


@pytest.fixture(scope="module")
def crd(cluster: LocalCluster) -> Iterator[LocalCluster]:
    install_crd(cluster)
    yield cluster


def expectations(fixture: Path) -> dict[str, str]:
    found = {}
    for line in fixture.read_text().splitlines():
        match = re.match(r"# (field|expect): (.*)$", line)
        if match:
            found[match[1]] = match[2]
    return found


def apply(cluster: LocalCluster, namespace: str, document: dict[str, Any], *extra: str) -> Any:
    return cluster.kubectl("apply", "-n", namespace, *extra, "-f", "-", input=json.dumps(document), check=False)


def test_crd_is_established_with_its_short_name_and_category(crd: LocalCluster) -> None:
    resources = crd.kubectl("api-resources", "--api-group=modeldeploy.dev", "-o", "wide").stdout

    assert re.search(r"modeldeployments\s+mdep\s+modeldeploy.dev/v1alpha1\s+true\s+ModelDeployment", resources)
    assert resources.splitlines()[1].split()[-1] == "modeldeploy"  # the CATEGORIES column


@pytest.mark.parametrize("fixture", INVALID_SPECS, ids=lambda p: p.stem)
def test_invalid_spec_is_rejected_at_apply_naming_field_and_rule(crd: LocalCluster, fixture: Path) -> None:
    expected = expectations(fixture)

    result = crd.kubectl("apply", "-n", "default", "-f", str(fixture), check=False)

    if result.returncode == 0:  # keep the namespace clean for the next fixtures before failing
        crd.kubectl("delete", "-n", "default", "-f", str(fixture), "--wait=false", check=False)
    assert result.returncode != 0, f"{fixture.name} was accepted"
    assert expected["expect"] in result.stderr
    assert expected["field"].split("[")[0] in result.stderr


def test_at_least_thirty_distinct_mistakes_are_covered() -> None:
    assert len(INVALID_SPECS) >= 30


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.stem)
def test_sample_is_accepted_by_the_api_server(crd: LocalCluster, sample: Path) -> None:
    result = crd.kubectl("apply", "-n", "default", "--dry-run=server", "-f", str(sample), check=False)

    assert result.returncode == 0, result.stderr
    assert "created (server dry run)" in result.stdout


def test_longest_allowed_name_is_accepted(crd: LocalCluster, namespace: str) -> None:
    document = {**MINIMAL, "metadata": {"name": "m" + "x" * 43}}

    result = apply(crd, namespace, document, "--dry-run=server")

    assert result.returncode == 0, result.stderr


def test_torchserve_metrics_relative_to_stable_are_accepted_as_the_operator_reads_them(
        crd: LocalCluster, namespace: str) -> None:
    metrics = [{"name": "errors", "provider": {"torchserve": {"metric": "error-rate"}}, "relativeTo": "stable",
                "min": -1.0, "max": 0.01},
               {"name": "latency", "provider": {"torchserve": {"metric": "mean-latency-ms"}}, "relativeTo": "stable",
                "max": 1.1}]
    document = {**MINIMAL, "spec": {**MINIMAL["spec"], "rollout": {"analysis": {"metrics": metrics}}}}

    result = apply(crd, namespace, document, "--dry-run=server")

    assert result.returncode == 0, result.stderr
    assert [m.relative_to for m in parse_spec(document["spec"]).rollout.analysis.metrics] == ["stable", "stable"]


def test_api_server_applies_the_same_defaults_as_the_typed_spec(crd: LocalCluster, namespace: str) -> None:
    assert apply(crd, namespace, MINIMAL).returncode == 0

    stored = json.loads(crd.kubectl("get", "mdep", "iris", "-n", namespace, "-o", "json").stdout)["spec"]

    assert stored["archive"] == {"format": "zip-store", "store": {"pvc": {"claimName": "model-store"}},
                                 "build": {"activeDeadlineSeconds": 900, "backoffLimit": 1}}
    assert stored["rollout"]["steps"] == [{"weight": 100}]
    assert stored["rollout"]["analysis"]["metrics"] == [
        {"name": "error-rate", "provider": {"torchserve": {"metric": "error-rate"}}, "max": 0.01}]
    assert stored["rollout"]["trafficRouting"] == {"replicas": {}}
    assert stored["serving"]["networkPolicy"] == {"enabled": True, "monitoringNamespace": "monitoring"}
    assert parse_spec(stored) == parse_spec(MINIMAL["spec"])


def test_kubectl_explain_prints_the_field_descriptions(crd: LocalCluster) -> None:
    steps = crd.kubectl("explain", "mdep.spec.rollout.steps").stdout
    provider = crd.kubectl("explain", "mdep.spec.rollout.analysis.metrics.provider.torchserve.metric").stdout

    assert "strictly increasing, the last one 100" in " ".join(steps.split())
    assert re.search(r"weight\s+<integer> -required-", steps)
    assert "pause" in steps and "Go duration" in " ".join(steps.split())
    assert "mean-latency-ms" in provider


def test_kubectl_get_shows_phase_revisions_weight_step_and_age(crd: LocalCluster, namespace: str) -> None:
    assert apply(crd, namespace, MINIMAL).returncode == 0
    crd.kubectl("patch", "mdep", "iris", "-n", namespace, "--subresource=status", "--type=merge", "-p",
                json.dumps({"status": {"phase": "Progressing", "stableRevision": "1111111111",
                                       "canaryRevision": "2222222222", "canaryWeight": 25, "currentStep": 0,
                                       "revision": "2222222222"}}))

    table = crd.kubectl("get", "mdep", "-n", namespace).stdout.splitlines()
    wide = crd.kubectl("get", "mdep", "-n", namespace, "-o", "wide").stdout.splitlines()
    by_category = crd.kubectl("get", "modeldeploy", "-n", namespace).stdout

    assert table[0].split() == ["NAME", "PHASE", "STABLE", "CANARY", "WEIGHT", "STEP", "AGE"]
    assert table[1].split()[:6] == ["iris", "Progressing", "1111111111", "2222222222", "25", "0"]
    assert wide[0].split() == ["NAME", "PHASE", "STABLE", "CANARY", "WEIGHT", "STEP", "REVISION", "AGE"]
    assert "iris" in by_category


def test_status_is_a_subresource_that_does_not_bump_the_generation(crd: LocalCluster, namespace: str) -> None:
    assert apply(crd, namespace, MINIMAL).returncode == 0

    crd.kubectl("patch", "mdep", "iris", "-n", namespace, "--subresource=status", "--type=merge", "-p",
                '{"status": {"phase": "Pending", "observedGeneration": 1}}')
    after_status = json.loads(crd.kubectl("get", "mdep", "iris", "-n", namespace, "-o", "json").stdout)
    crd.kubectl("patch", "mdep", "iris", "-n", namespace, "--type=merge", "-p",
                '{"spec": {"serving": {"replicas": 3}}, "status": {"phase": "Failed"}}')
    after_spec = json.loads(crd.kubectl("get", "mdep", "iris", "-n", namespace, "-o", "json").stdout)

    assert after_status["metadata"]["generation"] == 1
    assert after_spec["metadata"]["generation"] == 2
    assert after_spec["status"]["phase"] == "Pending"  # status in a main-resource patch is ignored


def test_status_fields_outside_the_schema_are_pruned(crd: LocalCluster, namespace: str) -> None:
    assert apply(crd, namespace, MINIMAL).returncode == 0

    crd.kubectl("patch", "mdep", "iris", "-n", namespace, "--subresource=status", "--type=merge", "-p",
                '{"status": {"phase": "Pending", "somethingElse": {"a": 1}}}')
    status = json.loads(crd.kubectl("get", "mdep", "iris", "-n", namespace, "-o", "json").stdout)["status"]

    assert status == {"phase": "Pending"}


def test_every_field_of_the_rollout_state_the_operator_writes_is_kept_by_the_api_server(
        crd: LocalCluster, namespace: str) -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    record = MeasurementRecord(at=at, verdict=MeasurementVerdict.FAILED, value=1.5, requests=40, weight=25,
                               message="ratio (canary / stable) = 1.5", stable_value=4.25)
    metric = MetricState(failed=1, inconclusive=2, consecutive_errors=1, successes_at_step=1, step_requests=40,
                         step_events=3, last_at=at, last_error_at=at, measurements=(record,))
    state = RolloutState(stable_revision="a1", canary_revision="b2", step_index=1, step_started_at=at, weight=25,
                         effective_weight=50, weight_since=at, unready_since=at, ready_since=at,
                         pause=Pause(PauseReason.USER, at), metrics={"ratio": metric}, promoting=True,
                         promoting_since=at, aborted=Aborted("c3", EventReason.ANALYSIS_FAILED, "worse", at),
                         last_request=HandledRequest("promote", "b2", "2026-01-02T03:04:05Z"),
                         rejected_request="d4")
    assert apply(crd, namespace, MINIMAL).returncode == 0

    crd.kubectl("patch", "mdep", "iris", "-n", namespace, "--subresource=status", "--type=merge", "-p",
                json.dumps({"status": {"rollout": state.to_dict()}}))
    stored = json.loads(crd.kubectl("get", "mdep", "iris", "-n", namespace, "-o", "json").stdout)["status"]

    assert stored["rollout"] == state.to_dict()
    assert RolloutState.from_dict(stored["rollout"]) == state
