"""TorchServe handler for the iris classifier (TorchScript).

Request body (JSON): {"data": [[sepal_length, sepal_width, petal_length, petal_width], ...]}
Response (JSON):     {"probabilities": [[p_setosa, p_versicolor, p_virginica], ...],
                      "labels": ["setosa", ...], "version": "<model version>"}

A fraction of requests can be made to fail on purpose (the "faulty" version, for canary tests):
`handler: {failure_fraction: 0.5}` in model-config.yaml, or the IRIS_FAILURE_FRACTION environment
variable (which wins). Failures are evenly spaced, not random: with 0.25 every 4th request of a
worker fails, so a test sees the same error rate every time. TorchServe answers a failed request
with a 5xx status.

Latency can be added the same way (the "slow" version): `handler: {latency_ms: 200}`, or the
IRIS_LATENCY_MS environment variable (which wins), slept once per batch before answering.

Wrong labels too (the "swapped" version): `handler: {swapped_fraction: 0.34}`, or the
IRIS_SWAPPED_FRACTION environment variable (which wins). An evenly spaced share of the rows is
answered 200 with the next class's label (setosa -> versicolor -> virginica -> setosa), as a broken
label map would: the server looks healthy, the predictions are wrong.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from typing import Any

import torch

logger = logging.getLogger(__name__)

LABELS = ("setosa", "versicolor", "virginica")


class IrisHandler:
    """Loads the TorchScript model once per worker and answers batches of feature rows."""

    def __init__(self) -> None:
        self.model: torch.jit.ScriptModule | None = None
        self.version = "unknown"
        self.failure_fraction = 0.0
        self.latency_ms = 0.0
        self.swapped_fraction = 0.0
        self.requests_seen = 0
        self.rows_seen = 0
        self.initialized = False

    def initialize(self, context: Any) -> None:
        """Load the serialized TorchScript file named in the manifest; read the failure fraction."""
        properties = context.system_properties
        model_dir = properties.get("model_dir")
        manifest = context.manifest
        serialized = manifest["model"]["serializedFile"]
        self.version = str(manifest["model"].get("modelVersion", "unknown"))
        torch.set_num_threads(1)
        self.model = torch.jit.load(os.path.join(model_dir, serialized), map_location="cpu")
        self.model.eval()
        settings = (getattr(context, "model_yaml_config", None) or {}).get("handler", {}) or {}
        fraction = os.environ.get("IRIS_FAILURE_FRACTION", settings.get("failure_fraction", 0.0))
        self.failure_fraction = min(max(float(fraction), 0.0), 1.0)
        latency = os.environ.get("IRIS_LATENCY_MS", settings.get("latency_ms", 0))
        self.latency_ms = max(float(latency), 0.0)
        swapped = os.environ.get("IRIS_SWAPPED_FRACTION", settings.get("swapped_fraction", 0.0))
        self.swapped_fraction = min(max(float(swapped), 0.0), 1.0)
        self.initialized = True
        logger.info("iris %s loaded, failure fraction %s, added latency %s ms, swapped labels %s", self.version,
                    self.failure_fraction, self.latency_ms, self.swapped_fraction)

    @staticmethod
    def _every(k: int, fraction: float) -> bool:
        # The k-th one is picked when the running count floor(k * fraction) steps up: evenly spaced.
        return math.floor(k * fraction) > math.floor((k - 1) * fraction)

    def _should_fail(self) -> bool:
        self.requests_seen += 1
        return self._every(self.requests_seen, self.failure_fraction)

    def _label(self, index: int) -> str:
        self.rows_seen += 1
        if self._every(self.rows_seen, self.swapped_fraction):
            index = (index + 1) % len(LABELS)
        return LABELS[index]

    @staticmethod
    def _rows(request: dict[str, Any]) -> list[list[float]]:
        body = request.get("body", request.get("data"))
        if isinstance(body, (bytes, bytearray)):
            body = json.loads(body.decode("utf-8"))
        elif isinstance(body, str):
            body = json.loads(body)
        rows = body["data"] if isinstance(body, dict) else body
        if not isinstance(rows, list) or not rows or not all(isinstance(row, list) and len(row) == 4 for row in rows):
            raise ValueError('expected {"data": [[4 numbers], ...]}')
        return [[float(value) for value in row] for row in rows]

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[dict[str, Any]]:
        """One response per request of the batch."""
        assert self.model is not None
        if self.latency_ms:
            time.sleep(self.latency_ms / 1000.0)
        if self._should_fail():
            raise RuntimeError("iris faulty handler: injected failure")
        batches = [self._rows(request) for request in data]
        flat = torch.tensor([row for rows in batches for row in rows], dtype=torch.float32)
        with torch.inference_mode():
            probabilities = torch.softmax(self.model(flat), dim=1)
        responses: list[dict[str, Any]] = []
        start = 0
        for rows in batches:
            chunk = probabilities[start : start + len(rows)]
            start += len(rows)
            responses.append(
                {
                    "probabilities": chunk.tolist(),
                    "labels": [self._label(int(index)) for index in chunk.argmax(dim=1)],
                    "version": self.version,
                }
            )
        return responses


_service = IrisHandler()


def handle(data: list[dict[str, Any]] | None, context: Any) -> list[dict[str, Any]] | None:
    """TorchServe's module-level entry point."""
    if not _service.initialized:
        _service.initialize(context)
    if data is None:
        return None
    return _service.handle(data, context)
