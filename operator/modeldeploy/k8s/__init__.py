"""Access to the Kubernetes API through the official client, off the event loop.

`KubeApi` implements the reconcile's `Cluster` protocol and `Children` its `Children` protocol; API
errors are raised as the reconcile's own (modeldeploy.reconcile.errors).
"""

from modeldeploy.k8s.api import KubeApi, context_namespace, load_configuration
from modeldeploy.k8s.children import Children
from modeldeploy.k8s.jobs import ChildJobs
from modeldeploy.k8s.secrets import SecretReader

__all__ = ["ChildJobs", "Children", "KubeApi", "SecretReader", "context_namespace", "load_configuration"]
