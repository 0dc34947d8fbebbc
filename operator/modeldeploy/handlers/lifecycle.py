"""Operator lifecycle: kopf settings, API clients kept in memo, login, and the liveness probe."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf

from modeldeploy import settings as operator_settings
from modeldeploy.k8s import KubeApi
from modeldeploy.settings import OperatorConfig


def register(registry: kopf.OperatorRegistry, config: OperatorConfig) -> None:
    """Register the startup, cleanup, login and probe handlers."""

    @kopf.on.startup(registry=registry)
    async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        operator_settings.configure(settings, config)
        # Reading the kubeconfig or the service account token touches files: off the event loop.
        memo["api"] = await asyncio.to_thread(KubeApi.connect, timeout_seconds=config.api_timeout_seconds)

    @kopf.on.cleanup(registry=registry)
    async def close_clients(memo: kopf.Memo, **_: Any) -> None:
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
