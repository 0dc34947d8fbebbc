"""How Flux/kpt (kstatus) and Argo CD (the chart's health script in gopher-lua) judge a ModelDeployment in
each phase, computed by the code those tools run (hack/kstatus, built from their Go modules).

The objects are YAML files in tests/fixtures/modeldeployments, and in $MODELDEPLOY_OBSERVED_OBJECTS
when set (a directory where the end-to-end tests save objects the operator wrote): each is judged
by its phase, so a real object dropped in is checked against the same table (tests/gitops.py). The
end-to-end tier judges the objects of its own session the same way
(tests/e2e/test_dashboard_during_canary.py), so a plain `make test` checks real objects too.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from gitops import ARGOCD_SCRIPT, EXPECTED, STALE, expected_for, healthcheck_binary, judge
from support import REPO

FIXTURES = REPO / "tests" / "fixtures" / "modeldeployments"


def object_files() -> list[Path]:
    files = sorted(FIXTURES.glob("*.yaml"))
    observed = os.environ.get("MODELDEPLOY_OBSERVED_OBJECTS")
    if observed:
        files += sorted(Path(observed).glob("*.yaml"))
    return files


@pytest.fixture(scope="module")
def healthcheck() -> str:
    return healthcheck_binary()


def test_the_fixtures_cover_every_phase() -> None:
    phases = {yaml.safe_load(f.read_text())["status"]["phase"] for f in FIXTURES.glob("*.yaml")}
    assert phases == set(EXPECTED)


@pytest.mark.parametrize("path", object_files(), ids=lambda p: p.stem)
def test_kstatus_judges_each_phase_as_flux_should_wait_on_it(healthcheck: str, path: Path) -> None:
    obj = yaml.safe_load(path.read_text())
    assert judge(healthcheck, obj, "kstatus")["status"] == expected_for(obj)[0]


@pytest.mark.parametrize("path", object_files(), ids=lambda p: p.stem)
def test_argocd_health_script_judges_each_phase(healthcheck: str, path: Path) -> None:
    obj = yaml.safe_load(path.read_text())
    health = judge(healthcheck, obj, "argocd", str(ARGOCD_SCRIPT))
    assert health["status"] == expected_for(obj)[1]
    # Argo CD shows the message beside the status: the operator's own words, not a bare phase.
    ready = next((c for c in obj["status"].get("conditions", []) if c["type"] == "Ready"), None)
    if ready and expected_for(obj) != STALE:
        assert health["message"] == ready["message"]


def test_argocd_shows_a_new_object_as_progressing(healthcheck: str) -> None:
    fresh = {"apiVersion": "modeldeploy.dev/v1alpha1", "kind": "ModelDeployment",
             "metadata": {"name": "iris", "namespace": "ml", "generation": 1}}
    assert judge(healthcheck, fresh, "argocd", str(ARGOCD_SCRIPT))["status"] == "Progressing"
    assert judge(healthcheck, fresh, "kstatus")["status"] == "Current"  # kstatus cannot know: no status yet


def test_the_readmes_argocd_cm_patch_carries_the_script_intact() -> None:
    readme = (REPO / "README.md").read_text()
    prefix = "kubectl -n argocd patch configmap argocd-cm --type merge --patch "
    start = readme.index(prefix)
    command = readme[start:readme.index("\n```", start)].replace(prefix, "echo ", 1)
    patch = subprocess.run(["bash", "-c", command], cwd=REPO, check=True, capture_output=True, text=True).stdout
    data = yaml.safe_load(patch)["data"]
    assert data["resource.customizations.health.modeldeploy.dev_ModelDeployment"] == ARGOCD_SCRIPT.read_text()
