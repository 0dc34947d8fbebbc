"""What one revision of a ModelDeployment needs to be served: the input of every serving builder.

`ServingPlan` is deliberately independent of the CRD model: the operator maps its spec and status onto
it, and the builders turn it into Kubernetes objects without knowing anything else.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from modeldeploy import GROUP, KIND, VERSION

Role = Literal["stable", "canary"]
ArchiveFormat = Literal["zip", "zip-store", "tgz", "no-archive"]

ROLES: tuple[Role, ...] = ("stable", "canary")
ARCHIVE_FORMATS: tuple[ArchiveFormat, ...] = ("zip", "zip-store", "tgz", "no-archive")

DEFAULT_IMAGE = "pytorch/torchserve:0.12.0-cpu"
# The stock TorchServe image runs as `model-server`, uid/gid 1000.
DEFAULT_UID = 1000

LABEL_NAME = "app.kubernetes.io/name"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_DEPLOYMENT = f"{GROUP}/deployment"
LABEL_REVISION = f"{GROUP}/revision"
LABEL_ROLE = f"{GROUP}/role"
MANAGER = "modeldeploy"

ANNOTATION_REVISION = f"{GROUP}/revision"
ANNOTATION_ARCHIVE_SHA256 = f"{GROUP}/archive-sha256"
ANNOTATION_CONFIG_HASH = f"{GROUP}/config-hash"

_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-.]*$")
_REVISION = re.compile(r"^[0-9a-f]{10}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# Paths end up in config.properties, a Java regex and shell scripts: keep them free of anything to escape.
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9/_.\-]*$")
_SAFE_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_LONGEST_SUFFIX = "-canary"


def _fail(field_name: str, value: object, bound: str) -> ValueError:
    return ValueError(f"{field_name}={value!r}: {bound}")


@dataclass(frozen=True)
class ModelConfig:
    """TorchServe's per-model settings (the spec's `model.config`)."""

    batch_size: int = 1
    max_batch_delay_ms: int = 100
    min_workers: int = 1
    max_workers: int = 1
    response_timeout_seconds: int = 120
    startup_timeout_seconds: int = 120

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise _fail("model.config.batchSize", self.batch_size, "must be >= 1")
        if self.max_batch_delay_ms < 0:
            raise _fail("model.config.maxBatchDelayMs", self.max_batch_delay_ms, "must be >= 0")
        # Readiness counts READY workers against minWorkers: zero would call a pod without a model ready.
        if self.min_workers < 1:
            raise _fail("model.config.minWorkers", self.min_workers, "must be >= 1")
        if self.max_workers < self.min_workers:
            raise _fail("model.config.maxWorkers", self.max_workers, f"must be >= minWorkers ({self.min_workers})")
        if self.response_timeout_seconds < 1:
            raise _fail("model.config.responseTimeoutSeconds", self.response_timeout_seconds, "must be >= 1")
        if self.startup_timeout_seconds < 1:
            raise _fail("model.config.startupTimeoutSeconds", self.startup_timeout_seconds, "must be >= 1")


@dataclass(frozen=True)
class PvcStore:
    """Archives kept on a PersistentVolumeClaim; `pvc://CLAIM/PATH` URIs point into it."""

    claim_name: str


@dataclass(frozen=True)
class S3Store:
    """Archives kept in an S3-compatible bucket; credentials come from a Secret in the pod's namespace."""

    bucket: str
    secret_name: str
    endpoint: str | None = None
    region: str | None = None
    access_key_id_key: str = "AWS_ACCESS_KEY_ID"
    secret_access_key_key: str = "AWS_SECRET_ACCESS_KEY"


