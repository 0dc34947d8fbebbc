"""What every reconcile step sees: the typed context, and the two protocols the cluster must offer.

`Cluster` is the API as the reconcile needs it (the object itself, references, status writes);
`Children` is the access to the objects a ModelDeployment owns. modeldeploy.k8s implements both
against a real API server; tests implement them in memory. Nothing in reconcile/ imports kopf or the
Kubernetes client.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

from modeldeploy.api.conditions import ReconcileOutcome
from modeldeploy.api.events import Event
from modeldeploy.api.revision import Digest
from modeldeploy.api.spec import ModelDeployment
from modeldeploy.api.status import Status
from modeldeploy.metrics.registry import Providers
from modeldeploy.settings import OperatorIdentity


class Children(Protocol):
    """Read and write the objects a ModelDeployment owns (implemented by modeldeploy.k8s.Children)."""

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        ...

    async def list(self, api_version: str, kind: str, namespace: str, selector: str) -> list[dict[str, Any]]:
        """The objects matching a label selector."""
        ...

    async def apply(self, desired: Mapping[str, Any], live: Mapping[str, Any] | None = None,
                    *, known: bool = False) -> tuple[dict[str, Any], bool]:
        """Make the object as desired unless it already is; returns (live object, written)."""
        ...

    async def scale(self, api_version: str, kind: str, namespace: str, name: str, replicas: int) -> dict[str, Any]:
        """Change only spec.replicas of a live object (NotFoundError when it is gone)."""
        ...

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        """Delete the object; False when it was already gone."""
        ...

    async def pod_log_tail(self, namespace: str, pod: str, container: str, lines: int = 20) -> str:
        """The last lines of a container's log; empty when it cannot be read."""
        ...

    async def set_pod_condition(self, namespace: str, pod: str, condition: Mapping[str, Any]) -> None:
        """Set one condition in a pod's status (a readiness gate's), leaving the others as they are."""
        ...


class Cluster(Protocol):
    """What the reconcile needs from the API (implemented by modeldeploy.k8s.KubeApi)."""

    async def claim_exists(self, namespace: str, name: str) -> bool:
        """Whether a PersistentVolumeClaim exists."""
        ...

    async def secret_exists(self, namespace: str, name: str) -> bool | None:
        """Whether a Secret exists; None when the operator may not ask."""
        ...

    async def get_model_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The ModelDeployment as stored now, or None when it is gone."""
        ...

    async def patch_model_deployment_status(self, namespace: str, name: str, status: Mapping[str, Any], *,
                                            resource_version: str | None) -> dict[str, Any]:
        """Merge-patch the status; ConflictError when `resource_version` is no longer current."""
        ...

    @property
    def children(self) -> Children:
        """Access to the objects the ModelDeployments own."""
        ...


@dataclasses.dataclass
class ReconcileContext:
    """What every step sees: the parsed object, its status, its digests, the operator, the cluster, `now`.

    `status` starts as the object's current status; steps replace the typed fields they own (for
    example `archive`, `stable_revision`), and the chain writes what differs. Steps add Events about
    what they found (for example a build's warnings) to `notes`; notes are posted with the status
    write that records them, so a settled object posts nothing again.
    """

    deployment: ModelDeployment
    status: Status
    revision: Digest
    build_key: Digest
    operator: OperatorIdentity
    cluster: Cluster
    now: datetime
    notes: list[Event] = dataclasses.field(default_factory=list)
    annotations: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """The object's annotations (a manual rollout request lives there)."""
    spec_body: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """The spec as the user wrote it (kept in status as the stable revision's template)."""
    providers: Providers = dataclasses.field(default_factory=Providers)
    """The operator's metric providers, kept for its lifetime (the TorchServe scraper keeps per-pod
    baselines); a metric of a kind it has none of is measured as an Error naming the kind."""

    @property
    def children(self) -> Children:
        """The owned objects' access of the cluster."""
        return self.cluster.children


Step = Callable[[ReconcileContext], Awaitable[ReconcileOutcome | None]]
"""One step of the chain: None once its part of the world is settled, else the ReconcileOutcome that stops the chain."""
