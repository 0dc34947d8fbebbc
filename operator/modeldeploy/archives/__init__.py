"""Reproducible, content-addressed TorchServe 0.12 model archives.

from modeldeploy.archives import ArchiveRequest, Source, build_archive, verify

result = build_archive(
    ArchiveRequest(model_name="iris", version="2", serialized_file=Source("/models/iris/model.pt"),
                   handler=Source("/models/iris/handler.py"), archive_format="zip-store"),
    "/store",
)
verify(result.uri, result.sha256)
"""

from modeldeploy.archives.builder import (
    ARTIFACT_SUFFIX,
    BUILTIN_HANDLERS,
    FORMAT_VERSION,
    FORMATS,
    ArchiveFormat,
    ArchiveRequest,
    ArchiveResult,
    BuildSettings,
    BuiltinHandler,
    build_archive,
    handler_from_cli,
    inputs_digest,
)
from modeldeploy.archives.errors import (
    ArchiveError,
    BuildFailed,
    DigestMismatch,
    InputChanged,
    InputNotFound,
    InputRefused,
    IntegrityError,
    SizeLimitExceeded,
    SourceUnavailable,
    UnsafeName,
    UnsafePath,
    UnsupportedOption,
)
from modeldeploy.archives.rules import Limits
from modeldeploy.archives.s3 import S3Config
from modeldeploy.archives.sources import Source
from modeldeploy.archives.stores import DirectoryStore, S3Store, Store, open_store
from modeldeploy.archives.verify import artifact_sha256, verify

__all__ = [
    "ARTIFACT_SUFFIX",
    "BUILTIN_HANDLERS",
    "FORMATS",
    "FORMAT_VERSION",
    "ArchiveError",
    "ArchiveFormat",
    "ArchiveRequest",
    "ArchiveResult",
    "BuildFailed",
    "BuildSettings",
    "BuiltinHandler",
    "DigestMismatch",
    "DirectoryStore",
    "InputChanged",
    "InputNotFound",
    "InputRefused",
    "IntegrityError",
    "Limits",
    "S3Config",
    "S3Store",
    "SizeLimitExceeded",
    "Source",
    "SourceUnavailable",
    "Store",
    "UnsafeName",
    "UnsafePath",
    "UnsupportedOption",
    "artifact_sha256",
    "build_archive",
    "handler_from_cli",
    "inputs_digest",
    "open_store",
    "verify",
]