@dataclass(frozen=True)
class ArchiveRef:
    """The built archive of the revision: where it is, its sha256 and its format."""

    uri: str
    sha256: str
    format: ArchiveFormat
    store: PvcStore | S3Store

    def __post_init__(self) -> None:
        if not _SHA256.match(self.sha256):
            raise _fail("archive.sha256", self.sha256, "must be 64 lowercase hex digits")
        if self.format not in ARCHIVE_FORMATS:
            raise _fail("archive.format", self.format, f"must be one of {', '.join(ARCHIVE_FORMATS)}")
        scheme = "pvc://" if isinstance(self.store, PvcStore) else "s3://"
        if not self.uri.startswith(scheme):
            raise _fail("archive.uri", self.uri, f"must start with {scheme} for this store")
        owner, _, path = self.uri[len(scheme) :].partition("/")
        expected = self.store.claim_name if isinstance(self.store, PvcStore) else self.store.bucket
        if owner != expected:
            raise _fail("archive.uri", self.uri, f"must be inside {scheme}{expected}/")
        normalized = posixpath.normpath("/" + path)
        if not path or normalized != "/" + path.rstrip("/") or not _SAFE_PATH.match(normalized):
            raise _fail("archive.uri", self.uri, "must name a normalized path of [A-Za-z0-9/_.-]")

    @property
    def key(self) -> str:
        """Path of the archive inside its claim or bucket, without a leading slash."""
        return self.uri.split("/", 3)[3].rstrip("/")

    @property
    def file_name(self) -> str:
        """The archive's file (or, for no-archive, directory) name as TorchServe's model store lists it."""
        return posixpath.basename(self.key)


@dataclass(frozen=True)
class ServingPorts:
    """TorchServe's listeners. Only inference and metrics leave the pod; the rest stay on loopback."""

    inference: int = 8080
    management: int = 8081
    metrics: int = 8082
    grpc_inference: int = 7070
    grpc_management: int = 7071

    def __post_init__(self) -> None:
        values = [self.inference, self.management, self.metrics, self.grpc_inference, self.grpc_management]
        for port in values:
            if not 1 <= port <= 65535:
                raise _fail("ports", port, "must be within 1..65535")
        if len(set(values)) != len(values):
            raise _fail("ports", values, "must all differ")


@dataclass(frozen=True)
class ServingPaths:
    """Where things live inside the serving container (tests point them into a temporary directory)."""

    config_dir: str = "/home/model-server/config"
    model_store: str = "/home/model-server/model-store"
    logs_dir: str = "/home/model-server/logs"
    tmp_dir: str = "/tmp"

    def __post_init__(self) -> None:
        for name in ("config_dir", "model_store", "logs_dir", "tmp_dir"):
            value = getattr(self, name)
            if not _SAFE_PATH.match(value) or posixpath.normpath(value) != value:
                raise _fail(f"paths.{name}", value, "must be a normalized absolute path of [A-Za-z0-9/_.-]")


@dataclass(frozen=True)
class NetworkPolicyOptions:
    """Who may reach the pods besides inference clients: metrics scrapers in these namespaces only."""

    enabled: bool = True
    operator_namespace: str = "modeldeploy-system"
    monitoring_namespace: str | None = None


def _default_resources() -> Mapping[str, Mapping[str, str]]:
    return {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "2Gi"}}


def _default_verify_resources() -> Mapping[str, Mapping[str, str]]:
    return {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}


