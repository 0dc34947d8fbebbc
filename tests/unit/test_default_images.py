"""Each default image is one Python constant; the chart, the manifests and the CRD name the same one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from modeldeploy.api.images import DEFAULT_SERVING_IMAGE
from modeldeploy.serving.plan import ServingPlan
from modeldeploy.settings import DEFAULT_OPERATOR_IMAGE, OPERATOR_REPOSITORY, OperatorIdentity

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "modeldeploy-operator"
CRDS = [REPO / "manifests" / "crds" / "modeldeploy.dev_modeldeployments.yaml",
        CHART / "crds" / "modeldeploy.dev_modeldeployments.yaml"]


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize("crd", CRDS, ids=lambda p: str(p.relative_to(REPO)))
def test_the_crd_defaults_the_serving_image_to_the_python_constant(crd: Path) -> None:
    spec = load(crd)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["properties"]["serving"]["properties"]["image"]["default"] == DEFAULT_SERVING_IMAGE


def test_a_serving_plan_defaults_to_the_same_serving_image() -> None:
    assert ServingPlan.__dataclass_fields__["image"].default == DEFAULT_SERVING_IMAGE


def test_the_chart_defaults_the_operator_image_to_the_python_constant() -> None:
    image = load(CHART / "values.yaml")["image"]
    tag = image["tag"] or load(CHART / "Chart.yaml")["appVersion"]
    assert image["repository"] == OPERATOR_REPOSITORY
    assert f"{image['repository']}:{tag}" == DEFAULT_OPERATOR_IMAGE == OperatorIdentity().image


def test_the_plain_manifests_run_and_name_the_same_operator_image() -> None:
    deployment = load(REPO / "manifests" / "operator" / "deployment.yaml")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert container["image"] == env["MODELDEPLOY_OPERATOR_IMAGE"] == DEFAULT_OPERATOR_IMAGE
