"""The typed ModelDeployment: frozen dataclasses parsed once, at the boundary, from an object's body.

The API server already validates the object against the CRD (manifests/crds/). Parsing repeats the
rules the domain relies on, so that an object admitted under an older schema, or a body built in a
test, can never reach the domain half-valid: every violation raises `SpecError` naming the field,
the value and the rule. Defaults mirror the CRD's (a unit test keeps the two in step).
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from decimal import Decimal
from typing import Any, ClassVar, Protocol, TypeVar

from modeldeploy.api.images import DEFAULT_SERVING_IMAGE
from modeldeploy.api.names import (
    DNS1035_LABEL,
    DNS1123_LABEL,
    DNS1123_SUBDOMAIN,
    MODEL_NAME,
    S3_BUCKET,
    SHA256,
)
from modeldeploy.api.placeholders import PROMETHEUS_PLACEHOLDERS, placeholders

MAX_NAME_LENGTH = 44
"""The longest metadata.name: the longest child, NAME-build-<12 hex>, must fit a 63-character label."""

MANAGEMENT_PORT = 8081
"""TorchServe's management API port; it listens on 127.0.0.1 only and is never exposed."""

_GO_DURATION = re.compile(r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")
_GO_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)")
_HTTP_URL = re.compile(r"^https?://[^/\s]+(/\S*)?$")
_QUANTITY = re.compile(
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_URI = re.compile(
    r"^(?P<scheme>pvc)://(?P<pvc>[a-z0-9]([-a-z0-9.]*[a-z0-9])?)/(?P<pvc_path>[^\x00]+)$"
    r"|^(?P<s3scheme>s3)://(?P<bucket>[a-z0-9][-a-z0-9.]{1,61}[a-z0-9])/(?P<key>[^\x00]+)$"
    r"|^(?P<httpsscheme>https)://(?P<host>[^/\s\x00]+)/(?P<https_path>[^\s\x00]+)$"
)
_DURATION_UNITS = {
    "ns": timedelta(microseconds=0.001),
    "us": timedelta(microseconds=1),
    "µs": timedelta(microseconds=1),
    "ms": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
}


_QUANTITY_SUFFIXES = {
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
    "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"),
    "P": Decimal("1e15"), "E": Decimal("1e18"),
}


def quantity_value(text: str) -> Decimal:
    """The value of a Kubernetes quantity such as "500m", "2Gi" or "1e3" (format checked by the caller)."""
    for suffix in ("Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u", "m", "k", "M", "G", "T", "P", "E"):
        if text.endswith(suffix) and not text.endswith(("e" + suffix, "E" + suffix)):
            return Decimal(text[: -len(suffix)]) * _QUANTITY_SUFFIXES[suffix]
    return Decimal(text)


class SpecError(ValueError):
    """A spec violates a rule: names the field, the offending value and the rule or bound."""

    def __init__(self, field: str, value: object, rule: str) -> None:
        self.field = field
        self.value = value
        self.rule = rule
        super().__init__(f"{field}: {value!r} {rule}")


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


@dataclasses.dataclass(frozen=True)
class Metric:
    """A metric and its inclusive bounds (at least one)."""

    name: str
    provider: ProviderSpec
    min: float | None = None
    max: float | None = None


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


# --- parsing --------------------------------------------------------------------------------------

_T = TypeVar("_T")


