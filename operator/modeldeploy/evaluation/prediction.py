"""Where the predicted label is in a model's answer (`provider.goldenSet.prediction`).

- the body itself (the default): a JSON string, or else the text of the body;
- `{jsonPath: "$.labels[0]"}`: the value at a path of object keys (`.name` or `['any name']`) and list
  indexes (`[0]`), a string or an integer; the CRD refuses any other path at `kubectl apply`;
- `{argmax: {}}`: the key with the highest score of a `{label: score}` object (TorchServe's built-in
  classifiers answer so), or of the first object of a list of them.

An answer the label cannot be read from raises `PredictionError` saying why: the example counts as
wrong and as an error.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

from modeldeploy.api.names import JSON_PATH

_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*)|\[([0-9]{1,6})\]|\['([^'\\]{1,256})'\]")


class PredictionError(ValueError):
    """The predicted label cannot be read from an answer."""


@dataclasses.dataclass(frozen=True)
class Body:
    """The answer's body is the label."""


@dataclasses.dataclass(frozen=True)
class JsonPath:
    """The label is at `path` in the answer's JSON."""

    path: str

    @property
    def steps(self) -> tuple[str | int, ...]:
        if not JSON_PATH.match(self.path):
            raise ValueError(f"{self.path!r} is not a path such as $.labels[0] or $['class name']")
        return tuple(int(index) if index else (key or quoted)
                     for key, index, quoted in _STEP.findall(self.path[1:]))


@dataclasses.dataclass(frozen=True)
class Argmax:
    """The label is the key with the highest score."""


Prediction = Body | JsonPath | Argmax


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise PredictionError(f"the answer is not JSON: {_quote(body)}") from None


def _quote(body: bytes) -> str:
    text = body[:80].decode("utf-8", errors="replace")
    return repr(text + ("..." if len(body) > 80 else ""))


def _label(value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise PredictionError(f"{where} is {type(value).__name__} {json.dumps(value)[:80]}, not a label")
    label = str(value)
    if not label:
        raise PredictionError(f"{where} is an empty string")
    return label


def read_label(prediction: Prediction, body: bytes) -> str:
    """The label an answer predicts."""
    if isinstance(prediction, Body):
        try:
            value = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            text = body.decode("utf-8", errors="replace").strip()
            if not text:
                raise PredictionError("the answer is empty") from None
            return text
        return _label(value, "the answer")
    document = _json(body)
    if isinstance(prediction, JsonPath):
        value = document
        for step in prediction.steps:
            found = (isinstance(step, int) and isinstance(value, list) and step < len(value)) or (
                isinstance(step, str) and isinstance(value, dict) and step in value)
            if found:
                value = value[step]
            else:
                raise PredictionError(f"the answer has nothing at {prediction.path}: {_quote(body)}")
        return _label(value, prediction.path)
    scores = document[0] if isinstance(document, list) and document else document
    if not isinstance(scores, dict) or not scores:
        raise PredictionError(f"the answer is not a {{label: score}} object: {_quote(body)}")
    best: tuple[float, str] | None = None
    for label, score in scores.items():
        if isinstance(score, bool) or not isinstance(score, int | float):
            raise PredictionError(f"the score of {label!r} is not a number: {_quote(body)}")
        if best is None or score > best[0]:
            best = (float(score), label)
    assert best is not None
    return _label(best[1], "the label with the highest score")
