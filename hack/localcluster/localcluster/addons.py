"""Add-ons of the local cluster: the cluster DNS, installed at start as a kubeadm cluster has
it, and Prometheus, installed on demand (tests, demo)."""

from __future__ import annotations

from pathlib import Path

import yaml

PROMETHEUS_MANIFEST = Path(__file__).resolve().parent.parent / "addons" / "prometheus.yaml"

COREFILE = """\
.:53 {{
    errors
    health {{
        lameduck 2s
    }}
    ready
    kubernetes {domain} in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
    prometheus :9153
    cache 30 {{
        # A name asked for just before its Service is created resolves a moment later.
        denial 9984 2
    }}
    loadbalance
}}
"""


def cluster_dns(binary: str, cluster_ip: str, domain: str) -> str:
    """CoreDNS as a Deployment in kube-system behind the Service kube-dns at `cluster_ip`.

    Images are not pulled on this node: the container runs `binary`, our CoreDNS build. It has
    no forward plugin, so only names of the cluster resolve."""
    labels = {"k8s-app": "kube-dns"}
    meta = {"namespace": "kube-system", "labels": labels}
    docs: list[dict[str, object]] = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "coredns", **meta}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": "system:coredns"},
         "rules": [{"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
                    "verbs": ["list", "watch"]},
                   {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "system:coredns"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:coredns"},
         "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": "kube-system"}]},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "coredns", **meta},
         "data": {"Corefile": COREFILE.format(domain=domain)}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "coredns", **meta},
         "spec": {
             "replicas": 1,
             "selector": {"matchLabels": labels},
             "template": {
                 "metadata": {"labels": labels,
                              "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9153"}},
                 "spec": {
                     "serviceAccountName": "coredns",
                     "priorityClassName": "system-cluster-critical",
                     "dnsPolicy": "Default",
                     "terminationGracePeriodSeconds": 5,
                     "containers": [{
                         "name": "coredns", "image": "coredns/coredns",
                         "command": [binary, "-conf", "/etc/coredns/Corefile"],
                         "ports": [{"name": "dns", "containerPort": 53, "protocol": "UDP"},
                                   {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                                   {"name": "metrics", "containerPort": 9153, "protocol": "TCP"}],
                         "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns", "readOnly": True}],
                         "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}, "periodSeconds": 1},
                         "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}, "periodSeconds": 10,
                                           "failureThreshold": 5},
                     }],
                     "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
                 },
             },
         }},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kube-dns", **meta},
         "spec": {"selector": labels, "clusterIP": cluster_ip,
                  "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                            {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                            {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153}]}},
    ]
    return yaml.safe_dump_all(docs)


def prometheus(binary: str) -> str:
    """addons/prometheus.yaml with `binary` (our build) as the container's command: images are
    not pulled on this node, the command comes from the host."""
    docs = list(yaml.safe_load_all(PROMETHEUS_MANIFEST.read_text()))
    for doc in docs:
        if doc["kind"] == "Deployment":
            doc["spec"]["template"]["spec"]["containers"][0]["command"][0] = binary
    return yaml.safe_dump_all(docs)
