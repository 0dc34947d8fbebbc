"""The archive build Job of a revision: a pure function of the spec, the build key and the operator.

The Job runs the operator's own image and command (`modeldeploy archive build`). PVC sources are
mounted read-only under /sources/CLAIM, the PVC store read-write at /store; https and s3 sources are
passed as URIs. The build writes its result (or its refusal) as JSON to the termination message,
which the operator reads from the finished pod.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modeldeploy.api.labels import LABEL_DEPLOYMENT, build_labels, object_meta
from modeldeploy.api.spec import ModelDeployment, PvcStore, S3Store, Source, SourceScheme
from modeldeploy.settings import OperatorIdentity, image_pull_secrets

SOURCES_ROOT = "/sources"
STORE_MOUNT = "/store"
# The pod's emptyDir (its root filesystem is read-only): downloads of a build into an S3 store go here.
TMP_MOUNT = "/tmp"
TERMINATION_MESSAGE_PATH = "/dev/termination-log"
TTL_SECONDS_AFTER_FINISHED = 3600
DEFAULT_BUILD_RESOURCES: Mapping[str, Mapping[str, str]] = {
    "requests": {"cpu": "250m", "memory": "256Mi"},
    "limits": {"memory": "1Gi"},
}


def job_name(md: ModelDeployment, build_key_short: str) -> str:
    """NAME-build-<12 hex of the build key>."""
    return f"{md.name}-build-{build_key_short}"


def _volume_name(claim: str) -> str:
    return f"src-{claim}"[:63]


def _source_arg(source: Source) -> str:
    if source.scheme is SourceScheme.PVC:
        return f"{SOURCES_ROOT}/{source.location}/{source.path}"
    return source.uri


def build_args(md: ModelDeployment) -> list[str]:
    """The `modeldeploy archive build` flags for the spec's model and archive options."""
    model, archive = md.spec.model, md.spec.archive
    args = ["archive", "build", "--model-name", model.name, "--version", model.version,
            "--archive-format", str(archive.format), "--source-root", SOURCES_ROOT,
            "--termination-message-path", TERMINATION_MESSAGE_PATH]

    def add(flag: str, source: Source | None) -> None:
        if source is None:
            return
        args.extend([f"--{flag}", _source_arg(source)])
        if source.sha256:
            args.extend([f"--{flag}-sha256", source.sha256])

    add("serialized-file", model.serialized_file)
    add("model-file", model.model_file)
    if model.handler.builtin is not None:
        args.extend(["--handler", str(model.handler.builtin)])
    else:
        add("handler", model.handler.source)
    add("requirements-file", model.requirements_file)
    add("config-file", model.config_file)
    if model.extra_files:
        args.extend(["--extra-files", ",".join(_source_arg(f.source) for f in model.extra_files)])
        pins = [f.source.sha256 or "" for f in model.extra_files]
        if any(pins):
            args.extend(["--extra-files-sha256", ",".join(pins)])
    store = archive.store
    if isinstance(store, S3Store):
        args.extend(["--store", f"s3://{store.bucket}/{store.prefix}".rstrip("/"), "--work-dir", TMP_MOUNT])
        if store.endpoint:
            args.extend(["--s3-endpoint", store.endpoint])
        if store.region:
            args.extend(["--s3-region", store.region])
    else:
        args.extend(["--store", STORE_MOUNT])
    return args


def build_job(md: ModelDeployment, build_key_short: str, operator: OperatorIdentity) -> dict[str, Any]:
    """The Job that builds the revision's archive into its store."""
    spec = md.spec
    claims = sorted({s.location for _, s in spec.model.sources() if s.scheme is SourceScheme.PVC})
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": TMP_MOUNT}]
    for claim in claims:
        volumes.append({"name": _volume_name(claim),
                        "persistentVolumeClaim": {"claimName": claim, "readOnly": True}})
        mounts.append({"name": _volume_name(claim), "mountPath": f"{SOURCES_ROOT}/{claim}", "readOnly": True})
    env_from: list[dict[str, Any]] = []
    store = spec.archive.store
    if isinstance(store, PvcStore):
        volumes.append({"name": "store", "persistentVolumeClaim": {"claimName": store.claim_name}})
        mounts.append({"name": "store", "mountPath": STORE_MOUNT})
    else:
        env_from.append({"secretRef": {"name": store.secret_name}})
    if spec.model.source_secret_name and not (isinstance(store, S3Store)
                                              and store.secret_name == spec.model.source_secret_name):
        env_from.append({"secretRef": {"name": spec.model.source_secret_name}})
    build = spec.archive.build
    resources = build.resources
    labels = build_labels(md.name, build_key_short)
    container: dict[str, Any] = {
        "name": "build",
        "image": operator.image,
        "command": list(operator.command),
        "args": build_args(md),
        "resources": ({"requests": dict(resources.requests), "limits": dict(resources.limits)}
                      if resources is not None else {k: dict(v) for k, v in DEFAULT_BUILD_RESOURCES.items()}),
        "volumeMounts": mounts,
        "terminationMessagePath": TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
    }
    if env_from:
        container["envFrom"] = env_from
    return operator_job(object_meta(job_name(md, build_key_short), md.name, md.namespace, md.uid, labels),
                        container, volumes, operator, backoff_limit=build.backoff_limit,
                        active_deadline_seconds=build.active_deadline_seconds,
                        ttl_seconds_after_finished=TTL_SECONDS_AFTER_FINISHED, fs_group=True)


def operator_job(metadata: dict[str, Any], container: dict[str, Any], volumes: list[dict[str, Any]],
                 operator: OperatorIdentity, *, backoff_limit: int, active_deadline_seconds: int,
                 ttl_seconds_after_finished: int, fs_group: bool) -> dict[str, Any]:
    """A Job running the operator's image once (an archive build, a golden-set measurement): no token,
    no service links, non-root, never restarted in place, removed `ttl_seconds_after_finished` after it ends."""
    security: dict[str, Any] = {"runAsNonRoot": True, "runAsUser": operator.run_as_user,
                                "runAsGroup": operator.run_as_user}
    if fs_group:  # the pod writes to a claim: files it creates belong to the operator's group
        security["fsGroup"] = operator.run_as_user
    security["seccompProfile"] = {"type": "RuntimeDefault"}
    labels = metadata.get("labels") or {}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            "backoffLimit": backoff_limit,
            "activeDeadlineSeconds": active_deadline_seconds,
            "ttlSecondsAfterFinished": ttl_seconds_after_finished,
            "template": {
                # The pods leave out modeldeploy.dev/deployment: the Service NAME selects serving pods by
                # it, and a Job's pod behind it would be sent inference requests it refuses.
                "metadata": {"labels": {k: v for k, v in labels.items() if k != LABEL_DEPLOYMENT}},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": security,
                    "containers": [container],
                    "volumes": volumes,
                    **({"imagePullSecrets": image_pull_secrets(operator)} if operator.image_pull_secrets else {}),
                },
            },
        },
    }
