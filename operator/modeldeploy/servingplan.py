"""Maps a parsed ModelDeployment and its built archive onto the serving builders' ServingPlan."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modeldeploy import serving
from modeldeploy.archivejob import OperatorImage
from modeldeploy.serving.plan import Role
from modeldeploy.spec import ModelDeployment, PvcStore


def archive_ref(md: ModelDeployment, archive: Mapping[str, Any]) -> serving.ArchiveRef:
    """The serving builders' view of status.archive."""
    store = md.spec.archive.store
    plan_store: serving.PvcStore | serving.S3Store
    if isinstance(store, PvcStore):
        plan_store = serving.PvcStore(claim_name=store.claim_name)
    else:
        plan_store = serving.S3Store(bucket=store.bucket, secret_name=store.secret_name,
                                     endpoint=store.endpoint, region=store.region)
    return serving.ArchiveRef(uri=str(archive["uri"]), sha256=str(archive["sha256"]),
                              format=archive["format"], store=plan_store)


def serving_plan(md: ModelDeployment, archive: Mapping[str, Any], revision: str, role: Role, replicas: int,
                 operator: OperatorImage, operator_namespace: str) -> serving.ServingPlan:
    """What the builders need to serve `revision` of `md` in `role` with `replicas` pods."""
    spec = md.spec
    config = spec.model.config
    resources = spec.serving.resources
    extra: dict[str, Any] = {}
    if resources is not None:
        extra["resources"] = {"requests": dict(resources.requests), "limits": dict(resources.limits)}
    return serving.ServingPlan(
        name=md.name,
        namespace=md.namespace,
        uid=md.uid,
        revision=revision,
        role=role,
        replicas=replicas,
        model_name=spec.model.name,
        model_version=spec.model.version,
        archive=archive_ref(md, archive),
        operator_image=operator.image,
        operator_command=operator.command,
        image=spec.serving.image,
        model_config=serving.ModelConfig(
            batch_size=config.batch_size,
            max_batch_delay_ms=config.max_batch_delay_ms,
            min_workers=config.min_workers,
            max_workers=config.max_workers,
            response_timeout_seconds=config.response_timeout_seconds,
            startup_timeout_seconds=config.startup_timeout_seconds,
        ),
        ports=serving.ServingPorts(inference=spec.serving.port, metrics=spec.serving.metrics_port),
        network_policy=serving.NetworkPolicyOptions(
            enabled=spec.serving.network_policy.enabled,
            operator_namespace=operator_namespace,
            monitoring_namespace=spec.serving.network_policy.monitoring_namespace or None,
        ),
        **extra,
    )