class _Reader:
    """Typed access to one mapping of the body, with the field path for error messages."""

    def __init__(self, data: object, path: str) -> None:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise SpecError(path, data, "must be an object")
        self.data: Mapping[str, Any] = data
        self.path = path

    def at(self, key: str) -> str:
        return f"{self.path}.{key}"

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def child(self, key: str) -> _Reader:
        return _Reader(self.data.get(key), self.at(key))

    def _typed(self, key: str, kind: type[_T], default: _T | None, what: str) -> _T:
        value = self.data.get(key)
        if value is None:
            if default is None:
                raise SpecError(self.at(key), None, "is required")
            return default
        # bool is an int in Python; a YAML `true` is never a valid count
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise SpecError(self.at(key), value, f"must be {what}")
        return value

    def string(self, key: str, default: str | None = None, *, max_length: int = 1024) -> str:
        value = self._typed(key, str, default, "a string")
        if len(value) > max_length:
            raise SpecError(self.at(key), value, f"must be at most {max_length} characters")
        return value

    def optional_string(self, key: str, *, max_length: int = 1024) -> str | None:
        return self.string(key, max_length=max_length) if self.has(key) else None

    def integer(self, key: str, default: int | None = None, *, minimum: int, maximum: int) -> int:
        value = self._typed(key, int, default, "an integer")
        if not minimum <= value <= maximum:
            raise SpecError(self.at(key), value, f"must be within {minimum}..{maximum}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        return self._typed(key, bool, default, "true or false")

    def number(self, key: str) -> float | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SpecError(self.at(key), value, "must be a number")
        return float(value)

    def items(self, key: str, *, max_items: int) -> list[_Reader] | None:
        """The list's items, or None when the key is absent."""
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, Sequence) or isinstance(value, str):
            raise SpecError(self.at(key), value, "must be a list")
        if len(value) > max_items:
            raise SpecError(self.at(key), f"{len(value)} items", f"must have at most {max_items} items")
        return [_Reader(item, f"{self.at(key)}[{i}]") for i, item in enumerate(value)]


def _matching(reader: _Reader, key: str, pattern: re.Pattern[str], rule: str, default: str | None = None,
              *, max_length: int = 253) -> str:
    value = reader.string(key, default, max_length=max_length)
    if not pattern.match(value):
        raise SpecError(reader.at(key), value, rule)
    return value


def parse_go_duration(text: str, field: str = "duration") -> timedelta:
    """Parse a Go duration such as "30s", "1.5h" or "1h30m"; raise SpecError for anything else."""
    if not _GO_DURATION.match(text):
        raise SpecError(field, text, "is not a duration (for example 30s, 5m, 1h30m)")
    total = timedelta()
    for amount, unit in _GO_DURATION_PART.findall(text):
        total += float(amount) * _DURATION_UNITS[unit]
    return total


def _source(reader: _Reader) -> Source:
    uri = reader.string("uri", max_length=1024)
    if not _URI.match(uri):
        raise SpecError(reader.at("uri"), uri, "must be pvc://CLAIM/PATH, s3://BUCKET/KEY or https://HOST/PATH")
    segments = uri.split("://", 1)[1].split("/")[1:]
    if any(segment in (".", "..") for segment in segments):
        raise SpecError(reader.at("uri"), uri, 'must not contain "." or ".." path segments')
    sha256 = reader.optional_string("sha256", max_length=64)
    if sha256 is not None and not SHA256.match(sha256):
        raise SpecError(reader.at("sha256"), sha256, "must be 64 lowercase hexadecimal characters")
    return Source(uri=uri, sha256=sha256)


def check_file_name(name: str, field: str) -> str:
    """A file name inside the archive: no "/", no "..", no NUL, not empty nor "."."""
    if name in ("", ".") or "/" in name or ".." in name or "\x00" in name:
        raise SpecError(field, name, 'must be a file name without "/", ".." or NUL')
    return name


def _optional_source(reader: _Reader, key: str) -> Source | None:
    return _source(reader.child(key)) if reader.has(key) else None


def _handler(reader: _Reader) -> Handler:
    if reader.has("uri") == reader.has("builtin"):
        raise SpecError(reader.path, dict(reader.data), "must set exactly one of uri or builtin")
    if reader.has("builtin"):
        if reader.has("sha256"):
            raise SpecError(reader.at("sha256"), reader.data["sha256"], "pins a handler file and needs uri")
        builtin = reader.string("builtin", max_length=64)
        try:
            return Handler(builtin=BuiltinHandler(builtin))
        except ValueError:
            allowed = ", ".join(h.value for h in BuiltinHandler)
            raise SpecError(reader.at("builtin"), builtin, f"must be one of {allowed}") from None
    return Handler(source=_source(reader))


