"""What one revision of a ModelDeployment needs to be served: the input of every serving builder.

`ServingPlan` holds the API's value types as they are (one `ModelConfig`, one type per store) plus what
only serving needs (ports, paths, the role); `plan_for` maps a parsed spec and its built archive onto
it, and the builders turn it into Kubernetes objects without knowing anything else.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modeldeploy.api.images import DEFAULT_SERVING_IMAGE
from modeldeploy.api.labels import revision_labels, workload_labels
from modeldeploy.api.names import DNS1035_LABEL, DNS_LABEL_MAX, MODEL_NAME, SHA256
from modeldeploy.api.revision import REVISION_NAME_LENGTH, ROLES, Role
from modeldeploy.api.spec import ArchiveFormat, ModelConfig, ModelDeployment, PvcStore, S3Store
from modeldeploy.api.status import ArchiveStatus
from modeldeploy.settings import OperatorIdentity

# The stock TorchServe image runs as `model-server`, uid/gid 1000.
DEFAULT_UID = 1000

_REVISION = re.compile(rf"^[0-9a-f]{{{REVISION_NAME_LENGTH}}}$")
# Paths end up in config.properties, a Java regex and shell scripts: keep them free of anything to escape.
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9/_.\-]*$")
_SAFE_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_LONGEST_SUFFIX = "-" + max(ROLES, key=len)


def _fail(field_name: str, value: object, bound: str) -> ValueError:
    return ValueError(f"{field_name}={value!r}: {bound}")


@dataclass(frozen=True)
class ArchiveRef:
    """The built archive of the revision: where it is, its sha256 and its format."""

    uri: str
    sha256: str
    format: ArchiveFormat
    store: PvcStore | S3Store

    def __post_init__(self) -> None:
        if not SHA256.match(self.sha256):
            raise _fail("archive.sha256", self.sha256, "must be 64 lowercase hex digits")
        if self.format not in {f.value for f in ArchiveFormat}:
            raise _fail("archive.format", self.format, f"must be one of {', '.join(f.value for f in ArchiveFormat)}")
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
    operator: OperatorIdentity = field(default_factory=OperatorIdentity)
    """The operator, whose image and command verify the archive in each pod and whose namespace scrapes."""
    image: str = DEFAULT_SERVING_IMAGE
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
    traffic_gate: bool = False
    """The pods carry the readiness gate TRAFFIC_GATE (a canary whose rollout begins at the gate)."""

    def __post_init__(self) -> None:
        if not DNS1035_LABEL.match(self.name) or len(self.name) + len(_LONGEST_SUFFIX) > DNS_LABEL_MAX:
            raise _fail(
                "metadata.name",
                self.name,
                f"must be a DNS label of at most {DNS_LABEL_MAX - len(_LONGEST_SUFFIX)} chars",
            )
        if not DNS1035_LABEL.match(self.namespace):
            raise _fail("metadata.namespace", self.namespace, "must be a DNS label")
        if not self.uid:
            raise _fail("metadata.uid", self.uid, "must not be empty")
        if not _REVISION.match(self.revision):
            raise _fail("revision", self.revision, "must be 10 lowercase hex digits")
        if self.role not in ROLES:
            raise _fail("role", self.role, "must be stable or canary")
        if self.replicas < 0:
            raise _fail("serving.replicas", self.replicas, "must be >= 0")
        if not MODEL_NAME.match(self.model_name):
            raise _fail("model.name", self.model_name, f"must match {MODEL_NAME.pattern}")
        if not MODEL_NAME.match(self.model_version):
            raise _fail("model.version", self.model_version, f"must match {MODEL_NAME.pattern}")
        if not _SAFE_FILE.match(self.archive.file_name):
            raise _fail("archive.uri", self.archive.uri, "must end in a file name of [A-Za-z0-9_.-]")
        if not self.operator.command:
            raise _fail("operatorCommand", self.operator.command, "must not be empty")
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


    @property
    def revision_labels(self) -> dict[str, str]:
        """Labels of objects that belong to the plan's revision (its ConfigMap)."""
        return revision_labels(self.name, self.revision)

    @property
    def workload_labels(self) -> dict[str, str]:
        """Labels of objects and pods that serve the plan's revision in its role."""
        return workload_labels(self.name, self.revision, self.role)


def plan_for(md: ModelDeployment, archive: ArchiveStatus, revision: str, role: Role, replicas: int,
             operator: OperatorIdentity) -> ServingPlan:
    """What the builders need to serve `revision` of `md` in `role` with `replicas` pods."""
    spec = md.spec
    resources = spec.serving.resources
    extra: dict[str, Any] = {}
    if resources is not None:
        extra["resources"] = {"requests": dict(resources.requests), "limits": dict(resources.limits)}
    return ServingPlan(
        name=md.name,
        namespace=md.namespace,
        uid=md.uid,
        revision=revision,
        role=role,
        replicas=replicas,
        model_name=spec.model.name,
        model_version=spec.model.version,
        archive=ArchiveRef(uri=archive.uri, sha256=archive.sha256, format=ArchiveFormat(archive.format),
                           store=spec.archive.store),
        operator=operator,
        image=spec.serving.image,
        model_config=spec.model.config,
        ports=ServingPorts(inference=spec.serving.port, metrics=spec.serving.metrics_port),
        network_policy=NetworkPolicyOptions(
            enabled=spec.serving.network_policy.enabled,
            monitoring_namespace=spec.serving.network_policy.monitoring_namespace or None,
        ),
        traffic_gate=role is Role.CANARY and spec.rollout.steps[0].weight == 0,
        **extra,
    )
