"""Parsing a ModelDeployment body into the typed spec: defaults, shapes, and errors that name the field."""

from __future__ import annotations

import copy
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from modeldeploy.api.spec import (
    PROVIDER_PARSERS,
    ArchiveFormat,
    BuiltinHandler,
    GoldenSetMeasure,
    GoldenSetPrediction,
    GoldenSetProvider,
    ModelDeployment,
    PrometheusProvider,
    PvcStore,
    RelativeTo,
    S3Store,
    Source,
    SourceScheme,
    SpecError,
    TorchServeMetric,
    TorchServeProvider,
    TrafficRouting,
    parse,
    parse_go_duration,
    parse_spec,
    quantity_value,
)

MINIMAL: dict[str, Any] = {
    "model": {
        "name": "iris",
        "serializedFile": {"uri": "pvc://models/iris/1/model.pt"},
        "handler": {"uri": "pvc://models/iris/handler.py"},
    }
}


def spec_with(**changes: Any) -> dict[str, Any]:
    """MINIMAL with dotted paths replaced, e.g. spec_with(**{"serving.replicas": 0})."""
    spec = copy.deepcopy(MINIMAL)
    for path, value in changes.items():
        target = spec
        *parents, last = path.split(".")
        for key in parents:
            target = target.setdefault(key, {})
        target[last] = value
    return spec


def error_of(spec: dict[str, Any]) -> SpecError:
    with pytest.raises(SpecError) as caught:
        parse_spec(spec)
    return caught.value


def test_minimal_spec_gets_the_documented_defaults() -> None:
    spec = parse_spec(MINIMAL)

    assert spec.model.version == "1.0"
    assert spec.model.config.batch_size == 1
    assert spec.model.config.max_batch_delay_ms == 100
    assert spec.model.config.response_timeout_seconds == 120
    assert spec.archive.format is ArchiveFormat.ZIP_STORE
    assert spec.archive.store == PvcStore(claim_name="model-store")
    assert spec.archive.build.active_deadline_seconds == 900
    assert spec.serving.image == "pytorch/torchserve:0.12.0-cpu"
    assert (spec.serving.replicas, spec.serving.port, spec.serving.metrics_port) == (1, 8080, 8082)
    assert spec.serving.network_policy.enabled is True
    assert [step.weight for step in spec.rollout.steps] == [100]
    assert spec.rollout.analysis.interval == timedelta(seconds=30)
    assert (spec.rollout.analysis.failure_limit, spec.rollout.analysis.consecutive_error_limit) == (1, 4)
    assert spec.rollout.analysis.min_requests == 20
    [metric] = spec.rollout.analysis.metrics
    assert metric.name == "error-rate"
    assert metric.provider == TorchServeProvider(TorchServeMetric.ERROR_RATE)
    assert metric.max == 0.01
    assert spec.rollout.progress_deadline_seconds == 600


def test_sources_expose_scheme_location_path_and_file_name() -> None:
    source = parse_spec(MINIMAL).model.serialized_file

    assert source.scheme is SourceScheme.PVC
    assert (source.location, source.path, source.file_name) == ("models", "iris/1/model.pt", "model.pt")


def test_builtin_handler_and_s3_store_and_prometheus_metric_are_parsed() -> None:
    spec = parse_spec(spec_with(**{
        "model.handler": {"builtin": "image_classifier"},
        "model.sourceSecretRef": {"name": "s3-credentials"},
        "archive.store": {"s3": {"bucket": "archives", "prefix": "md/", "secretRef": {"name": "s3-credentials"}}},
        "rollout.analysis.metrics": [
            {"name": "p99", "provider": {"prometheus": {"address": "http://prom:9090", "query": "q"}}, "max": 250},
        ],
    }))

    assert spec.model.handler.builtin is BuiltinHandler.IMAGE_CLASSIFIER
    assert spec.model.handler.source is None
    assert spec.archive.store == S3Store(bucket="archives", secret_name="s3-credentials", prefix="md/")
    assert spec.rollout.analysis.metrics[0].provider == PrometheusProvider("http://prom:9090", "q")


def test_an_empty_metrics_list_is_refused_naming_the_field_and_the_opt_out() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(spec_with(**{"rollout.analysis.metrics": []}))

    assert caught.value.field == "spec.rollout.analysis.metrics"
    assert "allowPromotionWithoutAnalysis" in str(caught.value)


