"""The archive build Job of a revision, and how to read its outcome: pure functions, no API access.

The Job runs the operator's own image and command (`modeldeploy archive build`). PVC sources are
mounted read-only under /sources/CLAIM, the PVC store read-write at /store; https and s3 sources are
passed as URIs. The build writes its result (or its refusal) as JSON to the termination message,
which the operator reads from the finished pod.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

from modeldeploy import GROUP
from modeldeploy.serving import owner_reference
from modeldeploy.spec import ModelDeployment, PvcStore, S3Store, Source, SourceScheme

SOURCES_ROOT = "/sources"
STORE_MOUNT = "/store"
TERMINATION_MESSAGE_PATH = "/dev/termination-log"
TTL_SECONDS_AFTER_FINISHED = 3600
COMPONENT = "archive-build"
BUILD_KEY_LABEL = f"{GROUP}/build-key"
DEFAULT_BUILD_RESOURCES: Mapping[str, Mapping[str, str]] = {
    "requests": {"cpu": "250m", "memory": "256Mi"},
    "limits": {"memory": "1Gi"},
}


@dataclasses.dataclass(frozen=True)
class OperatorImage:
    """How the operator runs its own code in a pod: the image and the command it starts."""

    image: str
    command: tuple[str, ...] = ("modeldeploy",)
    run_as_user: int = 65532  # the operator image's user (see Dockerfile)


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
    if model.extra_files:
        args.extend(["--extra-files", ",".join(_source_arg(f.source) for f in model.extra_files)])
        pins = [f.source.sha256 or "" for f in model.extra_files]
        if any(pins):
            args.extend(["--extra-files-sha256", ",".join(pins)])
    store = archive.store
    if isinstance(store, S3Store):
        args.extend(["--store", f"s3://{store.bucket}/{store.prefix}".rstrip("/"), "--work-dir", "/tmp/work"])
        if store.endpoint:
            args.extend(["--s3-endpoint", store.endpoint])
        if store.region:
            args.extend(["--s3-region", store.region])
    else:
        args.extend(["--store", STORE_MOUNT])
    return args


def build_job(md: ModelDeployment, build_key_short: str, operator: OperatorImage) -> dict[str, Any]:
    """The Job that builds the revision's archive into its store."""
    spec = md.spec
    claims = sorted({s.location for _, s in spec.model.sources() if s.scheme is SourceScheme.PVC})
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]
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
    labels = {
        "app.kubernetes.io/name": md.name,
        "app.kubernetes.io/component": COMPONENT,
        "app.kubernetes.io/managed-by": "modeldeploy",
        f"{GROUP}/deployment": md.name,
        BUILD_KEY_LABEL: build_key_short,
    }
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
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name(md, build_key_short), "namespace": md.namespace, "labels": labels,
                     "ownerReferences": [owner_reference(md.name, md.uid)]},
        "spec": {
            "backoffLimit": build.backoff_limit,
            "activeDeadlineSeconds": build.active_deadline_seconds,
            "ttlSecondsAfterFinished": TTL_SECONDS_AFTER_FINISHED,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": operator.run_as_user,
                                        "runAsGroup": operator.run_as_user, "fsGroup": operator.run_as_user,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }


@dataclasses.dataclass(frozen=True)
class JobOutcome:
    """What a build Job says: still running, built (with its result), or failed (with why)."""

    state: str  # "running" | "succeeded" | "failed"
    result: Mapping[str, Any] | None = None
    reason: str = ""
    message: str = ""


def _condition(job: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return dict(cond)
    return None


def _last_termination(pods: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The most recently finished build container's terminated state."""
    finished = []
    for pod in pods:
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (status.get("state") or {}).get("terminated")
            if terminated:
                finished.append(terminated)
    finished.sort(key=lambda t: str(t.get("finishedAt") or ""))
    return finished[-1] if finished else None


def _tail(text: str, lines: int = 10) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def job_outcome(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> JobOutcome:
    """Reads a build Job and its pods: the result JSON on success, the reason and log tail on failure."""
    terminated = _last_termination(pods)
    message = str((terminated or {}).get("message") or "")
    document: Mapping[str, Any] | None = None
    try:
        parsed = json.loads(message) if message.startswith("{") else None
        document = parsed if isinstance(parsed, dict) else None
    except ValueError:
        document = None
    if _condition(job, "Complete") is not None:
        if document is None or "sha256" not in document:
            return JobOutcome("failed", reason="BuildResultMissing",
                              message=f"the build finished without a result: {_tail(message) or 'no message'}")
        return JobOutcome("succeeded", result=document)
    failed = _condition(job, "Failed")
    if failed is not None:
        if document is not None and "message" in document:
            return JobOutcome("failed", reason=str(document.get("reason") or "BuildFailed"),
                              message=str(document["message"]))
        detail = _tail(message) or str(failed.get("message") or "")
        return JobOutcome("failed", reason=str(failed.get("reason") or "BuildFailed"), message=detail)
    return JobOutcome("running")


def store_uri(uri: str, store: PvcStore | S3Store) -> str:
    """The artifact's URI as users see it: file:///store/KEY inside the build becomes pvc://CLAIM/KEY."""
    prefix = f"file://{STORE_MOUNT}/"
    if isinstance(store, PvcStore) and uri.startswith(prefix):
        return f"pvc://{store.claim_name}/{uri[len(prefix):]}"
    return uri


def archive_status(result: Mapping[str, Any], md: ModelDeployment, revision: str,
                   build_key: str) -> dict[str, Any]:
    """status.archive from a build result."""
    return {
        "revision": revision,
        "buildKey": build_key,
        "inputsDigest": str(result["inputsDigest"]),
        "sha256": str(result["sha256"]),
        "uri": store_uri(str(result["uri"]), md.spec.archive.store),
        "format": str(result["format"]),
        "bytes": int(result["bytes"]),
        "reused": bool(result.get("reused", False)),
    }
