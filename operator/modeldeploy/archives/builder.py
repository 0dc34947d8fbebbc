"""Build a reproducible, content-addressed TorchServe archive from model inputs.

    result = build_archive(ArchiveRequest(...), "/store")

1. Every source is resolved and hashed in one streaming pass (sha256 + crc32, size limits, pins).
2. inputsDigest = sha256 of a canonical JSON of the format version, the options and the sorted
   (entry name, size, sha256) of every input. If the store already holds a complete artifact under
   that digest it is returned at once (reused=True).
3. Otherwise the artifact is streamed into the store's staging area (sorted entries, fixed
   timestamps and modes), hashed while written, and published atomically with its record.
"""

from __future__ import annotations

import os
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from modeldeploy.archives import detect
from modeldeploy.archives.deflate import DEFAULT_LEVEL, DEFLATE_CHUNK_BYTES
from modeldeploy.archives.digests import canonical_json, sha256_hex
from modeldeploy.archives.dirformat import DirectoryWriter
from modeldeploy.archives.errors import ArchiveError, BuildFailed, InputRefused, UnsafeName, UnsupportedOption
from modeldeploy.archives.manifest import MANIFEST_ENTRY, build_manifest, manifest_bytes
from modeldeploy.archives.rules import (
    HANDLER_ENTRY_POINT,
    Limits,
    check_model_name,
    check_version,
)
from modeldeploy.archives.s3 import S3Config
from modeldeploy.archives.sources import ResolvedFile, Source, SourceResolver
from modeldeploy.archives.stores import Staged, Store, open_store
from modeldeploy.archives.streams import HashingWriter
from modeldeploy.archives.tarformat import TarGzWriter
from modeldeploy.archives.zipformat import ZipWriter

ArchiveFormat = Literal["zip", "zip-store", "tgz", "no-archive"]
FORMATS: tuple[str, ...] = get_args(ArchiveFormat)
ARTIFACT_SUFFIX: dict[str, str] = {"zip": ".mar", "zip-store": ".mar", "tgz": ".tar.gz", "no-archive": ""}
# Bump when the bytes produced for the same inputs change (layout, compression, manifest).
FORMAT_VERSION = "modeldeploy.dev/archive/v1"
# TorchServe 0.12's built-in handlers (torch-model-archiver's list): packaged by name, no file.
BUILTIN_HANDLERS = frozenset(
    {
        "base_handler",
        "text_classifier",
        "image_classifier",
        "object_detector",
        "image_segmenter",
        "dali_image_classifier",
        "vllm_handler",
        "trt_llm_handler",
    }
)


@dataclass(frozen=True)
class BuiltinHandler:
    """One of TorchServe's built-in handlers, by name (e.g. image_classifier)."""

    name: str


@dataclass(frozen=True)
class ArchiveRequest:
    """What to archive. Everything here changes the artifact's bytes, hence its inputsDigest."""

    model_name: str
    version: str
    serialized_file: Source
    handler: Source | BuiltinHandler
    handler_entry_point: str | None = None
    model_file: Source | None = None
    extra_files: tuple[Source, ...] = ()
    requirements_file: Source | None = None
    config_file: Source | None = None
    archive_format: ArchiveFormat = "zip-store"
    created_on_epoch: int = 0
    deflate_level: int = DEFAULT_LEVEL


@dataclass(frozen=True)
class BuildSettings:
    """How to build: limits, trust and transport. None of this changes the artifact's bytes."""

    limits: Limits = field(default_factory=Limits)
    source_root: str | None = None
    allow_insecure_http: bool = False
    ca_bundle: str | None = None
    timeout_seconds: float = 60.0
    s3: S3Config | None = None
    workers: int | None = None
    durable: bool = True


