"""Reading the one Secret a metric provider names (the Prometheus client's credentials).

The operator's default role cannot read Secrets; a Role granting `get` on that Secret by name
(manifests/rbac/optional/prometheus-secret.yaml, or the chart's `prometheusSecrets`) allows it.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping
from typing import Any

import kubernetes.client
import urllib3.exceptions
from kubernetes.client.exceptions import ApiException

from modeldeploy.metrics.base import ProviderError


class SecretReader:
    """`read(namespace, name)`: a Secret's data, decoded; ProviderError naming why it cannot be read."""

    def __init__(self, api_client: Any, *, timeout_seconds: float = 10.0) -> None:
        self._core = kubernetes.client.CoreV1Api(api_client)
        self._timeout = timeout_seconds

    async def read(self, namespace: str, name: str) -> Mapping[str, bytes]:
        """The data of Secret `namespace/name`."""
        try:
            secret = await asyncio.to_thread(self._core.read_namespaced_secret, name, namespace,
                                             _request_timeout=self._timeout)
        except ApiException as error:
            if error.status == 403:
                raise ProviderError(f"the operator may not read Secret {namespace}/{name}: grant it get on that "
                                    f"Secret (manifests/rbac/optional/prometheus-secret.yaml)") from None
            if error.status == 404:
                raise ProviderError(f"Secret {namespace}/{name} does not exist") from None
            raise ProviderError(f"reading Secret {namespace}/{name}: HTTP {error.status} {error.reason}") from None
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise ProviderError(f"reading Secret {namespace}/{name}: {error}") from None
        return {key: base64.b64decode(value) for key, value in (secret.data or {}).items()}
