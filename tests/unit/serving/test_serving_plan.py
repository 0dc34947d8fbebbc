"""plan_for: a parsed spec and its built archive, mapped onto the serving builders' plan."""

from __future__ import annotations

from typing import Any

import yaml

from modeldeploy.api.spec import ModelDeployment, S3Store, parse
from modeldeploy.api.status import ArchiveStatus
from modeldeploy.serving import build_deployment, plan_for
from modeldeploy.settings import OperatorIdentity
from support import REPO

OPERATOR = OperatorIdentity(image="registry.example/modeldeploy-operator:0.1.0", namespace="ops")


def sample(**config: Any) -> ModelDeployment:
    body = yaml.safe_load((REPO / "manifests/samples/iris.yaml").read_text())
    body["metadata"].update(namespace="ml", uid="0f0e0d0c-0000-4000-8000-000000000001")
    body["spec"]["model"]["config"] = config
    return parse(body)


def archive(uri: str = "pvc://model-store/" + "a" * 64 + "/iris.mar") -> ArchiveStatus:
    return ArchiveStatus(revision="0123456789", build_key="abcdef012345", inputs_digest="a" * 64,
                         sha256="b" * 64, uri=uri, format="zip-store", bytes=14694)


def test_the_plan_serves_the_specs_model_config_itself() -> None:
    md = sample(batchSize=8, minWorkers=2, maxWorkers=3)

    plan = plan_for(md, archive(), "0123456789", "stable", 4, OPERATOR)

    assert plan.model_config is md.spec.model.config


def test_an_unset_startup_timeout_is_the_crds_300_seconds_in_the_startup_probe() -> None:
    plan = plan_for(sample(), archive(), "0123456789", "stable", 1, OPERATOR)

    probe = build_deployment(plan)["spec"]["template"]["spec"]["containers"][0]["startupProbe"]
    assert plan.model_config.startup_timeout_seconds == 300
    assert probe["failureThreshold"] * probe["periodSeconds"] >= 300 + 60


def test_the_role_and_revision_are_the_callers() -> None:
    plan = plan_for(sample(), archive(), "9876543210", "canary", 1, OPERATOR)

    deployment = build_deployment(plan)
    assert deployment["metadata"]["name"] == "iris-canary"
    assert deployment["spec"]["template"]["metadata"]["labels"]["modeldeploy.dev/revision"] == "9876543210"
    assert deployment["spec"]["selector"]["matchLabels"] == {"modeldeploy.dev/deployment": "iris",
                                                             "modeldeploy.dev/role": "canary"}


def test_an_s3_archive_is_fetched_with_the_stores_secret() -> None:
    body = yaml.safe_load((REPO / "manifests/samples/iris.yaml").read_text())
    body["metadata"].update(namespace="ml", uid="0f0e0d0c-0000-4000-8000-000000000001")
    body["spec"]["archive"]["store"] = {"s3": {"bucket": "models", "secretRef": {"name": "s3-creds"}}}
    md = parse(body)

    plan = plan_for(md, archive("s3://models/" + "a" * 64 + "/iris.mar"), "0123456789", "stable", 1, OPERATOR)

    assert isinstance(plan.archive.store, S3Store) and plan.archive.store is md.spec.archive.store
    init = build_deployment(plan)["spec"]["template"]["spec"]["initContainers"][0]
    assert init["image"] == OPERATOR.image
    secrets = {e["valueFrom"]["secretKeyRef"]["name"] for e in init["env"] if "valueFrom" in e}
    assert secrets == {"s3-creds"}
