"""Pure builders of the Kubernetes objects that serve a revision with hardened TorchServe 0.12."""

from __future__ import annotations

from typing import Any

from modeldeploy.serving.config import (
    CONFIG_PROPERTIES,
    ENTRYPOINT,
    LOG4J2_XML,
    READY,
    build_configmap,
    config_hash,
    render_config,
)
from modeldeploy.serving.logs import LOAD_FAILURE_AWK, model_load_failure
from modeldeploy.serving.network import build_network_policy, build_pdb, build_services
from modeldeploy.serving.plan import (
    ArchiveRef,
    NetworkPolicyOptions,
    ServingPaths,
    ServingPlan,
    ServingPorts,
    plan_for,
)
from modeldeploy.serving.workload import (
    SERVING_CONTAINER,
    VERIFY_CONTAINER,
    build_deployment,
    container_env,
    verify_failure,
)


def build_objects(plan: ServingPlan) -> list[dict[str, Any]]:
    """Every object serving the plan, in a safe apply order: config, policy, workload, budget, Services."""
    objects: list[dict[str, Any]] = [build_configmap(plan)]
    policy = build_network_policy(plan)
    if policy is not None:
        objects.append(policy)
    objects.append(build_deployment(plan))
    budget = build_pdb(plan)
    if budget is not None:
        objects.append(budget)
    objects.extend(build_services(plan))
    return objects


__all__ = [
    "CONFIG_PROPERTIES",
    "ENTRYPOINT",
    "LOAD_FAILURE_AWK",
    "LOG4J2_XML",
    "READY",
    "SERVING_CONTAINER",
    "VERIFY_CONTAINER",
    "ArchiveRef",
    "NetworkPolicyOptions",
    "ServingPaths",
    "ServingPlan",
    "ServingPorts",
    "build_configmap",
    "build_deployment",
    "build_network_policy",
    "build_objects",
    "build_pdb",
    "build_services",
    "config_hash",
    "container_env",
    "model_load_failure",
    "plan_for",
    "render_config",
    "verify_failure",
]
