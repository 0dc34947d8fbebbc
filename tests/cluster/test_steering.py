"""Steering commands and the live status view against a real API server, with no operator running.

The test plays the engine's part where one is needed: it writes status as the engine does
(`kubectl patch --subresource=status`) and posts the Event the engine would. What is proven here is
the command's side: only the annotation is written, the generation never moves, a command that can
change nothing writes nothing, and the answer follows the status the engine records.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from localcluster import LocalCluster
from modeldeploy.api.conditions import format_time
from modeldeploy.api.rollout import (
    HandledRequest,
    MeasurementRecord,
    MeasurementVerdict,
    MetricState,
    RolloutState,
)
from modeldeploy.canary.requests import REQUEST_ANNOTATION, parse_request
from support import REPO, kubectl_json, wait_for

pytestmark = pytest.mark.cluster

CRD_NAME = "modeldeployments.modeldeploy.dev"
STABLE = "7f3a9c01de" + "0" * 54
CANARY = "1b2c3d4e5f" + "0" * 54


@pytest.fixture(scope="module")
def crd(cluster: LocalCluster) -> LocalCluster:
    """The CRD, with status.rollout kept (the canary engine declares it; older CRDs would prune it)."""
    crd = yaml.safe_load((REPO / "manifests/crds/modeldeploy.dev_modeldeployments.yaml").read_text())
    status = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    status.setdefault("rollout", {"type": "object", "x-kubernetes-preserve-unknown-fields": True})
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(crd))
    cluster.kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
    return cluster


@pytest.fixture
def iris(crd: LocalCluster, namespace: str) -> str:
    """The sample object (nobody reconciles it here)."""
    sample = yaml.safe_load((REPO / "manifests/samples/iris.yaml").read_text())
    crd.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(sample))
    return "iris"


def put_status(cluster: LocalCluster, namespace: str, state: RolloutState, phase: str, message: str = "") -> None:
    """Write status as the engine does."""
    status: dict[str, Any] = {"phase": phase, "rollout": state.to_dict(), **state.summary()}
    if message:
        status["conditions"] = [{"type": "Progressing", "status": "True", "reason": "Canary", "message": message,
                                 "lastTransitionTime": format_time(datetime.now(UTC))}]
    cluster.kubectl("patch", "mdep", "iris", "-n", namespace, "--subresource=status", "--type=merge",
                    "-p", json.dumps({"status": status}))


def post_event(cluster: LocalCluster, namespace: str, uid: str, reason: str, message: str) -> None:
    now = format_time(datetime.now(UTC))
    cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"iris.{uuid.uuid4().hex[:10]}", "namespace": namespace},
        "involvedObject": {"apiVersion": "modeldeploy.dev/v1alpha1", "kind": "ModelDeployment", "name": "iris",
                           "namespace": namespace, "uid": uid},
        "reason": reason, "message": message, "type": "Normal", "firstTimestamp": now, "lastTimestamp": now,
        "count": 1, "source": {"component": "modeldeploy"},
    }))


def modeldeploy(cluster: LocalCluster, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "modeldeploy", *args], env=cluster.env(), capture_output=True,
                          text=True, timeout=timeout)


def started(seconds_ago: int = 10) -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=seconds_ago)


def at_step(index: int, weight: int, effective: int, measurements: tuple[MeasurementRecord, ...] = (),
            last_request: HandledRequest | None = None) -> RolloutState:
    return RolloutState(stable_revision=STABLE, canary_revision=CANARY, step_index=index, step_started_at=started(),
                        weight=weight, effective_weight=effective, last_request=last_request,
                        metrics={"error-rate": MetricState(measurements=measurements)})


def test_commands_write_only_the_annotation_and_the_generation_never_moves(crd: LocalCluster, namespace: str,
                                                                            iris: str) -> None:
    put_status(crd, namespace, at_step(0, 25, 25), "Progressing")
    before = kubectl_json(crd, "get", "mdep", iris, "-n", namespace)

    result = modeldeploy(crd, "pause", iris, "-n", namespace, "--timeout", "0")

    assert result.returncode == 0, result.stderr
    assert "pause revision 1b2c3d4e5f (step 1/3, weight 25 %, effective 25 %)" in result.stdout
    after = kubectl_json(crd, "get", "mdep", iris, "-n", namespace)
    request = parse_request(after["metadata"]["annotations"][REQUEST_ANNOTATION])
    assert (request.action.value, request.revision) == ("pause", CANARY)
    assert request.by  # the kubeconfig context's user
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["spec"] == before["spec"]


def test_a_command_that_can_change_nothing_says_why_and_writes_nothing(crd: LocalCluster, namespace: str,
                                                                      iris: str) -> None:
    put_status(crd, namespace, RolloutState(stable_revision=STABLE), "Healthy")
    before = kubectl_json(crd, "get", "mdep", iris, "-n", namespace)

    promote = modeldeploy(crd, "promote", iris, "-n", namespace)
    retry = modeldeploy(crd, "retry", iris, "-n", namespace)

    assert promote.returncode == 1 and "no canary" in promote.stdout and "7f3a9c01de" in promote.stdout
    assert retry.returncode == 1 and "nothing to retry" in retry.stdout
    after = kubectl_json(crd, "get", "mdep", iris, "-n", namespace)
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_promote_waits_for_the_engine_and_prints_what_it_did(crd: LocalCluster, namespace: str, iris: str) -> None:
    put_status(crd, namespace, at_step(0, 25, 25), "Progressing")
    uid = kubectl_json(crd, "get", "mdep", iris, "-n", namespace)["metadata"]["uid"]
    command = subprocess.Popen([sys.executable, "-m", "modeldeploy", "promote", iris, "-n", namespace,
                                "--timeout", "60"], env=crd.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        def written() -> str | None:
            annotations = kubectl_json(crd, "get", "mdep", iris, "-n", namespace)["metadata"].get("annotations")
            return (annotations or {}).get(REQUEST_ANNOTATION)

        request = parse_request(str(wait_for(written, timeout=30, message="the request annotation")))
        # The engine's part: the step advances, the request is recorded as handled, an Event says so.
        post_event(crd, namespace, uid, "CanaryStep", "revision 1b2c3d4e5f: step 2/3, weight 50 %")
        put_status(crd, namespace, at_step(1, 50, 25, last_request=request.handled), "Progressing",
                   "canary 1b2c3d4e5f at step 2/3, weight 50 % (effective 25 %)")
        out, err = command.communicate(timeout=30)
    finally:
        if command.poll() is None:
            command.kill()
    assert command.returncode == 0, err
    assert "Normal CanaryStep: revision 1b2c3d4e5f: step 2/3, weight 50 %" in out
    assert "phase Progressing: canary 1b2c3d4e5f at step 2/3, weight 50 % (effective 25 %)" in out


def test_a_request_nobody_handles_times_out_and_says_so(crd: LocalCluster, namespace: str, iris: str) -> None:
    put_status(crd, namespace, at_step(0, 25, 25), "Progressing")

    result = modeldeploy(crd, "abort", iris, "-n", namespace, "--timeout", "2")

    assert result.returncode == 3
    assert "not handled within 2 s: is the operator running?" in result.stdout


def test_status_json_for_scripts(crd: LocalCluster, namespace: str, iris: str) -> None:
    put_status(crd, namespace, at_step(1, 50, 50), "Progressing")

    result = modeldeploy(crd, "status", iris, "-n", namespace, "-o", "json")

    assert result.returncode == 0, result.stderr
    view = json.loads(result.stdout)
    assert (view["canary"], view["step"], view["steps"], view["weight"]) == (CANARY, 1, 3, 50)


def measured(seconds_ago: int, value: float, requests: int, verdict: MeasurementVerdict,
             weight: int) -> MeasurementRecord:
    return MeasurementRecord(at=started(seconds_ago), verdict=verdict, value=value, requests=requests, weight=weight)


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[list[str]]:
    """A private tmux server (its own socket), killed afterwards."""
    binary = shutil.which("tmux")
    if binary is None:
        pytest.fail("tmux is required (hack/install-system-packages.sh installs it)")
    base = [binary, "-S", str(tmp_path / "tmux.sock")]
    yield base
    subprocess.run([*base, "kill-server"], capture_output=True)


def test_status_watch_in_a_terminal_shows_step_weight_and_measurements_changing(
        crd: LocalCluster, namespace: str, iris: str, tmux: list[str]) -> None:
    put_status(crd, namespace, at_step(0, 25, 25, (measured(30, 0.0, 41, MeasurementVerdict.SUCCESSFUL, 25),)),
               "Progressing",
               "canary 1b2c3d4e5f at step 1/3, weight 25 %")
    command = (f"KUBECONFIG={crd.kubeconfig} PATH={os.path.dirname(sys.executable)}:$PATH "
               f"{sys.executable} -m modeldeploy status -w {iris} -n {namespace}")
    subprocess.run([*tmux, "new-session", "-d", "-x", "150", "-y", "50", "-s", "view", command], check=True)

    def pane() -> str:
        return subprocess.run([*tmux, "capture-pane", "-p", "-t", "view"], capture_output=True, text=True).stdout

    first = str(wait_for(lambda: (lambda text: text if "step 1/3" in text else None)(pane()), timeout=30,
                         message="the view at step 1"))
    assert "asked 25 %  effective 25 %" in first and "41" in first and "Successful" in first

    put_status(crd, namespace, at_step(1, 50, 25, (measured(30, 0.0, 41, MeasurementVerdict.SUCCESSFUL, 25),
                                                   measured(1, 0.25, 64, MeasurementVerdict.FAILED, 25))),
               "Progressing",
               "canary 1b2c3d4e5f at step 2/3, weight 50 %")
    second = str(wait_for(lambda: (lambda text: text if "step 2/3" in text and "Failed" in text else None)(pane()),
                          timeout=30, message="the view at step 2 with a failed measurement"))
    assert "asked 50 %  effective 25 %" in second and "0.25" in second and "64" in second

    put_status(crd, namespace, at_step(1, 50, 50, (measured(30, 0.0, 41, MeasurementVerdict.SUCCESSFUL, 25),
                                                   measured(1, 0.25, 64, MeasurementVerdict.FAILED, 25))),
               "Progressing")
    wait_for(lambda: "asked 50 %  effective 50 %" in pane() or None, timeout=30, message="the effective weight")


def test_status_watch_in_a_pipe_prints_a_block_per_change_and_ends_when_the_object_is_deleted(
        crd: LocalCluster, namespace: str, iris: str, tmp_path: Path) -> None:
    put_status(crd, namespace, at_step(0, 25, 25), "Progressing")
    out_path = tmp_path / "status.out"
    with out_path.open("w") as out:
        command = subprocess.Popen([sys.executable, "-m", "modeldeploy", "status", "-w", iris, "-n", namespace],
                                   env=crd.env(), stdout=out, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: "rollout   step 1/3" in out_path.read_text() or None, timeout=30, message="the first block")
        put_status(crd, namespace, at_step(1, 50, 25), "Progressing")
        wait_for(lambda: "rollout   step 2/3" in out_path.read_text() or None, timeout=30, message="a second block")
        crd.kubectl("delete", "mdep", iris, "-n", namespace, "--wait=false")
        assert command.wait(timeout=30) == 0
    finally:
        if command.poll() is None:
            command.kill()
    text = out_path.read_text()
    assert "\x1b[" not in text  # plain text in a pipe: no terminal escapes
    assert text.count("revision  7f3a9c01de (stable) -> 1b2c3d4e5f (canary)") == 2
    assert text.rstrip().endswith(f"modeldeployment {namespace}/iris was deleted")


def kubeconfig_for(cluster: LocalCluster, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig that authenticates as a ServiceAccount (a token), with the cluster's server and CA."""
    cluster.kubectl("create", "serviceaccount", account, "-n", namespace)
    token = cluster.kubectl("create", "token", account, "-n", namespace, "--duration=10m").stdout.strip()
    config = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    context = config["contexts"][0]["context"]
    config["users"] = [{"name": account, "user": {"token": token}}]
    config["contexts"] = [{"name": account, "context": {"cluster": context["cluster"], "user": account,
                                                        "namespace": namespace}}]
    config["current-context"] = account
    path.write_text(yaml.safe_dump(config))
    return path


