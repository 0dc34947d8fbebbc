"""The typed ModelDeployment: frozen dataclasses, the domain's one view of an object's spec."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from datetime import timedelta
from typing import ClassVar, Protocol

from modeldeploy.api.images import DEFAULT_SERVING_IMAGE
from modeldeploy.api.spec.reader import SpecError

MAX_NAME_LENGTH = 44
"""The longest metadata.name: the longest child, NAME-build-<12 hex>, must fit a 63-character label."""

MANAGEMENT_PORT = 8081
"""TorchServe's management API port; it listens on 127.0.0.1 only and is never exposed."""


# --- the model ------------------------------------------------------------------------------------


class SourceScheme(enum.StrEnum):
    """Where a source file is read from."""

    PVC = "pvc"
    S3 = "s3"
    HTTPS = "https"


@dataclasses.dataclass(frozen=True)
class Source:
    """A file the archive is built from: its URI and an optional sha256 pin."""

    uri: str
    sha256: str | None = None

    @property
    def scheme(self) -> SourceScheme:
        """The URI's scheme."""
        return SourceScheme(self.uri.split("://", 1)[0])

    @property
    def location(self) -> str:
        """The claim (pvc), bucket (s3) or host (https) part of the URI."""
        return self.uri.split("://", 1)[1].split("/", 1)[0]

    @property
    def path(self) -> str:
        """The path inside the claim, the key inside the bucket, or the URL path."""
        return self.uri.split("://", 1)[1].split("/", 1)[1]

    @property
    def file_name(self) -> str:
        """The last path segment: the file's name inside the archive."""
        return self.path.rsplit("/", 1)[-1]


@dataclasses.dataclass(frozen=True)
class ExtraFile:
    """A further file packed at the archive's root, under `name`."""

    source: Source
    name: str


class BuiltinHandler(enum.StrEnum):
    """TorchServe's built-in handlers."""

    IMAGE_CLASSIFIER = "image_classifier"
    IMAGE_SEGMENTER = "image_segmenter"
    OBJECT_DETECTOR = "object_detector"
    TEXT_CLASSIFIER = "text_classifier"


@dataclasses.dataclass(frozen=True)
class Handler:
    """Exactly one of a handler file (`source`) or a built-in handler (`builtin`)."""

    source: Source | None = None
    builtin: BuiltinHandler | None = None


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """TorchServe's per-model runtime settings (`spec.model.config`), with the CRD's defaults."""

    batch_size: int = 1
    max_batch_delay_ms: int = 100
    min_workers: int = 1
    max_workers: int = 1
    response_timeout_seconds: int = 120
    startup_timeout_seconds: int = 300

    def __post_init__(self) -> None:
        field = "spec.model.config"
        if self.batch_size < 1:
            raise SpecError(f"{field}.batchSize", self.batch_size, "must be >= 1")
        if self.max_batch_delay_ms < 0:
            raise SpecError(f"{field}.maxBatchDelayMs", self.max_batch_delay_ms, "must be >= 0")
        # Readiness counts READY workers against minWorkers: zero would call a pod without a model ready.
        if self.min_workers < 1:
            raise SpecError(f"{field}.minWorkers", self.min_workers, "must be >= 1")
        if self.min_workers > self.max_workers:
            raise SpecError(f"{field}.minWorkers", self.min_workers, f"must be <= maxWorkers ({self.max_workers})")
        if self.response_timeout_seconds < 1:
            raise SpecError(f"{field}.responseTimeoutSeconds", self.response_timeout_seconds, "must be >= 1")
        if self.startup_timeout_seconds < 1:
            raise SpecError(f"{field}.startupTimeoutSeconds", self.startup_timeout_seconds, "must be >= 1")


@dataclasses.dataclass(frozen=True)
class Model:
    """What is packed into the archive and how TorchServe runs it."""

    name: str
    serialized_file: Source
    handler: Handler
    version: str = "1.0"
    model_file: Source | None = None
    extra_files: tuple[ExtraFile, ...] = ()
    requirements_file: Source | None = None
    config_file: Source | None = None
    """TorchServe's model-config.yaml (handler settings, batching and workers per model), packed as the
    archive's config file."""
    config: ModelConfig = ModelConfig()
    source_secret_name: str | None = None

    def sources(self) -> tuple[tuple[str, Source], ...]:
        """Every source with the field it comes from, in spec order."""
        found: list[tuple[str, Source]] = [("spec.model.serializedFile", self.serialized_file)]
        if self.model_file is not None:
            found.append(("spec.model.modelFile", self.model_file))
        if self.handler.source is not None:
            found.append(("spec.model.handler", self.handler.source))
        found.extend((f"spec.model.extraFiles[{i}]", f.source) for i, f in enumerate(self.extra_files))
        if self.requirements_file is not None:
            found.append(("spec.model.requirementsFile", self.requirements_file))
        if self.config_file is not None:
            found.append(("spec.model.configFile", self.config_file))
        return tuple(found)


