"""The operator's identity and its tunables, read once at startup. Nothing here imports kopf.

`OperatorIdentity` is the one name for who the operator is: its image and command (archive build Jobs
and the serving pods' digest check run them), the user that image runs as, its namespace (serving
pods let it scrape their metrics port), and the Secrets the pods it creates pull their images with.
`OperatorConfig` holds that identity and the process's timings. kopf's own settings are applied from
these at startup, in handlers/lifecycle.py.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
from collections.abc import Mapping

from modeldeploy import __version__
from modeldeploy.api.names import DNS1123_SUBDOMAIN

REPORTING_COMPONENT = "modeldeploy-operator"

RESYNC_ENV = "MODELDEPLOY_RESYNC_SECONDS"
WATCH_TIMEOUT_ENV = "MODELDEPLOY_WATCH_TIMEOUT_SECONDS"
API_TIMEOUT_ENV = "MODELDEPLOY_API_TIMEOUT_SECONDS"
OPERATOR_IMAGE_ENV = "MODELDEPLOY_OPERATOR_IMAGE"
OPERATOR_COMMAND_ENV = "MODELDEPLOY_OPERATOR_COMMAND"
IMAGE_PULL_SECRETS_ENV = "MODELDEPLOY_IMAGE_PULL_SECRETS"
OPERATOR_NAMESPACE_ENV = "POD_NAMESPACE"
OPERATOR_REPOSITORY = "modeldeploy-operator"
DEFAULT_OPERATOR_IMAGE = f"{OPERATOR_REPOSITORY}:{__version__}"
"""The operator image as the chart and manifests/ name it by default (tests/unit/test_default_images.py)."""
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
    image_pull_secrets: tuple[str, ...] = ()
    """Secrets (in each ModelDeployment's namespace) that build Jobs and serving pods pull their images with."""


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
                command=_command(env) or defaults.identity.command,
                image_pull_secrets=_secret_names(env),
            ),
        )


def _command(env: Mapping[str, str]) -> tuple[str, ...]:
    """MODELDEPLOY_OPERATOR_COMMAND: the operator's entry point in its image, split like a shell does."""
    text = env.get(OPERATOR_COMMAND_ENV, "")
    try:
        return tuple(shlex.split(text))
    except ValueError as error:
        raise ValueError(f"{OPERATOR_COMMAND_ENV}={text!r}: {error}") from None


def _secret_names(env: Mapping[str, str]) -> tuple[str, ...]:
    """MODELDEPLOY_IMAGE_PULL_SECRETS: comma-separated Secret names (empty: none)."""
    text = env.get(IMAGE_PULL_SECRETS_ENV, "")
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    for name in names:
        if len(name) > 253 or not DNS1123_SUBDOMAIN.match(name):
            raise ValueError(f"{IMAGE_PULL_SECRETS_ENV}={text!r}: {name!r} is not a Secret name "
                             "(a DNS subdomain of at most 253 characters)")
    if len(set(names)) != len(names):
        raise ValueError(f"{IMAGE_PULL_SECRETS_ENV}={text!r}: names a Secret twice")
    return names


def image_pull_secrets(identity: OperatorIdentity) -> list[dict[str, str]]:
    """The pod spec's `imagePullSecrets` for the pods the operator creates."""
    return [{"name": name} for name in identity.image_pull_secrets]


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
