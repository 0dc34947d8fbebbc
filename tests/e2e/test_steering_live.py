"""The steering commands and the live status view on a running canary: real TorchServe pods, load through
the Service `iris`, the operator as users run it.

The scenarios share one namespace, 2 replicas, 5 s analysis windows and a bounded load. The abort comes
first: it ends with v1 stable, so v1 applied again is Healthy at once for the promotion, with no pod
started. The commands run as a user runs them (`python -m modeldeploy ...`, the cluster's kubeconfig);
their answers (stdout, exit status) are checked with what the object and its Events show afterwards, and
the generation never moves.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from e2e.canary_support import Load
from e2e.helpers import OperatorProcess, apply, iris, mdep, wait_phase
from localcluster import LocalCluster
from modeldeploy.api.rollout import parse_time
from modeldeploy.canary.requests import REQUEST_ANNOTATION
from support import REPO, kubectl_json, provide_iris_claims, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.torchserve]

INTERVAL = 5
# 25 % and 50 % are both one canary pod of two: the weight asked for moves, no new pod has to start.
STEPS: list[dict[str, Any]] = [{"weight": 25}, {"weight": 50, "pause": "10m"}, {"weight": 100}]


def spec(name: str, steps: list[dict[str, Any]]) -> dict[str, Any]:
    """The iris sample serving model folder `name` of the claim `models`, with a short-interval canary."""
    document = iris(replicas=2, rollout={
        "steps": steps,
        "analysis": {"interval": f"{INTERVAL}s", "failureLimit": 1, "consecutiveErrorLimit": 2, "minRequests": 10,
                     "metrics": [{"name": "error-rate", "provider": {"torchserve": {"metric": "error-rate"}},
                                  "max": 0.1}]},
        "progressDeadlineSeconds": 120,
    })
    document["spec"]["model"].update(version=name, serializedFile={"uri": f"pvc://models/iris/{name}/model.pt"},
                                     configFile={"uri": f"pvc://models/iris/{name}/model-config.yaml"})
    return document  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def steering_builds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """iris v1 and v2, trained here once per session."""
    root = tmp_path_factory.mktemp("steering-iris")
    for name in ("1", "2"):
        subprocess.run([sys.executable, str(REPO / "model_archives/iris/train.py"), "--out", str(root / name),
                        "--version", f"v{name}"], check=True, capture_output=True)
    return root


@pytest.fixture(scope="module")
def shared(cluster: LocalCluster, iris_files: Path, steering_builds: Path) -> Iterator[tuple[str, Path]]:
    """The namespace the scenarios share, and its claim `models` with iris/{1,2}/{model.pt,model-config.yaml}."""
    name = f"steering-{uuid.uuid4().hex[:5]}"
    cluster.kubectl("create", "namespace", name)
    wait_for(lambda: cluster.kubectl("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0,
             timeout=120, message=f"namespace {name}'s default ServiceAccount")
    models = provide_iris_claims(cluster, name, iris_files)
    for version_name in ("1", "2"):
        folder = models / "iris" / version_name
        folder.mkdir(parents=True, exist_ok=True)
        for file in ("model.pt", "model-config.yaml"):
            shutil.copy(steering_builds / version_name / file, folder / file)
    for path in models.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    yield name, models
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="module")
def namespace(shared: tuple[str, Path]) -> str:
    return shared[0]


@pytest.fixture(scope="module")
def two_versions(shared: tuple[str, Path]) -> Path:
    return shared[1]


def modeldeploy(cluster: LocalCluster, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    """One command as a user types it; its answer printed for the log."""
    result = subprocess.run([sys.executable, "-m", "modeldeploy", *args, "iris", "-n", namespace],
                            env=cluster.env(), capture_output=True, text=True, timeout=120)
    print(f"$ modeldeploy {' '.join(args)} iris -> exit {result.returncode}\n{result.stdout}{result.stderr}")
    return result


def rollout_of(body: dict[str, Any]) -> dict[str, Any]:
    return (body.get("status") or {}).get("rollout") or {}


def wait_status(cluster: LocalCluster, namespace: str, predicate: Callable[[dict[str, Any]], object], message: str,
                timeout: float = 180) -> dict[str, Any]:
    """The object once `predicate(status)` holds."""
    body = wait_for(lambda: (lambda b: b if predicate(b.get("status") or {}) else None)(mdep(cluster, namespace)),
                    timeout=timeout, interval=0.5, message=message)
    assert isinstance(body, dict)
    return body


def measured_after(status: dict[str, Any], moment: datetime) -> bool:
    """Whether error-rate has a measurement (of any verdict) taken after `moment`."""
    metric = ((status.get("rollout") or {}).get("metrics") or {}).get("error-rate") or {}
    return any(parse_time(m["at"]) > moment for m in metric.get("measurements") or [])


def successes(status: dict[str, Any]) -> int:
    metric = ((status.get("rollout") or {}).get("metrics") or {}).get("error-rate") or {}
    return int(metric.get("successesAtStep", 0))


def events(cluster: LocalCluster, namespace: str, reason: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl_json(cluster, "get", "events", "-n", namespace, "--field-selector",
                                               f"involvedObject.kind=ModelDeployment,reason={reason}")["items"]
    return items


def requested_by(cluster: LocalCluster, namespace: str) -> str:
    """Who the last command said was asking (the kubeconfig context's user)."""
    annotations = mdep(cluster, namespace)["metadata"].get("annotations") or {}
    return str(json.loads(annotations[REQUEST_ANNOTATION])["by"])


def healthy_v1(cluster: LocalCluster, namespace: str, steps: list[dict[str, Any]]) -> str:
    """v1 applied and Healthy: its revision."""
    apply(cluster, namespace, spec("1", steps))
    return str(wait_phase(cluster, namespace, "Healthy", timeout=240)["status"]["revision"])


def canary_of_v2(cluster: LocalCluster, namespace: str, steps: list[dict[str, Any]], stable: str) -> tuple[str, int]:
    """v2 applied: (its revision, now the canary's, and the generation its spec made)."""
    apply(cluster, namespace, spec("2", steps))
    body = wait_status(cluster, namespace, lambda s: s.get("canaryRevision"), "the canary of v2", timeout=60)
    assert body["status"]["canaryRevision"] != stable
    return str(body["status"]["canaryRevision"]), int(body["metadata"]["generation"])


class Terminal:
    """`modeldeploy status -w` in a private tmux server (its own socket), read with capture-pane."""

    def __init__(self, cluster: LocalCluster, namespace: str, socket: Path) -> None:
        binary = shutil.which("tmux")
        if binary is None:
            pytest.fail("tmux is required (hack/install-system-packages.sh installs it)")
        self.base = [binary, "-S", str(socket)]
        command = (f"KUBECONFIG={cluster.kubeconfig} PATH={os.path.dirname(sys.executable)}:$PATH "
                   f"{sys.executable} -m modeldeploy status -w iris -n {namespace}")
        # The pane stays after the command ends, so a view that died leaves its last words on the screen.
        subprocess.run([*self.base, "start-server", ";", "set-option", "-g", "remain-on-exit", "on", ";",
                        "new-session", "-d", "-x", "160", "-y", "60", "-s", "view", command], check=True)
        self.screens: list[str] = []

    def pane(self) -> str:
        text = subprocess.run([*self.base, "capture-pane", "-p", "-t", "view"], capture_output=True,
                              text=True).stdout
        if not self.screens or self.screens[-1] != text:
            self.screens.append(text)
        return text

    def shows(self, *needles: str, message: str, timeout: float = 60) -> str:
        """The screen once it shows every one of `needles` (the failure quotes the last screen)."""
        try:
            return str(wait_for(lambda: (lambda text: text if all(n in text for n in needles) else None)(self.pane()),
                                timeout=timeout, interval=0.5, message=f"the live view showing {message}"))
        except AssertionError as error:
            raise AssertionError(f"{error}\nlast screen:\n{self.pane()}") from None

    def close(self) -> None:
        subprocess.run([*self.base, "kill-server"], capture_output=True)


@pytest.fixture
def terminal(cluster: LocalCluster, namespace: str, tmp_path: Path) -> Iterator[Callable[[], Terminal]]:
    opened: list[Terminal] = []

    def open_terminal() -> Terminal:
        opened.append(Terminal(cluster, namespace, tmp_path / "tmux.sock"))
        return opened[0]

    yield open_terminal
    for running in opened:
        running.close()


def test_abort_rolls_back_naming_who_asked_a_stale_promote_does_nothing_and_retry_starts_over(
    cluster: LocalCluster, operator: OperatorProcess, namespace: str, two_versions: Path,
) -> None:
    steps: list[dict[str, Any]] = [{"weight": 50}, {"weight": 100}]
    stable = healthy_v1(cluster, namespace, steps)
    with Load(cluster, namespace, rate=10, seconds=420):
        canary, generation = canary_of_v2(cluster, namespace, steps, stable)
        wait_status(cluster, namespace, lambda s: successes(s) >= 1, "a Successful measurement at step 1")

        abort = modeldeploy(cluster, namespace, "abort")
        assert abort.returncode == 0, abort.stdout + abort.stderr
        by = requested_by(cluster, namespace)
        assert (f"Warning Aborted: revision {canary[:10]} rolled back to {stable[:10]}: abort requested by {by}"
                in abort.stdout)
        rolled_back = wait_phase(cluster, namespace, "RolledBack", timeout=120)
        aborted = rollout_of(rolled_back)["aborted"]
        assert (aborted["revision"], aborted["reason"], aborted["message"]) == (
            canary, "Aborted", f"abort requested by {by}")
        warning = events(cluster, namespace, "Aborted")
        assert warning and warning[0]["type"] == "Warning" and f"by {by}" in warning[0]["message"]
        assert rolled_back["status"].get("canaryRevision") is None and rolled_back["status"]["canaryWeight"] == 0
        # The command refuses what can change nothing, and says what would.
        again = modeldeploy(cluster, namespace, "abort")
        assert again.returncode == 1 and "already" in again.stdout
        refused = modeldeploy(cluster, namespace, "promote")
        assert refused.returncode == 1 and "`modeldeploy retry` restarts it" in refused.stdout

        # A promote written for the revision that is gone (as `kubectl annotate` or a late client writes it).
        at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        stale = json.dumps({"action": "promote", "revision": canary, "at": at, "by": "late-client"})
        cluster.kubectl("annotate", "mdep", "iris", "-n", namespace, f"{REQUEST_ANNOTATION}={stale}", "--overwrite")
        handled = wait_status(cluster, namespace, lambda s: (s.get("rollout") or {}).get("lastRequest", {}).get("at")
                              == at, "the stale request recorded as handled", timeout=60)
        assert handled["status"]["phase"] == "RolledBack" and handled["status"].get("canaryRevision") is None
        said = f"promote for revision {canary[:10]} ignored: the canary is none"
        wait_for(lambda: any(said in e["message"] for e in events(cluster, namespace, "RequestIgnored")) or None,
                 timeout=30, message="the RequestIgnored Event")
        status = modeldeploy(cluster, namespace, "status")
        assert status.returncode == 0 and f"RequestIgnored: {said}" in status.stdout and "rolled back" in status.stdout

        retry = modeldeploy(cluster, namespace, "retry")
        assert retry.returncode == 0, retry.stdout + retry.stderr
        assert (f"Normal CanaryStarted: retry requested by {by}: revision {canary[:10]} starts at step 1/2, "
                f"weight 50 %") in retry.stdout
        restarted = rollout_of(mdep(cluster, namespace))
        assert (restarted["canaryRevision"], restarted["stepIndex"], restarted.get("aborted")) == (canary, 0, None)
        # Fresh counters: nothing measured before the retry is carried over.
        fresh = (restarted.get("metrics") or {}).get("error-rate") or {}
        assert (fresh.get("failed", 0), fresh.get("successesAtStep", 0)) == (0, 0)
        assert not [m for m in fresh.get("measurements") or [] if parse_time(m["at"]) < parse_time(
            restarted["stepStartedAt"])]
        again_measured = wait_status(cluster, namespace, lambda s: successes(s) >= 1,
                                     "a Successful measurement of the retried canary")
        counters = rollout_of(again_measured)["metrics"]["error-rate"]
        assert all(parse_time(m["at"]) >= parse_time(restarted["stepStartedAt"]) for m in counters["measurements"])
        assert again_measured["status"]["phase"] == "Paused"  # step 1 has no pause: it waits for a promote again

        # An abort while the promotion rolls stable to the canary's revision takes stable back to its own.
        promote = modeldeploy(cluster, namespace, "promote")
        assert promote.returncode == 0 and "Promoting" in promote.stdout, promote.stdout + promote.stderr
        cut_short = modeldeploy(cluster, namespace, "abort")
        assert cut_short.returncode == 0 and "Warning Aborted" in cut_short.stdout, cut_short.stdout + cut_short.stderr
        rolled_back = wait_phase(cluster, namespace, "RolledBack", timeout=180)
        assert rolled_back["status"]["stableRevision"] == stable

        def stable_whole() -> bool:
            found = kubectl_json(cluster, "get", "deployment", "iris-stable", "-n", namespace)
            pods = kubectl_json(cluster, "get", "pods", "-n", namespace, "-l", "modeldeploy.dev/role=stable")["items"]
            ready = [p for p in pods if p["metadata"]["labels"].get("modeldeploy.dev/revision") == stable
                     and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))]
            labels = found["spec"]["template"]["metadata"]["labels"]
            return labels["modeldeploy.dev/revision"] == stable and len(ready) == 2 and len(pods) == 2

        wait_for(stable_whole, timeout=120, interval=1, message="iris-stable back at its own revision, 2 pods ready")
        wait_for(lambda: [d["metadata"]["name"] for d in kubectl_json(cluster, "get", "deployments", "-n",
                                                                     namespace)["items"]] == ["iris-stable"],
                 timeout=60, message="the canary's Deployment gone")
    assert again_measured["metadata"]["generation"] == generation


