"""Golden sets judge the model, not only the server, on real TorchServe pods with load through the Service.

The scenarios share one namespace (stable iris v1 at one replica, Healthy) and follow one another: a
version that mislabels a third of the rows is stopped at the weight-0 gate; golden sets that cannot be
read are errors, never a pass; twenty examples cannot decide a tight bound; a retrained version that
agrees with stable passes the gate and is promoted under load; a version ten points less accurate than
that new stable is rolled back relative to it. Each measurement is one Job running `modeldeploy evaluate`
against the pods' IPs, never through the Service.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e.canary_support import Load, StatusLine
from e2e.helpers import OperatorProcess, apply, iris, mdep, wait_phase
from localcluster import LocalCluster
from support import REPO, kubectl_json, provide_iris_claims, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.torchserve]

VERSIONS = {"1": ("v1", "1", []), "2": ("v2", "2", []),
            "swapped": ("swapped", "2-swapped", []),
            "worse": ("swapped", "2-swapped", ["--swapped-fraction", "0.1"])}
"""Folder of the claim `models` -> (train.py version, model version, extra flags)."""
GATE = [{"weight": 0}, {"weight": 50, "pause": "5s"}, {"weight": 100}]
GOLDEN = "pvc://models/iris/golden.jsonl"
ERROR_RATE = {"name": "error-rate", "provider": {"torchserve": {"metric": "error-rate"}}, "max": 0.1}


def golden(name: str, measure: str = "accuracy", uri: str = GOLDEN, **bounds: Any) -> dict[str, Any]:
    return {"name": name, "provider": {"goldenSet": {"source": {"uri": uri}, "measure": measure,
                                                      "prediction": {"jsonPath": "$.labels[0]"}}}, **bounds}


def version(name: str, metrics: list[dict[str, Any]], cpu: int, deadline: int = 120,
            error_limit: int = 2, steps: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Iris at version `name` asking `cpu` millicores: each scenario's revision is its own (a rolled-back
    revision is not tried again until the spec changes it)."""
    _, model_version, _ = VERSIONS[name]
    document = iris(replicas=1, rollout={
        "steps": steps or GATE,
        "analysis": {"interval": "5s", "failureLimit": 0, "consecutiveErrorLimit": error_limit, "minRequests": 10,
                     "metrics": metrics},
        "progressDeadlineSeconds": deadline})
    document["spec"]["model"].update({"version": model_version,
                                      "serializedFile": {"uri": f"pvc://models/iris/{name}/model.pt"},
                                      "configFile": {"uri": f"pvc://models/iris/{name}/model-config.yaml"}})
    document["spec"]["serving"]["resources"]["requests"]["cpu"] = f"{cpu}m"
    return document


@pytest.fixture(scope="module")
def golden_builds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Each version's files and the golden sets (1,000 examples, and 20), made here once."""
    root = tmp_path_factory.mktemp("iris-golden")
    for folder, (recipe, _, extra) in VERSIONS.items():
        subprocess.run([sys.executable, str(REPO / "model_archives/iris/train.py"), "--out", str(root / folder),
                        "--version", recipe, *extra], check=True, capture_output=True)
    for name, count in (("golden.jsonl", 1000), ("golden-20.jsonl", 20)):
        subprocess.run([sys.executable, str(REPO / "model_archives/iris/golden_set.py"), "--out", str(root / name),
                        "--examples", str(count)], check=True, capture_output=True)
    return root


