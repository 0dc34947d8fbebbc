"""Check an artifact against its expected sha256 (what a serving pod does before TorchServe starts)."""

from __future__ import annotations

import hashlib
import os
import urllib.parse

from modeldeploy.archives.dirformat import directory_digest
from modeldeploy.archives.errors import IntegrityError
from modeldeploy.archives.rules import check_sha256
from modeldeploy.archives.s3 import S3Config, error_code, parse_s3_uri

_CHUNK = 4 << 20


def artifact_sha256(uri: str, *, s3: S3Config | None = None) -> str:
    """The sha256 of an artifact: a file (path or file://), a no-archive directory, or s3://."""
    if uri.startswith("s3://"):
        return _s3_sha256(uri, s3)
    path = urllib.parse.unquote(urllib.parse.urlparse(uri).path) if uri.startswith("file://") else uri
    if os.path.islink(path):
        raise IntegrityError(f"{uri}: is a symlink; an artifact is a regular file or directory")
    if os.path.isdir(path):
        return directory_digest(path)[0]
    sha = hashlib.sha256()
    try:
        with open(path, "rb", buffering=0) as handle:
            while chunk := handle.read(_CHUNK):
                sha.update(chunk)
    except FileNotFoundError:
        raise IntegrityError(f"{uri}: no such artifact") from None
    return sha.hexdigest()


def _s3_sha256(uri: str, config: S3Config | None) -> str:
    from botocore.exceptions import ClientError

    bucket, key = parse_s3_uri("uri", uri)
    client = (config or S3Config.from_env()).client()
    try:
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
    except ClientError as error:
        if error_code(error) in ("NoSuchKey", "NoSuchBucket", "404"):
            raise IntegrityError(f"{uri}: no such artifact") from None
        raise
    sha = hashlib.sha256()
    with body:
        while chunk := body.read(_CHUNK):
            sha.update(chunk)
    return sha.hexdigest()


def verify(uri: str, sha256: str, *, s3: S3Config | None = None) -> str:
    """Return the artifact's sha256 if it equals the expected one; raise IntegrityError otherwise."""
    expected = check_sha256("sha256", sha256)
    actual = artifact_sha256(uri, s3=s3)
    if actual != expected:
        raise IntegrityError(f"{uri}: sha256 is {actual}, expected {expected}")
    return actual
