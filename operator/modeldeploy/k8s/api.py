"""Kubernetes API access with the official client; every blocking call runs in a worker thread."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import kubernetes.client
import kubernetes.config
import urllib3.exceptions
from kubernetes.client.exceptions import ApiException

from modeldeploy import GROUP, PLURAL, VERSION
from modeldeploy.k8s.children import Children
from modeldeploy.k8s.secrets import SecretReader
from modeldeploy.reconcile.errors import ConflictError, ForbiddenError, KubeApiError, NotFoundError

logger = logging.getLogger(__name__)

# Asks the API server for metadata only: existence checks never transfer an object's content.
METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"


def load_configuration() -> Any:
    """The client configuration: in-cluster service account first, then the current kubeconfig."""
    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=configuration)
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(client_configuration=configuration, persist_config=False)
    return configuration


def context_namespace() -> str:
    """The namespace of the current kubeconfig context, as kubectl would use it ("default" when unset)."""
    try:
        _, current = kubernetes.config.list_kube_config_contexts()
    except (kubernetes.config.ConfigException, FileNotFoundError):
        return "default"
    return str((current or {}).get("context", {}).get("namespace") or "default")


def _translate(error: ApiException) -> KubeApiError:
    message = ""
    try:
        message = str(json.loads(error.body or "{}").get("message", ""))
    except (ValueError, AttributeError):
        message = str(error.body or "")
    status = int(error.status or 0)
    kind: type[KubeApiError] = {
        403: ForbiddenError,
        404: NotFoundError,
        409: ConflictError,
    }.get(status, KubeApiError)
    return kind(status, str(error.reason or ""), message)


class KubeApi:
    """The operator's view of the API: the few calls the reconcile needs, async and typed."""

    def __init__(self, api_client: Any, *, timeout_seconds: float = 30.0) -> None:
        self._api_client = api_client
        self._custom = kubernetes.client.CustomObjectsApi(api_client)
        self._timeout = timeout_seconds
        self.last_success: datetime | None = None
        self.children = Children(self._call, api_client)
        # The Secrets prometheus metrics name (their client credentials), read through the same connection pool.
        self.secrets = SecretReader(api_client)

    @classmethod
    def connect(cls, *, timeout_seconds: float = 30.0) -> KubeApi:
        """A client for the cluster the process runs in, or the current kubeconfig context."""
        return cls(kubernetes.client.ApiClient(load_configuration()), timeout_seconds=timeout_seconds)

    def close(self) -> None:
        """Release the connection pool."""
        self._api_client.close()

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            result = await asyncio.to_thread(fn, *args, _request_timeout=self._timeout, **kwargs)
        except ApiException as error:
            if error.status:
                self.last_success = datetime.now(UTC)
            raise _translate(error) from error
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise KubeApiError(0, "Unavailable", str(error)) from error
        self.last_success = datetime.now(UTC)
        return result

    async def _exists(self, path: str, namespace: str, name: str) -> bool:
        try:
            await self._call(
                self._api_client.call_api, path, "GET",
                path_params={"namespace": namespace, "name": name},
                header_params={"Accept": METADATA_ONLY},
                auth_settings=["BearerToken"],
                response_type=None,
                _return_http_data_only=True,
            )
        except NotFoundError:
            return False
        return True

    async def get_model_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The object as stored now, or None when it is gone."""
        try:
            found: dict[str, Any] = await self._call(
                self._custom.get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name)
        except NotFoundError:
            return None
        return found

    async def patch_model_deployment_status(self, namespace: str, name: str, status: Mapping[str, Any], *,
                                            resource_version: str | None) -> dict[str, Any]:
        """Merge-patch the status subresource.

        With `resource_version`, the write only succeeds if the object has not changed since it was
        read (ConflictError otherwise), so a decision taken on a stale view is never written.
        """
        body: dict[str, Any] = {"status": dict(status)}
        if resource_version is not None:
            body["metadata"] = {"resourceVersion": resource_version}
        patched: dict[str, Any] = await self._call(
            self._custom.patch_namespaced_custom_object_status, GROUP, VERSION, namespace, PLURAL, name, body)
        return patched

    async def claim_exists(self, namespace: str, name: str) -> bool:
        """Whether a PersistentVolumeClaim exists (metadata-only GET)."""
        path = "/api/v1/namespaces/{namespace}/persistentvolumeclaims/{name}"
        return await self._exists(path, namespace, name)

    async def secret_exists(self, namespace: str, name: str) -> bool | None:
        """Whether a Secret exists, by a metadata-only GET; None when the operator may not ask.

        The default role grants no access to Secrets at all; an optional role grants `get` so that a
        missing Secret is reported before any pod trips over it.
        """
        try:
            return await self._exists("/api/v1/namespaces/{namespace}/secrets/{name}", namespace, name)
        except ForbiddenError:
            logger.debug("Not allowed to check Secret %s/%s; the pods that mount it will report it.",
                         namespace, name)
            return None