def test_promote_pause_resume_and_promote_full_steer_a_live_canary_as_the_live_view_shows(
    cluster: LocalCluster, operator: OperatorProcess, namespace: str, two_versions: Path,
    terminal: Callable[[], Terminal],
) -> None:
    started = time.monotonic()
    stable = healthy_v1(cluster, namespace, STEPS)
    with Load(cluster, namespace, rate=10, seconds=420) as load:
        canary, generation = canary_of_v2(cluster, namespace, STEPS, stable)
        screen = terminal()
        screen.shows(f"{stable[:10]} (stable) -> {canary[:10]} (canary)", "step 1/3", message="the canary")

        # A step without a pause holds at its weight until promoted, and its analysis goes on meanwhile.
        held = wait_status(cluster, namespace, lambda s: s.get("phase") == "Paused" and successes(s) >= 1,
                           "step 1 waiting for a promote request, with a Successful measurement")
        assert rollout_of(held)["pause"]["reason"] == "step" and rollout_of(held)["stepIndex"] == 0
        waiting = screen.shows("step 1/3", "waiting for a promote request", "asked 25 %  effective 50 %",
                               "Successful", message="step 1 waiting, measured")
        resume = modeldeploy(cluster, namespace, "resume")
        assert resume.returncode == 1 and "waits for a promote request, not a resume" in resume.stdout

        promote = modeldeploy(cluster, namespace, "promote")
        assert promote.returncode == 0, promote.stdout + promote.stderr
        assert f"Normal CanaryStep: revision {canary[:10]}: step 2/3, weight 50 %" in promote.stdout
        assert "phase Progressing" in promote.stdout
        stepped_up = rollout_of(mdep(cluster, namespace))
        assert (stepped_up["stepIndex"], stepped_up["weight"], stepped_up.get("pause")) == (1, 50, None)
        stepped = screen.shows("step 2/3", "asked 50 %  effective 50 %", message="step 2 at 50 %")

        # A user's pause holds the weight and stops the step's clock; the analysis keeps measuring.
        pause = modeldeploy(cluster, namespace, "pause")
        assert pause.returncode == 0, pause.stdout + pause.stderr
        by = requested_by(cluster, namespace)
        assert f"Normal Paused: revision {canary[:10]} paused by {by}" in pause.stdout
        assert "phase Paused" in pause.stdout and "paused by a user" in pause.stdout
        paused = mdep(cluster, namespace)
        paused_at = time.monotonic()
        before = rollout_of(paused)
        assert (before["pause"]["reason"], before["stepIndex"], before["weight"]) == ("user", 1, 50)
        since = parse_time(before["pause"]["since"])
        again = modeldeploy(cluster, namespace, "pause")
        assert again.returncode == 1 and "is paused by a user since" in again.stdout
        during = wait_status(cluster, namespace, lambda s: measured_after(s, since),
                             "a measurement taken while paused", timeout=60)
        assert during["status"]["phase"] == "Paused" and rollout_of(during)["weight"] == 50
        screen.shows("paused by a user", message="the user's pause")

        held_seconds = time.monotonic() - paused_at  # at least this long between the engine's pause and resume
        resume = modeldeploy(cluster, namespace, "resume")
        assert resume.returncode == 0, resume.stdout + resume.stderr
        assert f"Normal Resumed: revision {canary[:10]} resumed by {by}" in resume.stdout
        after = rollout_of(mdep(cluster, namespace))
        assert after.get("pause") is None and after["stepIndex"] == 1
        # The step's start moved forward by the time paused: its pause and the deadline did not run meanwhile.
        shifted = (parse_time(after["stepStartedAt"]) - parse_time(before["stepStartedAt"])).total_seconds()
        assert shifted >= held_seconds - 1, (shifted, held_seconds)  # times are kept to the second

        # --full: the 10 minutes left at step 2 and the analysis of the steps after it are skipped.
        full = modeldeploy(cluster, namespace, "promote", "--full")
        assert full.returncode == 0, full.stdout + full.stderr
        assert f"Normal Promoting: revision {canary[:10]}: promote --full requested by {by}" in full.stdout
        screen.shows("promoting", message="the promotion")
        promoted = wait_phase(cluster, namespace, "Healthy", timeout=180)
        elapsed = time.monotonic() - started
        screen.shows(f"{canary[:10]} (stable)", "no canary", "Healthy", message="the promoted revision")
        nothing = modeldeploy(cluster, namespace, "promote")
    assert promoted["status"]["stableRevision"] == canary
    assert promoted["metadata"]["generation"] == generation
    assert nothing.returncode == 1 and "nothing to promote" in nothing.stdout and "no canary" in nothing.stdout
    assert events(cluster, namespace, "Promoted")
    codes = load.codes()
    print(f"v1 apply -> v2 promoted: {elapsed:.1f} s; requests {dict(codes)}")
    assert set(codes) == {200}, load.failures()
    # What the live view showed along the way: the step, the weight asked and the measurements moving.
    assert "asked 25 %" in waiting and "asked 50 %" in stepped
    print("\n---- live view, first and last screens ----\n" + screen.screens[0] + "\n----\n" + screen.screens[-1])
