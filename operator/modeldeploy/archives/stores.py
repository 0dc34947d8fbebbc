"""Artifact stores: a directory (the PVC store) and S3. Artifacts appear complete or not at all.

Directory store layout:
    <root>/<inputsDigest>/<modelName>.mar | <modelName>.tar.gz | <modelName>/   the artifact
    <root>/<inputsDigest>/record.json                                            what was built
    <root>/.staging/<random>/                                                    one build's work area
A build writes the artifact and then its record (last) into its own staging directory, flushes
both to disk and publishes them with one atomic rename of the directory: a crash leaves only a
staging directory behind, never a partial <inputsDigest>/.

S3 store layout: s3://BUCKET/PREFIX/<inputsDigest>/<artifact> and .../record.json. The artifact is
a multipart upload (invisible until completed, aborted on failure); the record is written last and
is what marks the artifact complete.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any, Protocol

from modeldeploy.archives.errors import BuildFailed, UnsupportedOption
from modeldeploy.archives.s3 import S3Config, error_code, parse_s3_uri
from modeldeploy.archives.streams import Bytes, FileSink, Sink

RECORD_NAME = "record.json"
STAGING_NAME = ".staging"
# Staging directories older than this are left-overs of crashed builds and are removed.
STALE_STAGING_SECONDS = 24 * 3600
DEFAULT_PART_BYTES = 64 << 20


class Staged(Protocol):
    """An artifact being written: bytes go to `sink` (or files under `directory` for no-archive)."""

    @property
    def sink(self) -> Sink: ...

    @property
    def directory(self) -> str: ...

    def commit(self, record: dict[str, Any]) -> dict[str, Any]:
        """Publish artifact and record; return the record now in the store (another identical build's
        record if it won the race)."""
        ...

    def discard(self) -> None:
        """Remove everything written so far."""
        ...


class Store(Protocol):
    """Where artifacts live, addressed by inputs digest."""

    supports_directories: bool

    def describe(self) -> str:
        """The store's location, for messages."""
        ...

    def workspace(self) -> contextlib.AbstractContextManager[str]:
        """A private local directory for one build (downloads, staging), removed afterwards."""
        ...

    def lookup(self, digest: str, artifact_name: str) -> dict[str, Any] | None:
        """The record of a complete artifact with this digest, or None."""
        ...

    def stage(self, workspace: str, digest: str, artifact_name: str, *, directory: bool) -> Staged:
        """Start writing an artifact."""
        ...

    def uri(self, key: str) -> str:
        """The URI of a key (a path relative to the store)."""
        ...


def _read_record(text: bytes, digest: str) -> dict[str, Any] | None:
    try:
        record = json.loads(text)
    except ValueError:
        return None
    if not isinstance(record, dict) or record.get("inputsDigest") != digest:
        return None
    return record


def record_bytes(record: dict[str, Any]) -> bytes:
    """A record serialised canonically."""
    return json.dumps(record, indent=2, sort_keys=True).encode("utf-8") + b"\n"


# Directory store ------------------------------------------------------------------------------------


class DirectoryStore:
    """A store in a local directory (a mounted PersistentVolumeClaim)."""

    supports_directories = True

    def __init__(self, root: str, *, durable: bool = True) -> None:
        self.root = os.path.abspath(root)
        self.durable = durable

    def describe(self) -> str:
        """The store directory."""
        return self.root

    def uri(self, key: str) -> str:
        """A file:// URI of a key."""
        return "file://" + os.path.join(self.root, key)

    @contextlib.contextmanager
    def workspace(self) -> Iterator[str]:
        """A private directory under <root>/.staging, removed (with .staging if empty) when done."""
        staging = os.path.join(self.root, STAGING_NAME)
        os.makedirs(staging, exist_ok=True)
        self._remove_stale(staging)
        path = tempfile.mkdtemp(prefix="build-", dir=staging)
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)
            with contextlib.suppress(OSError):
                os.rmdir(staging)

    @staticmethod
    def _remove_stale(staging: str) -> None:
        deadline = time.time() - STALE_STAGING_SECONDS
        with os.scandir(staging) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    if entry.stat(follow_symlinks=False).st_mtime < deadline:
                        shutil.rmtree(entry.path, ignore_errors=True)

    def lookup(self, digest: str, artifact_name: str) -> dict[str, Any] | None:
        """The record under <root>/<digest>/ if it is valid and its artifact is there."""
        folder = os.path.join(self.root, digest)
        try:
            with open(os.path.join(folder, RECORD_NAME), "rb") as handle:
                record = _read_record(handle.read(), digest)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if record is None or record.get("artifact") != artifact_name:
            return None
        artifact = os.path.join(folder, artifact_name)
        if record.get("format") == "no-archive":
            return record if os.path.isdir(artifact) and not os.path.islink(artifact) else None
        try:
            size = os.lstat(artifact).st_size
        except FileNotFoundError:
            return None
        return record if size == record.get("bytes") else None

    def stage(self, workspace: str, digest: str, artifact_name: str, *, directory: bool) -> Staged:
        """Stage into <workspace>/<digest>/."""
        return _DirectoryStaged(self, workspace, digest, artifact_name, directory=directory)