def test_an_empty_metrics_list_promotes_on_pauses_only_with_the_explicit_opt_out() -> None:
    analysis = parse_spec(spec_with(**{"rollout.analysis": {
        "metrics": [], "allowPromotionWithoutAnalysis": True}})).rollout.analysis

    assert analysis.metrics == ()
    assert analysis.allow_promotion_without_analysis is True


def test_an_omitted_analysis_judges_the_error_rate_and_never_promotes_without_evidence() -> None:
    analysis = parse_spec(spec_with()).rollout.analysis

    assert [m.name for m in analysis.metrics] == ["error-rate"]
    assert analysis.allow_promotion_without_analysis is False


def test_extra_file_takes_its_name_from_the_uri_unless_named() -> None:
    spec = parse_spec(spec_with(**{"model.extraFiles": [
        {"uri": "pvc://models/iris/index_to_name.json"},
        {"uri": "https://example.com/vocab/v2.txt", "name": "vocab.txt"},
    ]}))

    assert [f.name for f in spec.model.extra_files] == ["index_to_name.json", "vocab.txt"]


def test_resources_accept_integer_and_string_quantities() -> None:
    spec = parse_spec(spec_with(**{"serving.resources": {"requests": {"cpu": 1, "memory": "2Gi"}}}))

    assert spec.serving.resources is not None
    assert spec.serving.resources.as_dict() == {"requests": {"cpu": "1", "memory": "2Gi"}}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("1m30s", timedelta(seconds=90)),
        ("1.5h", timedelta(minutes=90)),
        ("250ms", timedelta(milliseconds=250)),
        ("2h45m10s", timedelta(hours=2, minutes=45, seconds=10)),
    ],
)
def test_go_durations_are_parsed(text: str, expected: timedelta) -> None:
    assert parse_go_duration(text) == expected


@pytest.mark.parametrize("text", ["30", "1 minute", "-5s", "", "5d", "s"])
def test_anything_but_a_go_duration_is_refused(text: str) -> None:
    with pytest.raises(SpecError, match="is not a duration"):
        parse_go_duration(text, "spec.rollout.analysis.interval")


@pytest.mark.parametrize(
    ("changes", "field", "rule"),
    [
        ({"model.name": "-iris"}, "spec.model.name", "must match"),
        ({"model.serializedFile": {"uri": "ftp://host/model.pt"}}, "spec.model.serializedFile.uri",
         "must be pvc://CLAIM/PATH"),
        ({"model.serializedFile": {"uri": "pvc://models/../secrets/key"}}, "spec.model.serializedFile.uri",
         '".." path segments'),
        ({"model.serializedFile": {"uri": "pvc://models/m.pt", "sha256": "ABC"}},
         "spec.model.serializedFile.sha256", "64 lowercase hexadecimal"),
        ({"model.handler": {"uri": "pvc://models/h.py", "builtin": "image_classifier"}}, "spec.model.handler",
         "exactly one of uri or builtin"),
        ({"model.handler": {"builtin": "resnet"}}, "spec.model.handler.builtin", "must be one of"),
        ({"model.extraFiles": [{"uri": "pvc://models/a.json", "name": "../a.json"}]},
         "spec.model.extraFiles[0].name", 'without "/", ".." or NUL'),
        ({"model.extraFiles": [{"uri": "pvc://models/other/model.pt"}]}, "spec.model.extraFiles[0]",
         "already the archive file name of spec.model.serializedFile.uri"),
        ({"model.configFile": {"uri": "pvc://models/other/model.pt"}}, "spec.model.configFile.uri",
         "already the archive file name of spec.model.serializedFile.uri"),
        ({"model.configFile": {"uri": "pvc://models/model-config.yaml", "sha256": "xyz"}},
         "spec.model.configFile.sha256", "64 lowercase hexadecimal"),
        ({"model.config": {"minWorkers": 3, "maxWorkers": 2}}, "spec.model.config.minWorkers",
         "must be <= maxWorkers (2)"),
        ({"serving.replicas": 0}, "spec.serving.replicas", "within 1..1000"),
        ({"serving.replicas": True}, "spec.serving.replicas", "must be an integer"),
        ({"serving.port": 8081}, "spec.serving.port", "management API"),
        ({"serving.resources": {"requests": {"cpu": "-1"}}}, "spec.serving.resources.requests.cpu",
         "must not be negative"),
        ({"archive.store": {"pvc": {}, "s3": {"bucket": "b", "secretRef": {"name": "s"}}}}, "spec.archive.store",
         "exactly one of pvc or s3"),
        ({"archive.format": "rar"}, "spec.archive.format", "must be one of"),
        ({"rollout.steps": [{"weight": 50}, {"weight": 25}, {"weight": 100}]}, "spec.rollout.steps",
         "strictly increasing"),
        ({"rollout.steps": [{"weight": 25}, {"weight": 50}]}, "spec.rollout.steps[1].weight", "must be 100"),
        ({"rollout.steps": [{"weight": 100, "pause": "soon"}]}, "spec.rollout.steps[0].pause",
         "is not a duration"),
        ({"rollout.analysis.interval": "100ms"}, "spec.rollout.analysis.interval", "at least 1s"),
        ({"rollout.analysis.metrics": [{"name": "e", "provider": {"torchserve": {}}, "max": 2}]},
         "spec.rollout.analysis.metrics[0].max", "within [0, 1]"),
        ({"rollout.analysis.metrics": [{"name": "l", "provider": {"torchserve": {}}}]},
         "spec.rollout.analysis.metrics[0]", "needs a bound"),
        ({"rollout.analysis.metrics": [
            {"name": "l", "provider": {"torchserve": {"metric": "mean-latency-ms"}}, "min": 9, "max": 1}]},
         "spec.rollout.analysis.metrics[0].min", "must be <= max (1.0)"),
        ({"rollout.trafficRouting": {}}, "spec.rollout.trafficRouting", "supported: replicas"),
    ],
)
def test_violations_name_the_field_the_value_and_the_rule(changes: dict[str, Any], field: str, rule: str) -> None:
    error = error_of(spec_with(**changes))

    assert error.field == field
    assert rule in error.rule
    assert field in str(error) and rule in str(error)