@pytest.fixture(scope="module")
def gated(cluster: LocalCluster, operator: OperatorProcess, iris_files: Path, golden_builds: Path) -> Iterator[str]:
    """The namespace the scenarios share: iris v1 Healthy at one replica, every version and set on `models`."""
    name = f"golden-sets-{uuid.uuid4().hex[:5]}"
    cluster.kubectl("create", "namespace", name)
    wait_for(lambda: cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0,
             timeout=120, message=f"namespace {name}'s default ServiceAccount")
    models = provide_iris_claims(cluster, name, iris_files)
    for folder in VERSIONS:
        (models / "iris" / folder).mkdir(parents=True, exist_ok=True)
        for file in ("model.pt", "model-config.yaml"):
            shutil.copy(golden_builds / folder / file, models / "iris" / folder / file)
    for file in ("golden.jsonl", "golden-20.jsonl"):
        shutil.copy(golden_builds / file, models / "iris" / file)
    for path in models.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    apply(cluster, name, version("1", [golden("accuracy", min=0.9)], cpu=100))
    wait_phase(cluster, name, "Healthy", timeout=300)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def settles(cluster: LocalCluster, namespace: str, phase: str, revision: str, timeout: float = 300) -> dict[str, Any]:
    """The object once `revision` is the one the spec asks for and it stands in `phase`."""
    found = wait_for(lambda: (lambda b: b if (b.get("status") or {}).get("phase") == phase
                              and b["status"].get("revision") == revision else None)(mdep(cluster, namespace)),
                     timeout=timeout, interval=0.5, message=f"{phase} at revision {revision}")
    assert isinstance(found, dict)
    return found


def revision_of(cluster: LocalCluster, namespace: str) -> str:
    def changed() -> str | None:
        body = mdep(cluster, namespace)
        status = body.get("status") or {}
        return status.get("revision") if status.get("observedGeneration") == body["metadata"]["generation"] else None

    found = wait_for(changed, timeout=60, message="the new revision in status")
    assert isinstance(found, str)
    return found


def warnings(cluster: LocalCluster, namespace: str, reason: str) -> list[str]:
    items = kubectl_json(cluster, "get", "events", "-n", namespace,
                         "--field-selector", f"involvedObject.kind=ModelDeployment,reason={reason}")["items"]
    return [e["message"] for e in items]


