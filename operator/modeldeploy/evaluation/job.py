"""The Job of one golden-set measurement: a pure function of the spec, the metric, the pods to send the
examples to, and the operator.

The Job runs the operator's own image (`modeldeploy evaluate`), like the archive build. A pvc:// set is
mounted read-only under /golden/CLAIM; an https:// or s3:// set is fetched with its pin checked (s3 with
the credentials the model's sources use). The pods are addressed by IP on the inference port, so users
never get these answers. The result is the last line of the pod's log, read once the Job finished.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from modeldeploy.api.labels import evaluation_labels, object_meta
from modeldeploy.api.spec import GoldenSetProvider, Metric, ModelDeployment, SourceScheme
from modeldeploy.building.job import operator_job
from modeldeploy.settings import OperatorIdentity

GOLDEN_ROOT = "/golden"
TMP_MOUNT = "/tmp"
TTL_SECONDS_AFTER_FINISHED = 600
RESOURCES = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}


def job_name(md: ModelDeployment, metric: Metric, canary_revision: str, measurement: int) -> str:
    """NAME-eval-<10 hex of metric, revision and measurement number>: one Job per measurement."""
    key = hashlib.sha256(f"{metric.name}\0{canary_revision}\0{measurement}".encode()).hexdigest()[:10]
    return f"{md.name}-eval-{key}"


def prediction_arg(provider: GoldenSetProvider) -> str:
    """The --prediction flag of the provider's prediction."""
    if provider.prediction.json_path is not None:
        return provider.prediction.json_path
    return "argmax" if provider.prediction.argmax else "body"


def evaluate_args(provider: GoldenSetProvider, canary: Sequence[str], stable: Sequence[str],
                  response_timeout: int) -> list[str]:
    """The `modeldeploy evaluate` flags: the set, the measure, where the label is, and the pods' URLs."""
    source = provider.source
    location = (f"{GOLDEN_ROOT}/{source.location}/{source.path}" if source.scheme is SourceScheme.PVC
                else source.uri)
    args = ["evaluate", "--golden-set", location, "--measure", str(provider.measure),
            "--prediction", prediction_arg(provider), "--response-timeout", str(response_timeout)]
    if source.sha256:
        args.extend(["--sha256", source.sha256])
    for url in canary:
        args.extend(["--canary", url])
    for url in stable:
        args.extend(["--stable", url])
    return args


def evaluation_job(md: ModelDeployment, metric: Metric, name: str, revision: str, canary: Sequence[str],
                   stable: Sequence[str], operator: OperatorIdentity, active_deadline_seconds: int) -> dict[str, Any]:
    """The Job that sends the golden set of `metric` to the given pods' inference URLs."""
    provider = metric.provider
    if not isinstance(provider, GoldenSetProvider):
        raise ValueError(f"metric {metric.name} is not a golden-set metric")
    source = provider.source
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": TMP_MOUNT}]
    if source.scheme is SourceScheme.PVC:
        volumes.append({"name": "golden", "persistentVolumeClaim": {"claimName": source.location, "readOnly": True}})
        mounts.append({"name": "golden", "mountPath": f"{GOLDEN_ROOT}/{source.location}", "readOnly": True})
    labels = evaluation_labels(md.name, metric.name, revision)
    container: dict[str, Any] = {
        "name": "evaluate",
        "image": operator.image,
        "command": list(operator.command),
        "args": evaluate_args(provider, canary, stable, md.spec.model.config.response_timeout_seconds),
        "resources": {k: dict(v) for k, v in RESOURCES.items()},
        "volumeMounts": mounts,
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
    }
    if source.scheme is SourceScheme.S3 and md.spec.model.source_secret_name:
        container["envFrom"] = [{"secretRef": {"name": md.spec.model.source_secret_name}}]
    return operator_job(object_meta(name, md.name, md.namespace, md.uid, labels), container, volumes, operator,
                        backoff_limit=0, active_deadline_seconds=active_deadline_seconds,
                        ttl_seconds_after_finished=TTL_SECONDS_AFTER_FINISHED, fs_group=False)
