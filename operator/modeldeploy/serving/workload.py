"""The Deployment `NAME-ROLE` that serves one revision with TorchServe under Pod Security "restricted"."""

from __future__ import annotations

import math
from typing import Any

from modeldeploy.api.conditions import Reason
from modeldeploy.api.labels import (
    ANNOTATION_ARCHIVE_SHA256,
    ANNOTATION_CONFIG_HASH,
    ANNOTATION_REVISION,
    TRAFFIC_GATE,
    object_meta,
    role_selector,
)
from modeldeploy.api.spec import PvcStore, S3Store
from modeldeploy.serving.config import ENTRYPOINT, READY, build_configmap
from modeldeploy.serving.plan import ServingPlan
from modeldeploy.settings import image_pull_secrets

SERVING_CONTAINER = "torchserve"
VERIFY_CONTAINER = "verify-archive"
PROBE_PERIOD_SECONDS = 5
# The probe's HTTP call gives up after 3 s; leave room for starting python3.
EXEC_PROBE_TIMEOUT_SECONDS = 10
# Before any worker starts, the JVM boots and unpacks the archive: time the startup probe grants on top.
BOOT_ALLOWANCE_SECONDS = 60
# After the response timeout, what `torchserve --stop` needs to stop the JVM and its workers.
STOP_ALLOWANCE_SECONDS = 15
LOGS_SIZE_LIMIT = "64Mi"
# The keys of an S3 store's Secret that hold its credentials.
S3_ACCESS_KEY_ID_KEY = "AWS_ACCESS_KEY_ID"
S3_SECRET_ACCESS_KEY_KEY = "AWS_SECRET_ACCESS_KEY"

# What the init container's exit code says (the exit codes of `modeldeploy archive verify`).
VERIFY_EXIT_MISMATCH = 1
VERIFY_EXIT_CREDENTIALS_REFUSED = 3

_CONFIG_VOLUME = "config"
_STORE_VOLUME = "model-store"
_LOGS_VOLUME = "logs"
_TMP_VOLUME = "tmp"


def container_env(plan: ServingPlan) -> list[dict[str, str]]:
    """Environment of the serving container: TorchServe's logs and scratch files go to emptyDirs."""
    paths = plan.paths
    return [
        {"name": "LOG_LOCATION", "value": paths.logs_dir},
        {"name": "METRICS_LOCATION", "value": paths.logs_dir},
        {"name": "TEMP", "value": paths.tmp_dir},
        {"name": "TMPDIR", "value": paths.tmp_dir},
    ]


def restricted_security_context() -> dict[str, Any]:
    """Container settings the Pod Security "restricted" profile requires, plus a read-only root."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def startup_failure_threshold(plan: ServingPlan) -> int:
    """Startup probe attempts covering JVM boot plus the model's startup timeout."""
    budget = BOOT_ALLOWANCE_SECONDS + plan.model_config.startup_timeout_seconds
    return math.ceil(budget / PROBE_PERIOD_SECONDS)


def termination_grace_seconds(plan: ServingPlan) -> int:
    """Grace period: the preStop pause, a full in-flight response, then a clean JVM stop."""
    return plan.pre_stop_sleep_seconds + plan.model_config.response_timeout_seconds + STOP_ALLOWANCE_SECONDS


def verify_command(plan: ServingPlan) -> list[str]:
    """The init container's command: the operator's `archive verify`, refusing any digest mismatch.

    A PVC archive is checked in place (its volume is mounted read-only); an S3 archive is fetched into
    the pod's emptyDir model store while it is hashed.
    """
    command = [*plan.operator.command, "archive", "verify"]
    if isinstance(plan.archive.store, PvcStore):
        return [*command, plan.archive_path, "--sha256", plan.archive.sha256]
    return [*command, plan.archive.uri, "--sha256", plan.archive.sha256, "--output", plan.archive_path]


def verify_failure(exit_code: int, last_line: str) -> tuple[Reason, str]:
    """The reason and message of an init container that ended with `exit_code` and `last_line` in its log."""
    if exit_code == VERIFY_EXIT_MISMATCH:
        return Reason.DIGEST_MISMATCH, f"archive check failed: {last_line}"
    if exit_code == VERIFY_EXIT_CREDENTIALS_REFUSED:
        return (Reason.STORE_CREDENTIALS_REFUSED,
                f"the archive store refused the credentials of spec.archive.store.s3.secretRef: {last_line}")
    return Reason.ARCHIVE_CHECK_FAILED, f"archive check could not run (exit code {exit_code}): {last_line}"