def measurements(body: dict[str, Any], metric: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = (((body["status"].get("rollout") or {}).get("metrics") or {}).get(metric)
                                   or {}).get("measurements") or []
    return found


def test_a_version_that_mislabels_a_third_is_rolled_back_at_the_gate_and_no_user_request_reaches_it(
    cluster: LocalCluster, gated: str
) -> None:
    with Load(cluster, gated, rate=8, seconds=240) as load, StatusLine(cluster, gated) as line:
        apply(cluster, gated, version("swapped", [golden("accuracy", min=0.9), ERROR_RATE], cpu=110))
        revision = revision_of(cluster, gated)
        body = settles(cluster, gated, "RolledBack", revision)
        load.stop()

    message = next(m for m in warnings(cluster, gated, "AnalysisFailed") if "accuracy" in m)
    assert "over 1000 examples (95 % interval" in message and "below min 0.9" in message, message
    assert re.search(r", stable 0\.9[5-9]\d*, below min 0\.9; ", message), message  # stable's, same examples
    assert "as " in message  # the labels confused, counted
    assert body["status"]["rollout"]["stableRevision"] != revision
    assert all((entry.get("rollout") or {}).get("effectiveWeight", 0) == 0 for _, entry in line.lines)
    assert set(load.versions()) == {"1"}, load.versions()  # the Service never answered with the canary
    assert set(load.codes()) == {200}, load.failures()
    assert sum(load.codes().values()) > 40
    # the measurement's Jobs are gone once read
    wait_for(lambda: not kubectl_json(cluster, "get", "jobs", "-n", gated,
                                      "-l", "app.kubernetes.io/component=golden-set-evaluation")["items"],
             timeout=60, message="the evaluation Jobs to be removed")


def test_golden_sets_that_cannot_be_read_are_errors_naming_the_file_then_a_rollback_never_a_pass(
    cluster: LocalCluster, gated: str
) -> None:
    pinned = golden("pinned", min=0.9)
    pinned["provider"]["goldenSet"]["source"]["sha256"] = "0" * 64
    missing = golden("missing", uri="pvc://models/iris/no-such-set.jsonl", min=0.9)
    apply(cluster, gated, version("2", [pinned, missing], cpu=120, error_limit=1))
    revision = revision_of(cluster, gated)

    body = settles(cluster, gated, "RolledBack", revision)

    assert any("provider errors in a row, more than consecutiveErrorLimit 1" in m
               for m in warnings(cluster, gated, "MetricsUnavailable"))
    errors = {m: [x["message"] for x in measurements(body, m) if x["verdict"] == "Error"]
              for m in ("pinned", "missing")}
    assert any("sha256" in text and "golden.jsonl" in text for text in errors["pinned"]), errors
    assert any("no-such-set.jsonl" in text for text in errors["missing"]), errors
    assert not any(x["verdict"] == "Successful" for m in ("pinned", "missing") for x in measurements(body, m))


def test_twenty_examples_cannot_decide_a_tight_bound_and_the_deadline_aborts_with_insufficient_data(
    cluster: LocalCluster, gated: str
) -> None:
    few = golden("accuracy", uri="pvc://models/iris/golden-20.jsonl", min=0.98)
    apply(cluster, gated, version("2", [few], cpu=130, deadline=60))
    revision = revision_of(cluster, gated)

    body = settles(cluster, gated, "RolledBack", revision)

    verdicts = {m["verdict"] for m in measurements(body, "accuracy")}
    assert verdicts == {"Inconclusive"}, measurements(body, "accuracy")
    assert "over 20 examples" in measurements(body, "accuracy")[-1]["message"]
    assert any("no Successful measurement of accuracy at the gate (weight 0, no user traffic)" in m
               for m in warnings(cluster, gated, "InsufficientData"))


def test_a_retrained_version_that_agrees_with_stable_passes_the_gate_and_is_promoted_under_load(
    cluster: LocalCluster, gated: str
) -> None:
    with Load(cluster, gated, rate=8, seconds=300) as load, StatusLine(cluster, gated) as line:
        applied = time.monotonic()
        # the gate, then all of the traffic: one step fewer to wait for, the same promotion
        apply(cluster, gated, version("2", [golden("agreement", "agreement", min=0.98), ERROR_RATE], cpu=140,
                                      steps=[{"weight": 0}, {"weight": 100}]))
        revision = revision_of(cluster, gated)
        body = settles(cluster, gated, "Healthy", revision)
        time.sleep(3)  # requests keep flowing while the canary's pod ends
    assert body["status"]["stableRevision"] == revision
    passed = [m["message"] for _, status in line.lines if status.get("canaryRevision") == revision
              for m in measurements({"status": status}, "agreement") if m["verdict"] == "Successful"]
    assert passed and "over 1000 examples" in passed[0], line.lines
    # at the gate (step 0 and not yet promoting: a last step of weight 100 promotes at once), no user traffic
    gate = [e for _, e in line.lines if (e.get("rollout") or {}).get("stepIndex", 0) == 0
            and not (e.get("rollout") or {}).get("promoting") and e.get("canaryRevision") == revision]
    assert gate and all((e.get("rollout") or {}).get("effectiveWeight", 0) == 0 for e in gate)
    assert set(load.codes()) == {200}, load.failures(applied)
    assert {"1", "2"} <= set(load.versions())  # the canary took user traffic only once past the gate


def test_a_version_ten_points_less_accurate_is_rolled_back_relative_to_stable(
    cluster: LocalCluster, gated: str
) -> None:
    relative = {**golden("accuracy", min=-0.02), "relativeTo": "stable"}
    apply(cluster, gated, version("worse", [relative], cpu=150))
    revision = revision_of(cluster, gated)

    settles(cluster, gated, "RolledBack", revision)

    message = next(m for m in warnings(cluster, gated, "AnalysisFailed") if "canary - stable" in m)
    assert re.search(r"accuracy \(canary - stable\) = -0\.(09|1)\d* over 1000 examples", message), message
    assert "below min -0.02" in message, message
