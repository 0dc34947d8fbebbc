"""Rollouts never stall: the transitions that race with a finishing rollback or promotion, repeated.

The operator runs as the README says, with its default resync (60 s): a change it misses shows as a
stall of up to a resync period, so a wake-up lost anywhere between the watches, the resync daemon and
the reconcile fails these tests. Each race repeats `REPETITIONS` times (`make soak` runs the
nightly-size variant) on one ModelDeployment of 2 replicas under load; every repetition must settle
within `SETTLE_SECONDS` of its last change: Healthy (or RolledBack), the stable revision at full size
and ready, no canary left. The slowest settle of each race is printed for the record.

Revisions differ by the serving pods' CPU request only, so one archive serves them all and each
revision costs one TorchServe start per pod, not a build. The races take turns on one object (in a
namespace of this module): each begins where the last one settled, at the stable revision, Healthy.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e.canary_support import Load
from e2e.helpers import OperatorProcess, apply, iris, mdep, wait_phase
from localcluster import LocalCluster
from support import REPO, kubectl_json, provide_iris_claims, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.torchserve]

REPETITIONS = int(os.environ.get("MODELDEPLOY_SOAK_REPETITIONS", "2"))
SETTLE_SECONDS = 30.0
"""The bound on settling after the last change of a repetition (its pods already started once)."""
REPLICAS = 2


@pytest.fixture(scope="module")
def operator(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    """The operator with its default resync period, as a user runs it."""
    cluster.kubectl("apply", "-f", str(REPO / "manifests" / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "crd/modeldeployments.modeldeploy.dev",
                    "--timeout=60s")
    running = OperatorProcess(cluster, tmp_path_factory.mktemp("operator") / "operator.log", resync_seconds=None)
    running.start()
    # The namespaces earlier modules left behind wait for an operator to remove their objects' finalizers;
    # with this one running they go, and their pods' CPU requests with them, before the races are timed.
    def terminating() -> list[str]:
        return [n["metadata"]["name"] for n in kubectl_json(cluster, "get", "namespaces")["items"]
                if n.get("status", {}).get("phase") == "Terminating"]

    try:
        wait_for(lambda: not terminating(), timeout=180, interval=1, message="the namespaces of earlier tests to go")
    except AssertionError:
        print(f"still terminating when the races start: {terminating()}")
    yield running
    running.stop()
    print(f"operator log: {running.log_path}")


@pytest.fixture(scope="module")
def races(cluster: LocalCluster, operator: OperatorProcess, iris_files: Path) -> Iterator[str]:
    """The namespace the races share: the iris object at the stable revision, Healthy, with its claims."""
    name = f"rollout-races-{uuid.uuid4().hex[:5]}"
    cluster.kubectl("create", "namespace", name)
    wait_for(lambda: cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0,
             timeout=120, message=f"namespace {name}'s default ServiceAccount")
    provide_iris_claims(cluster, name, iris_files)
    apply(cluster, name, revision(STABLE, LONG_PAUSE))
    wait_phase(cluster, name, "Healthy", timeout=300)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def revision(cpu: int, steps: list[dict[str, Any]], deadline: int = 60, min_requests: int = 10) -> dict[str, Any]:
    """The iris spec with pods asking `cpu` millicores: a revision of its own, served from the same archive."""
    document = iris(replicas=REPLICAS, rollout={
        "steps": steps,
        "analysis": {"interval": "5s", "failureLimit": 1, "consecutiveErrorLimit": 2, "minRequests": min_requests,
                     "metrics": [{"name": "error-rate", "provider": {"torchserve": {"metric": "error-rate"}},
                                  "max": 0.1}]},
        "progressDeadlineSeconds": deadline,
    })
    document["spec"]["serving"]["resources"]["requests"]["cpu"] = f"{cpu}m"
    return document


STABLE = 100
RANGE = 30
"""Each race's revisions ask CPU in a range of its own above stable's (a race makes up to 3 per repetition)."""


def first_cpu(race: int) -> int:
    """The CPU request (millicores) of race number `race`'s first revision."""
    return STABLE + 10 + race * RANGE
LONG_PAUSE = [{"weight": 25, "pause": "120s"}, {"weight": 100}]


