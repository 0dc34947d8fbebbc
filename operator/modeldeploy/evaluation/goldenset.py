"""A golden set: JSON Lines, one example a line, read as a stream.

    {"input": {"data": [[5.1, 3.5, 1.4, 0.2]]}, "label": "setosa"}
    {"inputBase64": "/9j/4AAQ...", "contentType": "image/jpeg", "label": "tabby"}

`input` is a JSON request body (sent as application/json), `inputBase64` the bytes of one (sent with
its `contentType`, application/octet-stream when it names none). `label` is the answer a good model
gives; a measure that compares with stable alone (agreement) needs none. Other keys are ignored, and
blank lines skipped. Every problem is a `GoldenSetError` naming the set, the line and what is wrong.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from collections.abc import Iterable, Iterator

MAX_LINE_BYTES = 8 << 20
"""The longest line (one example) read; a longer one is refused, never read whole into memory twice."""
MAX_EXAMPLES = 100_000
MAX_LABEL_LENGTH = 256


class GoldenSetError(ValueError):
    """A golden set that cannot be used: names the set, the line (when one is at fault) and the problem."""

    def __init__(self, source: str, line: int | None, problem: str) -> None:
        self.source, self.line, self.problem = source, line, problem
        where = f"{source}: line {line}" if line is not None else source
        super().__init__(f"{where}: {problem}")


@dataclasses.dataclass(frozen=True)
class Example:
    """One example: its line, the request body and content type to send, and its label."""

    line: int
    body: bytes
    content_type: str
    label: str | None


def _example(source: str, number: int, raw: bytes, needs_labels: bool) -> Example | None:
    text = raw.strip()
    if not text:
        return None
    if len(raw) > MAX_LINE_BYTES:
        raise GoldenSetError(source, number, f"is longer than {MAX_LINE_BYTES} bytes")
    try:
        item = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise GoldenSetError(source, number, f"is not JSON ({error})") from None
    if not isinstance(item, dict):
        raise GoldenSetError(source, number, f"is not a JSON object but {type(item).__name__}")
    if ("input" in item) == ("inputBase64" in item):
        raise GoldenSetError(source, number, "must have exactly one of input and inputBase64")
    if "input" in item:
        body = json.dumps(item["input"], separators=(",", ":"), ensure_ascii=False).encode()
        content_type = "application/json"
    else:
        encoded, content_type = item["inputBase64"], item.get("contentType", "application/octet-stream")
        if not isinstance(encoded, str):
            raise GoldenSetError(source, number, "inputBase64 must be a string")
        if not isinstance(content_type, str) or not content_type or len(content_type) > 256:
            raise GoldenSetError(source, number, "contentType must be a media type such as image/jpeg")
        try:
            body = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise GoldenSetError(source, number, "inputBase64 is not base64") from None
    label = item.get("label")
    if label is None and needs_labels:
        raise GoldenSetError(source, number, "has no label (the measure compares answers with labels)")
    if label is not None and (not isinstance(label, str) or not label or len(label) > MAX_LABEL_LENGTH):
        raise GoldenSetError(source, number, f"label must be a string of 1 to {MAX_LABEL_LENGTH} characters")
    return Example(number, body, content_type, label)


def read_examples(lines: Iterable[bytes], source: str, *, needs_labels: bool) -> Iterator[Example]:
    """The examples of a golden set, one at a time (an empty set is refused once it has been read)."""
    count = 0
    for number, raw in enumerate(lines, start=1):
        example = _example(source, number, raw, needs_labels)
        if example is None:
            continue
        count += 1
        if count > MAX_EXAMPLES:
            raise GoldenSetError(source, number, f"is past the {MAX_EXAMPLES}th example, the most a set may hold")
        yield example
    if count == 0:
        raise GoldenSetError(source, None, "holds no example")
