"""The typed ModelDeployment: frozen dataclasses parsed once, at the boundary, from an object's body.

The API server already validates the object against the CRD (manifests/crds/). Parsing repeats the
rules the domain relies on, so that an object admitted under an older schema, or a body built in a
test, can never reach the domain half-valid: every violation raises `SpecError` naming the field,
the value and the rule. Defaults mirror the CRD's (a unit test keeps the two in step).

The package by concern: `units` (quantities, Go durations), `reader` (typed access to the body and
`SpecError`), `types` (the dataclasses), `parsers` (the body to the types, with `PROVIDER_PARSERS`,
the table a new metric provider adds its parser to).
"""

from __future__ import annotations

from modeldeploy.api.spec.parsers import (
    PROVIDER_PARSERS,
    check_file_name,
    check_name,
    parse,
    parse_spec,
)
from modeldeploy.api.spec.reader import (
    SpecError,
)
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
    SourceScheme,
    TorchServeMetric,
    TorchServeProvider,
    TrafficRouting,
)
from modeldeploy.api.spec.units import (
    parse_go_duration,
    quantity_value,
)

__all__ = [
    "DEFAULT_METRICS",
    "MANAGEMENT_PORT",
    "MAX_NAME_LENGTH",
    "PROVIDER_PARSERS",
    "Analysis",
    "Archive",
    "ArchiveBuild",
    "ArchiveFormat",
    "BuiltinHandler",
    "ExtraFile",
    "GoldenSetMeasure",
    "GoldenSetPrediction",
    "GoldenSetProvider",
    "Handler",
    "Metric",
    "Model",
    "ModelConfig",
    "ModelDeployment",
    "ModelDeploymentSpec",
    "NetworkPolicy",
    "PrometheusProvider",
    "ProviderSpec",
    "PvcStore",
    "RelativeTo",
    "Resources",
    "Rollout",
    "RolloutStep",
    "S3Store",
    "Serving",
    "Source",
    "SourceScheme",
    "SpecError",
    "TorchServeMetric",
    "TorchServeProvider",
    "TrafficRouting",
    "check_file_name",
    "check_name",
    "parse",
    "parse_go_duration",
    "parse_spec",
    "quantity_value",
]
