"""A new revision rolls out as a canary on real TorchServe pods: promoted on evidence, rolled back on its own.

The scenarios share one namespace, 2 replicas, short analysis intervals and a bounded load (count and
time limited) spread over the ready endpoints of the Service `iris`. Each begins with its stable revision
Healthy: iris v1, which applying v1 again after a rollback or a cancelled canary returns to at once, with
no pod started; the archives built once are reused. The two scenarios that promote come last; the last
canaries whichever of v1 and v2 is not stable. Each scenario reads only the Events since it began.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from e2e.canary_support import Load, StatusLine
from e2e.helpers import OperatorProcess, apply, condition, iris, mdep, wait_phase
from localcluster import LocalCluster
from support import REPO, kubectl_json, provide_iris_claims, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.torchserve]

INTERVAL = 5
FAILURE_LIMIT = 1
DEADLINE = 60
BOUND = 0.1


def rollout(steps: list[dict[str, Any]] | None = None, **analysis: Any) -> dict[str, Any]:
    return {
        "steps": steps or [{"weight": 50, "pause": "5s"}, {"weight": 100}],
        "analysis": {"interval": f"{INTERVAL}s", "failureLimit": FAILURE_LIMIT, "consecutiveErrorLimit": 2,
                     "minRequests": 10,
                     "metrics": [{"name": "error-rate", "provider": {"torchserve": {"metric": "error-rate"}},
                                  "max": BOUND}],
                     **analysis},
        "progressDeadlineSeconds": DEADLINE,
    }


def version(name: str, **rollout_spec: Any) -> dict[str, Any]:
    """The iris spec serving version `name` (a folder of the claim `models`) with the test rollout."""
    model = {"version": {"1": "1", "2": "2", "faulty": "2-faulty", "slow": "2-slow", "broken": "2-broken"}[name],
             "serializedFile": {"uri": f"pvc://models/iris/{name}/model.pt"},
             "configFile": {"uri": f"pvc://models/iris/{name}/model-config.yaml"}}
    document = iris(replicas=2, rollout=rollout(**rollout_spec))
    document["spec"]["model"].update(model)
    return document


@pytest.fixture(scope="session")
def iris_builds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """v1, v2, faulty (30 % of requests answered 503) and slow (200 ms more per batch), trained here once per
    session."""
    root = tmp_path_factory.mktemp("iris-versions")
    for name, extra in (("1", ["--version", "v1"]), ("2", ["--version", "v2"]),
                        ("faulty", ["--version", "faulty", "--failure-fraction", "0.3"]),
                        ("slow", ["--version", "slow"])):
        subprocess.run([sys.executable, str(REPO / "model_archives/iris/train.py"), "--out", str(root / name),
                        *extra], check=True, capture_output=True)
    return root


def copy_versions(models: Path, builds: Path) -> Path:
    """The claim `models` (its folder here) with iris/{1,2,faulty,slow,broken}/{model.pt,model-config.yaml}."""
    for name in ("1", "2", "faulty", "slow"):
        folder = models / "iris" / name
        folder.mkdir(parents=True, exist_ok=True)
        for file in ("model.pt", "model-config.yaml"):
            shutil.copy(builds / name / file, folder / file)
    broken = models / "iris" / "broken"
    broken.mkdir()
    (broken / "model.pt").write_bytes(b"these bytes are not a TorchScript model\n")
    shutil.copy(builds / "2" / "model-config.yaml", broken / "model-config.yaml")
    for path in models.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return models


@pytest.fixture
def versions(models: Path, iris_builds: Path) -> Path:
    """Every version on the claim `models` of a scenario's own namespace (for the modules that import it;
    this module's scenarios share `shared`)."""
    return copy_versions(models, iris_builds)