@dataclass(frozen=True)
class ArchiveResult:
    """The outcome of a build. For no-archive, sha256 is the directory's listing digest."""

    inputs_digest: str
    sha256: str
    uri: str
    key: str
    format: str
    bytes: int
    seconds: float
    reused: bool
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The result as the CLI prints it (camelCase keys)."""
        return {
            "inputsDigest": self.inputs_digest,
            "sha256": self.sha256,
            "uri": self.uri,
            "key": self.key,
            "format": self.format,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "reused": self.reused,
            "warnings": list(self.warnings),
        }


def handler_from_cli(value: str, sha256: str | None = None) -> tuple[Source | BuiltinHandler, str | None]:
    """Parse torch-model-archiver's --handler: a built-in name, or a file with an optional ':function'."""
    if value in BUILTIN_HANDLERS:
        if sha256 is not None:
            raise InputRefused("handler", value, "a built-in handler has no file to pin")
        return BuiltinHandler(value), None
    match = HANDLER_ENTRY_POINT.fullmatch(value)
    if match:
        return Source(match.group("path"), sha256=sha256), match.group("function")
    return Source(value, sha256=sha256), None


@dataclass(frozen=True)
class _Plan:
    request: ArchiveRequest
    files: tuple[ResolvedFile, ...]
    manifest: bytes
    options: dict[str, Any]
    digest: str
    artifact_name: str


def _validate(request: ArchiveRequest, store: Store) -> None:
    check_model_name(request.model_name)
    check_version(request.version)
    if request.archive_format not in FORMATS:
        raise UnsupportedOption("archiveFormat", request.archive_format, f"must be one of {', '.join(FORMATS)}")
    if request.archive_format == "no-archive" and not store.supports_directories:
        raise UnsupportedOption("archiveFormat", "no-archive", f"the store {store.describe()} holds files only")
    if not 1 <= request.deflate_level <= 9:
        raise UnsupportedOption("deflateLevel", request.deflate_level, "must be between 1 and 9")
    if request.created_on_epoch < 0:
        raise UnsupportedOption("createdOnEpoch", request.created_on_epoch, "must not be negative")
    if isinstance(request.handler, BuiltinHandler):
        if request.handler.name not in BUILTIN_HANDLERS:
            raise InputRefused(
                "handler", request.handler.name, f"built-in handlers are {', '.join(sorted(BUILTIN_HANDLERS))}"
            )
        if request.handler_entry_point is not None:
            raise InputRefused("handler", request.handler_entry_point, "a built-in handler takes no entry point")
    elif request.handler_entry_point is not None and not request.handler_entry_point.isidentifier():
        raise InputRefused("handler", request.handler_entry_point, "an entry point is a Python identifier")


def _single(resolver: SourceResolver, input_name: str, source: Source) -> ResolvedFile:
    (resolved,) = resolver.resolve(input_name, source)
    return resolved


def _plan(request: ArchiveRequest, resolver: SourceResolver, limits: Limits) -> _Plan:
    files: list[ResolvedFile] = []
    serialized = _single(resolver, "serializedFile", request.serialized_file)
    files.append(serialized)
    if isinstance(request.handler, BuiltinHandler):
        handler_value = request.handler.name
    else:
        handler_file = _single(resolver, "handler", request.handler)
        if not handler_file.archive_name.endswith(".py"):
            raise InputRefused("handler", handler_file.location, "a handler is a built-in name or a Python file (*.py)")
        files.append(handler_file)
        handler_value = handler_file.archive_name
        if request.handler_entry_point:
            handler_value += ":" + request.handler_entry_point
    optional: dict[str, str | None] = {}
    for input_name, source in (
        ("modelFile", request.model_file),
        ("requirementsFile", request.requirements_file),
        ("configFile", request.config_file),
    ):
        if source is None:
            optional[input_name] = None
            continue
        resolved = _single(resolver, input_name, source)
        files.append(resolved)
        optional[input_name] = resolved.archive_name
    for index, source in enumerate(request.extra_files):
        files.extend(resolver.resolve(f"extraFiles[{index}]", source, allow_directory=True))

    owners: dict[str, str] = {}
    for item in files:
        if item.archive_name in owners:
            raise UnsafeName(
                item.input_name, item.archive_name, f"{owners[item.archive_name]} already uses this archive name"
            )
        owners[item.archive_name] = item.input_name
    limits.check_total(sum(item.size for item in files), len(files))

    manifest = build_manifest(
        model_name=request.model_name,
        version=request.version,
        handler=handler_value,
        serialized_file=serialized.archive_name,
        model_file=optional["modelFile"],
        requirements_file=optional["requirementsFile"],
        config_file=optional["configFile"],
        epoch=request.created_on_epoch,
    )
    compressed = request.archive_format in ("zip", "tgz")
    options: dict[str, Any] = {
        "formatVersion": FORMAT_VERSION,
        "archiveFormat": request.archive_format,
        "manifest": manifest,
        "handlerBuiltin": isinstance(request.handler, BuiltinHandler),
        "deflate": {
            "level": request.deflate_level,
            "chunkBytes": DEFLATE_CHUNK_BYTES,
            # Compressed bytes may differ between zlib releases: a different zlib is a different artifact.
            "zlib": zlib.ZLIB_RUNTIME_VERSION,
        }
        if compressed
        else None,
    }
    ordered = tuple(sorted(files, key=lambda item: item.archive_name))
    entries = [[item.archive_name, item.size, item.sha256] for item in ordered]
    digest = sha256_hex(canonical_json({"options": options, "entries": entries}))
    return _Plan(
        request=request,
        files=ordered,
        manifest=manifest_bytes(manifest),
        options=options,
        digest=digest,
        artifact_name=request.model_name + ARTIFACT_SUFFIX[request.archive_format],
    )