def _model_config(reader: _Reader) -> ModelConfig:
    defaults = ModelConfig()
    # ModelConfig itself refuses minWorkers above maxWorkers, naming spec.model.config.minWorkers.
    return ModelConfig(
        batch_size=reader.integer("batchSize", defaults.batch_size, minimum=1, maximum=1024),
        max_batch_delay_ms=reader.integer("maxBatchDelayMs", defaults.max_batch_delay_ms, minimum=0, maximum=60000),
        min_workers=reader.integer("minWorkers", defaults.min_workers, minimum=1, maximum=64),
        max_workers=reader.integer("maxWorkers", defaults.max_workers, minimum=1, maximum=64),
        response_timeout_seconds=reader.integer("responseTimeoutSeconds", defaults.response_timeout_seconds,
                                                minimum=1, maximum=3600),
        startup_timeout_seconds=reader.integer("startupTimeoutSeconds", defaults.startup_timeout_seconds,
                                               minimum=1, maximum=3600),
    )


def _secret_name(reader: _Reader, key: str) -> str:
    return _matching(reader.child(key), "name", DNS1123_SUBDOMAIN, "must be a DNS-1123 subdomain")


def _model(reader: _Reader) -> Model:
    name = _matching(reader, "name", MODEL_NAME, f"must match {MODEL_NAME.pattern}",
                     max_length=64)
    version = _matching(reader, "version", MODEL_NAME, f"must match {MODEL_NAME.pattern}",
                        "1.0", max_length=32)
    extra_files = []
    for item in reader.items("extraFiles", max_items=32) or []:
        source = _source(item)
        file_name = item.string("name", max_length=255) if item.has("name") else source.file_name
        extra_files.append(ExtraFile(source=source, name=check_file_name(file_name, item.at("name"))))
    model = Model(
        name=name,
        version=version,
        serialized_file=_source(reader.child("serializedFile")),
        model_file=_optional_source(reader, "modelFile"),
        handler=_handler(reader.child("handler")),
        extra_files=tuple(extra_files),
        requirements_file=_optional_source(reader, "requirementsFile"),
        config_file=_optional_source(reader, "configFile"),
        config=_model_config(reader.child("config")),
        source_secret_name=_secret_name(reader, "sourceSecretRef") if reader.has("sourceSecretRef") else None,
    )
    _check_archive_names(model)
    return model


def _check_archive_names(model: Model) -> None:
    """Every file lands at the archive's root: two files with one name would overwrite each other."""
    seen: dict[str, str] = {}
    named: list[tuple[str, str]] = [(f"{field}.uri", source.file_name) for field, source in model.sources()
                                    if not field.startswith("spec.model.extraFiles")]
    named.extend((f"spec.model.extraFiles[{i}]", f.name) for i, f in enumerate(model.extra_files))
    for field, file_name in named:
        check_file_name(file_name, field)
        if file_name in seen:
            raise SpecError(field, file_name, f"is already the archive file name of {seen[file_name]}")
        seen[file_name] = field


def _resources(reader: _Reader) -> Resources:
    parts: dict[str, dict[str, str]] = {}
    for part in ("requests", "limits"):
        quantities = reader.child(part)
        parsed: dict[str, str] = {}
        if len(quantities.data) > 6:
            raise SpecError(quantities.path, len(quantities.data), "must name at most 6 resources")
        for resource, raw in quantities.data.items():
            value = str(raw) if isinstance(raw, int) and not isinstance(raw, bool) else raw
            if not isinstance(value, str) or not _QUANTITY.match(value):
                raise SpecError(quantities.at(resource), raw,
                                "must be a resource quantity such as 500m or 2Gi")
            if value.startswith("-"):
                raise SpecError(quantities.at(resource), raw, "must not be negative")
            parsed[resource] = value
        parts[part] = parsed
    for resource, request in parts["requests"].items():
        limit = parts["limits"].get(resource)
        if limit is not None and quantity_value(request) > quantity_value(limit):
            raise SpecError(f"{reader.path}.requests.{resource}", request, f"must be <= its limit ({limit})")
    return Resources(requests=parts["requests"], limits=parts["limits"])


