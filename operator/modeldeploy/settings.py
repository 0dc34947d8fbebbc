"""How the operator configures kopf, explicitly, at startup.

Where kopf keeps its own state matters for the promise that a settled object is never written:
- the diff base (the last handled spec) is an annotation `modeldeploy.dev/last-handled-configuration`,
  written only when the spec, labels or annotations changed, i.e. right after the user's own write;
- handler progress is kept in `modeldeploy.dev/*` annotations only while a handler is retrying, and
  purged in the same patch that records its success; nothing goes to status;
- the periodic resync is a timer that writes only when the computed status differs.
So the resync of a settled object reads, computes, and writes nothing.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
from collections.abc import Mapping

import kopf

FINALIZER = "modeldeploy.dev/finalizer"
ANNOTATION_PREFIX = "modeldeploy.dev"
REPORTING_COMPONENT = "modeldeploy-operator"

RESYNC_ENV = "MODELDEPLOY_RESYNC_SECONDS"
WATCH_TIMEOUT_ENV = "MODELDEPLOY_WATCH_TIMEOUT_SECONDS"
API_TIMEOUT_ENV = "MODELDEPLOY_API_TIMEOUT_SECONDS"
OPERATOR_IMAGE_ENV = "MODELDEPLOY_OPERATOR_IMAGE"
OPERATOR_NAMESPACE_ENV = "POD_NAMESPACE"
DEFAULT_OPERATOR_IMAGE = "modeldeploy-operator:0.1.0"
DEFAULT_OPERATOR_NAMESPACE = "modeldeploy-system"


@dataclasses.dataclass(frozen=True)
class OperatorConfig:
    """Tunables of one operator process."""

    resync_seconds: float = 60.0
    """How often each object is reconciled again without any change (level-triggered resync)."""

    watch_timeout_seconds: float = 300.0
    """How long the API server keeps one watch request open before the operator reconnects."""

    api_timeout_seconds: float = 30.0
    """The timeout of one API request made by the operator."""
    operator_image: str = DEFAULT_OPERATOR_IMAGE
    """The operator's own image: archive build Jobs and the serving pods' digest check run it."""
    operator_namespace: str = DEFAULT_OPERATOR_NAMESPACE
    """Where the operator runs: serving pods let its namespace scrape their metrics port."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorConfig:
        """Read the tunables from MODELDEPLOY_* environment variables, falling back to the defaults."""
        env = os.environ if env is None else env
        defaults = cls()
        return cls(
            resync_seconds=_positive(env, RESYNC_ENV, defaults.resync_seconds),
            watch_timeout_seconds=_positive(env, WATCH_TIMEOUT_ENV, defaults.watch_timeout_seconds),
            api_timeout_seconds=_positive(env, API_TIMEOUT_ENV, defaults.api_timeout_seconds),
            operator_image=env.get(OPERATOR_IMAGE_ENV) or defaults.operator_image,
            operator_namespace=env.get(OPERATOR_NAMESPACE_ENV) or defaults.operator_namespace,
        )


def _positive(env: Mapping[str, str], key: str, default: float) -> float:
    text = env.get(key)
    if text is None or text == "":
        return default
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{key}={text!r} must be a number of seconds") from None
    if value <= 0:
        raise ValueError(f"{key}={text!r} must be greater than 0")
    return value


def configure(settings: kopf.OperatorSettings, config: OperatorConfig) -> None:
    """Set every kopf setting the operator depends on, instead of relying on kopf's defaults."""
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=ANNOTATION_PREFIX, v1=False)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration", v1=False)

    # The server ends each watch first; the client timeout only catches a silently dead connection.
    # The API server takes whole seconds (timeoutSeconds) only.
    settings.watching.server_timeout = max(1, round(config.watch_timeout_seconds))
    settings.watching.client_timeout = settings.watching.server_timeout + 30
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = config.api_timeout_seconds * 2

    # Events are posted explicitly on transitions; log lines stay in the log.
    settings.posting.enabled = True
    settings.posting.loggers = False
    settings.posting.level = logging.INFO
    settings.posting.reporting_component = REPORTING_COMPONENT
    settings.posting.reporting_instance = os.environ.get("POD_NAME") or socket.gethostname()

    # One replica (Deployment strategy Recreate) owns every object: no peering objects, no leases.
    settings.peering.standalone = True