def inputs_digest(request: ArchiveRequest, *, settings: BuildSettings | None = None) -> str:
    """The inputsDigest a build of request would have (sources are read and hashed, nothing is written)."""
    import tempfile

    chosen = settings or BuildSettings()
    with tempfile.TemporaryDirectory(prefix="modeldeploy-digest-") as downloads:
        resolver = _resolver(chosen, downloads)
        return _plan(request, resolver, chosen.limits).digest


def _resolver(settings: BuildSettings, download_dir: str) -> SourceResolver:
    return SourceResolver(
        limits=settings.limits,
        download_dir=download_dir,
        source_root=settings.source_root,
        allow_insecure_http=settings.allow_insecure_http,
        ca_bundle=settings.ca_bundle,
        timeout_seconds=settings.timeout_seconds,
        s3=settings.s3,
    )


def _warnings(plan: _Plan) -> list[str]:
    found: list[str] = []
    for item in plan.files:
        if detect.is_weights_name(item.archive_name):
            message = detect.pickle_warning(item.input_name, item.archive_name, detect.classify(item.path))
            if message:
                found.append(message)
    return found


def _write(plan: _Plan, staged: Staged, settings: BuildSettings) -> tuple[str, int]:
    """Write the artifact; return (sha256, bytes)."""
    request = plan.request
    fmt = request.archive_format
    epoch = request.created_on_epoch
    if fmt == "no-archive":
        directory = DirectoryWriter(staged.directory, epoch=epoch, durable=settings.durable)
        for item in plan.files:
            with item.open() as handle:
                directory.add_file(item.archive_name, handle, item.size, sha256=item.sha256, input_name=item.input_name)
        directory.add_bytes(MANIFEST_ENTRY, plan.manifest)
        return directory.close(), directory.bytes_written
    out = HashingWriter(staged.sink)
    if fmt == "tgz":
        # Like torch-model-archiver: everything under one top directory, which TorchServe strips on unpack.
        top = request.model_name
        tar = TarGzWriter(out, epoch=epoch, deflate_level=request.deflate_level, workers=settings.workers)
        try:
            by_name: dict[str, ResolvedFile | None] = {item.archive_name: item for item in plan.files}
            by_name[MANIFEST_ENTRY] = None
            directories = {
                "/".join(name.split("/")[:depth]) for name in by_name for depth in range(1, name.count("/") + 1)
            }
            tar.add_directory(top)
            for name in sorted([*directories, *by_name]):
                if name not in by_name:
                    tar.add_directory(f"{top}/{name}")
                    continue
                resolved = by_name[name]
                if resolved is None:
                    tar.add_bytes(f"{top}/{name}", plan.manifest)
                else:
                    with resolved.open() as handle:
                        tar.add_file(f"{top}/{name}", handle, resolved.size, input_name=resolved.input_name)
            tar.close()
        finally:
            tar.abort()
        return out.hexdigest(), out.bytes_written
    archive = ZipWriter(out, epoch=epoch, deflate_level=request.deflate_level, workers=settings.workers)
    stored = fmt == "zip-store"
    entries: list[ResolvedFile | None] = [*plan.files, None]
    for resolved in sorted(entries, key=lambda item: item.archive_name if item else MANIFEST_ENTRY):
        if resolved is None:
            if stored:
                archive.add_stored_bytes(MANIFEST_ENTRY, plan.manifest)
            else:
                archive.add_deflated_bytes(MANIFEST_ENTRY, plan.manifest)
            continue
        with resolved.open() as handle:
            if stored:
                archive.add_stored(
                    resolved.archive_name, handle, resolved.size, resolved.crc32, input_name=resolved.input_name
                )
            else:
                archive.add_deflated(
                    resolved.archive_name, handle, resolved.size, resolved.crc32, input_name=resolved.input_name
                )
    archive.close()
    return out.hexdigest(), out.bytes_written


