"""The operator's identity and its tunables, read once at startup. Nothing here imports kopf.

`OperatorIdentity` is the one name for who the operator is: its image and command (archive build Jobs
and the serving pods' digest check run them), the user that image runs as, and its namespace (serving
pods let it scrape their metrics port). `OperatorConfig` holds that identity and the process's
timings. kopf's own settings are applied from these at startup, in handlers/lifecycle.py.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

REPORTING_COMPONENT = "modeldeploy-operator"

RESYNC_ENV = "MODELDEPLOY_RESYNC_SECONDS"
WATCH_TIMEOUT_ENV = "MODELDEPLOY_WATCH_TIMEOUT_SECONDS"
API_TIMEOUT_ENV = "MODELDEPLOY_API_TIMEOUT_SECONDS"
OPERATOR_IMAGE_ENV = "MODELDEPLOY_OPERATOR_IMAGE"
OPERATOR_NAMESPACE_ENV = "POD_NAMESPACE"
DEFAULT_OPERATOR_IMAGE = "modeldeploy-operator:0.1.0"
DEFAULT_OPERATOR_NAMESPACE = "modeldeploy-system"


@dataclasses.dataclass(frozen=True)
class OperatorIdentity:
    """Who the operator is: the image and command that run its code in a pod, its user, its namespace."""

    image: str = DEFAULT_OPERATOR_IMAGE
    """The operator's own image: archive build Jobs and the serving pods' digest check run it."""
    namespace: str = DEFAULT_OPERATOR_NAMESPACE
    """Where the operator runs: serving pods let this namespace scrape their metrics port."""
    command: tuple[str, ...] = ("modeldeploy",)
    """The command that starts the operator's code in its image."""
    run_as_user: int = 65532
    """The operator image's user (see Dockerfile)."""


@dataclasses.dataclass(frozen=True)
class OperatorConfig:
    """Tunables of one operator process, and its identity."""

    resync_seconds: float = 60.0
    """How often each object is reconciled again without any change (level-triggered resync)."""

    watch_timeout_seconds: float = 300.0
    """How long the API server keeps one watch request open before the operator reconnects."""

    api_timeout_seconds: float = 30.0
    """The timeout of one API request made by the operator."""

    identity: OperatorIdentity = OperatorIdentity()
    """Who the operator is (image, command, user, namespace)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorConfig:
        """Read the tunables from MODELDEPLOY_* environment variables, falling back to the defaults."""
        env = os.environ if env is None else env
        defaults = cls()
        return cls(
            resync_seconds=_positive(env, RESYNC_ENV, defaults.resync_seconds),
            watch_timeout_seconds=_positive(env, WATCH_TIMEOUT_ENV, defaults.watch_timeout_seconds),
            api_timeout_seconds=_positive(env, API_TIMEOUT_ENV, defaults.api_timeout_seconds),
            identity=OperatorIdentity(
                image=env.get(OPERATOR_IMAGE_ENV) or defaults.identity.image,
                namespace=env.get(OPERATOR_NAMESPACE_ENV) or defaults.identity.namespace,
            ),
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
