"""The API calls of the `modeldeploy` commands a person runs (blocking: a command line has no event loop).

Configuration as kubectl finds it: $KUBECONFIG or ~/.kube/config (with an optional context), and
the pod's service account when there is no kubeconfig.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes.client
import kubernetes.config
import kubernetes.watch
import urllib3.exceptions
from kubernetes.client.exceptions import ApiException

from modeldeploy import GROUP, PLURAL, VERSION
from modeldeploy.k8s.api import _translate
from modeldeploy.reconcile.errors import KubeApiError, NotFoundError

IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def _kubeconfig_present(path: str | None) -> bool:
    if path:
        return True
    files = os.environ.get("KUBECONFIG", "~/.kube/config").split(os.pathsep)
    return any(Path(f).expanduser().exists() for f in files if f)


class SteeringApi:
    """Read a ModelDeployment, write its request annotation, watch it, list its Events."""

    def __init__(self, api_client: Any, *, user: str, namespace: str, timeout_seconds: float = 30.0) -> None:
        self._client = api_client
        self._custom = kubernetes.client.CustomObjectsApi(api_client)
        self._core = kubernetes.client.CoreV1Api(api_client)
        self._timeout = timeout_seconds
        self.user = user
        """Who is asking: the kubeconfig context's user, else $USER."""
        self.namespace = namespace
        """The namespace of the kubeconfig context (or the pod's), the default for -n."""

    @classmethod
    def connect(cls, *, kubeconfig: str | None = None, context: str | None = None) -> SteeringApi:
        """A client configured as kubectl would be."""
        configuration = kubernetes.client.Configuration()
        user = ""
        namespace = "default"
        if _kubeconfig_present(kubeconfig):
            kubernetes.config.load_kube_config(config_file=kubeconfig, context=context,
                                               client_configuration=configuration, persist_config=False)
            _, active = kubernetes.config.list_kube_config_contexts(config_file=kubeconfig)
            if context:
                contexts, _ = kubernetes.config.list_kube_config_contexts(config_file=kubeconfig)
                active = next((c for c in contexts if c.get("name") == context), active)
            settings = (active or {}).get("context") or {}
            user = str(settings.get("user") or "")
            namespace = str(settings.get("namespace") or namespace)
        else:
            kubernetes.config.load_incluster_config(client_configuration=configuration)
            if IN_CLUSTER_NAMESPACE.exists():
                namespace = IN_CLUSTER_NAMESPACE.read_text().strip() or namespace
        user = user or os.environ.get("USER") or getpass.getuser()
        return cls(kubernetes.client.ApiClient(configuration), user=user, namespace=namespace)

    def close(self) -> None:
        """Release the connection pool."""
        self._client.close()

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, _request_timeout=kwargs.pop("_request_timeout", self._timeout), **kwargs)
        except ApiException as error:
            raise _translate(error) from error
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise KubeApiError(0, "Unavailable", str(error)) from error

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The ModelDeployment as stored now, None when there is none."""
        try:
            found: dict[str, Any] = self._call(self._custom.get_namespaced_custom_object,
                                               GROUP, VERSION, namespace, PLURAL, name)
        except NotFoundError:
            return None
        return found

    def annotate(self, namespace: str, name: str, key: str, value: str, *, resource_version: str) -> dict[str, Any]:
        """Merge-patch one annotation, only if the object is still at `resource_version` (ConflictError if not).

        Only metadata changes: the spec and its generation stay as they are.
        """
        body = {"metadata": {"resourceVersion": resource_version, "annotations": {key: value}}}
        patched: dict[str, Any] = self._call(self._custom.patch_namespaced_custom_object,
                                             GROUP, VERSION, namespace, PLURAL, name, body)
        return patched

    def watch(self, namespace: str, name: str, resource_version: str, timeout_seconds: int) -> Iterator[dict[str, Any]]:
        """The object each time it changes after `resource_version`, for at most `timeout_seconds`.

        Ends early when the object is deleted or the server ends the watch (410 Gone included).
        """
        watcher = kubernetes.watch.Watch()
        try:
            for event in watcher.stream(self._custom.list_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL,
                                        field_selector=f"metadata.name={name}", resource_version=resource_version,
                                        timeout_seconds=max(1, timeout_seconds),
                                        _request_timeout=max(1, timeout_seconds) + 10):
                kind = event.get("type")
                if kind == "DELETED":
                    return
                if kind in ("ADDED", "MODIFIED") and isinstance(event.get("object"), dict):
                    yield event["object"]
        except ApiException as error:
            if error.status == 410:
                return
            raise _translate(error) from error
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise KubeApiError(0, "Unavailable", str(error)) from error
        finally:
            watcher.stop()

    def events(self, namespace: str, uid: str) -> list[dict[str, Any]]:
        """The Events about the object with `uid` (core/v1, as kopf posts them)."""
        found = self._call(self._core.list_namespaced_event, namespace, field_selector=f"involvedObject.uid={uid}")
        items: list[dict[str, Any]] = self._client.sanitize_for_serialization(found).get("items") or []
        return items
