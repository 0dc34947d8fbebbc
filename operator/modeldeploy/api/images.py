"""The TorchServe image a ModelDeployment serves with unless `spec.serving.image` names another.

The CRD's default for `spec.serving.image` is the same string (tests/unit/test_default_images.py).
"""

from __future__ import annotations

DEFAULT_SERVING_IMAGE = "pytorch/torchserve:0.12.0-cpu"
"""TorchServe 0.12 on CPU, the stock image (it runs as `model-server`, uid/gid 1000)."""