def test_a_missing_required_field_is_named() -> None:
    spec = copy.deepcopy(MINIMAL)
    del spec["model"]["serializedFile"]

    error = error_of(spec)

    assert (error.field, error.rule) == ("spec.model.serializedFile.uri", "is required")


def test_whole_object_parse_checks_the_name_that_prefixes_every_child() -> None:
    body = {"metadata": {"name": "a" * 45, "namespace": "ns", "generation": 1}, "spec": MINIMAL}

    with pytest.raises(SpecError, match="at most 44 characters"):
        parse(body)


def test_whole_object_parse_keeps_identity_and_lists_referenced_claims_and_secrets() -> None:
    body = {
        "metadata": {"name": "iris", "namespace": "team", "generation": 3, "uid": "u-1"},
        "spec": spec_with(**{
            "model.sourceSecretRef": {"name": "creds"},
            "model.extraFiles": [{"uri": "pvc://labels/iris.json"}],
        }),
    }

    deployment = parse(body)

    assert isinstance(deployment, ModelDeployment)
    assert (deployment.namespace, deployment.name, deployment.generation, deployment.uid) == (
        "team", "iris", 3, "u-1")
    assert deployment.referenced_claims() == (
        ("spec.model.serializedFile.uri", "models"),
        ("spec.model.extraFiles[0].uri", "labels"),
        ("spec.archive.store.pvc.claimName", "model-store"),
    )
    assert deployment.referenced_secrets() == (("spec.model.sourceSecretRef.name", "creds"),)


@pytest.mark.parametrize(
    ("text", "value"),
    [("500m", "0.5"), ("2Gi", str(2 * 1024**3)), ("1", "1"), ("1e3", "1000"), ("1.5k", "1500"),
     ("250Mi", str(250 * 2**20))],
)
def test_quantities_are_compared_by_value(text: str, value: str) -> None:
    assert quantity_value(text) == Decimal(value)


def test_a_request_above_its_limit_is_refused_in_any_unit() -> None:
    resources = {"requests": {"memory": "1536Mi"}, "limits": {"memory": "1Gi"}}
    error = error_of(spec_with(**{"serving.resources": resources}))

    assert error.field == "spec.serving.resources.requests.memory"
    assert "must be <= its limit (1Gi)" in str(error)


def prometheus_metric(**fields: object) -> dict[str, object]:
    return {"name": "p99", "max": 250,
            "provider": {"prometheus": {"address": "https://prom:9090", "query": "q", **fields}}}


