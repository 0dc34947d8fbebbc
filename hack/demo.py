"""`make demo`: the product's main job on the local cluster, end to end.

Starts the cluster, installs the CRD, puts the iris model's files on a claim, runs the operator,
applies the iris sample and prints the ModelDeployment's status as it changes, then asks the
Service `iris` for predictions through its ClusterIP, as a client in the cluster would. Then a canary
under a steady load, shown on a terminal with `modeldeploy status -w` (the live view; elsewhere a line
per change and the plain view of `modeldeploy status` at the end of each stage, so logs stay readable):
v2 holds at its first step until `modeldeploy promote` ends it, a faulty version (30 % of requests
fail) is rolled back on its own, and a version that answers 200 with the wrong label on a third of
its rows is stopped at the weight-0 gate by its golden set, before any user request reached it.
Everything is removed at the end (--keep waits for Ctrl-C first).
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from localcluster import LocalCluster

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "demo"
FLOWERS = {"setosa-like": [5.1, 3.5, 1.4, 0.2], "versicolor-like": [6.0, 2.9, 4.5, 1.5],
           "virginica-like": [6.7, 3.0, 5.2, 2.3]}


def say(text: str) -> None:
    print(text, flush=True)


def current_status(cluster: LocalCluster) -> dict[str, Any] | None:
    """The ModelDeployment's status now ({} before the operator wrote one, None when there is no object)."""
    out = cluster.kubectl("get", "mdep", "iris", "-n", NAMESPACE, "-o", "json", check=False)
    if out.returncode != 0:
        return None
    status: dict[str, Any] = json.loads(out.stdout).get("status") or {}
    return status


def status_line(status: dict[str, Any] | None) -> str:
    if status is None:
        return "(not found)"
    if not status:
        return "(no status yet)"
    ready: dict[str, Any] = next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})
    canary = ""
    if status.get("canaryRevision"):
        weight = (status.get("rollout") or {}).get("weight")
        index = status.get("currentStep")
        # Steps as people count them, as the status message does ("step 1/2"); currentStep counts from 0.
        step = f"step {index + 1}" if isinstance(index, int) else "promoting"
        canary = f"[{step} weight {weight}% effective {status.get('canaryWeight')}%] "
    return f"{status.get('phase', '-'):<11} {canary}{ready.get('reason', '-')}: {ready.get('message', '')}"


def phase_in(*phases: str) -> Callable[[dict[str, Any]], bool]:
    return lambda status: status.get("phase") in phases


def follow(cluster: LocalCluster, until: Callable[[dict[str, Any]], bool], timeout: float = 300) -> dict[str, Any]:
    """Show the rollout until `until(status)` holds; return that status.

    On a terminal: `modeldeploy status -w`, the live view a user runs. Elsewhere (CI logs): one line
    per change, and the plain view of `modeldeploy status` at the end.
    """
    live = None
    if sys.stdout.isatty():
        live = subprocess.Popen([sys.executable, "-m", "modeldeploy", "status", "-w", "iris", "-n", NAMESPACE],
                                env=cluster.env())
    started, last, status = time.monotonic(), "", None
    try:
        while time.monotonic() - started < timeout:
            status = current_status(cluster)
            line = status_line(status)
            if live is None and line != last:
                say(f"   {time.monotonic() - started:6.1f}s  {line}")
                last = line
            if status and until(status):
                break
            time.sleep(0.5)
    finally:
        if live is not None:
            time.sleep(1.5)  # one more refresh of the view with the state just reached
            live.send_signal(signal.SIGINT)  # the view ends on Ctrl-C, leaving its last screen
            try:
                live.wait(timeout=10)
            except subprocess.TimeoutExpired:
                live.kill()
                live.wait()
    if live is None:
        say(modeldeploy(cluster, "status"))
    else:
        say(f"   {time.monotonic() - started:6.1f}s  {status_line(status)}")
    return status or {}


