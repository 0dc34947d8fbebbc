"""Revisions, build keys and roles: content addresses of the parts of a spec that matter, and the two
places a revision can be served from.

A **revision** identifies what is served. It is the sha256 of a canonical JSON document (sorted keys,
no whitespace, UTF-8) of the model (name, version, sources with their pins, handler, TorchServe
config), the archive (format, store) and the serving template (image, resources, ports). It leaves out
what does not change a serving pod: replicas (a replica change scales, it does not roll out), the
NetworkPolicy, the rollout and analysis settings, and the Secret names (rotating credentials is not a
new model). Defaults are applied before hashing, so writing a default explicitly changes nothing.

Both are a `Digest`. Names and labels carry a revision's first 10 hex characters (`Digest.short`);
status carries the same short form, so `kubectl get mdep` matches the names of the children. 40 bits
make an accidental collision between the few revisions of one deployment negligible; the full digest
stays available as `Digest.digest` for audit.

A **build key** identifies an archive build: only what changes the archive's bytes or where they are
stored (model files, name, version, format, store), not the TorchServe runtime config, which goes to
config.properties. The build Job is named NAME-build-<first 12 hex of the build key>.

A **role** is where a revision is served: `stable` (Deployment NAME-stable) or `canary` (NAME-canary).

Source contents behind an unpinned URI are not part of either digest: they are resolved by the build,
whose inputs digest (status.archive.inputsDigest) covers the bytes.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
from typing import Any

from modeldeploy.api.spec import (
    Archive,
    Model,
    ModelDeploymentSpec,
    PvcStore,
    Resources,
    Source,
)

REVISION_SCHEMA = "modeldeploy.dev/revision/v1"
BUILD_KEY_SCHEMA = "modeldeploy.dev/build-key/v1"
REVISION_NAME_LENGTH = 10
BUILD_KEY_NAME_LENGTH = 12



class Role(enum.StrEnum):
    """Where a revision is served: the `modeldeploy.dev/role` label value and the Deployment NAME-ROLE."""

    STABLE = "stable"
    CANARY = "canary"


ROLES: tuple[Role, ...] = tuple(Role)


@dataclasses.dataclass(frozen=True)
class Digest:
    """A sha256 hex digest with its short form for object names and label values."""

    digest: str
    short_length: int

    @property
    def short(self) -> str:
        """The first characters of the digest, used in names, labels and status."""
        return self.digest[: self.short_length]

    def __str__(self) -> str:
        return self.short


def canonical_json(document: Any) -> bytes:
    """The canonical encoding hashed by revisions: sorted keys, no whitespace, UTF-8."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def _sha256(document: Any) -> str:
    return hashlib.sha256(canonical_json(document)).hexdigest()


def _source(source: Source | None) -> dict[str, Any] | None:
    if source is None:
        return None
    return {"uri": source.uri, "sha256": source.sha256}


def _model_files(model: Model) -> dict[str, Any]:
    files: dict[str, Any] = {
        "name": model.name,
        "version": model.version,
        "serializedFile": _source(model.serialized_file),
        "modelFile": _source(model.model_file),
        "handler": {"builtin": model.handler.builtin.value} if model.handler.builtin is not None
        else _source(model.handler.source),
        "extraFiles": [{"name": f.name, **(_source(f.source) or {})} for f in model.extra_files],
        "requirementsFile": _source(model.requirements_file),
    }
    if model.config_file is not None:
        # Only when set: the revisions of specs without a config file stay what they were.
        files["configFile"] = _source(model.config_file)
    return files


def _store(archive: Archive) -> dict[str, Any]:
    store = archive.store
    if isinstance(store, PvcStore):
        return {"pvc": {"claimName": store.claim_name}}
    return {"s3": {"bucket": store.bucket, "prefix": store.prefix, "endpoint": store.endpoint,
                   "region": store.region}}


def _resources(resources: Resources | None) -> dict[str, Any]:
    return resources.as_dict() if resources is not None else {}


def archive_inputs(spec: ModelDeploymentSpec) -> dict[str, Any]:
    """The document a build key hashes: what changes the archive's bytes or where they are kept."""
    return {
        "schema": BUILD_KEY_SCHEMA,
        "model": _model_files(spec.model),
        "format": spec.archive.format.value,
        "store": _store(spec.archive),
    }


def served_inputs(spec: ModelDeploymentSpec) -> dict[str, Any]:
    """The document a revision hashes: everything that changes what a serving pod runs."""
    config = spec.model.config
    serving = spec.serving
    return {
        "schema": REVISION_SCHEMA,
        "archive": archive_inputs(spec),
        "config": {
            "batchSize": config.batch_size,
            "maxBatchDelayMs": config.max_batch_delay_ms,
            "minWorkers": config.min_workers,
            "maxWorkers": config.max_workers,
            "responseTimeoutSeconds": config.response_timeout_seconds,
            "startupTimeoutSeconds": config.startup_timeout_seconds,
        },
        "serving": {
            "image": serving.image,
            "resources": _resources(serving.resources),
            "port": serving.port,
            "metricsPort": serving.metrics_port,
        },
    }


def revision_of(spec: ModelDeploymentSpec) -> Digest:
    """The revision of a spec; equal specs (after defaults) give equal revisions."""
    return Digest(_sha256(served_inputs(spec)), REVISION_NAME_LENGTH)


def build_key_of(spec: ModelDeploymentSpec) -> Digest:
    """The build key of a spec's archive."""
    return Digest(_sha256(archive_inputs(spec)), BUILD_KEY_NAME_LENGTH)