def test_prometheus_timeout_and_secret_are_parsed_with_a_ten_second_default() -> None:
    default = parse_spec(spec_with(**{"rollout.analysis.metrics": [prometheus_metric()]}))
    configured = parse_spec(spec_with(**{"rollout.analysis.metrics": [
        prometheus_metric(timeout="3s", secretRef={"name": "prometheus-client"})]}))

    assert default.rollout.analysis.metrics[0].provider == PrometheusProvider("https://prom:9090", "q")
    assert PrometheusProvider("https://prom:9090", "q").timeout == timedelta(seconds=10)
    assert configured.rollout.analysis.metrics[0].provider == PrometheusProvider(
        "https://prom:9090", "q", timeout=timedelta(seconds=3), secret_name="prometheus-client")


def test_the_prometheus_secret_is_a_referenced_secret() -> None:
    body = {"metadata": {"name": "iris", "namespace": "team"},
            "spec": spec_with(**{"rollout.analysis.metrics": [prometheus_metric(secretRef={"name": "prom"})]})}

    assert parse(body).referenced_secrets() == (
        ("spec.rollout.analysis.metrics[0].provider.prometheus.secretRef.name", "prom"),)


def test_a_metric_names_exactly_one_provider_of_the_parser_table() -> None:
    both_providers = {"torchserve": {}, "prometheus": {"address": "http://p", "query": "q"}}
    both = error_of(spec_with(**{"rollout.analysis.metrics": [
        {"name": "e", "max": 0.1, "provider": both_providers}]}))
    unknown = error_of(spec_with(**{"rollout.analysis.metrics": [
        {"name": "e", "max": 0.1, "provider": {"golden-set": {}}}]}))

    for error in (both, unknown):
        assert error.field == "spec.rollout.analysis.metrics[0].provider"
        assert "must set exactly one of torchserve, prometheus or goldenSet" in str(error)


def test_each_parser_table_entry_parses_the_provider_spec_of_its_kind() -> None:
    minimal = {"torchserve": {}, "prometheus": {"address": "http://prometheus:9090", "query": "up"},
               "goldenSet": {"source": {"uri": "pvc://models/golden.jsonl"}}}
    assert set(PROVIDER_PARSERS) == set(minimal)
    for kind, fields in minimal.items():
        spec = parse_spec(spec_with(**{"rollout.analysis.metrics": [
            {"name": "m", "max": 0.5, "provider": {kind: fields}}]}))
        assert spec.rollout.analysis.metrics[0].provider.kind == kind


def test_a_torchserve_metric_references_no_secret() -> None:
    body = {"metadata": {"name": "iris", "namespace": "team"},
            "spec": spec_with(**{"rollout.analysis.metrics": [
                {"name": "e", "max": 0.1, "provider": {"torchserve": {}}},
                prometheus_metric(secretRef={"name": "prom"})]})}

    assert parse(body).referenced_secrets() == (
        ("spec.rollout.analysis.metrics[1].provider.prometheus.secretRef.name", "prom"),)


@pytest.mark.parametrize("routing", list(TrafficRouting))
def test_traffic_routing_selects_the_router_it_names(routing: TrafficRouting) -> None:
    named = parse_spec(spec_with(**{"rollout.trafficRouting": {routing.value: {}}}))

    assert named.rollout.traffic_router is routing
    assert parse_spec(MINIMAL).rollout.traffic_router is TrafficRouting.REPLICAS


def test_traffic_routing_that_names_no_known_router_is_refused_naming_the_supported_ones() -> None:
    error = error_of(spec_with(**{"rollout.trafficRouting": {"gatewayAPI": {"httpRoute": "iris"}}}))

    assert error.field == "spec.rollout.trafficRouting"
    assert error.value == {"gatewayAPI": {"httpRoute": "iris"}}
    assert "must name one router; supported: replicas" in str(error)


def test_a_query_may_name_only_the_known_placeholders() -> None:
    known = "sum(rate(x{namespace='{{namespace}}',pod=~'{{ name }}-.*',rev='{{revision}}',r='{{role}}'}[{{interval}}]))"
    parse_spec(spec_with(**{"rollout.analysis.metrics": [prometheus_metric(query=known)]}))

    with pytest.raises(SpecError) as caught:
        parse_spec(spec_with(**{"rollout.analysis.metrics": [prometheus_metric(query="x{pod='{{pod}}'}")]}))
    assert caught.value.field == "spec.rollout.analysis.metrics[0].provider.prometheus.query"
    assert "{{pod}}" in str(caught.value)


def test_a_prometheus_timeout_beyond_five_minutes_is_refused() -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(spec_with(**{"rollout.analysis.metrics": [prometheus_metric(timeout="10m")]}))
    assert caught.value.field == "spec.rollout.analysis.metrics[0].provider.prometheus.timeout"