def build_archive(request: ArchiveRequest, store: Store | str, settings: BuildSettings | None = None) -> ArchiveResult:
    """Build (or reuse) the archive for request in store (a Store, a directory or s3://BUCKET/PREFIX).

    Raises InputRefused (and subclasses) for inputs that break a rule, BuildFailed for failures a
    retry may fix. Either way the store holds no partial artifact afterwards.
    """
    started = time.monotonic()
    chosen = settings or BuildSettings()
    target = store if not isinstance(store, str) else open_store(store, s3=chosen.s3, durable=chosen.durable)
    _validate(request, target)
    try:
        with target.workspace() as workspace:
            resolver = _resolver(chosen, os.path.join(workspace, "sources"))
            plan = _plan(request, resolver, chosen.limits)
            key = f"{plan.digest}/{plan.artifact_name}"
            existing = target.lookup(plan.digest, plan.artifact_name)
            if existing is not None:
                return _result(existing, target.uri(key), key, started, reused=True)
            warnings = _warnings(plan)
            staged = target.stage(
                workspace, plan.digest, plan.artifact_name, directory=request.archive_format == "no-archive"
            )
            try:
                sha256, size = _write(plan, staged, chosen)
                record = {
                    "kind": "ModelArchiveRecord",
                    "inputsDigest": plan.digest,
                    "sha256": sha256,
                    "format": request.archive_format,
                    "bytes": size,
                    "artifact": plan.artifact_name,
                    "modelName": request.model_name,
                    "modelVersion": request.version,
                    "options": plan.options,
                    "entries": [
                        {"name": item.archive_name, "size": item.size, "sha256": item.sha256} for item in plan.files
                    ],
                    "warnings": warnings,
                }
                published = staged.commit(record)
            except BaseException:
                staged.discard()
                raise
            return _result(published, target.uri(key), key, started, reused=False)
    except ArchiveError:
        raise
    except OSError as error:
        raise BuildFailed(f"building {request.model_name} in {target.describe()} failed: {error}") from error
    except Exception as error:
        # The object store's client errors (botocore) are failures of the store, not of the inputs.
        if type(error).__module__.startswith(("botocore", "boto3", "urllib3")):
            raise BuildFailed(f"building {request.model_name} in {target.describe()} failed: {error}") from error
        raise


def _result(record: dict[str, Any], uri: str, key: str, started: float, *, reused: bool) -> ArchiveResult:
    return ArchiveResult(
        inputs_digest=str(record["inputsDigest"]),
        sha256=str(record["sha256"]),
        uri=uri,
        key=key,
        format=str(record["format"]),
        bytes=int(record["bytes"]),
        seconds=time.monotonic() - started,
        reused=reused,
        warnings=tuple(str(item) for item in record.get("warnings", [])),
    )