@pytest.fixture(scope="module")
def shared(cluster: LocalCluster, iris_files: Path, iris_builds: Path) -> Iterator[tuple[str, Path]]:
    """The namespace the scenarios share, and its claim `models` (here) with every version."""
    name = f"canary-{uuid.uuid4().hex[:5]}"
    cluster.kubectl("create", "namespace", name)
    wait_for(lambda: cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0,
             timeout=120, message=f"namespace {name}'s default ServiceAccount")
    yield name, copy_versions(provide_iris_claims(cluster, name, iris_files), iris_builds)
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="module")
def namespace(shared: tuple[str, Path]) -> str:
    return shared[0]


@dataclass(frozen=True)
class Start:
    """Where a scenario begins: the object Healthy at its stable revision, and when (its Events are newer)."""

    body: dict[str, Any]
    since: datetime


def healthy_v1(cluster: LocalCluster, namespace: str) -> dict[str, Any]:
    apply(cluster, namespace, version("1"))
    return wait_phase(cluster, namespace, "Healthy", timeout=240)


@pytest.fixture
def start(cluster: LocalCluster, operator: OperatorProcess, namespace: str, shared: tuple[str, Path]) -> Start:
    """The object Healthy at its stable revision: as the last scenario left it when it settled there (a
    promotion), else v1 applied again (at once after a rollback or a cancelled canary; built and started
    the first time)."""
    found = cluster.kubectl("get", "mdep", "iris", "-n", namespace, "-o", "json", check=False)
    status = (json.loads(found.stdout).get("status") or {}) if found.returncode == 0 else {}
    settled = status.get("phase") == "Healthy" and status.get("stableRevision") == status.get("revision")
    body = json.loads(found.stdout) if settled else healthy_v1(cluster, namespace)
    return Start(body, datetime.now(UTC).replace(microsecond=0))


def events(cluster: LocalCluster, namespace: str, since: datetime | None = None) -> list[dict[str, Any]]:
    """The ModelDeployment's Events (those last seen at or after `since`), oldest first."""
    items: list[dict[str, Any]] = kubectl_json(cluster, "get", "events", "-n", namespace,
                                               "--field-selector", "involvedObject.kind=ModelDeployment")["items"]

    def seen(event: dict[str, Any]) -> datetime:
        text = event.get("lastTimestamp") or event.get("eventTime") or event["metadata"]["creationTimestamp"]
        return datetime.fromisoformat(text.replace("Z", "+00:00"))

    return sorted((e for e in items if since is None or seen(e) >= since), key=seen)


def pod_ips(cluster: LocalCluster, namespace: str, role: str) -> set[str]:
    pods = kubectl_json(cluster, "get", "pods", "-n", namespace, "-l", f"modeldeploy.dev/role={role}")["items"]
    return {p["status"]["podIP"] for p in pods if p.get("status", {}).get("podIP")}


def deployments(cluster: LocalCluster, namespace: str) -> list[str]:
    items = kubectl_json(cluster, "get", "deployments", "-n", namespace)["items"]
    return sorted(d["metadata"]["name"] for d in items)