class ArchiveFormat(enum.StrEnum):
    """torch-model-archiver's archive formats."""

    ZIP = "zip"
    ZIP_STORE = "zip-store"
    TGZ = "tgz"
    NO_ARCHIVE = "no-archive"


@dataclasses.dataclass(frozen=True)
class PvcStore:
    """Archives kept on a PersistentVolumeClaim in the deployment's namespace."""

    claim_name: str = "model-store"


@dataclasses.dataclass(frozen=True)
class S3Store:
    """Archives kept in an S3-compatible bucket."""

    bucket: str
    secret_name: str
    prefix: str = ""
    endpoint: str | None = None
    region: str | None = None


@dataclasses.dataclass(frozen=True)
class Resources:
    """Container compute resources, as quantities by resource name."""

    requests: Mapping[str, str] = dataclasses.field(default_factory=dict)
    limits: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict[str, dict[str, str]]:
        """The Kubernetes form: {"requests": {...}, "limits": {...}} without empty parts."""
        out: dict[str, dict[str, str]] = {}
        if self.requests:
            out["requests"] = dict(sorted(self.requests.items()))
        if self.limits:
            out["limits"] = dict(sorted(self.limits.items()))
        return out


@dataclasses.dataclass(frozen=True)
class ArchiveBuild:
    """The build Job's limits."""

    active_deadline_seconds: int = 900
    backoff_limit: int = 1
    resources: Resources | None = None


@dataclasses.dataclass(frozen=True)
class Archive:
    """How the archive is built and where it is stored."""

    format: ArchiveFormat = ArchiveFormat.ZIP_STORE
    store: PvcStore | S3Store = PvcStore()
    build: ArchiveBuild = ArchiveBuild()


@dataclasses.dataclass(frozen=True)
class NetworkPolicy:
    """Whether to fence the serving pods, and who may scrape their metrics."""

    enabled: bool = True
    monitoring_namespace: str = "monitoring"


@dataclasses.dataclass(frozen=True)
class Serving:
    """The TorchServe pods."""

    image: str = DEFAULT_SERVING_IMAGE
    replicas: int = 1
    resources: Resources | None = None
    port: int = 8080
    metrics_port: int = 8082
    network_policy: NetworkPolicy = NetworkPolicy()


@dataclasses.dataclass(frozen=True)
class RolloutStep:
    """A canary weight in percent, held for `pause`.

    None: the step holds (phase Paused) until a promote request names the canary revision; on the
    last step (weight 100) it promotes at once.
    """

    weight: int
    pause: timedelta | None = None


class TorchServeMetric(enum.StrEnum):
    """The metrics computed from TorchServe's own counters."""

    ERROR_RATE = "error-rate"
    MEAN_LATENCY_MS = "mean-latency-ms"


class ProviderSpec(Protocol):
    """What every metric provider's spec tells, whatever its kind.

    `kind` is its key under a metric's `provider` in the CRD (`torchserve`, `prometheus`): the parser
    table `PROVIDER_PARSERS` and the operator's provider registry (modeldeploy.metrics) are keyed by it.
    """

    @property
    def kind(self) -> str:
        """The CRD key under `provider`."""
        ...

    def secret_refs(self) -> tuple[tuple[str, str], ...]:
        """(field below `provider.<kind>`, Secret name) of every Secret this provider reads."""
        ...


@dataclasses.dataclass(frozen=True)
class TorchServeProvider:
    """A metric computed from the canary pods' TorchServe counters."""

    kind: ClassVar[str] = "torchserve"
    metric: TorchServeMetric = TorchServeMetric.ERROR_RATE

    def secret_refs(self) -> tuple[tuple[str, str], ...]:
        """No Secret: the pods' metrics port needs no credentials."""
        return ()


@dataclasses.dataclass(frozen=True)
class PrometheusProvider:
    """A metric from a PromQL instant query, with its placeholders filled in at each measurement.

    `secret_name` names a Secret in the object's namespace with the client's credentials: `token`
    (a bearer token) or `username` and `password` (basic auth), and `ca.crt` (the CA bundle that
    signs the server's certificate).
    """

    kind: ClassVar[str] = "prometheus"
    address: str
    query: str
    timeout: timedelta = timedelta(seconds=10)
    secret_name: str | None = None

    def secret_refs(self) -> tuple[tuple[str, str], ...]:
        """The client's credentials, when it names a Secret."""
        return () if self.secret_name is None else (("secretRef.name", self.secret_name),)


class GoldenSetMeasure(enum.StrEnum):
    """What a golden-set metric measures of the canary's answers to the set's examples."""

    ACCURACY = "accuracy"
    MACRO_PRECISION = "macro-precision"
    MACRO_RECALL = "macro-recall"
    MACRO_F1 = "macro-f1"
    AGREEMENT = "agreement"

    @property
    def needs_labels(self) -> bool:
        """Whether every example must carry its label (agreement compares with stable's answers)."""
        return self is not GoldenSetMeasure.AGREEMENT


