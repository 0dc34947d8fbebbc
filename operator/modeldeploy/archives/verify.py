"""Check an artifact against its expected sha256 (what a serving pod does before TorchServe starts).

With an output path the artifact is copied there while it is hashed (an S3 archive fetched into the
pod's model store): the copy appears under its name only when its sha256 matched, never otherwise.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import urllib.parse
from collections.abc import Iterator
from typing import IO, Any

from modeldeploy.archives.dirformat import directory_digest
from modeldeploy.archives.errors import ArchiveError, IntegrityError
from modeldeploy.archives.rules import check_sha256
from modeldeploy.archives.s3 import S3Config, error_code, parse_s3_uri

_CHUNK = 4 << 20
# What S3-compatible servers answer when they refuse the credentials (rather than the object).
CREDENTIAL_ERRORS = frozenset({
    "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken",
    "InvalidClientTokenId", "403", "Forbidden",
})


class StoreAccessDenied(ArchiveError):
    """The store refused the credentials (or had none to check): the artifact could not be read."""


class StoreUnavailable(ArchiveError):
    """The store could not be reached or answered with an error other than a refusal."""


def _local_path(uri: str) -> str:
    return urllib.parse.unquote(urllib.parse.urlparse(uri).path) if uri.startswith("file://") else uri


@contextlib.contextmanager
def _open_artifact(uri: str, s3: S3Config | None) -> Iterator[IO[bytes] | Any]:
    """The artifact's bytes as a readable stream (a regular file, or an S3 object's body)."""
    if uri.startswith("s3://"):
        with _s3_body(uri, s3) as body:
            yield body
        return
    path = _local_path(uri)
    if os.path.islink(path):
        raise IntegrityError(f"{uri}: is a symlink; an artifact is a regular file or directory")
    try:
        handle = open(path, "rb", buffering=0)  # noqa: SIM115 - closed below
    except FileNotFoundError:
        raise IntegrityError(f"{uri}: no such artifact") from None
    with handle:
        yield handle


@contextlib.contextmanager
def _s3_body(uri: str, config: S3Config | None) -> Iterator[Any]:
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    bucket, key = parse_s3_uri("uri", uri)
    client = (config or S3Config.from_env()).client()
    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
    except NoCredentialsError:
        raise StoreAccessDenied(f"{uri}: no S3 credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)") from None
    except ClientError as error:
        code = error_code(error)
        if code in ("NoSuchKey", "NoSuchBucket", "404"):
            raise IntegrityError(f"{uri}: no such artifact") from None
        if code in CREDENTIAL_ERRORS:
            raise StoreAccessDenied(f"{uri}: the store refused the credentials ({code})") from None
        raise StoreUnavailable(f"{uri}: {error}") from None
    except BotoCoreError as error:
        raise StoreUnavailable(f"{uri}: {error}") from None
    with body:
        yield body


def artifact_sha256(uri: str, *, s3: S3Config | None = None) -> str:
    """The sha256 of an artifact: a file (path or file://), a no-archive directory, or s3://."""
    if not uri.startswith("s3://") and os.path.isdir(_local_path(uri)) and not os.path.islink(_local_path(uri)):
        return directory_digest(_local_path(uri))[0]
    sha = hashlib.sha256()
    with _open_artifact(uri, s3) as source:
        while chunk := source.read(_CHUNK):
            sha.update(chunk)
    return sha.hexdigest()


def _copy_verified(uri: str, expected: str, output: str, s3: S3Config | None) -> str:
    """Copy the artifact to `output` while hashing it; publish it there only if the sha256 matches."""
    if not uri.startswith("s3://") and os.path.isdir(_local_path(uri)):
        raise IntegrityError(f"{uri}: a directory artifact is checked in place, not copied to an output")
    folder, name = os.path.split(os.path.abspath(output))
    os.makedirs(folder, exist_ok=True)
    fd, partial = tempfile.mkstemp(prefix=f".{name}.", suffix=".partial", dir=folder)
    try:
        sha = hashlib.sha256()
        with os.fdopen(fd, "wb") as sink, _open_artifact(uri, s3) as source:
            while chunk := source.read(_CHUNK):
                sha.update(chunk)
                sink.write(chunk)
            sink.flush()
            os.fsync(sink.fileno())
        actual = sha.hexdigest()
        if actual != expected:
            raise IntegrityError(f"{uri}: sha256 is {actual}, expected {expected}")
        os.chmod(partial, 0o444)
        os.replace(partial, output)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
        raise
    return actual


def verify(uri: str, sha256: str, *, s3: S3Config | None = None, output: str | None = None) -> str:
    """Return the artifact's sha256 if it equals the expected one; raise IntegrityError otherwise.

    With `output`, the artifact is also copied there, and the file exists only if the digest matched.
    StoreAccessDenied and StoreUnavailable say the artifact could not be read at all.
    """
    expected = check_sha256("sha256", sha256)
    if output is not None:
        return _copy_verified(uri, expected, output, s3)
    actual = artifact_sha256(uri, s3=s3)
    if actual != expected:
        raise IntegrityError(f"{uri}: sha256 is {actual}, expected {expected}")
    return actual