def modeldeploy(cluster: LocalCluster, *args: str) -> str:
    """A `modeldeploy` command as a user runs it, and its answer."""
    out = subprocess.run([sys.executable, "-m", "modeldeploy", *args, "iris", "-n", NAMESPACE], env=cluster.env(),
                         capture_output=True, text=True, timeout=120)
    return "\n".join(f"   {line}" for line in (out.stdout + out.stderr).rstrip().splitlines())


def measured(status: dict[str, Any]) -> bool:
    """The canary holds at a step waiting for a promote, with a Successful measurement there."""
    counters = ((status.get("rollout") or {}).get("metrics") or {}).get("error-rate") or {}
    return status.get("phase") == "Paused" and int(counters.get("successesAtStep", 0)) >= 1


class Load(threading.Thread):
    """A steady, bounded load (10 requests/s, at most 10 minutes) through the Service `iris`'s ClusterIP:
    kube-proxy spreads it over the ready pods of both roles, as it would for any client."""

    def __init__(self, cluster: LocalCluster) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.stopped = threading.Event()
        self.codes: dict[int, int] = {}
        self.versions: dict[str, int] = {}
        """Answers by the model version that gave them (the iris handler says it)."""

    def url(self) -> str | None:
        out = self.cluster.kubectl("get", "svc", "iris", "-n", NAMESPACE, "-o", "jsonpath={.spec.clusterIP}",
                                   check=False)
        ip = out.stdout.strip() if out.returncode == 0 else ""
        return f"http://{ip}:8080/predictions/iris" if ip else None

    def run(self) -> None:
        body = json.dumps({"data": list(FLOWERS.values())}).encode()
        sent = 0
        url = self.url()
        started = time.monotonic()
        while not self.stopped.is_set() and sent < 6000 and time.monotonic() - started < 600:
            if url:
                request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
                try:
                    with urllib.request.urlopen(request, timeout=10) as response:
                        code = response.status
                        answered = str(json.loads(response.read()).get("version", "?"))
                        self.versions[answered] = self.versions.get(answered, 0) + 1
                except urllib.error.HTTPError as error:
                    code = error.code
                except OSError:
                    code = 0
                self.codes[code] = self.codes.get(code, 0) + 1
                sent += 1
            self.stopped.wait(0.1)


GOLDEN_ACCURACY = {"name": "accuracy", "min": 0.9, "provider": {"goldenSet": {
    "source": {"uri": "pvc://models/iris/golden.jsonl"}, "measure": "accuracy",
    "prediction": {"jsonPath": "$.labels[0]"}}}}
"""The iris golden set's accuracy: 1,000 labelled examples sent to the canary's pods by a Job."""


