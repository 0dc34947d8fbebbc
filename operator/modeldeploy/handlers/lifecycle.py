"""Operator lifecycle: kopf settings, the clients kept in memo (the API, the metric providers), login,
and the liveness probe.

Where kopf keeps its own state matters for the promise that a settled object is never written:
- the diff base (the last handled spec) is an annotation `modeldeploy.dev/last-handled-configuration`,
  written only when the spec, labels or annotations changed, i.e. right after the user's own write;
- handler progress is kept in `modeldeploy.dev/*` annotations only while a handler is retrying, and
  purged in the same patch that records its success; nothing goes to status;
- the periodic resync is a timer that writes only when the computed status differs.
So the resync of a settled object reads, computes, and writes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Any

import kopf

from modeldeploy.api.labels import ANNOTATION_PREFIX, FINALIZER, LAST_HANDLED_CONFIGURATION
from modeldeploy.k8s import ChildJobs, KubeApi
from modeldeploy.metrics import OperatorAccess, Providers, build_providers
from modeldeploy.settings import REPORTING_COMPONENT, OperatorConfig

PROVIDERS = "providers"
"""The memo attribute holding the operator's `Providers`."""


def providers_of(memo: kopf.Memo) -> Providers:
    """The operator's metric providers, built by the startup handler (none before it ran)."""
    providers = memo.get(PROVIDERS)
    return providers if isinstance(providers, Providers) else Providers()


def configure(settings: kopf.OperatorSettings, config: OperatorConfig) -> None:
    """Set every kopf setting the operator depends on, instead of relying on kopf's defaults."""
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=ANNOTATION_PREFIX, v1=False)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key=LAST_HANDLED_CONFIGURATION, v1=False)

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


def register(registry: kopf.OperatorRegistry, config: OperatorConfig) -> None:
    """Register the startup, cleanup, login and probe handlers."""

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        configure(settings, config)
        # Reading the kubeconfig or the service account token touches files: off the event loop.
        api = await asyncio.to_thread(KubeApi.connect, timeout_seconds=config.api_timeout_seconds)
        memo["api"] = api
        # One provider per kind for the operator's lifetime: the TorchServe scraper keeps the per-pod
        # baselines the canary's windows start from; the Prometheus client keeps one HTTP session and
        # reads a metric's Secret at each query; a golden-set metric runs a Job per measurement.
        memo[PROVIDERS] = build_providers(OperatorAccess(read_secret=api.secrets.read, jobs=ChildJobs(api.children),
                                                         operator=config.identity))

    @kopf.on.cleanup(registry=registry)
    async def close_clients(memo: kopf.Memo, **_: Any) -> None:
        try:
            await providers_of(memo).close()
        finally:
            api = memo.get("api")
            if isinstance(api, KubeApi):
                api.close()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # kopf's own watch connection uses the same credentials as the official client.
        return kopf.login_via_client(**kwargs)

    # Passive on purpose: a liveness probe that calls the API would restart the operator for an API outage.
    @kopf.on.probe(id="apiLastSuccess", registry=registry)
    def api_last_success(memo: kopf.Memo, **_: Any) -> str:
        api = memo.get("api")
        if isinstance(api, KubeApi) and api.last_success is not None:
            return api.last_success.isoformat()
        return "never"