@dataclass(frozen=True)
class ServingPlan:
    """Everything needed to serve one revision of a ModelDeployment in one role."""

    name: str
    namespace: str
    uid: str
    revision: str
    role: Role
    replicas: int
    model_name: str
    model_version: str
    archive: ArchiveRef
    operator_image: str
    operator_command: tuple[str, ...] = ("modeldeploy",)
    image: str = DEFAULT_IMAGE
    model_config: ModelConfig = field(default_factory=ModelConfig)
    resources: Mapping[str, Mapping[str, str]] = field(default_factory=_default_resources)
    verify_resources: Mapping[str, Mapping[str, str]] = field(default_factory=_default_verify_resources)
    ports: ServingPorts = field(default_factory=ServingPorts)
    paths: ServingPaths = field(default_factory=ServingPaths)
    network_policy: NetworkPolicyOptions = field(default_factory=NetworkPolicyOptions)
    job_queue_size: int = 100
    netty_threads: int = 2
    # The JVM only routes requests; the Python workers holding the model need most of the memory.
    jvm_max_ram_percentage: int = 25
    pre_stop_sleep_seconds: int = 5
    run_as_user: int = DEFAULT_UID

    def __post_init__(self) -> None:
        if not _DNS_LABEL.match(self.name) or len(self.name) + len(_LONGEST_SUFFIX) > 63:
            raise _fail(
                "metadata.name",
                self.name,
                f"must be a DNS label of at most {63 - len(_LONGEST_SUFFIX)} chars",
            )
        if not _DNS_LABEL.match(self.namespace):
            raise _fail("metadata.namespace", self.namespace, "must be a DNS label")
        if not self.uid:
            raise _fail("metadata.uid", self.uid, "must not be empty")
        if not _REVISION.match(self.revision):
            raise _fail("revision", self.revision, "must be 10 lowercase hex digits")
        if self.role not in ROLES:
            raise _fail("role", self.role, "must be stable or canary")
        if self.replicas < 0:
            raise _fail("serving.replicas", self.replicas, "must be >= 0")
        if not _MODEL_NAME.match(self.model_name):
            raise _fail("model.name", self.model_name, f"must match {_MODEL_NAME.pattern}")
        if not _MODEL_NAME.match(self.model_version):
            raise _fail("model.version", self.model_version, f"must match {_MODEL_NAME.pattern}")
        if not _SAFE_FILE.match(self.archive.file_name):
            raise _fail("archive.uri", self.archive.uri, "must end in a file name of [A-Za-z0-9_.-]")
        if not self.operator_command:
            raise _fail("operatorCommand", self.operator_command, "must not be empty")
        if self.job_queue_size < 1:
            raise _fail("jobQueueSize", self.job_queue_size, "must be >= 1")
        if self.netty_threads < 1:
            raise _fail("nettyThreads", self.netty_threads, "must be >= 1")
        if not 1 <= self.jvm_max_ram_percentage <= 90:
            raise _fail("jvmMaxRamPercentage", self.jvm_max_ram_percentage, "must be within 1..90")
        if self.pre_stop_sleep_seconds < 0:
            raise _fail("preStopSleepSeconds", self.pre_stop_sleep_seconds, "must be >= 0")
        if self.run_as_user < 1:
            raise _fail("runAsUser", self.run_as_user, "must be a non-root uid (>= 1)")

    # Derived names and places, shared by the builders and the tests.

    @property
    def configmap_name(self) -> str:
        """`NAME-REVISION`: one ConfigMap per revision, shared by the roles serving it."""
        return f"{self.name}-{self.revision}"

    @property
    def deployment_name(self) -> str:
        """`NAME-ROLE`."""
        return f"{self.name}-{self.role}"

    @property
    def model_store_dir(self) -> str:
        """The directory TorchServe uses as its model store inside the container."""
        if isinstance(self.archive.store, PvcStore):
            return posixpath.dirname(posixpath.join(self.paths.model_store, self.archive.key))
        return self.paths.model_store

    @property
    def archive_path(self) -> str:
        """Where the verified archive is inside the container."""
        return posixpath.join(self.model_store_dir, self.archive.file_name)

    @property
    def ready_marker(self) -> str:
        """File the readiness probe keeps while the model is serving; the entrypoint reads it on exit."""
        return posixpath.join(self.paths.tmp_dir, ".modeldeploy-ready")

    def config_file(self, key: str) -> str:
        """Path of one ConfigMap key as mounted in the container."""
        return posixpath.join(self.paths.config_dir, key)


def common_labels(name: str) -> dict[str, str]:
    """Labels on every object made for the ModelDeployment `name`."""
    return {LABEL_NAME: name, LABEL_MANAGED_BY: MANAGER, LABEL_DEPLOYMENT: name}


def revision_labels(plan: ServingPlan) -> dict[str, str]:
    """Labels of objects that belong to one revision (the ConfigMap)."""
    return {**common_labels(plan.name), LABEL_REVISION: plan.revision}


def workload_labels(plan: ServingPlan) -> dict[str, str]:
    """Labels of objects and pods that serve one revision in one role."""
    return {**revision_labels(plan), LABEL_ROLE: plan.role}


def role_selector(name: str, role: Role) -> dict[str, str]:
    """The immutable selector of one role's pods (no revision: a Deployment keeps it across revisions)."""
    return {LABEL_DEPLOYMENT: name, LABEL_ROLE: role}


def owner_reference(name: str, uid: str) -> dict[str, Any]:
    """The controller reference to the ModelDeployment that owns a child object."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def object_meta(name: str, plan_name: str, namespace: str, uid: str, labels: Mapping[str, str]) -> dict[str, Any]:
    """Metadata of a child object: its name, namespace, labels and owner."""
    return {
        "name": name,
        "namespace": namespace,
        "labels": dict(labels),
        "ownerReferences": [owner_reference(plan_name, uid)],
    }