def _optional_resources(reader: _Reader, key: str) -> Resources | None:
    return _resources(reader.child(key)) if reader.has(key) else None


def _store(reader: _Reader) -> PvcStore | S3Store:
    if not reader.data:
        return PvcStore()
    if reader.has("pvc") == reader.has("s3"):
        raise SpecError(reader.path, dict(reader.data), "must set exactly one of pvc or s3")
    if reader.has("pvc"):
        pvc = reader.child("pvc")
        claim = _matching(pvc, "claimName", DNS1123_SUBDOMAIN, "must be a DNS-1123 subdomain", "model-store")
        return PvcStore(claim_name=claim)
    s3 = reader.child("s3")
    prefix = s3.string("prefix", "", max_length=512)
    if prefix.startswith("/") or ".." in prefix or "\x00" in prefix:
        raise SpecError(s3.at("prefix"), prefix, 'must not start with "/" nor contain ".." or NUL')
    endpoint = s3.optional_string("endpoint", max_length=512)
    if endpoint is not None and not _HTTP_URL.match(endpoint):
        raise SpecError(s3.at("endpoint"), endpoint, "must be an http:// or https:// URL")
    return S3Store(
        bucket=_matching(s3, "bucket", S3_BUCKET, "must be an S3 bucket name", max_length=63),
        secret_name=_secret_name(s3, "secretRef"),
        prefix=prefix,
        endpoint=endpoint,
        region=s3.optional_string("region", max_length=64),
    )


def _archive(reader: _Reader) -> Archive:
    format_text = reader.string("format", ArchiveFormat.ZIP_STORE.value, max_length=16)
    try:
        archive_format = ArchiveFormat(format_text)
    except ValueError:
        allowed = ", ".join(f.value for f in ArchiveFormat)
        raise SpecError(reader.at("format"), format_text, f"must be one of {allowed}") from None
    build = reader.child("build")
    return Archive(
        format=archive_format,
        store=_store(reader.child("store")),
        build=ArchiveBuild(
            active_deadline_seconds=build.integer("activeDeadlineSeconds", 900, minimum=30, maximum=86400),
            backoff_limit=build.integer("backoffLimit", 1, minimum=0, maximum=10),
            resources=_optional_resources(build, "resources"),
        ),
    )


def _serving(reader: _Reader) -> Serving:
    network_policy = reader.child("networkPolicy")
    serving = Serving(
        image=reader.string("image", Serving.image, max_length=512),
        replicas=reader.integer("replicas", 1, minimum=1, maximum=1000),
        resources=_optional_resources(reader, "resources"),
        port=reader.integer("port", 8080, minimum=1024, maximum=65535),
        metrics_port=reader.integer("metricsPort", 8082, minimum=1024, maximum=65535),
        network_policy=NetworkPolicy(
            enabled=network_policy.boolean("enabled", True),
            monitoring_namespace=_matching(network_policy, "monitoringNamespace", DNS1123_LABEL,
                                           "must be a namespace name", "monitoring", max_length=63),
        ),
    )
    if not serving.image or any(c.isspace() for c in serving.image):
        raise SpecError(reader.at("image"), serving.image, "must be an image reference without spaces")
    if serving.port == serving.metrics_port:
        raise SpecError(reader.at("metricsPort"), serving.metrics_port, "must differ from serving.port")
    for key, port in (("port", serving.port), ("metricsPort", serving.metrics_port)):
        if port == MANAGEMENT_PORT:
            raise SpecError(reader.at(key), port, "is reserved for TorchServe's management API")
    return serving


