"""How Flux/kpt (kstatus) and Argo CD (the chart's health script in gopher-lua) judge a ModelDeployment,
computed by the code those tools run (hack/kstatus, built from their Go modules), and the table of
what each phase must give.

The end-to-end tests save the objects the operator wrote (`save_observed`) to one folder per session
($MODELDEPLOY_OBSERVED_OBJECTS when set, so tests/unit/test_gitops_health.py can judge them later too);
tests/e2e/test_dashboard_during_canary.py judges them at the end of its scenario.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from support import REPO

ARGOCD_SCRIPT = REPO / "charts" / "modeldeploy-operator" / "files" / "argocd-health.lua"

# phase -> (kstatus, Argo CD health): what Flux waits on, and what Argo CD shows.
EXPECTED = {
    "Pending": ("InProgress", "Progressing"),
    "Building": ("InProgress", "Progressing"),
    "Deploying": ("InProgress", "Progressing"),
    "Progressing": ("InProgress", "Progressing"),
    "Paused": ("InProgress", "Suspended"),
    "Healthy": ("Current", "Healthy"),
    "Degraded": ("InProgress", "Degraded"),
    "RolledBack": ("Failed", "Degraded"),
    "Failed": ("Failed", "Degraded"),
}
# Whatever the phase, a status for an older generation is not a verdict on the spec.
STALE = ("InProgress", "Progressing")


def expected_for(obj: dict[str, Any]) -> tuple[str, str]:
    status = obj.get("status") or {}
    if status.get("observedGeneration", 0) < obj["metadata"].get("generation", 0):
        return STALE
    return EXPECTED[status["phase"]]


def healthcheck_binary() -> str:
    return subprocess.run(["bash", str(REPO / "hack/install-healthcheck.sh")], check=True, capture_output=True,
                          text=True).stdout.strip()


def judge(healthcheck: str, obj: dict[str, Any], *args: str) -> dict[str, str]:
    done = subprocess.run([healthcheck, *args], input=json.dumps(obj), capture_output=True, text=True, check=True)
    result: dict[str, str] = json.loads(done.stdout)
    return result


def check(healthcheck: str, obj: dict[str, Any]) -> list[str]:
    """What kstatus and the Argo CD script got wrong about `obj` (nothing when both judge it as the table says)."""
    wrong = []
    kstatus = judge(healthcheck, obj, "kstatus")["status"]
    health = judge(healthcheck, obj, "argocd", str(ARGOCD_SCRIPT))
    want = expected_for(obj)
    if kstatus != want[0]:
        wrong.append(f"kstatus says {kstatus}, want {want[0]}")
    if health["status"] != want[1]:
        wrong.append(f"Argo CD says {health['status']}, want {want[1]}")
    # Argo CD shows the message beside the status: the operator's own words, not a bare phase.
    ready = next((c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == "Ready"), None)
    if ready and want != STALE and health.get("message") != ready["message"]:
        wrong.append(f"Argo CD's message {health.get('message')!r} is not the Ready condition's {ready['message']!r}")
    return wrong


def save_observed(folder: Path, body: dict[str, Any], label: str) -> Path:
    """Keeps an object as the operator wrote it (no managedFields), named by `label` and its phase."""
    metadata = {k: v for k, v in body["metadata"].items() if k != "managedFields"}
    kept = {**{k: body[k] for k in ("apiVersion", "kind", "spec", "status") if k in body}, "metadata": metadata}
    phase = (body.get("status") or {}).get("phase", "none")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"observed-{label}-{phase}.yaml"
    path.write_text(yaml.safe_dump(kept, sort_keys=False))
    return path


def observed(folder: Path) -> list[tuple[Path, dict[str, Any]]]:
    return [(p, yaml.safe_load(p.read_text())) for p in sorted(folder.glob("observed-*.yaml"))]