def test_a_faulty_version_is_rolled_back_on_its_own_with_stable_at_full_capacity(
    cluster: LocalCluster, operator: OperatorProcess, namespace: str, start: Start
) -> None:
    first = start.body
    stable_revision = first["status"]["revision"]
    with Load(cluster, namespace, rate=12, seconds=300) as load, StatusLine(cluster, namespace) as line:
        applied = time.monotonic()
        apply(cluster, namespace, version("faulty"))
        canary_ips: set[str] = set()

        def rolled_back() -> dict[str, Any] | None:
            canary_ips.update(pod_ips(cluster, namespace, "canary"))
            body = mdep(cluster, namespace)
            return body if (body.get("status") or {}).get("phase") == "RolledBack" else None

        body = wait_for(rolled_back, timeout=300, interval=0.5, message="the faulty version rolled back")
    assert isinstance(body, dict)
    status = body["status"]
    first_canary_answer = load.first_answer_from(canary_ips)
    aborted_at = line.first(lambda s: bool((s.get("rollout") or {}).get("aborted")))
    assert first_canary_answer is not None and aborted_at is not None
    onset_to_rollback = aborted_at - first_canary_answer
    print(f"apply -> rolled back: {aborted_at - applied:.1f} s; first canary endpoint ready -> rollback: "
          f"{onset_to_rollback:.1f} s; requests {load.codes()}")
    assert onset_to_rollback <= INTERVAL * (FAILURE_LIMIT + 1) + 30

    assert status["stableRevision"] == stable_revision and "canaryRevision" not in status
    aborted = status["rollout"]["aborted"]
    assert aborted["reason"] == "AnalysisFailed" and aborted["revision"] == status["revision"]
    assert "error-rate" in aborted["message"] and f"max {BOUND:g}" in aborted["message"]
    ready = condition(body, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "AnalysisFailed")
    assert condition(body, "Degraded")["status"] == "True"
    warning = [e for e in events(cluster, namespace, start.since)
               if e["type"] == "Warning" and e["reason"] == "AnalysisFailed"]
    assert warning and "error-rate = 0." in warning[0]["message"] and f"max {BOUND:g}" in warning[0]["message"]
    # stable kept serving at full size: never fewer than 2 ready endpoints, and stable's answers all 200
    assert min(count for at, count in load.capacity if at >= applied) >= 2
    # every failed request is the faulty model's own 503: none was lost to missing capacity
    assert set(load.codes()) <= {200, 503}, load.failures(applied)
    assert wait_for(lambda: deployments(cluster, namespace) == ["iris-stable"], timeout=60)
    # rolled back stays rolled back: the spec still names the faulty revision, nothing is retried
    time.sleep(INTERVAL)
    assert mdep(cluster, namespace)["status"]["phase"] == "RolledBack"


def test_a_slow_version_is_rolled_back_on_its_mean_latency_naming_metric_value_and_bound(
    cluster: LocalCluster, operator: OperatorProcess, namespace: str, start: Start
) -> None:
    first = start.body
    # the mean latency, and its ratio to stable's over the same windows (relativeTo: stable)
    latency = [{"name": "latency", "provider": {"torchserve": {"metric": "mean-latency-ms"}}, "max": 100},
               {"name": "ratio", "provider": {"torchserve": {"metric": "mean-latency-ms"}}, "relativeTo": "stable",
                "max": 1.5}]
    with Load(cluster, namespace, rate=10, seconds=300) as load:
        apply(cluster, namespace, version("slow", metrics=latency))
        body = wait_phase(cluster, namespace, "RolledBack", timeout=300)
    status = body["status"]
    print(f"requests {load.codes()}; slowest answers {load.slowest()} s")
    aborted = status["rollout"]["aborted"]
    assert aborted["reason"] == "AnalysisFailed", aborted
    assert "latency = " in aborted["message"] and "max 100" in aborted["message"], aborted["message"]
    value = float(aborted["message"].split("latency = ")[1].split()[0])
    assert value > 100   # TorchServe's own counters saw the 200 ms the slow model adds
    warning = [e for e in events(cluster, namespace, start.since)
               if e["type"] == "Warning" and e["reason"] == "AnalysisFailed"]
    assert warning and "latency = " in warning[0]["message"] and "max 100" in warning[0]["message"]
    ratios = [m for m in ((status.get("rollout") or {}).get("metrics") or {}).get("ratio", {}).get(
        "measurements", []) if m["verdict"] == "Failed"]
    assert ratios, status["rollout"].get("metrics")
    assert "ratio (canary / stable) = " in ratios[-1]["message"] and "above max 1.5" in ratios[-1]["message"]
    # canary / stable from both roles' counters: stable answers in milliseconds, the slow canary 200 ms later
    assert ratios[-1]["value"] > 1.5 and 0 < ratios[-1]["stableValue"] < 100, ratios[-1]
    assert status["stableRevision"] == first["status"]["revision"] and "canaryRevision" not in status
    assert set(load.codes()) == {200}, load.failures()   # slow is not failed: every request was answered
    assert wait_for(lambda: deployments(cluster, namespace) == ["iris-stable"], timeout=60)