class _DirectoryStaged:
    def __init__(
        self, store: DirectoryStore, workspace: str, digest: str, artifact_name: str, *, directory: bool
    ) -> None:
        self._store = store
        self._workspace = workspace
        self._digest = digest
        self._folder = os.path.join(workspace, digest)
        os.mkdir(self._folder)
        os.chmod(self._folder, 0o755)
        self._artifact = os.path.join(self._folder, artifact_name)
        self._artifact_name = artifact_name
        self._fd: int | None = None
        if directory:
            os.mkdir(self._artifact)
            os.chmod(self._artifact, 0o755)
        else:
            self._fd = os.open(self._artifact, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            os.fchmod(self._fd, 0o644)

    @property
    def sink(self) -> Sink:
        if self._fd is None:
            raise BuildFailed("a directory artifact has no byte sink")
        return FileSink(self._fd)

    @property
    def directory(self) -> str:
        return self._artifact

    def commit(self, record: dict[str, Any]) -> dict[str, Any]:
        durable = self._store.durable
        if self._fd is not None:
            if durable:
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
        record_path = os.path.join(self._folder, RECORD_NAME)
        fd = os.open(record_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            os.fchmod(fd, 0o644)
            FileSink(fd).write(record_bytes(record))
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        if durable:
            _fsync_directory(self._folder)
        target = os.path.join(self._store.root, self._digest)
        try:
            os.rename(self._folder, target)
        except OSError as error:
            if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            existing = self._store.lookup(self._digest, self._artifact_name)
            if existing is not None:
                # An identical build finished first: its artifact has the same bytes.
                return existing
            # A damaged folder (not one of ours: ours appear complete); move it away, then publish.
            os.rename(target, os.path.join(self._workspace, "damaged-" + uuid.uuid4().hex))
            os.rename(self._folder, target)
        if durable:
            _fsync_directory(self._store.root)
        return record

    def discard(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        shutil.rmtree(self._folder, ignore_errors=True)


def _fsync_directory(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# S3 store -------------------------------------------------------------------------------------------


class S3Store:
    """A store in an S3 bucket under a prefix."""

    supports_directories = False

    def __init__(
        self,
        uri: str,
        *,
        config: S3Config | None = None,
        work_dir: str | None = None,
        part_bytes: int = DEFAULT_PART_BYTES,
        client: Any = None,
    ) -> None:
        self.bucket, prefix = parse_s3_uri("store", uri, key_required=False)
        self.prefix = prefix.strip("/")
        self.work_dir = work_dir
        self.part_bytes = max(part_bytes, 5 << 20)
        self.client = client if client is not None else (config or S3Config.from_env()).client()

    def key(self, key: str) -> str:
        """The object key of a store-relative key."""
        return f"{self.prefix}/{key}" if self.prefix else key

    def describe(self) -> str:
        """The store's s3:// location."""
        return f"s3://{self.bucket}/{self.prefix}"

    def uri(self, key: str) -> str:
        """An s3:// URI of a key."""
        return f"s3://{self.bucket}/{self.key(key)}"

    @contextlib.contextmanager
    def workspace(self) -> Iterator[str]:
        """A local temporary directory (downloads of remote sources only), removed when done.

        It is made inside `work_dir`, which is created first if it does not exist yet.
        """
        if self.work_dir:
            os.makedirs(self.work_dir, mode=0o700, exist_ok=True)
        path = tempfile.mkdtemp(prefix="modeldeploy-archive-", dir=self.work_dir)
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def lookup(self, digest: str, artifact_name: str) -> dict[str, Any] | None:
        """The record object if it is valid and the artifact object has the recorded size."""
        from botocore.exceptions import ClientError

        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self.key(f"{digest}/{RECORD_NAME}"))
            record = _read_record(answer["Body"].read(), digest)
            if record is None or record.get("artifact") != artifact_name:
                return None
            head = self.client.head_object(Bucket=self.bucket, Key=self.key(f"{digest}/{artifact_name}"))
        except ClientError as error:
            if error_code(error) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise BuildFailed(f"store {self.describe()}: {error}") from error
        return record if head.get("ContentLength") == record.get("bytes") else None

    def stage(self, workspace: str, digest: str, artifact_name: str, *, directory: bool) -> Staged:
        """Start a multipart upload of the artifact."""
        if directory:
            raise UnsupportedOption("archiveFormat", "no-archive", "an S3 store holds archive files only")
        return _S3Staged(self, digest, artifact_name)


class _S3Staged:
    def __init__(self, store: S3Store, digest: str, artifact_name: str) -> None:
        self._store = store
        self._digest = digest
        self._sink = _MultipartSink(
            store.client, store.bucket, store.key(f"{digest}/{artifact_name}"), store.part_bytes
        )

    @property
    def sink(self) -> Sink:
        return self._sink

    @property
    def directory(self) -> str:
        raise BuildFailed("an S3 artifact has no directory")

    def commit(self, record: dict[str, Any]) -> dict[str, Any]:
        self._sink.complete()
        self._store.client.put_object(
            Bucket=self._store.bucket,
            Key=self._store.key(f"{self._digest}/{RECORD_NAME}"),
            Body=record_bytes(record),
            ContentType="application/json",
        )
        return record

    def discard(self) -> None:
        self._sink.abort()


class _MultipartSink:
    """Bytes written here become parts of one multipart upload (the object exists only once completed)."""

    def __init__(self, client: Any, bucket: str, key: str, part_bytes: int) -> None:
        self._client = client
        self._bucket = bucket
        self._key = key
        self._part_bytes = part_bytes
        self._buffer = bytearray()
        self._parts: list[dict[str, Any]] = []
        self._upload_id: str | None = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]

    def write(self, data: Bytes, /) -> int:
        view = memoryview(data).cast("B")
        self._buffer += view
        while len(self._buffer) >= self._part_bytes:
            part = bytes(self._buffer[: self._part_bytes])
            del self._buffer[: self._part_bytes]
            self._upload(part)
        return len(view)

    def _upload(self, part: bytes) -> None:
        number = len(self._parts) + 1
        answer = self._client.upload_part(
            Bucket=self._bucket, Key=self._key, UploadId=self._upload_id, PartNumber=number, Body=part
        )
        self._parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    def complete(self) -> None:
        if self._buffer or not self._parts:
            self._upload(bytes(self._buffer))
            self._buffer.clear()
        self._client.complete_multipart_upload(
            Bucket=self._bucket, Key=self._key, UploadId=self._upload_id, MultipartUpload={"Parts": self._parts}
        )
        self._upload_id = None

    def abort(self) -> None:
        if self._upload_id is not None:
            with contextlib.suppress(Exception):
                self._client.abort_multipart_upload(Bucket=self._bucket, Key=self._key, UploadId=self._upload_id)
            self._upload_id = None


def open_store(
    location: str, *, s3: S3Config | None = None, durable: bool = True, work_dir: str | None = None
) -> Store:
    """A store from a directory path or an s3://BUCKET/PREFIX URI."""
    if location.startswith("s3://"):
        return S3Store(location, config=s3, work_dir=work_dir)
    if "://" in location and not location.startswith("file://"):
        raise UnsupportedOption("store", location, "a store is a directory or s3://BUCKET/PREFIX")
    return DirectoryStore(location.removeprefix("file://"), durable=durable)
