"""Every label, selector, annotation and owner reference the operator puts on or looks for, built here only.

Children carry `app.kubernetes.io/managed-by=modeldeploy` and `modeldeploy.dev/deployment=NAME`;
objects of one revision add `modeldeploy.dev/revision`, serving pods add `modeldeploy.dev/role`, build
Jobs add `modeldeploy.dev/build-key`. Selectors are derived from the same functions, so a label and the
selector that finds it cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modeldeploy import GROUP, KIND, VERSION
from modeldeploy.api.revision import Role

MANAGER = "modeldeploy"
"""The value of app.kubernetes.io/managed-by on every child, and the server-side apply field manager."""

LABEL_NAME = "app.kubernetes.io/name"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_DEPLOYMENT = f"{GROUP}/deployment"
LABEL_REVISION = f"{GROUP}/revision"
LABEL_ROLE = f"{GROUP}/role"
LABEL_BUILD_KEY = f"{GROUP}/build-key"
LABEL_METRIC = f"{GROUP}/metric"
LABEL_JOB_NAME = "job-name"
"""Set by the Job controller on a Job's pods."""
LABEL_NAMESPACE_NAME = "kubernetes.io/metadata.name"
"""Set by the API server on every namespace."""

ANNOTATION_REVISION = f"{GROUP}/revision"
ANNOTATION_ARCHIVE_SHA256 = f"{GROUP}/archive-sha256"
ANNOTATION_CONFIG_HASH = f"{GROUP}/config-hash"
ANNOTATION_APPLIED_HASH = f"{GROUP}/applied-hash"
"""The hash of what the operator last applied to a child; an equal hash means no write is needed."""

TRAFFIC_GATE = f"{GROUP}/traffic"
"""The readiness gate of a gated canary's pods: the operator sets this pod condition True once the
canary leaves the weight-0 gate, and only then are they ready for the Service NAME."""

ANNOTATION_PREFIX = GROUP
"""kopf's progress and diff-base annotations on the ModelDeployment are named under this prefix."""
LAST_HANDLED_CONFIGURATION = "last-handled-configuration"
FINALIZER = f"{GROUP}/finalizer"

BUILD_COMPONENT = "archive-build"
EVALUATION_COMPONENT = "golden-set-evaluation"

MANAGED: Mapping[str, str] = {LABEL_MANAGED_BY: MANAGER}
"""The label every child carries: what the operator watches."""


def common_labels(name: str) -> dict[str, str]:
    """Labels on every object made for the ModelDeployment `name`."""
    return {LABEL_NAME: name, LABEL_MANAGED_BY: MANAGER, LABEL_DEPLOYMENT: name}


def revision_labels(name: str, revision: str) -> dict[str, str]:
    """Labels of objects that belong to one revision (its ConfigMap)."""
    return {**common_labels(name), LABEL_REVISION: revision}


def role_labels(name: str, role: Role) -> dict[str, str]:
    """Labels of the per-role Service `NAME-ROLE`."""
    return {**common_labels(name), LABEL_ROLE: str(role)}


def workload_labels(name: str, revision: str, role: Role) -> dict[str, str]:
    """Labels of objects and pods that serve one revision in one role."""
    return {**revision_labels(name, revision), LABEL_ROLE: str(role)}


def build_labels(name: str, build_key: str) -> dict[str, str]:
    """Labels of an archive build Job and its pods."""
    return {
        LABEL_NAME: name,
        LABEL_COMPONENT: BUILD_COMPONENT,
        LABEL_MANAGED_BY: MANAGER,
        LABEL_DEPLOYMENT: name,
        LABEL_BUILD_KEY: build_key,
    }


def evaluation_labels(name: str, metric: str, revision: str) -> dict[str, str]:
    """Labels of a golden-set measurement's Job and its pods: the metric and the canary revision it judges."""
    return {
        LABEL_NAME: name,
        LABEL_COMPONENT: EVALUATION_COMPONENT,
        LABEL_MANAGED_BY: MANAGER,
        LABEL_DEPLOYMENT: name,
        LABEL_METRIC: metric,
        LABEL_REVISION: revision,
    }


def evaluation_jobs(name: str) -> str:
    """The golden-set measurement Jobs of one ModelDeployment."""
    return selector_text({LABEL_COMPONENT: EVALUATION_COMPONENT, LABEL_DEPLOYMENT: name})


def deployment_selector(name: str) -> dict[str, str]:
    """The pods of both roles of one ModelDeployment."""
    return {LABEL_DEPLOYMENT: name}


def role_selector(name: str, role: Role) -> dict[str, str]:
    """The immutable selector of one role's pods (no revision: a Deployment keeps it across revisions)."""
    return {LABEL_DEPLOYMENT: name, LABEL_ROLE: str(role)}


def selector_text(labels: Mapping[str, str]) -> str:
    """A label selector in the API's query form, `k=v,k=v`."""
    return ",".join(f"{key}={value}" for key, value in labels.items())


def role_revision_pods(name: str, role: Role, revision: str) -> str:
    """The pods of one role that run one revision."""
    return selector_text({**role_selector(name, role), LABEL_REVISION: revision})


def job_pods(job_name: str) -> str:
    """The pods of one Job."""
    return selector_text({LABEL_JOB_NAME: job_name})


def other_revisions(name: str, revision: str) -> str:
    """The objects of one ModelDeployment that belong to any revision but `revision`."""
    return (f"{selector_text({LABEL_MANAGED_BY: MANAGER, LABEL_DEPLOYMENT: name})},"
            f"{LABEL_REVISION},{LABEL_REVISION}!={revision}")


def owner_name(labels: Mapping[str, str] | None) -> str | None:
    """The ModelDeployment a child belongs to, from its labels."""
    return (labels or {}).get(LABEL_DEPLOYMENT)


def owner_reference(name: str, uid: str) -> dict[str, Any]:
    """The controller reference to the ModelDeployment that owns a child object."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def object_meta(name: str, owner: str, namespace: str, uid: str, labels: Mapping[str, str]) -> dict[str, Any]:
    """Metadata of a child object: its name, namespace, labels and its owner `owner` (with `uid`)."""
    return {
        "name": name,
        "namespace": namespace,
        "labels": dict(labels),
        "ownerReferences": [owner_reference(owner, uid)],
    }