def deployment(cluster: LocalCluster, namespace: str, name: str) -> dict[str, Any] | None:
    found = cluster.kubectl("get", "deployment", name, "-n", namespace, "-o", "json", check=False)
    return json.loads(found.stdout) if found.returncode == 0 else None


def test_stable_deleted_mid_canary_comes_back_at_its_own_revision_not_the_canarys(
    cluster: LocalCluster, operator: OperatorProcess, namespace: str, start: Start
) -> None:
    first = start.body
    stable_revision = first["status"]["revision"]
    document = version("2", steps=[{"weight": 50}, {"weight": 100}])
    document["spec"]["rollout"]["progressDeadlineSeconds"] = 600  # no load here: no evidence, no deadline either
    apply(cluster, namespace, document)
    paused = wait_rollout(cluster, namespace, lambda s: s.get("phase") == "Paused", "the canary holding at 50 %")
    canary_revision = paused["status"]["canaryRevision"]
    before = deployment(cluster, namespace, "iris-stable")
    assert before is not None

    cluster.kubectl("delete", "deployment", "iris-stable", "-n", namespace)

    def stable_back() -> dict[str, Any] | None:
        live = deployment(cluster, namespace, "iris-stable")
        if live is None or live["metadata"]["uid"] == before["metadata"]["uid"]:
            return None
        return live if (live.get("status") or {}).get("readyReplicas") == live["spec"]["replicas"] else None

    again = wait_for(stable_back, timeout=180, interval=1, message="iris-stable rendered again and ready")
    assert isinstance(again, dict)
    labels = again["spec"]["template"]["metadata"]["labels"]
    assert labels["modeldeploy.dev/revision"] == stable_revision != canary_revision
    assert again["spec"]["template"] == before["spec"]["template"]   # v1's archive, config and image
    status = mdep(cluster, namespace)["status"]
    assert (status["stableRevision"], status["canaryRevision"], status["phase"]) == (
        stable_revision, canary_revision, "Paused")


def rollout_state(cluster: LocalCluster, namespace: str) -> dict[str, Any]:
    return dict((mdep(cluster, namespace).get("status") or {}).get("rollout") or {})


def wait_rollout(cluster: LocalCluster, namespace: str, predicate: Any, message: str,
                 timeout: float = 180) -> dict[str, Any]:
    body = wait_for(lambda: (lambda b: b if predicate(b.get("status") or {}) else None)(mdep(cluster, namespace)),
                    timeout=timeout, interval=0.5, message=message)
    assert isinstance(body, dict)
    return body


def successes(status: dict[str, Any]) -> int:
    return int(((status.get("rollout") or {}).get("metrics") or {}).get("error-rate", {}).get("successesAtStep", 0))


def test_without_traffic_nothing_is_promoted_and_the_deadline_aborts_with_insufficient_data(
    cluster: LocalCluster, operator: OperatorProcess, namespace: str, start: Start
) -> None:
    document = version("2")
    document["spec"]["rollout"]["progressDeadlineSeconds"] = 45
    apply(cluster, namespace, document)
    started = wait_rollout(cluster, namespace, lambda s: s.get("canaryRevision"), "the canary to start")
    body = wait_phase(cluster, namespace, "RolledBack", timeout=180)
    aborted = body["status"]["rollout"]["aborted"]
    assert aborted["reason"] == "InsufficientData", aborted
    assert "no Successful measurement of error-rate" in aborted["message"]
    began = datetime.fromisoformat(started["status"]["rollout"]["stepStartedAt"].replace("Z", "+00:00"))
    at = datetime.fromisoformat(aborted["at"].replace("Z", "+00:00"))
    assert 45 <= (at - began).total_seconds() <= 45 + 15
    reasons = {e["reason"] for e in events(cluster, namespace, start.since)}
    assert "InsufficientData" in reasons and "Promoting" not in reasons and "Promoted" not in reasons
    assert body["status"]["stableRevision"] != body["status"]["revision"]


