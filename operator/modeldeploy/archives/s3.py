"""S3-compatible object storage access (AWS, MinIO, Ceph...): configuration from flags and environment.

Credentials are never flags: boto3 reads them from its usual chain (AWS_ACCESS_KEY_ID /
AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN environment variables that a Kubernetes Secret feeds,
web identity, instance profiles).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from modeldeploy.archives.errors import UnsafeName

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class S3Config:
    """Where the S3 API is and how to address it; None means boto3's own default."""

    endpoint_url: str | None = None
    region: str | None = None
    addressing_style: str | None = None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> S3Config:
        """Read MODELDEPLOY_S3_ENDPOINT_URL (or AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL), AWS_REGION
        (or AWS_DEFAULT_REGION) and MODELDEPLOY_S3_ADDRESSING_STYLE (path or virtual)."""
        env = os.environ if environ is None else environ
        endpoint = (
            env.get("MODELDEPLOY_S3_ENDPOINT_URL") or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
        )
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
        return cls(
            endpoint_url=endpoint or None,
            region=region or None,
            addressing_style=env.get("MODELDEPLOY_S3_ADDRESSING_STYLE") or None,
        )

    def client(self) -> Any:
        """A boto3 S3 client with retries in standard mode."""
        import boto3
        from botocore.config import Config

        options: dict[str, Any] = {"retries": {"max_attempts": 5, "mode": "standard"}}
        if self.addressing_style:
            options["s3"] = {"addressing_style": self.addressing_style}
        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name=self.region, config=Config(**options))


def parse_s3_uri(input_name: str, uri: str, *, key_required: bool = True) -> tuple[str, str]:
    """Split s3://BUCKET/KEY into (bucket, key); refuse a malformed bucket or an empty key."""
    if not uri.startswith("s3://"):
        raise UnsafeName(input_name, uri, "an S3 location looks like s3://BUCKET/KEY")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not _BUCKET.fullmatch(bucket):
        raise UnsafeName(input_name, uri, f"the bucket name must match {_BUCKET.pattern}")
    if key_required and not key:
        raise UnsafeName(input_name, uri, "an S3 source needs an object key after the bucket")
    if "\x00" in key:
        raise UnsafeName(input_name, uri, "NUL bytes are not allowed in object keys")
    return bucket, key


def error_code(error: Exception) -> str:
    """The S3 error code of a botocore ClientError ("NoSuchKey", "404", "AccessDenied"...), else ""."""
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""
