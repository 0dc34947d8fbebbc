"""Model inputs: local paths (a PVC mounted in the build Job), https:// with a sha256 pin, s3://.

Every source becomes one or more ResolvedFile: a local file (the original, or a download in the
store's staging area), its archive entry name, size, sha256 and crc32, all learnt in one streaming
pass. Local files are never copied; remote ones are written once, to the staging area, while hashed.
"""

from __future__ import annotations

import contextlib
import io
import os
import ssl
import stat
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from modeldeploy.archives.errors import (
    DigestMismatch,
    InputChanged,
    InputNotFound,
    InputRefused,
    SizeLimitExceeded,
    SourceUnavailable,
    UnsafePath,
)
from modeldeploy.archives.rules import Limits, check_entry_name, check_sha256
from modeldeploy.archives.s3 import S3Config, error_code, parse_s3_uri
from modeldeploy.archives.streams import FileSink, scan_file

# Directory entries torch-model-archiver leaves out as well.
_SKIPPED_DIRECTORIES = frozenset({"__pycache__", "__MACOSX"})
_USER_AGENT = "modeldeploy-archive/1"


@dataclass(frozen=True)
class Source:
    """One input as the user gives it: a local path, https://... or s3://BUCKET/KEY.

    sha256 pins the content (required for https). archive_name overrides the entry name (default:
    the last path segment); for a local directory it is a prefix for the files inside.
    """

    location: str
    sha256: str | None = None
    archive_name: str | None = None


@dataclass(frozen=True)
class Fingerprint:
    """What changes when a file is modified or replaced (checked again while writing)."""

    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, status: os.stat_result) -> Fingerprint:
        """The fingerprint of a stat result."""
        return cls(status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)


@dataclass(frozen=True)
class ResolvedFile:
    """An input file ready to be archived: where to read it and what it must contain."""

    input_name: str
    location: str
    archive_name: str
    path: str
    size: int
    sha256: str
    crc32: int
    fingerprint: Fingerprint = field(compare=False)

    @contextlib.contextmanager
    def open(self) -> Iterator[io.FileIO]:
        """Open for writing into the archive; refuse the file if it changed since it was hashed."""
        fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb", buffering=0) as handle:
            self._check_unchanged(os.fstat(fd))
            yield handle
            self._check_unchanged(os.fstat(fd))

    def _check_unchanged(self, status: os.stat_result) -> None:
        if Fingerprint.of(status) != self.fingerprint:
            raise InputChanged(self.input_name, f"{self.location} was modified or replaced after it was hashed")