def container_processes(cluster: LocalCluster, namespace: str, role: str) -> list[int]:
    """Every process of the role's TorchServe containers (the node agent runs them as host processes)."""
    pids: list[int] = []
    for pod in kubectl_json(cluster, "get", "pods", "-n", namespace, "-l", f"modeldeploy.dev/role={role}")["items"]:
        for pidfile in (cluster.dir / "pods" / pod["metadata"]["uid"]).glob("containers/torchserve/pid"):
            namespace_link = os.readlink(f"/proc/{int(pidfile.read_text())}/ns/pid")
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit():
                    try:
                        if os.readlink(entry / "ns" / "pid") == namespace_link:
                            pids.append(int(entry.name))
                    except OSError:
                        continue
    return pids


def signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def test_an_unreachable_canary_metrics_port_is_an_error_never_a_pass_and_aborts_past_the_limit(
    cluster: LocalCluster, operator: OperatorProcess, namespace: str, start: Start
) -> None:
    # One step that holds for a promote request: analysis runs on while it waits.
    with Load(cluster, namespace, rate=10, seconds=300):
        apply(cluster, namespace, version("2", steps=[{"weight": 50}, {"weight": 100}], consecutiveErrorLimit=1))
        wait_rollout(cluster, namespace, lambda s: s.get("phase") == "Paused" and successes(s) >= 1,
                     "the canary paused with evidence")
        pids = container_processes(cluster, namespace, "canary")
        assert pids

        # A short outage: one scrape times out, the next one after the retry succeeds.
        signal_all(pids, signal.SIGSTOP)
        wait_rollout(cluster, namespace,
                     lambda s: s["rollout"]["metrics"]["error-rate"].get("consecutiveErrors", 0) == 1,
                     "a provider error", timeout=60)
        signal_all(pids, signal.SIGCONT)
        body = wait_rollout(cluster, namespace,
                            lambda s: s["rollout"]["metrics"]["error-rate"].get("consecutiveErrors", 0) == 0,
                            "the error streak to reset", timeout=60)
        counters = body["status"]["rollout"]["metrics"]["error-rate"]
        assert counters["failed"] == 0 and "aborted" not in body["status"]["rollout"]
        assert body["status"]["phase"] == "Paused"
        assert any(m["verdict"] == "Error" for m in counters["measurements"])

        # A long one: errors past consecutiveErrorLimit abort.
        pids = container_processes(cluster, namespace, "canary")
        signal_all(pids, signal.SIGSTOP)
        try:
            body = wait_phase(cluster, namespace, "RolledBack", timeout=120)
        finally:
            signal_all(pids, signal.SIGCONT)
    aborted = body["status"]["rollout"]["aborted"]
    assert aborted["reason"] == "MetricsUnavailable", aborted
    assert "provider errors in a row" in aborted["message"] and "timed out" in aborted["message"]


def test_a_canary_whose_model_fails_to_load_is_aborted_at_the_deadline_with_the_models_log_line(
    cluster: LocalCluster, operator: OperatorProcess, namespace: str, shared: tuple[str, Path], start: Start
) -> None:
    versions = shared[1]
    (versions / "iris" / "broken_handler.py").write_text(
        "from ts.torch_handler.base_handler import BaseHandler\n\n\n"
        "class Broken(BaseHandler):\n"
        "    def initialize(self, context):\n"
        "        raise RuntimeError('the weights do not match this handler')\n\n\n"
        "_service = Broken()\n\n\n"
        "def handle(data, context):\n"
        "    if not _service.initialized:\n"
        "        _service.initialize(context)\n"
        "    return _service.handle(data, context)\n")
    (versions / "iris" / "broken_handler.py").chmod(0o644)
    document = version("2")
    document["spec"]["model"]["handler"] = {"uri": "pvc://models/iris/broken_handler.py"}
    document["spec"]["rollout"]["progressDeadlineSeconds"] = 30
    apply(cluster, namespace, document)
    body = wait_phase(cluster, namespace, "RolledBack", timeout=240)
    aborted = body["status"]["rollout"]["aborted"]
    assert aborted["reason"] == "ProgressDeadlineExceeded", aborted
    assert "the weights do not match this handler" in aborted["message"]
    assert wait_for(lambda: deployments(cluster, namespace) == ["iris-stable"], timeout=60)


