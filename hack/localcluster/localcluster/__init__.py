"""The local cluster: a real control plane built from upstream Kubernetes, and a node agent
that runs pods as local processes in their own namespaces."""

from localcluster.cluster import LocalCluster, Settings

__all__ = ["LocalCluster", "Settings"]
