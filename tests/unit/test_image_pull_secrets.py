"""Private registries: the chart and the kustomize component set imagePullSecrets on the operator pod and
hand the same names to the operator, which puts them on every pod it creates (build Jobs, serving pods)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from localcluster.cluster import kubectl_command
from modeldeploy.api.spec import PvcStore, parse
from modeldeploy.api.status import ArchiveStatus
from modeldeploy.building import build_job
from modeldeploy.serving import build_deployment, plan_for
from modeldeploy.settings import IMAGE_PULL_SECRETS_ENV, OPERATOR_COMMAND_ENV, OperatorConfig, OperatorIdentity
from support import REPO

CHART = REPO / "charts" / "modeldeploy-operator"
DIGEST = "4f6d2c1b9e8a7d3c" * 4


@pytest.fixture(scope="module")
def helm() -> str:
    return subprocess.run(["bash", str(REPO / "hack/install-helm.sh")], check=True, capture_output=True,
                          text=True).stdout.strip()


def operator_pod(documents: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = [d for d in documents if d and d["kind"] == "Deployment"]
    return dict(deployment["spec"]["template"]["spec"])


def render_chart(helm: str, *args: str) -> dict[str, Any]:
    out = subprocess.run([helm, "template", "md", str(CHART), "-n", "modeldeploy-system", *args], check=True,
                         capture_output=True, text=True).stdout
    return operator_pod(list(yaml.safe_load_all(out)))


def render_kustomize(tmp_path: Path, components: list[str]) -> dict[str, Any]:
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    manifests = REPO / "manifests"
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(manifests, overlay)],
        "components": [os.path.relpath(manifests / "components" / c, overlay) for c in components],
    }))
    out = subprocess.run([kubectl_command(), "kustomize", str(overlay)], check=True, capture_output=True,
                         text=True).stdout
    return operator_pod(list(yaml.safe_load_all(out)))


def operator_env(pod: dict[str, Any]) -> dict[str, str]:
    """The operator container's literal environment, as the operator process sees it."""
    (container,) = pod["containers"]
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def created_pods(identity: OperatorIdentity) -> tuple[dict[str, Any], dict[str, Any]]:
    """The build Job's pod and a serving pod the operator renders with this identity."""
    body = yaml.safe_load((REPO / "manifests/samples/iris.yaml").read_text())
    body["metadata"].update(namespace="ml", uid="0f0e0d0c-0000-4000-8000-000000000001", generation=1)
    md = parse(body)
    job = build_job(md, "abcdef012345", identity)["spec"]["template"]["spec"]
    archive = ArchiveStatus(revision="7f3a9c01de", build_key="b" * 64, inputs_digest=DIGEST, sha256="a" * 64,
                            uri=f"pvc://model-store/{DIGEST}/iris.mar", format="zip-store", bytes=1)
    assert isinstance(md.spec.archive.store, PvcStore)
    serving = build_deployment(plan_for(md, archive, "7f3a9c01de", "stable", 1, identity))
    return job, serving["spec"]["template"]["spec"]


def test_the_charts_pull_secrets_reach_the_operator_pod_and_every_pod_it_creates(helm: str) -> None:
    pod = render_chart(helm, "--set", "imagePullSecrets[0].name=registry-credentials",
                       "--set", "imagePullSecrets[1].name=mirror")
    expected = [{"name": "registry-credentials"}, {"name": "mirror"}]
    assert pod["imagePullSecrets"] == expected
    identity = OperatorConfig.from_env(operator_env(pod)).identity
    for created in created_pods(identity):
        assert created["imagePullSecrets"] == expected


def test_without_pull_secrets_no_pod_names_any(helm: str, tmp_path: Path) -> None:
    for pod in (render_chart(helm), render_kustomize(tmp_path, [])):
        assert "imagePullSecrets" not in pod
        identity = OperatorConfig.from_env(operator_env(pod)).identity
        assert identity.image_pull_secrets == ()
        for created in created_pods(identity):
            assert "imagePullSecrets" not in created


def test_the_kustomize_component_sets_the_pull_secret_for_the_operator_and_its_pods(tmp_path: Path) -> None:
    pod = render_kustomize(tmp_path, ["image-pull-secrets"])
    assert pod["imagePullSecrets"] == [{"name": "registry-credentials"}]
    identity = OperatorConfig.from_env(operator_env(pod)).identity
    for created in created_pods(identity):
        assert created["imagePullSecrets"] == [{"name": "registry-credentials"}]


def test_a_chart_pull_secret_that_is_no_secret_name_is_refused_naming_the_field(helm: str) -> None:
    refused = subprocess.run([helm, "template", "md", str(CHART), "--set", "imagePullSecrets[0].name=Not_A_Name"],
                             capture_output=True, text=True)
    assert refused.returncode != 0
    assert "imagePullSecrets" in refused.stderr


@pytest.mark.parametrize(("value", "message"), [
    ("registry-credentials,Bad_Name", "'Bad_Name' is not a Secret name"),
    ("a,a", "names a Secret twice"),
])
def test_an_operator_pull_secret_setting_that_names_no_secret_is_refused(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=IMAGE_PULL_SECRETS_ENV) as refused:
        OperatorConfig.from_env({IMAGE_PULL_SECRETS_ENV: value})
    assert message in str(refused.value)


def test_the_operator_command_setting_is_split_like_a_shell_line() -> None:
    identity = OperatorConfig.from_env({OPERATOR_COMMAND_ENV: "/opt/venv/bin/python -m 'modeldeploy'"}).identity
    assert identity.command == ("/opt/venv/bin/python", "-m", "modeldeploy")
    assert OperatorConfig.from_env({}).identity.command == ("modeldeploy",)
