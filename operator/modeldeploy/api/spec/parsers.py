"""Parsing a body into the typed ModelDeployment, field by field, in the CRD's order."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from modeldeploy.api.names import (
    DNS1035_LABEL,
    DNS1123_LABEL,
    DNS1123_SUBDOMAIN,
    JSON_PATH,
    MODEL_NAME,
    S3_BUCKET,
    SHA256,
)
from modeldeploy.api.placeholders import PROMETHEUS_PLACEHOLDERS, placeholders
from modeldeploy.api.spec.reader import Reader, SpecError, matching, one_of
from modeldeploy.api.spec.types import (
    DEFAULT_METRICS,
    MANAGEMENT_PORT,
    MAX_NAME_LENGTH,
    Analysis,
    Archive,
    ArchiveBuild,
    ArchiveFormat,
    BuiltinHandler,
    ExtraFile,
    GoldenSetMeasure,
    GoldenSetPrediction,
    GoldenSetProvider,
    Handler,
    Metric,
    Model,
    ModelConfig,
    ModelDeployment,
    ModelDeploymentSpec,
    NetworkPolicy,
    PrometheusProvider,
    ProviderSpec,
    PvcStore,
    RelativeTo,
    Resources,
    Rollout,
    RolloutStep,
    S3Store,
    Serving,
    Source,
    TorchServeMetric,
    TorchServeProvider,
    TrafficRouting,
)
from modeldeploy.api.spec.units import QUANTITY, parse_go_duration, quantity_value

_HTTP_URL = re.compile(r"^https?://[^/\s]+(/\S*)?$")
_URI = re.compile(
    r"^(?P<scheme>pvc)://(?P<pvc>[a-z0-9]([-a-z0-9.]*[a-z0-9])?)/(?P<pvc_path>[^\x00]+)$"
    r"|^(?P<s3scheme>s3)://(?P<bucket>[a-z0-9][-a-z0-9.]{1,61}[a-z0-9])/(?P<key>[^\x00]+)$"
    r"|^(?P<httpsscheme>https)://(?P<host>[^/\s\x00]+)/(?P<https_path>[^\s\x00]+)$"
)


def _source(reader: Reader) -> Source:
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


def _optional_source(reader: Reader, key: str) -> Source | None:
    return _source(reader.child(key)) if reader.has(key) else None


def _handler(reader: Reader) -> Handler:
    if reader.has("uri") == reader.has("builtin"):
        raise SpecError(reader.path, dict(reader.data), "must set exactly one of uri or builtin")
    if reader.has("builtin"):
        if reader.has("sha256"):
            raise SpecError(reader.at("sha256"), reader.data["sha256"], "pins a handler file and needs uri")
        return Handler(builtin=reader.choice("builtin", BuiltinHandler))
    return Handler(source=_source(reader))


def _model_config(reader: Reader) -> ModelConfig:
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


def _secret_name(reader: Reader, key: str) -> str:
    return matching(reader.child(key), "name", DNS1123_SUBDOMAIN, "must be a DNS-1123 subdomain")


def _model(reader: Reader) -> Model:
    name = matching(reader, "name", MODEL_NAME, f"must match {MODEL_NAME.pattern}",
                     max_length=64)
    version = matching(reader, "version", MODEL_NAME, f"must match {MODEL_NAME.pattern}",
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


def _resources(reader: Reader) -> Resources:
    parts: dict[str, dict[str, str]] = {}
    for part in ("requests", "limits"):
        quantities = reader.child(part)
        parsed: dict[str, str] = {}
        if len(quantities.data) > 6:
            raise SpecError(quantities.path, len(quantities.data), "must name at most 6 resources")
        for resource, raw in quantities.data.items():
            value = str(raw) if isinstance(raw, int) and not isinstance(raw, bool) else raw
            if not isinstance(value, str) or not QUANTITY.match(value):
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


def _optional_resources(reader: Reader, key: str) -> Resources | None:
    return _resources(reader.child(key)) if reader.has(key) else None


def _store(reader: Reader) -> PvcStore | S3Store:
    if not reader.data:
        return PvcStore()
    if reader.has("pvc") == reader.has("s3"):
        raise SpecError(reader.path, dict(reader.data), "must set exactly one of pvc or s3")
    if reader.has("pvc"):
        pvc = reader.child("pvc")
        claim = matching(pvc, "claimName", DNS1123_SUBDOMAIN, "must be a DNS-1123 subdomain", "model-store")
        return PvcStore(claim_name=claim)
    s3 = reader.child("s3")
    prefix = s3.string("prefix", "", max_length=512)
    if prefix.startswith("/") or ".." in prefix or "\x00" in prefix:
        raise SpecError(s3.at("prefix"), prefix, 'must not start with "/" nor contain ".." or NUL')
    endpoint = s3.optional_string("endpoint", max_length=512)
    if endpoint is not None and not _HTTP_URL.match(endpoint):
        raise SpecError(s3.at("endpoint"), endpoint, "must be an http:// or https:// URL")
    return S3Store(
        bucket=matching(s3, "bucket", S3_BUCKET, "must be an S3 bucket name", max_length=63),
        secret_name=_secret_name(s3, "secretRef"),
        prefix=prefix,
        endpoint=endpoint,
        region=s3.optional_string("region", max_length=64),
    )


def _archive(reader: Reader) -> Archive:
    archive_format = reader.choice("format", ArchiveFormat, ArchiveFormat.ZIP_STORE, max_length=16)
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


def _serving(reader: Reader) -> Serving:
    network_policy = reader.child("networkPolicy")
    serving = Serving(
        image=reader.string("image", Serving.image, max_length=512),
        replicas=reader.integer("replicas", 1, minimum=1, maximum=1000),
        resources=_optional_resources(reader, "resources"),
        port=reader.integer("port", 8080, minimum=1024, maximum=65535),
        metrics_port=reader.integer("metricsPort", 8082, minimum=1024, maximum=65535),
        network_policy=NetworkPolicy(
            enabled=network_policy.boolean("enabled", True),
            monitoring_namespace=matching(network_policy, "monitoringNamespace", DNS1123_LABEL,
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


def _steps(reader: Reader) -> tuple[RolloutStep, ...]:
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


def _torchserve_provider(reader: Reader) -> TorchServeProvider:
    return TorchServeProvider(metric=reader.choice("metric", TorchServeMetric, TorchServeMetric.ERROR_RATE,
                                                       max_length=32))


def _prometheus_provider(reader: Reader) -> PrometheusProvider:
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


def _golden_set_provider(reader: Reader) -> GoldenSetProvider:
    prediction = reader.child("prediction")
    if prediction.has("jsonPath") and prediction.has("argmax"):
        raise SpecError(prediction.path, dict(prediction.data), "must set at most one of jsonPath or argmax")
    json_path = None
    if prediction.has("jsonPath"):
        json_path = matching(prediction, "jsonPath", JSON_PATH,
                             "must be a path of keys and indexes such as $.labels[0] or $['class name']",
                             max_length=512)
    return GoldenSetProvider(source=_source(reader.child("source")),
                             measure=reader.choice("measure", GoldenSetMeasure, GoldenSetMeasure.ACCURACY),
                             prediction=GoldenSetPrediction(json_path=json_path, argmax=prediction.has("argmax")))


PROVIDER_PARSERS: Mapping[str, Callable[[Reader], ProviderSpec]] = {
    TorchServeProvider.kind: _torchserve_provider,
    PrometheusProvider.kind: _prometheus_provider,
    GoldenSetProvider.kind: _golden_set_provider,
}
"""The metric providers a spec may name: the CRD key under `provider` -> the parser of what is below it.
A new provider kind is one entry here (and its CRD schema, and its module in modeldeploy.metrics)."""


def _metric(reader: Reader) -> Metric:
    name = matching(reader, "name", DNS1123_LABEL, "must be a DNS-1123 label", max_length=63)
    provider_reader = reader.child("provider")
    named = [kind for kind in PROVIDER_PARSERS if provider_reader.has(kind)]
    if len(named) != 1:
        raise SpecError(provider_reader.path, dict(provider_reader.data),
                        f"must set exactly one of {one_of(list(PROVIDER_PARSERS))}")
    provider = PROVIDER_PARSERS[named[0]](provider_reader.child(named[0]))
    relative_to = reader.choice("relativeTo", RelativeTo) if reader.has("relativeTo") else None
    metric = Metric(name=name, provider=provider, min=reader.number("min"), max=reader.number("max"),
                    relative_to=relative_to)
    if metric.min is None and metric.max is None:
        raise SpecError(reader.path, name, "needs a bound: set min, max or both")
    if metric.min is not None and metric.max is not None and metric.min > metric.max:
        raise SpecError(reader.at("min"), metric.min, f"must be <= max ({metric.max})")
    if relative_to is not None and isinstance(provider, PrometheusProvider):
        raise SpecError(reader.at("relativeTo"), relative_to.value,
                        "does not apply to a prometheus metric, which is judged on its query's value: write the "
                        "comparison with stable in the query (role=\"stable\")")
    if isinstance(provider, GoldenSetProvider) and provider.measure is GoldenSetMeasure.AGREEMENT \
            and relative_to is not None:
        raise SpecError(reader.at("relativeTo"), relative_to.value,
                        "does not apply to agreement, which compares canary with stable already")
    if isinstance(provider, TorchServeProvider) and provider.metric is TorchServeMetric.ERROR_RATE:
        if relative_to is None:
            _bounds_within(reader, metric, 0.0, "an error rate")
        else:
            _bounds_within(reader, metric, -1.0, "a difference of error rates (canary - stable)")
    if isinstance(provider, TorchServeProvider) and provider.metric is not TorchServeMetric.ERROR_RATE \
            and relative_to is not None:
        for key, bound in (("min", metric.min), ("max", metric.max)):
            if bound is not None and bound <= 0:
                raise SpecError(reader.at(key), bound, "must be above 0 for a ratio of latencies (canary / stable)")
    if isinstance(provider, GoldenSetProvider):
        if relative_to is None:
            _bounds_within(reader, metric, 0.0, f"a share ({provider.measure})")
        else:
            _bounds_within(reader, metric, -1.0, f"a difference of shares ({provider.measure} - stable)")
    return metric


def _bounds_within(reader: Reader, metric: Metric, low: float, what: str) -> None:
    for key, bound in (("min", metric.min), ("max", metric.max)):
        if bound is not None and not low <= bound <= 1.0:
            raise SpecError(reader.at(key), bound, f"must lie within [{low:g}, 1] for {what}")


def _analysis(reader: Reader) -> Analysis:
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


def _traffic_routing(reader: Reader) -> TrafficRouting:
    """The one router `trafficRouting` names by its key; absent: the CRD's default, replicas."""
    if not reader.has("trafficRouting"):
        return Rollout.traffic_router
    routing = reader.child("trafficRouting")
    named = [kind for kind in TrafficRouting if routing.has(kind.value)]
    if len(named) != 1:
        supported = ", ".join(kind.value for kind in TrafficRouting)
        raise SpecError(routing.path, dict(routing.data), f"must name one router; supported: {supported}")
    return named[0]


def _rollout(reader: Reader) -> Rollout:
    rollout = Rollout(
        steps=_steps(reader),
        analysis=_analysis(reader.child("analysis")),
        progress_deadline_seconds=reader.integer("progressDeadlineSeconds", 600, minimum=30, maximum=86400),
        traffic_router=_traffic_routing(reader),
    )
    if rollout.steps[0].weight == 0 and not any(m.sends_own_requests for m in rollout.analysis.metrics):
        raise SpecError(reader.at("steps"), [step.weight for step in rollout.steps],
                        "a first step of weight 0 is the gate, where no user traffic reaches the canary: it "
                        "needs a goldenSet metric in analysis.metrics, which sends requests of its own")
    return rollout


def parse_spec(spec: Mapping[str, Any] | None) -> ModelDeploymentSpec:
    """Parse and check `spec` of a ModelDeployment body, applying the CRD's defaults."""
    reader = Reader(spec, "spec")
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
