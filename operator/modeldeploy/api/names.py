"""Every name pattern the operator checks, defined once: Kubernetes names, TorchServe names, digests.

The spec parser, the serving builders and the archive library all check names against these; only the
length bounds differ by where a name is used (a CRD field, a child object's name, a TorchServe URL).
"""

from __future__ import annotations

import re

DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
"""A Service name (and so every object name the operator derives from metadata.name)."""

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
"""A namespace name, a metric name."""

DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
"""A PersistentVolumeClaim or Secret name."""

DNS_LABEL_MAX = 63
"""The longest DNS label, and so the longest object name that also serves as a label value."""

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-.]*$")
"""TorchServe's own model-name rule (torch-model-archiver); it appears in TorchServe's URLs."""

SHA256 = re.compile(r"^[0-9a-f]{64}$")
"""A sha256 hex digest as the operator writes it: 64 lowercase hexadecimal characters."""

S3_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]*[a-z0-9]$")
"""An S3 bucket name (the CRD bounds its length to 63)."""

JSON_PATH = re.compile(r"^\$(\.[A-Za-z_][A-Za-z0-9_-]*|\[[0-9]{1,6}\]|\['[^'\\]{1,256}'\])*$")
"""The paths a golden set's `prediction.jsonPath` may name: object keys (`.name`, `['any name']`) and list
indexes (`[0]`) from the root `$`; the CRD's pattern is the same expression."""
