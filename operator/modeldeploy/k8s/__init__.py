"""Access to the Kubernetes API through the official client, off the event loop."""

from modeldeploy.k8s.api import KubeApi, load_configuration
from modeldeploy.k8s.children import Children
from modeldeploy.k8s.errors import ConflictError, ForbiddenError, KubeApiError, NotFoundError

__all__ = [
    "Children",
    "ConflictError",
    "ForbiddenError",
    "KubeApi",
    "KubeApiError",
    "NotFoundError",
    "load_configuration",
]