def test_the_user_roles_grant_what_each_command_needs_and_no_more(crd: LocalCluster, namespace: str, iris: str,
                                                                  tmp_path: Path) -> None:
    crd.kubectl("apply", "-f", str(REPO / "manifests/rbac/user_roles.yaml"))
    put_status(crd, namespace, at_step(0, 25, 25), "Progressing")
    steerer = kubeconfig_for(crd, namespace, "steerer", tmp_path / "steerer")
    viewer = kubeconfig_for(crd, namespace, "viewer", tmp_path / "viewer")
    crd.kubectl("create", "rolebinding", "steerer", "-n", namespace, "--clusterrole=modeldeploy-rollout-steer",
                f"--serviceaccount={namespace}:steerer")
    crd.kubectl("create", "rolebinding", "viewer", "-n", namespace, "--clusterrole=modeldeploy-rollout-view",
                f"--serviceaccount={namespace}:viewer")

    def as_user(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "modeldeploy", *args], capture_output=True, text=True,
                              env={**os.environ, "KUBECONFIG": str(kubeconfig)}, timeout=60)

    # get, patch and watch: written, then waited for (nobody handles it here).
    pause = as_user(steerer, "pause", iris, "--timeout", "2")
    assert pause.returncode == 3, pause.stdout + pause.stderr
    request = parse_request(kubectl_json(crd, "get", "mdep", iris, "-n", namespace)["metadata"]["annotations"][
        REQUEST_ANNOTATION])
    assert request.by == "steerer"  # the kubeconfig context's user
    status = as_user(viewer, "status", iris, "-o", "json")
    assert status.returncode == 0, status.stderr
    refused = as_user(viewer, "abort", iris, "--timeout", "2")
    assert refused.returncode == 2 and "403" in refused.stderr
    # Aggregated into the built-in roles: edit may steer, view may only look.
    for role in ("edit", "view"):
        crd.kubectl("create", "rolebinding", f"{role}-user", "-n", namespace, f"--clusterrole={role}",
                    f"--serviceaccount={namespace}:{role}-user")

    def can(role: str, verb: str) -> str:
        return crd.kubectl("auth", "can-i", verb, "modeldeployments.modeldeploy.dev", "-n", namespace,
                           f"--as=system:serviceaccount:{namespace}:{role}-user", check=False).stdout.strip()

    wait_for(lambda: (can("edit", "patch") == "yes" and can("view", "watch") == "yes") or None, timeout=30,
             message="the aggregation controller folding our roles into edit and view")
    assert can("view", "patch") == "no"
