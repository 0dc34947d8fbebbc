"""MANIFEST.json as torch-model-archiver 0.12 writes it, but canonical: sorted keys, createdOn from the inputs."""

from __future__ import annotations

import json
import time

# The manifest schema TorchServe 0.12 reads is the one torch-model-archiver 0.12 writes.
ARCHIVER_VERSION = "0.12.0"
MANIFEST_ENTRY = "MAR-INF/MANIFEST.json"


def created_on(epoch: int) -> str:
    """torch-model-archiver's createdOn format ("%d/%m/%Y %H:%M:%S"), for a fixed Unix time in UTC."""
    return time.strftime("%d/%m/%Y %H:%M:%S", time.gmtime(max(epoch, 0)))


def build_manifest(
    *,
    model_name: str,
    version: str,
    handler: str,
    serialized_file: str,
    model_file: str | None,
    requirements_file: str | None,
    config_file: str | None,
    epoch: int,
) -> dict[str, object]:
    """The manifest's content: `runtime: python` and the model section, optional keys only when set."""
    model: dict[str, str] = {
        "modelName": model_name,
        "serializedFile": serialized_file,
        "handler": handler,
        "modelVersion": version,
    }
    if model_file is not None:
        model["modelFile"] = model_file
    if requirements_file is not None:
        model["requirementsFile"] = requirements_file
    if config_file is not None:
        model["configFile"] = config_file
    return {
        "createdOn": created_on(epoch),
        "runtime": "python",
        "model": model,
        "archiverVersion": ARCHIVER_VERSION,
    }


def manifest_bytes(manifest: dict[str, object]) -> bytes:
    """Serialised like torch-model-archiver (indent 2) with sorted keys, so equal content gives equal bytes."""
    return json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8")