def test_a_new_revision_mid_canary_restarts_at_step_zero_and_the_stable_spec_returns_at_once(
    cluster: LocalCluster, operator: OperatorProcess, namespace: str, start: Start
) -> None:
    first = start.body
    steps = [{"weight": 10, "pause": "2s"}, {"weight": 50}, {"weight": 100}]
    with Load(cluster, namespace, rate=10, seconds=300):
        apply(cluster, namespace, version("2", steps=steps))
        at_step_2 = wait_rollout(cluster, namespace, lambda s: s.get("currentStep") == 1, "step 2")
        old_canary = at_step_2["status"]["canaryRevision"]
        changed = version("2", steps=steps)
        changed["spec"]["model"]["config"]["batchSize"] = 4  # a new revision, the same archive
        apply(cluster, namespace, changed)
        restarted = wait_rollout(cluster, namespace, lambda s: s.get("canaryRevision") not in (None, old_canary),
                                 "the new canary")
    status = restarted["status"]
    assert status["currentStep"] == 0 and status["rollout"]["stepIndex"] == 0
    assert successes(status) == 0 and status["rollout"]["metrics"].get("error-rate", {}).get("failed", 0) == 0
    assert any(e["reason"] == "CanaryStarted" and "spec changed during the canary" in e["message"]
               for e in events(cluster, namespace, start.since))

    apply(cluster, namespace, version("1", steps=steps))
    back = wait_rollout(cluster, namespace, lambda s: not s.get("canaryRevision"), "the canary cancelled",
                        timeout=60)
    assert back["status"]["stableRevision"] == first["status"]["revision"] == back["status"]["revision"]
    assert any(e["reason"] == "CanaryCancelled" for e in events(cluster, namespace, start.since))
    wait_phase(cluster, namespace, "Healthy", timeout=60)
    assert wait_for(lambda: deployments(cluster, namespace) == ["iris-stable"], timeout=60)


def test_a_good_version_under_load_is_promoted_step_by_step_without_a_failed_request(
    cluster: LocalCluster, operator: OperatorProcess, namespace: str, start: Start
) -> None:
    first = start.body
    with Load(cluster, namespace, rate=12, seconds=300) as load, StatusLine(cluster, namespace) as line:
        applied = time.monotonic()
        apply(cluster, namespace, version("2"))
        body = wait_for(lambda: (lambda b: b if (b.get("status") or {}).get("phase") == "Healthy"
                                 and b["status"].get("stableRevision") != first["status"]["revision"] else None)(
            mdep(cluster, namespace)), timeout=300, interval=0.5, message="v2 promoted")
        promoted = time.monotonic()
        time.sleep(3)  # requests keep flowing while the canary pods end
    assert isinstance(body, dict)
    status = body["status"]
    print(f"apply -> promoted: {promoted - applied:.1f} s; requests {load.codes()}; slowest answers {load.slowest()} s")
    for at, entry in line.lines:
        print(f"{at - applied:7.1f} s  {entry.get('phase'):12} step={entry.get('currentStep')} "
              f"weight={(entry.get('rollout') or {}).get('weight')} effective={entry.get('canaryWeight')}")

    assert status["stableRevision"] == status["revision"] and "canaryRevision" not in status
    assert line.weights() == [50, 100]
    # each step before the last had a Successful measurement at its weight before it advanced
    step_events = [e for e in events(cluster, namespace, start.since)
        if e["reason"] in ("CanaryStep", "Promoting", "Promoted")]
    assert {e["reason"] for e in step_events} >= {"Promoting", "Promoted"}
    assert any(entry.get("analysis", {}).get("measurements") and any(
        m["phase"] == "Successful" for m in entry["analysis"]["measurements"]) for _, entry in line.lines)
    codes = load.codes()
    assert sum(codes.values()) > 100
    assert set(codes) == {200}, load.failures(applied)
    assert min(count for at, count in load.capacity if at >= applied) >= 2
    assert wait_for(lambda: deployments(cluster, namespace) == ["iris-stable"], timeout=60)
    configmaps = kubectl_json(cluster, "get", "configmaps", "-n", namespace, "-l",
                              "modeldeploy.dev/deployment=iris")["items"]
    assert [c["metadata"]["name"] for c in configmaps] == [f"iris-{status['revision']}"]