def _steps(reader: _Reader) -> tuple[RolloutStep, ...]:
    items = reader.items("steps", max_items=20)
    if items is None:
        return Rollout.steps
    if not items:
        raise SpecError(reader.at("steps"), [], "must have at least one step")
    steps = tuple(
        RolloutStep(
            weight=item.integer("weight", minimum=0, maximum=100),
            pause=parse_go_duration(item.string("pause", max_length=32), item.at("pause"))
            if item.has("pause") else None,
        )
        for item in items
    )
    weights = [step.weight for step in steps]
    if any(later <= earlier for earlier, later in itertools.pairwise(weights)):
        raise SpecError(reader.at("steps"), weights, "weights must be strictly increasing")
    if weights[-1] != 100:
        raise SpecError(f"{reader.at('steps')}[{len(steps) - 1}].weight", weights[-1],
                        "must be 100: the last step promotes the canary")
    return steps


def _torchserve_provider(reader: _Reader) -> TorchServeProvider:
    metric_text = reader.string("metric", TorchServeMetric.ERROR_RATE.value, max_length=32)
    try:
        return TorchServeProvider(metric=TorchServeMetric(metric_text))
    except ValueError:
        allowed = ", ".join(m.value for m in TorchServeMetric)
        raise SpecError(reader.at("metric"), metric_text, f"must be one of {allowed}") from None


def _prometheus_provider(reader: _Reader) -> PrometheusProvider:
    address = reader.string("address", max_length=512)
    if not _HTTP_URL.match(address):
        raise SpecError(reader.at("address"), address, "must be an http:// or https:// URL")
    query = reader.string("query", max_length=4096)
    if not query.strip():
        raise SpecError(reader.at("query"), query, "must not be empty")
    for placeholder in placeholders(query):
        if placeholder not in PROMETHEUS_PLACEHOLDERS:
            allowed = ", ".join("{{" + p + "}}" for p in PROMETHEUS_PLACEHOLDERS)
            raise SpecError(reader.at("query"), "{{" + placeholder + "}}", f"is not one of {allowed}")
    timeout_text = reader.string("timeout", "10s", max_length=32)
    timeout = parse_go_duration(timeout_text, reader.at("timeout"))
    if not timedelta(seconds=1) <= timeout <= timedelta(minutes=5):
        raise SpecError(reader.at("timeout"), timeout_text, "must be between 1s and 5m")
    return PrometheusProvider(address=address, query=query, timeout=timeout,
                              secret_name=_secret_name(reader, "secretRef") if reader.has("secretRef") else None)


PROVIDER_PARSERS: Mapping[str, Callable[[_Reader], ProviderSpec]] = {
    TorchServeProvider.kind: _torchserve_provider,
    PrometheusProvider.kind: _prometheus_provider,
}
"""The metric providers a spec may name: the CRD key under `provider` -> the parser of what is below it.
A new provider kind is one entry here (and its CRD schema, and its module in modeldeploy.metrics)."""


def _one_of(keys: Sequence[str]) -> str:
    """The keys as a choice in words: `a or b`, `a, b or c`."""
    return keys[0] if len(keys) == 1 else f"{', '.join(keys[:-1])} or {keys[-1]}"


def _metric(reader: _Reader) -> Metric:
    name = _matching(reader, "name", DNS1123_LABEL, "must be a DNS-1123 label", max_length=63)
    provider_reader = reader.child("provider")
    named = [kind for kind in PROVIDER_PARSERS if provider_reader.has(kind)]
    if len(named) != 1:
        raise SpecError(provider_reader.path, dict(provider_reader.data),
                        f"must set exactly one of {_one_of(list(PROVIDER_PARSERS))}")
    provider = PROVIDER_PARSERS[named[0]](provider_reader.child(named[0]))
    metric = Metric(name=name, provider=provider, min=reader.number("min"), max=reader.number("max"))
    if metric.min is None and metric.max is None:
        raise SpecError(reader.path, name, "needs a bound: set min, max or both")
    if metric.min is not None and metric.max is not None and metric.min > metric.max:
        raise SpecError(reader.at("min"), metric.min, f"must be <= max ({metric.max})")
    if isinstance(provider, TorchServeProvider) and provider.metric is TorchServeMetric.ERROR_RATE:
        for key, bound in (("min", metric.min), ("max", metric.max)):
            if bound is not None and not 0.0 <= bound <= 1.0:
                raise SpecError(reader.at(key), bound, "must lie within [0, 1] for an error rate")
    return metric