def golden_metric(**fields: object) -> dict[str, object]:
    return {"name": "quality", "min": 0.9,
            "provider": {"goldenSet": {"source": {"uri": "pvc://models/iris/golden.jsonl"}, **fields}}}


def test_a_golden_set_metric_reads_its_source_measure_and_prediction_with_accuracy_and_the_body_by_default() -> None:
    default = parse_spec(spec_with(**{"rollout.analysis.metrics": [golden_metric()]}))
    configured = parse_spec(spec_with(**{"rollout.analysis.metrics": [
        {**golden_metric(measure="macro-f1", prediction={"jsonPath": "$.labels[0]"}), "relativeTo": "stable",
         "min": -0.02}]}))

    assert default.rollout.analysis.metrics[0].provider == GoldenSetProvider(
        Source("pvc://models/iris/golden.jsonl"), GoldenSetMeasure.ACCURACY, GoldenSetPrediction())
    metric = configured.rollout.analysis.metrics[0]
    assert metric.provider == GoldenSetProvider(Source("pvc://models/iris/golden.jsonl"), GoldenSetMeasure.MACRO_F1,
                                                GoldenSetPrediction(json_path="$.labels[0]"))
    assert (metric.relative_to, metric.min) == (RelativeTo.STABLE, -0.02)


@pytest.mark.parametrize(("fields", "field", "rule"), [
    ({"measure": "recall"}, "provider.goldenSet.measure", "must be one of accuracy, macro-precision"),
    ({"prediction": {"jsonPath": "$..labels"}}, "provider.goldenSet.prediction.jsonPath",
     "must be a path of keys and indexes"),
    ({"prediction": {"jsonPath": "$.a", "argmax": {}}}, "provider.goldenSet.prediction",
     "must set at most one of jsonPath or argmax"),
    ({"source": {"uri": "ftp://x/golden.jsonl"}}, "provider.goldenSet.source.uri", "must be pvc://CLAIM/PATH"),
])
def test_a_bad_golden_set_metric_is_refused_naming_the_field(fields: dict[str, object], field: str,
                                                              rule: str) -> None:
    error = error_of(spec_with(**{"rollout.analysis.metrics": [golden_metric(**fields)]}))

    assert error.field == f"spec.rollout.analysis.metrics[0].{field}" and error.rule.startswith(rule)


def test_agreement_compares_with_stable_already_and_refuses_relative_to() -> None:
    error = error_of(spec_with(**{"rollout.analysis.metrics": [
        {**golden_metric(measure="agreement"), "relativeTo": "stable"}]}))

    assert error.field == "spec.rollout.analysis.metrics[0].relativeTo"
    assert "does not apply to agreement" in error.rule


def test_torchserve_metrics_relative_to_stable_take_a_difference_of_rates_and_a_ratio_of_latencies() -> None:
    spec = parse_spec(spec_with(**{"rollout.analysis.metrics": [
        {"name": "errors", "provider": {"torchserve": {"metric": "error-rate"}}, "relativeTo": "stable",
         "min": -1.0, "max": 0.01},
        {"name": "latency", "provider": {"torchserve": {"metric": "mean-latency-ms"}}, "relativeTo": "stable",
         "max": 1.1}]}))

    errors, latency = spec.rollout.analysis.metrics
    assert (errors.relative_to, errors.min, errors.max) == (RelativeTo.STABLE, -1.0, 0.01)
    assert (latency.relative_to, latency.max) == (RelativeTo.STABLE, 1.1)


@pytest.mark.parametrize(("metric", "field", "rule"), [
    ({"provider": {"torchserve": {"metric": "mean-latency-ms"}}, "max": 0}, "max", "must be above 0 for a ratio"),
    ({"provider": {"torchserve": {"metric": "error-rate"}}, "min": -1.5}, "min",
     "must lie within [-1, 1] for a difference"),
    ({"provider": {"prometheus": {"address": "http://prometheus.monitoring:9090", "query": "vector(1)"}},
      "max": 1}, "relativeTo",
     "does not apply to a prometheus metric"),
])
def test_a_relative_metric_out_of_its_range_is_refused_naming_the_field(metric: dict[str, object], field: str,
                                                                        rule: str) -> None:
    error = error_of(spec_with(**{"rollout.analysis.metrics": [{"name": "m", "relativeTo": "stable", **metric}]}))

    assert error.field == f"spec.rollout.analysis.metrics[0].{field}" and error.rule.startswith(rule), error
