"""The rules every input must follow: names TorchServe accepts, safe archive entry names, size limits."""

from __future__ import annotations

import re
from dataclasses import dataclass

from modeldeploy.api.names import MODEL_NAME as MODEL_NAME_PATTERN
from modeldeploy.api.names import SHA256 as SHA256_PATTERN
from modeldeploy.archives.errors import SizeLimitExceeded, UnsafeName

# TorchServe's own model-name rule (ModelArchive / torch-model-archiver), defined with every other name
# pattern in modeldeploy.api.names; the archive tool takes longer names than a ModelDeployment does.
MODEL_NAME_MAX = 128
# Versions appear in TorchServe URLs (/models/NAME/VERSION): the same conservative alphabet.
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-.+]*$")
VERSION_MAX = 64
# One component of an archive entry name: no leading dot (no hidden files, no '.' or '..').
ENTRY_COMPONENT_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-.+=@,]*$")
ENTRY_NAME_MAX = 255
ENTRY_DEPTH_MAX = 16
RESERVED_TOP_LEVEL = "MAR-INF"
# A handler that is a file may name its entry point: "handler.py:function".
HANDLER_ENTRY_POINT = re.compile(r"^(?P<path>.+\.py):(?P<function>[A-Za-z_][A-Za-z0-9_]*)$")

GIB = 1 << 30


@dataclass(frozen=True)
class Limits:
    """Size limits of one build; a source above a limit is refused before anything is written."""

    max_file_bytes: int = 64 * GIB
    max_total_bytes: int = 128 * GIB
    max_files: int = 10_000

    def check_file(self, input_name: str, value: str, size: int) -> None:
        """Refuse one source larger than max_file_bytes."""
        if size > self.max_file_bytes:
            raise SizeLimitExceeded(
                input_name, value, f"size {size} bytes exceeds the per-file limit of {self.max_file_bytes} bytes"
            )

    def check_total(self, total: int, count: int) -> None:
        """Refuse a set of sources whose total size or number of files is above the limits."""
        if count > self.max_files:
            raise SizeLimitExceeded("inputs", f"{count} files", f"more than the limit of {self.max_files} files")
        if total > self.max_total_bytes:
            raise SizeLimitExceeded(
                "inputs", f"{total} bytes", f"total size exceeds the limit of {self.max_total_bytes} bytes"
            )


def check_model_name(name: str) -> str:
    """Return the model name if TorchServe accepts it, else refuse it."""
    if len(name) > MODEL_NAME_MAX:
        raise UnsafeName("modelName", name, f"longer than {MODEL_NAME_MAX} characters")
    if not MODEL_NAME_PATTERN.fullmatch(name):
        raise UnsafeName("modelName", name, f"must match TorchServe's pattern {MODEL_NAME_PATTERN.pattern}")
    return name


def check_version(version: str) -> str:
    """Return the model version if it is safe in TorchServe URLs, else refuse it."""
    if len(version) > VERSION_MAX:
        raise UnsafeName("modelVersion", version, f"longer than {VERSION_MAX} characters")
    if not VERSION_PATTERN.fullmatch(version):
        raise UnsafeName("modelVersion", version, f"must match {VERSION_PATTERN.pattern}")
    return version


def check_entry_name(input_name: str, name: str) -> str:
    """Return an archive entry name if it is safe to extract anywhere, else refuse it (zip slip and friends)."""
    if "\x00" in name:
        raise UnsafeName(input_name, name, "NUL bytes are not allowed in archive names")
    if "\\" in name:
        raise UnsafeName(input_name, name, "backslashes are not allowed in archive names")
    if name.startswith("/"):
        raise UnsafeName(input_name, name, "absolute archive names are not allowed")
    parts = name.split("/")
    if any(part in ("..", ".") for part in parts):
        raise UnsafeName(input_name, name, "'.' and '..' components are not allowed in archive names")
    if len(name) > ENTRY_NAME_MAX:
        raise UnsafeName(input_name, name, f"archive names are limited to {ENTRY_NAME_MAX} characters")
    if len(parts) > ENTRY_DEPTH_MAX:
        raise UnsafeName(input_name, name, f"archive names are limited to {ENTRY_DEPTH_MAX} levels")
    for part in parts:
        if not ENTRY_COMPONENT_PATTERN.fullmatch(part):
            raise UnsafeName(input_name, name, f"each path component must match {ENTRY_COMPONENT_PATTERN.pattern}")
    if parts[0] == RESERVED_TOP_LEVEL:
        raise UnsafeName(input_name, name, f"{RESERVED_TOP_LEVEL}/ is reserved for the manifest")
    return name


def check_sha256(input_name: str, value: str) -> str:
    """Return a sha256 pin in lower case if it is 64 hex digits, else refuse it."""
    lowered = value.strip().lower()
    if not SHA256_PATTERN.fullmatch(lowered):
        raise UnsafeName(f"{input_name}.sha256", value, "a sha256 pin is 64 hexadecimal digits")
    return lowered
