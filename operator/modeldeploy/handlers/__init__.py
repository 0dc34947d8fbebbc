"""kopf handlers: thin shims over the reconcile engine (modeldeploy.reconcile) and the API access (k8s).

The only package that imports kopf, besides the entry point runner.py.
"""

from __future__ import annotations

import kopf

from modeldeploy.handlers import lifecycle, modeldeployment
from modeldeploy.settings import OperatorConfig


def register(registry: kopf.OperatorRegistry, config: OperatorConfig) -> None:
    """Register every handler of the operator with `registry`."""
    lifecycle.register(registry, config)
    modeldeployment.register(registry, config)
