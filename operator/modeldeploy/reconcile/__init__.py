"""The reconcile engine: a chain of ensure-steps over a typed context, with no kopf and no API client.

It reaches the cluster only through the protocols of reconcile.context (implemented by modeldeploy.k8s,
and in memory by the tests).
"""

from modeldeploy.reconcile.chain import STEPS, Outcome, Report, reconcile, reconcile_and_report
from modeldeploy.reconcile.context import Children, Cluster, ReconcileContext, Step
from modeldeploy.reconcile.errors import ConflictError, ForbiddenError, KubeApiError, NotFoundError

__all__ = [
    "STEPS",
    "Children",
    "Cluster",
    "ConflictError",
    "ForbiddenError",
    "KubeApiError",
    "NotFoundError",
    "Outcome",
    "ReconcileContext",
    "Report",
    "Step",
    "reconcile",
    "reconcile_and_report",
]