def pods(cluster: LocalCluster, namespace: str, role: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = kubectl_json(cluster, "get", "pods", "-n", namespace,
                                               "-l", f"modeldeploy.dev/role={role}")["items"]
    return [p for p in found if not p["metadata"].get("deletionTimestamp")]


def ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions") or [])


def rollout(cluster: LocalCluster, namespace: str) -> dict[str, Any]:
    """status.rollout: the canary's state as the operator keeps it."""
    found: dict[str, Any] = (mdep(cluster, namespace).get("status") or {}).get("rollout") or {}
    return found


def canary_ready(cluster: LocalCluster, namespace: str) -> bool:
    return any(ready(p) for p in pods(cluster, namespace, "canary"))


def settled(cluster: LocalCluster, namespace: str, phases: tuple[str, ...] = ("Healthy",)) -> dict[str, Any] | None:
    """The object once it is in one of `phases`, stable whole and ready, no canary Deployment or pod."""
    body = mdep(cluster, namespace)
    status = body.get("status") or {}
    if status.get("phase") not in phases or status.get("observedGeneration") != body["metadata"]["generation"]:
        return None
    names = {d["metadata"]["name"] for d in kubectl_json(cluster, "get", "deployments", "-n", namespace)["items"]}
    if "iris-canary" in names or pods(cluster, namespace, "canary"):
        return None
    stable = [p for p in pods(cluster, namespace, "stable") if ready(p)]
    return body if len(stable) == REPLICAS else None


def modeldeploy(cluster: LocalCluster, namespace: str, *args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "modeldeploy", *args, "iris", "-n", namespace],
                            env=cluster.env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def what_it_did(cluster: LocalCluster, namespace: str, operator: OperatorProcess) -> str:
    """The object's status, its pods and the operator's last lines: what a stalled repetition shows."""
    status = mdep(cluster, namespace).get("status") or {}
    conditions = {c.get("type"): f"{c.get('status')} {c.get('reason')}: {c.get('message')}"
                  for c in status.get("conditions") or []}
    listed = [describe(p) for p in kubectl_json(cluster, "get", "pods", "-n", namespace)["items"]]
    elsewhere = [f"{p['metadata']['namespace']}/{p['metadata']['name']} {p.get('status', {}).get('phase')}"
                 for p in kubectl_json(cluster, "get", "pods", "-A")["items"]
                 if p["metadata"]["namespace"] != namespace
                 and p.get("status", {}).get("phase") in {"Pending", "Running"}]
    ours = [line for line in operator.log_path.read_text(errors="replace").splitlines() if namespace in line
            or "kopf.objects" in line]
    return (f"phase {status.get('phase')}, rollout {status.get('rollout')}, conditions {conditions}\n"
            f"pods: {listed}\nother namespaces' pods: {elsewhere}\n"
            "operator log, last lines:\n" + "\n".join(ours[-40:]))


def describe(pod: dict[str, Any]) -> str:
    """A pod's name, phase, readiness, deletion and why it is not scheduled or not ready, on one line."""
    status = pod.get("status") or {}
    waiting = [f"{c['type']}={c['status']} {c.get('reason', '')} {c.get('message', '')}".strip()
               for c in status.get("conditions") or [] if c.get("status") != "True"]
    return (f"{pod['metadata']['name']} {status.get('phase')} ready={ready(pod)} "
            f"deleting={bool(pod['metadata'].get('deletionTimestamp'))} {waiting}")


def soak(cluster: LocalCluster, namespace: str, race: Callable[[int], tuple[float, tuple[str, ...]]],
         name: str, operator: OperatorProcess) -> None:
    """Run `race` (returns when its last change was made, and the phases it settles in) REPETITIONS times."""
    # Where the last race settled; after a failed one, the stable revision's spec brings the object back.
    apply(cluster, namespace, revision(STABLE, LONG_PAUSE))
    wait_for(lambda: settled(cluster, namespace), timeout=300, interval=0.5, message=f"{name}: the stable start")
    settle_times: list[float] = []
    try:
        _repeat(cluster, namespace, race, name, settle_times)
    except AssertionError as error:
        raise AssertionError(f"{error}\n{what_it_did(cluster, namespace, operator)}") from error
    print(f"{name}: {REPETITIONS} repetitions, slowest settle {max(settle_times):.1f} s "
          f"(all: {', '.join(f'{t:.1f}' for t in settle_times)})")


def _repeat(cluster: LocalCluster, namespace: str, race: Callable[[int], tuple[float, tuple[str, ...]]],
            name: str, settle_times: list[float]) -> None:
    with Load(cluster, namespace, rate=12, seconds=3600):
        for repetition in range(REPETITIONS):
            changed_at, phases = race(repetition)
            wait_for(lambda phases=phases: settled(cluster, namespace, phases), timeout=SETTLE_SECONDS, interval=0.5,
                     message=f"{name}, repetition {repetition + 1}: settled in {'/'.join(phases)}")
            settle_times.append(time.monotonic() - changed_at)
            if phases != ("Healthy",):
                # Back to the stable revision's spec (a rolled-back object waits for the spec to change).
                apply(cluster, namespace, revision(STABLE, LONG_PAUSE))
                wait_for(lambda: settled(cluster, namespace), timeout=SETTLE_SECONDS, interval=0.5,
                         message=f"{name}, repetition {repetition + 1}: back at the stable spec")


def test_a_revert_to_stable_as_soon_as_the_canary_is_ready_settles(
    cluster: LocalCluster, operator: OperatorProcess, races: str
) -> None:
    namespace = races
    def race(repetition: int) -> tuple[float, tuple[str, ...]]:
        apply(cluster, namespace, revision(first_cpu(0) + repetition, LONG_PAUSE))
        wait_for(lambda: canary_ready(cluster, namespace), timeout=120, interval=0.2, message="a ready canary pod")
        apply(cluster, namespace, revision(STABLE, LONG_PAUSE))
        return time.monotonic(), ("Healthy",)

    soak(cluster, namespace, race, "revert as soon as the canary is ready", operator)


def test_a_deadline_rollback_then_a_new_revision_then_a_revert_to_stable_settles(
    cluster: LocalCluster, operator: OperatorProcess, races: str
) -> None:
    """The sequence a stall was once seen in: a canary rolled back at its progress deadline for want of
    data; while stable comes back to full size the next revision arrives; as soon as its canary pod is
    ready, the spec goes back to the stable revision."""
    namespace = races
    def race(repetition: int) -> tuple[float, tuple[str, ...]]:
        cpu = first_cpu(1) + 2 * repetition
        # More requests than the load can send in the deadline: InsufficientData at 30 s.
        apply(cluster, namespace, revision(cpu, [{"weight": 25, "pause": "10s"}, {"weight": 100}], deadline=30,
                                           min_requests=1_000_000))
        wait_for(lambda: rollout(cluster, namespace).get("aborted", {}).get("reason") == "InsufficientData",
                 timeout=120, interval=0.2,
                 message="the rollback at the deadline")
        wait_for(lambda: not pods(cluster, namespace, "canary"), timeout=60, interval=0.2,
                 message="the rolled-back canary's pods gone")
        apply(cluster, namespace, revision(cpu + 1, LONG_PAUSE))
        wait_for(lambda: canary_ready(cluster, namespace), timeout=120, interval=0.2, message="the next canary ready")
        apply(cluster, namespace, revision(STABLE, LONG_PAUSE))
        return time.monotonic(), ("Healthy",)

    soak(cluster, namespace, race, "deadline rollback, new revision, revert", operator)


def test_a_new_revision_during_a_rollback_and_a_revert_as_its_canary_is_ready_settle(
    cluster: LocalCluster, operator: OperatorProcess, races: str
) -> None:
    namespace = races
    def race(repetition: int) -> tuple[float, tuple[str, ...]]:
        cpu = first_cpu(2) + 2 * repetition
        apply(cluster, namespace, revision(cpu, LONG_PAUSE))
        wait_for(lambda: canary_ready(cluster, namespace), timeout=120, interval=0.2, message="a ready canary pod")
        modeldeploy(cluster, namespace, "abort")
        # While stable comes back to full size (Degraded), the next revision arrives.
        wait_for(lambda: (mdep(cluster, namespace).get("status") or {}).get("phase") in ("Degraded", "RolledBack"),
                 timeout=30, interval=0.1, message="the rollback begun")
        apply(cluster, namespace, revision(cpu + 1, LONG_PAUSE))
        wait_for(lambda: canary_ready(cluster, namespace), timeout=120, interval=0.2, message="the next canary ready")
        apply(cluster, namespace, revision(STABLE, LONG_PAUSE))
        return time.monotonic(), ("Healthy",)

    soak(cluster, namespace, race, "new revision during a rollback, then a revert", operator)


def test_a_revert_during_a_promotion_settles(
    cluster: LocalCluster, operator: OperatorProcess, races: str
) -> None:
    namespace = races
    def race(repetition: int) -> tuple[float, tuple[str, ...]]:
        apply(cluster, namespace, revision(first_cpu(3) + repetition, LONG_PAUSE))
        wait_for(lambda: canary_ready(cluster, namespace), timeout=120, interval=0.2, message="a ready canary pod")
        modeldeploy(cluster, namespace, "promote", "--full")
        wait_for(lambda: rollout(cluster, namespace).get("promoting"), timeout=30, interval=0.1,
                 message="the promotion begun")
        apply(cluster, namespace, revision(STABLE, LONG_PAUSE))
        return time.monotonic(), ("Healthy",)

    soak(cluster, namespace, race, "revert during a promotion", operator)


def test_an_abort_right_after_a_step_advance_settles(
    cluster: LocalCluster, operator: OperatorProcess, races: str
) -> None:
    namespace = races
    steps = [{"weight": 25, "pause": "1s"}, {"weight": 50, "pause": "120s"}, {"weight": 100}]

    def race(repetition: int) -> tuple[float, tuple[str, ...]]:
        apply(cluster, namespace, revision(first_cpu(4) + repetition, steps))
        wait_for(lambda: rollout(cluster, namespace).get("stepIndex") == 1, timeout=120, interval=0.1,
                 message="the step advance")
        modeldeploy(cluster, namespace, "abort")
        return time.monotonic(), ("RolledBack",)

    soak(cluster, namespace, race, "abort right after a step advance", operator)