@dataclasses.dataclass(frozen=True)
class GoldenSetPrediction:
    """Where the predicted label is in an answer: at `json_path`, the best score (`argmax`), or the
    body itself (neither)."""

    json_path: str | None = None
    argmax: bool = False


@dataclasses.dataclass(frozen=True)
class GoldenSetProvider:
    """A metric of the canary's answers to a golden set's examples, sent to its pods directly."""

    kind: ClassVar[str] = "goldenSet"
    source: Source
    measure: GoldenSetMeasure = GoldenSetMeasure.ACCURACY
    prediction: GoldenSetPrediction = GoldenSetPrediction()

    def secret_refs(self) -> tuple[tuple[str, str], ...]:
        """No Secret of its own: an s3:// set is read with the credentials the model's sources use."""
        return ()


class RelativeTo(enum.StrEnum):
    """What a metric's bounds are relative to: the stable revision, measured beside the canary."""

    STABLE = "stable"


@dataclasses.dataclass(frozen=True)
class Metric:
    """A metric and its inclusive bounds (at least one); with `relative_to`, the bounds apply to
    canary - stable, measured on the same examples."""

    name: str
    provider: ProviderSpec
    min: float | None = None
    max: float | None = None
    relative_to: RelativeTo | None = None

    @property
    def comparison(self) -> str | None:
        """What the bounds apply to with `relativeTo: stable`: a ratio for a mean latency, else a difference."""
        if self.relative_to is None:
            return None
        provider = self.provider
        latency = isinstance(provider, TorchServeProvider) and provider.metric is TorchServeMetric.MEAN_LATENCY_MS
        return "canary / stable" if latency else "canary - stable"

    @property
    def sends_own_requests(self) -> bool:
        """Whether its provider judges answers to requests it sends itself (so it needs no user traffic)."""
        return isinstance(self.provider, GoldenSetProvider)


DEFAULT_METRICS = (Metric(name="error-rate", provider=TorchServeProvider(), max=0.01),)


@dataclasses.dataclass(frozen=True)
class Analysis:
    """How each rollout step is judged."""

    interval: timedelta = timedelta(seconds=30)
    failure_limit: int = 1
    consecutive_error_limit: int = 4
    min_requests: int = 20
    metrics: tuple[Metric, ...] = DEFAULT_METRICS
    allow_promotion_without_analysis: bool = False
    """The user's explicit choice to let an empty `metrics` promote on pauses (and `promote`) alone."""


class TrafficRouting(enum.StrEnum):
    """How traffic is split between stable and canary: the key set under spec.rollout.trafficRouting."""

    REPLICAS = "replicas"


@dataclasses.dataclass(frozen=True)
class Rollout:
    """How a new revision replaces the stable one."""

    steps: tuple[RolloutStep, ...] = (RolloutStep(weight=100),)
    analysis: Analysis = Analysis()
    progress_deadline_seconds: int = 600
    traffic_router: TrafficRouting = TrafficRouting.REPLICAS


@dataclasses.dataclass(frozen=True)
class ModelDeploymentSpec:
    """The whole spec."""

    model: Model
    archive: Archive = Archive()
    serving: Serving = Serving()
    rollout: Rollout = Rollout()


@dataclasses.dataclass(frozen=True)
class ModelDeployment:
    """A parsed object: its identity and its spec."""

    namespace: str
    name: str
    generation: int
    uid: str
    spec: ModelDeploymentSpec

    def referenced_claims(self) -> tuple[tuple[str, str], ...]:
        """(field, claim name) of every PersistentVolumeClaim the spec reads or writes, deduplicated."""
        found: dict[str, str] = {}
        for field, source in self.spec.model.sources():
            if source.scheme is SourceScheme.PVC:
                found.setdefault(source.location, f"{field}.uri")
        store = self.spec.archive.store
        if isinstance(store, PvcStore):
            found.setdefault(store.claim_name, "spec.archive.store.pvc.claimName")
        return tuple((field, claim) for claim, field in found.items())

    def referenced_secrets(self) -> tuple[tuple[str, str], ...]:
        """(field, secret name) of every Secret the spec names."""
        found: list[tuple[str, str]] = []
        if self.spec.model.source_secret_name is not None:
            found.append(("spec.model.sourceSecretRef.name", self.spec.model.source_secret_name))
        store = self.spec.archive.store
        if isinstance(store, S3Store):
            found.append(("spec.archive.store.s3.secretRef.name", store.secret_name))
        for i, metric in enumerate(self.spec.rollout.analysis.metrics):
            found.extend((f"spec.rollout.analysis.metrics[{i}].provider.{metric.provider.kind}.{field}", name)
                         for field, name in metric.provider.secret_refs())
        return tuple(found)