@dataclass
class SourceResolver:
    """Turns Sources into ResolvedFiles under the safety rules.

    source_root: every local path, and every symlink target, must lie inside it. Without it, a
    file's own directory is its root (a symlink may not leave it) and a directory is its own root.
    """

    limits: Limits
    download_dir: str
    source_root: str | None = None
    allow_insecure_http: bool = False
    ca_bundle: str | None = None
    timeout_seconds: float = 60.0
    s3: S3Config | None = None
    _s3_client: Any = None
    _downloads: int = 0

    def resolve(self, input_name: str, source: Source, *, allow_directory: bool = False) -> list[ResolvedFile]:
        """Resolve one source (a directory gives several files, sorted by entry name)."""
        location = source.location
        pin = check_sha256(input_name, source.sha256) if source.sha256 is not None else None
        if "\x00" in location:
            raise UnsafePath(input_name, location, "NUL bytes are not allowed in locations")
        scheme = location.split("://", 1)[0].lower() if "://" in location else ""
        if scheme in ("https", "http"):
            return [self._download_http(input_name, source, pin)]
        if scheme == "s3":
            return [self._download_s3(input_name, source, pin)]
        if scheme == "file":
            location = urllib.parse.unquote(urllib.parse.urlparse(location).path)
        elif scheme == "pvc":
            raise InputRefused(
                input_name, location, "pvc:// sources are mounted into the build Job: pass the mounted path"
            )
        elif scheme:
            raise InputRefused(input_name, location, "supported sources are local paths, https:// and s3://")
        return self._resolve_local(input_name, location, source, pin, allow_directory)

    # Local files -----------------------------------------------------------------------------------

    def _resolve_local(
        self, input_name: str, path: str, source: Source, pin: str | None, allow_directory: bool
    ) -> list[ResolvedFile]:
        if not path:
            raise InputNotFound(input_name, path, "an empty path names no file")
        absolute = os.path.abspath(path)
        try:
            os.lstat(absolute)
        except (FileNotFoundError, NotADirectoryError):
            raise InputNotFound(input_name, path, "no such file or directory") from None
        except PermissionError:
            raise UnsafePath(input_name, path, "permission denied") from None
        if self.source_root is not None:
            root = os.path.abspath(self.source_root)
            if not _within(os.path.normpath(absolute), root):
                raise UnsafePath(input_name, path, f"lies outside the source root {root}")
            root_real = os.path.realpath(root)
        else:
            root_real = os.path.realpath(os.path.dirname(absolute))
        real = os.path.realpath(absolute)
        if not _within(real, root_real):
            raise UnsafePath(
                input_name, path, f"is a symlink to {real}, outside the source root {root_real} (see --source-root)"
            )
        status = os.stat(real)
        if stat.S_ISDIR(status.st_mode):
            if not allow_directory:
                raise UnsafePath(input_name, path, "is a directory where a file is expected")
            if pin is not None:
                raise InputRefused(input_name, path, "a sha256 pin applies to one file, not a directory")
            prefix = check_entry_name(input_name, source.archive_name) + "/" if source.archive_name else ""
            walk_root = root_real if self.source_root is not None else real
            files = self._walk(input_name, real, walk_root, prefix)
            return sorted(files, key=lambda item: item.archive_name)
        name = source.archive_name or os.path.basename(absolute)
        check_entry_name(input_name, name)
        return [self._scan_local(input_name, path, real, name, pin)]

    def _walk(self, input_name: str, directory: str, root_real: str, prefix: str) -> list[ResolvedFile]:
        found: list[ResolvedFile] = []
        with os.scandir(directory) as iterator:
            entries = sorted(iterator, key=lambda entry: entry.name)
        for entry in entries:
            if entry.name.startswith(".") or entry.name in _SKIPPED_DIRECTORIES or entry.name.endswith(".pyc"):
                continue
            name = prefix + entry.name
            if entry.is_symlink():
                target = os.path.realpath(entry.path)
                if not _within(target, root_real):
                    raise UnsafePath(
                        input_name, entry.path, f"is a symlink to {target}, outside the source root {root_real}"
                    )
                if os.path.isdir(target):
                    raise UnsafePath(input_name, entry.path, "symlinked directories are not followed")
                found.append(self._scan_local(input_name, entry.path, target, check_entry_name(input_name, name), None))
            elif entry.is_dir(follow_symlinks=False):
                found.extend(self._walk(input_name, entry.path, root_real, name + "/"))
            else:
                found.append(
                    self._scan_local(input_name, entry.path, entry.path, check_entry_name(input_name, name), None)
                )
            if len(found) > self.limits.max_files:
                raise SizeLimitExceeded(input_name, directory, f"more than {self.limits.max_files} files")
        return found

    def _scan_local(self, input_name: str, location: str, real: str, name: str, pin: str | None) -> ResolvedFile:
        # O_NONBLOCK: opening a FIFO or a device must not hang; it is refused right after fstat.
        try:
            fd = os.open(real, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        except PermissionError:
            raise UnsafePath(input_name, location, "permission denied") from None
        except FileNotFoundError:
            raise InputNotFound(input_name, location, "no such file") from None
        with os.fdopen(fd, "rb", buffering=0) as handle:
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode):
                raise UnsafePath(input_name, location, "is not a regular file")
            self.limits.check_file(input_name, location, before.st_size)
            result = scan_file(handle, max_bytes=self.limits.max_file_bytes, input_name=input_name, value=location)
            after = os.fstat(fd)
        if Fingerprint.of(after) != Fingerprint.of(before) or result.size != before.st_size:
            raise InputChanged(input_name, f"{location} changed while it was hashed")
        _check_pin(input_name, location, pin, result.sha256)
        return ResolvedFile(
            input_name, location, name, real, result.size, result.sha256, result.crc32, Fingerprint.of(after)
        )

    # Remote files ----------------------------------------------------------------------------------

    def _download_target(self, name: str) -> str:
        self._downloads += 1
        os.makedirs(self.download_dir, mode=0o700, exist_ok=True)
        return os.path.join(self.download_dir, f"{self._downloads:04d}-{name}")

    def _download_http(self, input_name: str, source: Source, pin: str | None) -> ResolvedFile:
        url = source.location
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme.lower() == "http" and not self.allow_insecure_http:
            raise InputRefused(
                input_name, url, "plain http is refused: use https (--allow-insecure-http is for development only)"
            )
        if pin is None:
            raise InputRefused(input_name, url, "an https source needs a sha256 pin")
        name = source.archive_name or urllib.parse.unquote(parsed.path.rsplit("/", 1)[-1])
        check_entry_name(input_name, name)
        context = ssl.create_default_context(cafile=self.ca_bundle)
        opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=context), _RedirectGuard(input_name, self.allow_insecure_http)
        )
        request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"})
        try:
            response = opener.open(request, timeout=self.timeout_seconds)
        except urllib.error.HTTPError as error:
            error.close()
            if error.code in (404, 410):
                raise InputNotFound(input_name, url, f"the server answered HTTP {error.code}") from None
            if 400 <= error.code < 500:
                raise InputRefused(input_name, url, f"the server answered HTTP {error.code}") from None
            raise SourceUnavailable(f"{input_name}: {url}: the server answered HTTP {error.code}") from None
        except urllib.error.URLError as error:
            if isinstance(error.reason, ssl.SSLCertVerificationError):
                raise InputRefused(input_name, url, f"TLS verification failed: {error.reason.verify_message}") from None
            raise SourceUnavailable(f"{input_name}: {url}: {error.reason}") from None
        except (OSError, ValueError) as error:
            raise SourceUnavailable(f"{input_name}: {url}: {error}") from None
        with response:
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit():
                self.limits.check_file(input_name, url, int(length))
            target = self._download_target(name)
            try:
                with open(target, "xb", buffering=0) as out:
                    result = scan_file(
                        response,
                        copy_to=FileSink(out.fileno()),
                        max_bytes=self.limits.max_file_bytes,
                        input_name=input_name,
                        value=url,
                    )
            except OSError as error:
                raise SourceUnavailable(f"{input_name}: {url}: download interrupted: {error}") from None
        if length is not None and length.isdigit() and result.size != int(length):
            raise SourceUnavailable(f"{input_name}: {url}: got {result.size} of {length} bytes")
        _check_pin(input_name, url, pin, result.sha256)
        return ResolvedFile(
            input_name, url, name, target, result.size, result.sha256, result.crc32, Fingerprint.of(os.stat(target))
        )

    def _download_s3(self, input_name: str, source: Source, pin: str | None) -> ResolvedFile:
        uri = source.location
        bucket, key = parse_s3_uri(input_name, uri)
        name = source.archive_name or key.rsplit("/", 1)[-1]
        check_entry_name(input_name, name)
        if self._s3_client is None:
            self._s3_client = (self.s3 or S3Config.from_env()).client()
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = self._s3_client.get_object(Bucket=bucket, Key=key)
        except ClientError as error:
            code = error_code(error)
            if code in ("NoSuchKey", "NoSuchBucket", "404", "NotFound"):
                raise InputNotFound(input_name, uri, f"the object store answered {code}") from None
            if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise InputRefused(input_name, uri, f"the object store answered {code}") from None
            raise SourceUnavailable(f"{input_name}: {uri}: {error}") from None
        except BotoCoreError as error:
            raise SourceUnavailable(f"{input_name}: {uri}: {error}") from None
        body = answer["Body"]
        try:
            self.limits.check_file(input_name, uri, int(answer.get("ContentLength", 0)))
            target = self._download_target(name)
            with open(target, "xb", buffering=0) as out:
                result = scan_file(
                    body,
                    copy_to=FileSink(out.fileno()),
                    max_bytes=self.limits.max_file_bytes,
                    input_name=input_name,
                    value=uri,
                )
        except (BotoCoreError, OSError) as error:
            raise SourceUnavailable(f"{input_name}: {uri}: download interrupted: {error}") from None
        finally:
            body.close()
        _check_pin(input_name, uri, pin, result.sha256)
        return ResolvedFile(
            input_name, uri, name, target, result.size, result.sha256, result.crc32, Fingerprint.of(os.stat(target))
        )


class _RedirectGuard(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to https (or http when explicitly allowed): never downgrade silently."""

    def __init__(self, input_name: str, allow_insecure_http: bool) -> None:
        self._input_name = input_name
        self._allowed = ("https", "http") if allow_insecure_http else ("https",)

    def redirect_request(
        self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        if urllib.parse.urlparse(newurl).scheme.lower() not in self._allowed:
            raise InputRefused(self._input_name, newurl, "redirects may only lead to https")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _check_pin(input_name: str, location: str, pin: str | None, actual: str) -> None:
    if pin is not None and pin != actual:
        raise DigestMismatch(input_name, location, f"its sha256 is {actual} but the pin is {pin}")


def _within(path: str, root: str) -> bool:
    """Whether path is root or lies below it (both absolute and normalised)."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)
