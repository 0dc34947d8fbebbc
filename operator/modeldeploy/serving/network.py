"""Services, NetworkPolicy and PodDisruptionBudget of a served ModelDeployment."""

from __future__ import annotations

from typing import Any

from modeldeploy.api.labels import (
    LABEL_NAMESPACE_NAME,
    common_labels,
    deployment_selector,
    object_meta,
    role_labels,
    role_selector,
)
from modeldeploy.api.revision import ROLES
from modeldeploy.serving.plan import ServingPlan


def _port(name: str, number: int) -> dict[str, Any]:
    return {"name": name, "port": number, "targetPort": name, "protocol": "TCP"}


def build_services(plan: ServingPlan) -> list[dict[str, Any]]:
    """Services `NAME` (inference, both roles), `NAME-stable` and `NAME-canary` (inference and metrics).

    Only the plan's name, namespace, owner and ports matter, so a stable and a canary plan yield the
    same objects. No Service ever carries the management port.
    """
    services: list[dict[str, Any]] = []
    shared = object_meta(plan.name, plan.name, plan.namespace, plan.uid, common_labels(plan.name))
    services.append(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": shared,
            "spec": {
                "type": "ClusterIP",
                "selector": deployment_selector(plan.name),
                "ports": [_port("inference", plan.ports.inference)],
            },
        }
    )
    for role in ROLES:
        labels = role_labels(plan.name, role)
        services.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": object_meta(f"{plan.name}-{role}", plan.name, plan.namespace, plan.uid, labels),
                "spec": {
                    "type": "ClusterIP",
                    "selector": role_selector(plan.name, role),
                    "ports": [
                        _port("inference", plan.ports.inference),
                        _port("metrics", plan.ports.metrics),
                    ],
                },
            }
        )
    return services


def build_network_policy(plan: ServingPlan) -> dict[str, Any] | None:
    """NetworkPolicy `NAME` for the pods of both roles, or None when the plan turns it off.

    Inference is the product, so it is open to any source. Metrics are open only to the operator's
    namespace (canary analysis scrapes each pod) and the monitoring namespace. Every other port is
    closed, so the management API is shut twice: by its loopback address and by this policy.
    """
    options = plan.network_policy
    if not options.enabled:
        return None
    scrapers = sorted(
        {
            plan.operator.namespace,
            *([options.monitoring_namespace] if options.monitoring_namespace else []),
        }
    )
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": object_meta(plan.name, plan.name, plan.namespace, plan.uid, common_labels(plan.name)),
        "spec": {
            "podSelector": {"matchLabels": deployment_selector(plan.name)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"ports": [{"protocol": "TCP", "port": plan.ports.inference}]},
                {
                    "from": [
                        {
                            "namespaceSelector": {
                                "matchExpressions": [
                                    {"key": LABEL_NAMESPACE_NAME, "operator": "In", "values": scrapers}
                                ]
                            }
                        }
                    ],
                    "ports": [{"protocol": "TCP", "port": plan.ports.metrics}],
                },
            ],
        },
    }


def build_pdb(plan: ServingPlan) -> dict[str, Any] | None:
    """PodDisruptionBudget `NAME-ROLE` allowing one voluntary eviction at a time, when replicas > 1.

    maxUnavailable rather than minAvailable: it stays right while canary steps rescale the role, and
    with a single replica any budget would either block node drains forever or protect nothing.
    """
    if plan.replicas <= 1:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": object_meta(plan.deployment_name, plan.name, plan.namespace, plan.uid, plan.workload_labels),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": role_selector(plan.name, plan.role)},
        },
    }
