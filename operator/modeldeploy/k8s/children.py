"""The objects a ModelDeployment owns: read, server-side apply only when changed, list, delete, logs.

`apply` stamps each object with a hash of its desired content. An object that carries the same hash
and still holds every field we render (k8s/drift.py: compared after the API server's defaults) is left
alone, so the reconcile of a settled ModelDeployment sends no write at all. One whose owned fields were
changed by hand is applied again, which puts them back (our field manager, forced), and an Event
`DriftReverted` on its owner names the child and the fields.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from modeldeploy.api.events import EventReason
from modeldeploy.api.labels import ANNOTATION_APPLIED_HASH as APPLIED_HASH
from modeldeploy.api.labels import MANAGER as FIELD_MANAGER
from modeldeploy.k8s.drift import Drift, describe, drifted
from modeldeploy.reconcile.errors import KubeApiError, NotFoundError

logger = logging.getLogger(__name__)

EVENT_MESSAGE_LIMIT = 1024

_COLLECTIONS: dict[tuple[str, str], str] = {
    ("v1", "ConfigMap"): "/api/v1/namespaces/{namespace}/configmaps",
    ("v1", "Service"): "/api/v1/namespaces/{namespace}/services",
    ("v1", "Pod"): "/api/v1/namespaces/{namespace}/pods",
    ("apps/v1", "Deployment"): "/apis/apps/v1/namespaces/{namespace}/deployments",
    ("batch/v1", "Job"): "/apis/batch/v1/namespaces/{namespace}/jobs",
    ("networking.k8s.io/v1", "NetworkPolicy"): "/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies",
    ("policy/v1", "PodDisruptionBudget"): "/apis/policy/v1/namespaces/{namespace}/poddisruptionbudgets",
}


def collection_path(api_version: str, kind: str) -> str:
    try:
        return _COLLECTIONS[(api_version, kind)]
    except KeyError:
        raise ValueError(f"modeldeploy does not manage {kind}.{api_version}") from None


def content_hash(obj: Mapping[str, Any]) -> str:
    """A hash of everything we set on an object (the hash annotation itself left out)."""
    meta = dict(obj.get("metadata") or {})
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != APPLIED_HASH}
    meta["annotations"] = annotations
    document = {**obj, "metadata": meta}
    return hashlib.sha256(json.dumps(document, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def with_hash(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = dict(obj.get("metadata") or {})
    meta["annotations"] = {**(meta.get("annotations") or {}), APPLIED_HASH: content_hash(obj)}
    return {**obj, "metadata": meta}


def hand_edits(live: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> list[Drift] | None:
    """The owned fields changed since `desired` was applied as it is; None when it was not (or nothing lives).

    [] means the live object holds what `desired` asks for.
    """
    if live is None:
        return None
    annotations = (live.get("metadata") or {}).get("annotations") or {}
    if annotations.get(APPLIED_HASH) != content_hash(desired):
        return None
    return drifted(desired, live)


def is_current(live: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> bool:
    """Whether the live object already carries what `desired` asks for: our hash, and every field we render."""
    return hand_edits(live, desired) == []


def drift_event(desired: Mapping[str, Any], drifts: Sequence[Drift], now: datetime) -> dict[str, Any]:
    """The Event saying which fields of a child were put back, about the child's owner (else the child)."""
    meta = desired["metadata"]
    owners = meta.get("ownerReferences") or []
    if owners:
        owner = owners[0]
        involved = {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["name"],
                    "uid": owner["uid"], "namespace": meta["namespace"]}
    else:
        involved = {"apiVersion": desired["apiVersion"], "kind": desired["kind"], "name": meta["name"],
                    "namespace": meta["namespace"]}
    message = describe(desired["kind"], meta["name"], drifts)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{involved['name']}.", "namespace": meta["namespace"]},
        "involvedObject": involved,
        "type": "Warning",
        "reason": str(EventReason.DRIFT_REVERTED),
        "message": message[:EVENT_MESSAGE_LIMIT],
        "source": {"component": FIELD_MANAGER},
        "reportingComponent": FIELD_MANAGER,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