def version(sample: dict[str, Any], name: str, model_version: str,
            steps: list[dict[str, Any]] | None = None, metrics: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The sample serving the model files in iris/NAME with a short canary (by default 50 % for 10 s, then 100 %)."""
    document: dict[str, Any] = json.loads(json.dumps(sample))
    document["spec"]["model"].update(version=model_version,
                                     serializedFile={"uri": f"pvc://models/iris/{name}/model.pt"},
                                     configFile={"uri": f"pvc://models/iris/{name}/model-config.yaml"})
    document["spec"]["rollout"] = {
        "steps": steps or [{"weight": 50, "pause": "10s"}, {"weight": 100}],
        "analysis": {"interval": "5s", "failureLimit": 1, "minRequests": 10,
                     "metrics": [*(metrics or []),
                                 {"name": "error-rate", "provider": {"torchserve": {"metric": "error-rate"}},
                                  "max": 0.1}]},
        "progressDeadlineSeconds": 120,
    }
    return document


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true", help="keep the cluster running until Ctrl-C")
    args = parser.parse_args()

    say("== starting the local cluster (control plane built from upstream Kubernetes + node agent)")
    with LocalCluster() as cluster:
        say(f"   ready in {cluster.timings['cluster_ready']:.1f}s; KUBECONFIG={cluster.kubeconfig}")
        say("== installing the ModelDeployment CRD")
        cluster.kubectl("apply", "-f", str(REPO / "manifests/crds"))
        cluster.kubectl("wait", "--for=condition=Established", "crd/modeldeployments.modeldeploy.dev")
        cluster.kubectl("create", "namespace", NAMESPACE)
        say("== Prometheus in namespace monitoring (hack/localcluster/addons/prometheus.yaml)")
        prometheus = cluster.install_prometheus()
        claims = [{"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": n},
                   "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}
                  for n in ("models", "model-store")]
        cluster.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=yaml.safe_dump_all(claims))

        say("== training the iris classifier (scikit-learn's iris data, TorchScript) onto the claim 'models'")
        with tempfile.TemporaryDirectory() as tmp:
            root = cluster.claim_path(NAMESPACE, "models")
            for name, recipe in (("1", ["--version", "v1"]), ("2", ["--version", "v2"]),
                                 ("faulty", ["--version", "faulty", "--failure-fraction", "0.3"]),
                                 ("swapped", ["--version", "swapped"])):
                out = Path(tmp) / name
                subprocess.run([sys.executable, str(REPO / "model_archives/iris/train.py"), "--out", str(out),
                                *recipe], check=True, capture_output=True)
                (root / "iris" / name).mkdir(parents=True)
                for file in ("model.pt", "model-config.yaml"):
                    shutil.copy(out / file, root / "iris" / name / file)
            shutil.copy(Path(tmp) / "1" / "model.pt", root / "iris/1/model.pt")
            for name in ("handler.py", "index_to_name.json"):
                shutil.copy(Path(tmp) / "1" / name, root / "iris" / name)
            subprocess.run([sys.executable, str(REPO / "model_archives/iris/golden_set.py"), "--out",
                            str(root / "iris" / "golden.jsonl")], check=True, capture_output=True)
            for path in root.rglob("*"):
                path.chmod(0o755 if path.is_dir() else 0o644)

        say("== starting the operator: modeldeploy operator --namespace demo")
        log_path = cluster.dir / "logs" / "operator.log"
        with open(log_path, "ab") as log:
            operator = subprocess.Popen([sys.executable, "-m", "modeldeploy", "operator", "--namespace", NAMESPACE],
                                        env={**cluster.env(), "POD_NAMESPACE": "modeldeploy-system"},
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            sample = yaml.safe_load((REPO / "manifests/samples/iris.yaml").read_text())
            # Sized for this 2-core machine: two replicas with small requests.
            sample["spec"]["serving"]["replicas"] = 2
            sample["spec"]["serving"]["resources"] = {"requests": {"cpu": "100m", "memory": "256Mi"},
                                                      "limits": {"memory": "2Gi"}}
            say("== kubectl apply -f manifests/samples/iris.yaml (2 replicas, 100m CPU each)")
            started = time.monotonic()
            cluster.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=yaml.safe_dump(sample))
            last = ""
            while time.monotonic() - started < 300:
                line = status_line(current_status(cluster))
                if line != last:
                    say(f"   {time.monotonic() - started:6.1f}s  {line}")
                    last = line
                if line.startswith(("Healthy", "Failed", "Degraded")):
                    break
                time.sleep(0.5)
            elapsed = time.monotonic() - started
            if not last.startswith("Healthy"):
                say(f"!! not Healthy after {elapsed:.0f}s; operator log: {log_path}")
                return 1
            say(f"== Ready {elapsed:.1f}s after kubectl apply")
            say(cluster.kubectl("get", "mdep,deploy,pods,svc", "-n", NAMESPACE).stdout)
            ip = cluster.kubectl("get", "svc", "iris", "-n", NAMESPACE, "-o", "jsonpath={.spec.clusterIP}").stdout
            url = f"http://{ip}:8080/predictions/iris"
            say(f"== predictions through the Service 'iris' (ClusterIP {ip}, routed by kube-proxy)")
            body = json.dumps({"data": list(FLOWERS.values())}).encode()
            for attempt in range(4):
                request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=10) as response:
                    labels = json.loads(response.read())["labels"]
                answers = ", ".join(f"{k} -> {v}" for k, v in zip(FLOWERS, labels, strict=True))
                say(f"   request {attempt + 1}: {answers}")
            query = urllib.parse.urlencode({"query": "count(up == 1)"})
            with urllib.request.urlopen(f"{prometheus}/api/v1/query?{query}", timeout=10) as response:
                result = json.loads(response.read())["data"]["result"]
            targets = result[0]["value"][1] if result else "0"
            say(f"== Prometheus, prometheus.monitoring.svc:9090 ({prometheus} from here): "
                f"{targets} annotated pods scraped")

            say("== a canary under load (10 requests/s through the Service iris): v2 at 50 % until promoted, "
                "then 100 %")
            load = Load(cluster)
            load.start()
            waiting = version(sample, "2", "2", steps=[{"weight": 50}, {"weight": 100}])
            cluster.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=yaml.safe_dump(waiting))
            held = follow(cluster, lambda status: measured(status) or phase_in("RolledBack", "Failed")(status))
            if held.get("phase") != "Paused":
                say(f"!! v2 did not reach its first step; operator log: {log_path}")
                return 1
            say("== step 1 has no pause: it holds until a person promotes it (the spec is not touched)")
            say("   $ modeldeploy promote iris -n demo")
            say(modeldeploy(cluster, "promote"))
            promoted = follow(cluster, phase_in("Healthy", "RolledBack", "Failed"))
            say(f"   requests so far by HTTP status: {dict(sorted(load.codes.items()))}")
            if promoted.get("phase") != "Healthy":
                say(f"!! v2 was not promoted; operator log: {log_path}")
                return 1
            say("== a faulty version (30 % of its requests fail): rolled back on its own")
            faulty = version(sample, "faulty", "2-faulty")
            cluster.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=yaml.safe_dump(faulty))
            rolled_back = follow(cluster, phase_in("RolledBack", "Failed"))
            say(f"   requests by HTTP status (503s came from the faulty canary): {dict(sorted(load.codes.items()))}")
            say(cluster.kubectl("get", "mdep,deploy", "-n", NAMESPACE).stdout)
            if rolled_back.get("phase") != "RolledBack":
                say(f"!! the faulty version was not rolled back; operator log: {log_path}")
                load.stopped.set()
                return 1
            say("== a version that answers 200 with the wrong label on a third of its rows: the error rate cannot")
            say("   see it. A weight-0 gate and the iris golden set (1,000 labelled examples) stop it before any")
            say("   user request reaches it")
            load.versions.clear()
            swapped = version(sample, "swapped", "2-swapped", metrics=[GOLDEN_ACCURACY],
                              steps=[{"weight": 0}, {"weight": 50, "pause": "10s"}, {"weight": 100}])
            cluster.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=yaml.safe_dump(swapped))
            stopped = follow(cluster, phase_in("RolledBack", "Failed", "Healthy"))
            load.stopped.set()
            load.join()
            say(f"   answers through the Service by model version meanwhile: {dict(sorted(load.versions.items()))}")
            events = cluster.kubectl("get", "events", "-n", NAMESPACE, "--field-selector",
                                     "involvedObject.kind=ModelDeployment,reason=AnalysisFailed", "-o",
                                     "jsonpath={range .items[*]}{.message}{'\\n'}{end}").stdout
            gate = [line for line in events.splitlines() if "accuracy" in line]
            say(f"   AnalysisFailed: {gate[-1] if gate else '(no Event)'}")
            if stopped.get("phase") != "RolledBack" or "2-swapped" in load.versions:
                say(f"!! the mislabelling version was not stopped at the gate; operator log: {log_path}")
                return 1
            if args.keep:
                say(f"== keeping the cluster: export KUBECONFIG={cluster.kubeconfig}; Ctrl-C ends it")
                done = threading.Event()
                signal.signal(signal.SIGINT, lambda *_: done.set())
                signal.signal(signal.SIGTERM, lambda *_: done.set())
                done.wait()
        finally:
            operator.terminate()
            operator.wait(timeout=30)
        say("== removing everything")
    return 0


if __name__ == "__main__":
    sys.exit(main())