def _analysis(reader: _Reader) -> Analysis:
    interval_text = reader.string("interval", "30s", max_length=32)
    interval = parse_go_duration(interval_text, reader.at("interval"))
    if interval < timedelta(seconds=1):
        raise SpecError(reader.at("interval"), interval_text, "must be at least 1s")
    items = reader.items("metrics", max_items=10)
    metrics = DEFAULT_METRICS if items is None else tuple(_metric(item) for item in items)
    allow_without = reader.boolean("allowPromotionWithoutAnalysis", False)
    if not metrics and not allow_without:
        # No metric means no evidence: a canary would promote on its pauses alone.
        raise SpecError(reader.at("metrics"), [], "must name at least one metric "
                        "(or set allowPromotionWithoutAnalysis: true to promote on pauses alone)")
    names = [m.name for m in metrics]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise SpecError(f"{reader.at('metrics')}[{i}].name", name, "is a duplicate metric name")
    return Analysis(
        interval=interval,
        failure_limit=reader.integer("failureLimit", 1, minimum=0, maximum=100),
        consecutive_error_limit=reader.integer("consecutiveErrorLimit", 4, minimum=0, maximum=100),
        min_requests=reader.integer("minRequests", 20, minimum=0, maximum=1_000_000),
        metrics=metrics,
        allow_promotion_without_analysis=allow_without,
    )


def _traffic_routing(reader: _Reader) -> TrafficRouting:
    """The one router `trafficRouting` names by its key; absent: the CRD's default, replicas."""
    if not reader.has("trafficRouting"):
        return Rollout.traffic_router
    routing = reader.child("trafficRouting")
    named = [kind for kind in TrafficRouting if routing.has(kind.value)]
    if len(named) != 1:
        supported = ", ".join(kind.value for kind in TrafficRouting)
        raise SpecError(routing.path, dict(routing.data), f"must name one router; supported: {supported}")
    return named[0]


def _rollout(reader: _Reader) -> Rollout:
    return Rollout(
        steps=_steps(reader),
        analysis=_analysis(reader.child("analysis")),
        progress_deadline_seconds=reader.integer("progressDeadlineSeconds", 600, minimum=30, maximum=86400),
        traffic_router=_traffic_routing(reader),
    )


def parse_spec(spec: Mapping[str, Any] | None) -> ModelDeploymentSpec:
    """Parse and check `spec` of a ModelDeployment body, applying the CRD's defaults."""
    reader = _Reader(spec, "spec")
    if not reader.has("model"):
        raise SpecError("spec.model", None, "is required")
    return ModelDeploymentSpec(
        model=_model(reader.child("model")),
        archive=_archive(reader.child("archive")),
        serving=_serving(reader.child("serving")),
        rollout=_rollout(reader.child("rollout")),
    )


def check_name(name: str) -> str:
    """metadata.name must be a DNS-1035 label of at most MAX_NAME_LENGTH characters."""
    if len(name) > MAX_NAME_LENGTH:
        raise SpecError("metadata.name", name,
                        f"must be at most {MAX_NAME_LENGTH} characters so that NAME-build-<12 hex> fits 63")
    if not DNS1035_LABEL.match(name):
        raise SpecError("metadata.name", name, "must be a DNS-1035 label (it also names Services)")
    return name


def parse(body: Mapping[str, Any]) -> ModelDeployment:
    """Parse a whole ModelDeployment object (metadata and spec)."""
    metadata = body.get("metadata") or {}
    return ModelDeployment(
        namespace=str(metadata.get("namespace", "")),
        name=check_name(str(metadata.get("name", ""))),
        generation=int(metadata.get("generation") or 0),
        uid=str(metadata.get("uid", "")),
        spec=parse_spec(body.get("spec")),
    )