class Children:
    """Typed-enough access to child objects through the shared API client of `KubeApi`."""

    def __init__(self, call: Any, api_client: Any) -> None:
        self._call = call
        self._api_client = api_client

    async def _request(self, path: str, method: str, **kwargs: Any) -> Any:
        return await self._call(self._api_client.call_api, path, method, auth_settings=["BearerToken"],
                                response_type="object", _return_http_data_only=True, **kwargs)

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        path = collection_path(api_version, kind).format(namespace=namespace) + f"/{name}"
        try:
            found: dict[str, Any] = await self._request(path, "GET")
        except NotFoundError:
            return None
        return found

    async def list(self, api_version: str, kind: str, namespace: str, selector: str) -> list[dict[str, Any]]:
        path = collection_path(api_version, kind).format(namespace=namespace)
        found = await self._request(path, "GET", query_params=[("labelSelector", selector)])
        return list(found.get("items") or [])

    async def apply(self, desired: Mapping[str, Any], live: Mapping[str, Any] | None = None,
                    *, known: bool = False) -> tuple[dict[str, Any], bool]:
        """Server-side apply `desired` unless the live object already matches; returns (object, written).

        Pass `live` with `known=True` when the caller has just read it, to save a GET.
        """
        meta = desired["metadata"]
        if not known:
            live = await self.get(desired["apiVersion"], desired["kind"], meta["namespace"], meta["name"])
        drifts = hand_edits(live, desired)
        if live is not None and drifts == []:
            return dict(live), False
        path = collection_path(desired["apiVersion"], desired["kind"]).format(namespace=meta["namespace"])
        applied: dict[str, Any] = await self._request(
            f"{path}/{meta['name']}", "PATCH", body=with_hash(desired),
            header_params={"Content-Type": "application/apply-patch+yaml"},
            query_params=[("fieldManager", FIELD_MANAGER), ("force", "true")],
        )
        if drifts:
            await self._report_drift(desired, drifts, applied)
        return applied, True

    async def _report_drift(self, desired: Mapping[str, Any], drifts: Sequence[Drift],
                            applied: Mapping[str, Any]) -> None:
        meta = desired["metadata"]
        logger.warning("%s", describe(desired["kind"], f"{meta['namespace']}/{meta['name']}", drifts))
        still = drifted(desired, applied)
        if still:
            # Something between us and storage (an admission webhook, another controller) rewrites these.
            logger.warning("%s %s/%s still differs after the apply: %s", desired["kind"], meta["namespace"],
                           meta["name"], "; ".join(d.describe() for d in still[:5]))
        event = drift_event(desired, drifts, datetime.now(UTC))
        try:
            await self._request(f"/api/v1/namespaces/{meta['namespace']}/events", "POST", body=event)
        except KubeApiError as error:  # the revert stands; only its report is lost
            logger.warning("Could not post the %s Event: %s", EventReason.DRIFT_REVERTED, error)

    async def scale(self, api_version: str, kind: str, namespace: str, name: str, replicas: int) -> dict[str, Any]:
        """Set spec.replicas only, leaving the rest as it is; drops the applied hash so a later apply writes."""
        path = collection_path(api_version, kind).format(namespace=namespace) + f"/{name}"
        body = {"metadata": {"annotations": {APPLIED_HASH: None}}, "spec": {"replicas": replicas}}
        scaled: dict[str, Any] = await self._request(
            path, "PATCH", body=body, header_params={"Content-Type": "application/merge-patch+json"},
            query_params=[("fieldManager", FIELD_MANAGER)])
        return scaled

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        """Delete in the background (dependents by the garbage collector); False when already gone."""
        path = collection_path(api_version, kind).format(namespace=namespace) + f"/{name}"
        try:
            await self._request(path, "DELETE", body={"propagationPolicy": "Background"})
        except NotFoundError:
            return False
        return True

    async def set_pod_condition(self, namespace: str, pod: str, condition: Mapping[str, Any]) -> None:
        """Set one condition in a pod's status: a strategic merge keeps the kubelet's by their type."""
        await self._request(f"/api/v1/namespaces/{namespace}/pods/{pod}/status", "PATCH",
                            body={"status": {"conditions": [dict(condition)]}},
                            header_params={"Content-Type": "application/strategic-merge-patch+json"},
                            query_params=[("fieldManager", FIELD_MANAGER)])

    async def pod_log_tail(self, namespace: str, pod: str, container: str, lines: int = 20) -> str:
        """The last lines of a container's log; empty when it cannot be read."""
        path = f"/api/v1/namespaces/{namespace}/pods/{pod}/log"
        try:
            # The raw bytes: the client would parse a log that happens to be JSON and hand back its repr.
            response = await self._call(self._api_client.call_api, path, "GET", auth_settings=["BearerToken"],
                                        query_params=[("container", container), ("tailLines", str(lines))],
                                        _return_http_data_only=True, _preload_content=False)
            data = await asyncio.to_thread(response.read)
        except Exception:
            return ""
        return bytes(data or b"").decode(errors="replace")