def ask_to_promote(cluster: LocalCluster, namespace: str, revision: str) -> None:
    """The request `kubectl annotate` writes for a promote of `revision` (the README's way)."""
    request = json.dumps({"action": "promote", "revision": revision,
                          "at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "by": "e2e"})
    cluster.kubectl("annotate", "mdep", "iris", "-n", namespace, f"modeldeploy.dev/request={request}",
                    "--overwrite")


def kill_and_restart(operator: OperatorProcess, down_seconds: float = 3) -> None:
    assert operator.process is not None
    os.killpg(operator.process.pid, signal.SIGKILL)
    operator.process.wait()
    time.sleep(down_seconds)
    operator.start()


def test_a_killed_operator_resumes_at_the_same_step_and_a_stepless_pause_waits_for_a_promote_request(
    cluster: LocalCluster, operator: OperatorProcess, namespace: str, start: Start
) -> None:
    steps = [{"weight": 50, "pause": "75s"}, {"weight": 60}, {"weight": 100}]
    other = "1" if start.body["spec"]["model"]["version"] == "2" else "2"   # v2 is stable once it was promoted
    with Load(cluster, namespace, rate=10, seconds=400):
        apply(cluster, namespace, version(other, steps=steps))
        during = wait_rollout(cluster, namespace, lambda s: s.get("currentStep") == 0 and successes(s) >= 1,
                              "a Successful measurement at step 1")
        generation = during["metadata"]["generation"]
        before = during["status"]["rollout"]
        kill_and_restart(operator)
        resumed = wait_rollout(cluster, namespace,
                               lambda s: s["rollout"]["metrics"]["error-rate"].get("lastMeasuredAt")
                               != before["metrics"]["error-rate"].get("lastMeasuredAt"),
                               "a measurement by the restarted operator", timeout=60)["status"]["rollout"]
        assert (resumed["stepIndex"], resumed["stepStartedAt"]) == (0, before["stepStartedAt"])
        counters, earlier = resumed["metrics"]["error-rate"], before["metrics"]["error-rate"]
        assert counters["failed"] == earlier["failed"] and counters["successesAtStep"] >= earlier["successesAtStep"]

        # What is left of step 1's pause proves nothing more here: a promote request ends it.
        ask_to_promote(cluster, namespace, during["status"]["canaryRevision"])
        paused = wait_rollout(cluster, namespace, lambda s: s.get("phase") == "Paused", "the stepless pause",
                              timeout=120)
        held = paused["status"]["rollout"]
        assert held["stepIndex"] == 1 and held["pause"]["reason"] == "step"
        kill_and_restart(operator)
        time.sleep(2 * INTERVAL)
        again = mdep(cluster, namespace)
        assert again["status"]["phase"] == "Paused"
        assert (again["status"]["rollout"]["stepIndex"], again["status"]["rollout"]["pause"]) == (1, held["pause"])

        ask_to_promote(cluster, namespace, again["status"]["canaryRevision"])
        promoted = wait_phase(cluster, namespace, "Healthy", timeout=180)
    assert promoted["status"]["stableRevision"] == promoted["status"]["revision"]
    assert promoted["metadata"]["generation"] == generation
    assert promoted["status"]["rollout"]["lastRequest"]["action"] == "promote"