def _s3_env(store: S3Store) -> list[dict[str, Any]]:
    def secret(name: str, key: str) -> dict[str, Any]:
        return {"name": name, "valueFrom": {"secretKeyRef": {"name": store.secret_name, "key": key}}}

    env = [
        secret("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY_ID_KEY),
        secret("AWS_SECRET_ACCESS_KEY", S3_SECRET_ACCESS_KEY_KEY),
    ]
    if store.endpoint:
        env.append({"name": "AWS_ENDPOINT_URL", "value": store.endpoint})
    if store.region:
        env.append({"name": "AWS_DEFAULT_REGION", "value": store.region})
    return env


def _volumes(plan: ServingPlan) -> list[dict[str, Any]]:
    store: dict[str, Any]
    if isinstance(plan.archive.store, PvcStore):
        store = {
            "name": _STORE_VOLUME,
            "persistentVolumeClaim": {"claimName": plan.archive.store.claim_name, "readOnly": True},
        }
    else:
        store = {"name": _STORE_VOLUME, "emptyDir": {}}
    return [
        {"name": _CONFIG_VOLUME, "configMap": {"name": plan.configmap_name, "defaultMode": 0o444}},
        store,
        {"name": _LOGS_VOLUME, "emptyDir": {"sizeLimit": LOGS_SIZE_LIMIT}},
        # Holds the unpacked model: no size limit, its size is the model's.
        {"name": _TMP_VOLUME, "emptyDir": {}},
    ]


def _verify_container(plan: ServingPlan) -> dict[str, Any]:
    is_s3 = isinstance(plan.archive.store, S3Store)
    env: list[dict[str, Any]] = [{"name": "TMPDIR", "value": plan.paths.tmp_dir}]
    if isinstance(plan.archive.store, S3Store):
        env.extend(_s3_env(plan.archive.store))
    return {
        "name": VERIFY_CONTAINER,
        "image": plan.operator.image,
        "command": verify_command(plan),
        "env": env,
        "resources": {kind: dict(values) for kind, values in plan.verify_resources.items()},
        "securityContext": restricted_security_context(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [
            {"name": _STORE_VOLUME, "mountPath": plan.paths.model_store, "readOnly": not is_s3},
            {"name": _TMP_VOLUME, "mountPath": plan.paths.tmp_dir},
        ],
    }


def _serving_container(plan: ServingPlan) -> dict[str, Any]:
    ready_command = ["/bin/sh", plan.config_file(READY)]
    container: dict[str, Any] = {
        "name": SERVING_CONTAINER,
        "image": plan.image,
        "command": ["/bin/sh", plan.config_file(ENTRYPOINT)],
        "workingDir": plan.paths.tmp_dir,
        # Management (and gRPC) listen on loopback and are deliberately not declared.
        "ports": [
            {"name": "inference", "containerPort": plan.ports.inference, "protocol": "TCP"},
            {"name": "metrics", "containerPort": plan.ports.metrics, "protocol": "TCP"},
        ],
        "env": container_env(plan),
        "resources": {kind: dict(values) for kind, values in plan.resources.items()},
        "startupProbe": {
            "exec": {"command": ready_command},
            "periodSeconds": PROBE_PERIOD_SECONDS,
            "timeoutSeconds": EXEC_PROBE_TIMEOUT_SECONDS,
            "failureThreshold": startup_failure_threshold(plan),
        },
        "readinessProbe": {
            "exec": {"command": ready_command},
            "periodSeconds": PROBE_PERIOD_SECONDS,
            "timeoutSeconds": EXEC_PROBE_TIMEOUT_SECONDS,
            "failureThreshold": 2,
        },
        # /ping cannot tell a loaded model, but it does tell a wedged frontend.
        "livenessProbe": {
            "httpGet": {"path": "/ping", "port": "inference"},
            "periodSeconds": 10,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        },
        "securityContext": restricted_security_context(),
        # The entrypoint ends a failed start with the load failure; Kubernetes keeps that log tail.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [
            {"name": _CONFIG_VOLUME, "mountPath": plan.paths.config_dir, "readOnly": True},
            {"name": _STORE_VOLUME, "mountPath": plan.paths.model_store, "readOnly": True},
            {"name": _LOGS_VOLUME, "mountPath": plan.paths.logs_dir},
            {"name": _TMP_VOLUME, "mountPath": plan.paths.tmp_dir},
        ],
    }
    if plan.pre_stop_sleep_seconds:
        # Endpoints controllers and proxies drop the pod before TorchServe stops taking requests.
        container["lifecycle"] = {"preStop": {"exec": {"command": ["sleep", str(plan.pre_stop_sleep_seconds)]}}}
    return container


def build_deployment(plan: ServingPlan) -> dict[str, Any]:
    """Deployment `NAME-ROLE` serving the revision; its pods verify the archive before TorchServe starts."""
    labels = plan.workload_labels
    metadata = object_meta(plan.deployment_name, plan.name, plan.namespace, plan.uid, labels)
    metadata["annotations"] = {ANNOTATION_REVISION: plan.revision}
    config_hash = build_configmap(plan)["metadata"]["annotations"][ANNOTATION_CONFIG_HASH]
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": termination_grace_seconds(plan),
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": plan.run_as_user,
            "runAsGroup": plan.run_as_user,
            "fsGroup": plan.run_as_user,
            # A large model store must not be chowned on every mount.
            "fsGroupChangePolicy": "OnRootMismatch",
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "initContainers": [_verify_container(plan)],
        "containers": [_serving_container(plan)],
        "volumes": _volumes(plan),
    }
    if plan.traffic_gate:
        # Loaded is not enough: no endpoint of the Service NAME until the operator lets the canary past
        # its weight-0 gate by setting this condition.
        pod_spec["readinessGates"] = [{"conditionType": TRAFFIC_GATE}]
    if plan.operator.image_pull_secrets:
        # The operator's setting: its own image (the archive check) and TorchServe's may be private.
        pod_spec["imagePullSecrets"] = image_pull_secrets(plan.operator)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": plan.replicas,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": role_selector(plan.name, plan.role)},
            # Never dip below the serving capacity while a revision rolls.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        ANNOTATION_REVISION: plan.revision,
                        ANNOTATION_ARCHIVE_SHA256: plan.archive.sha256,
                        ANNOTATION_CONFIG_HASH: config_hash,
                        # Prometheus set up to scrape annotated pods finds TorchServe's metrics (the
                        # dashboard's stable vs canary error rate and latency).
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(plan.ports.metrics),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": pod_spec,
            },
        },
    }
