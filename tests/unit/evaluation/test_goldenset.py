"""Reading a golden set: examples as the model receives them, and every problem named by line."""

from __future__ import annotations

import base64
import io
import json

import pytest

from modeldeploy.evaluation.goldenset import MAX_LINE_BYTES, Example, GoldenSetError, read_examples

SOURCE = "pvc://models/iris/golden.jsonl"


def read(text: str | bytes, needs_labels: bool = True) -> list[Example]:
    data = text.encode() if isinstance(text, str) else text
    return list(read_examples(io.BytesIO(data), SOURCE, needs_labels=needs_labels))


def test_json_and_base64_inputs_become_the_request_bodies_the_model_receives() -> None:
    jpeg = b"\xff\xd8\xff\xe0 not really a jpeg"
    examples = read(
        '{"input": {"data": [[5.1, 3.5, 1.4, 0.2]]}, "label": "setosa", "id": 7}\n'
        "\n"
        f'{{"inputBase64": "{base64.b64encode(jpeg).decode()}", "contentType": "image/jpeg", "label": "tabby"}}\n'
    )

    assert examples == [
        Example(1, b'{"data":[[5.1,3.5,1.4,0.2]]}', "application/json", "setosa"),
        Example(3, jpeg, "image/jpeg", "tabby"),
    ]


def test_agreement_reads_examples_without_labels() -> None:
    assert read('{"input": [1, 2]}\n', needs_labels=False) == [Example(1, b"[1,2]", "application/json", None)]


@pytest.mark.parametrize(("text", "line", "problem"), [
    ('{"input": 1, "label": "a"}\n{"input": 2}\n', 2, "has no label"),
    ('{"input": 1, "label": "a"}\nnot json\n', 2, "is not JSON"),
    ('["input", 1]\n', 1, "is not a JSON object but list"),
    ('{"label": "a"}\n', 1, "must have exactly one of input and inputBase64"),
    ('{"input": 1, "inputBase64": "AA==", "label": "a"}\n', 1, "must have exactly one of input and inputBase64"),
    ('{"inputBase64": "%%%", "label": "a"}\n', 1, "inputBase64 is not base64"),
    ('{"input": 1, "label": 3}\n', 1, "label must be a string"),
    ('{"input": 1, "label": ""}\n', 1, "label must be a string"),
])
def test_a_bad_line_is_refused_naming_the_set_the_line_and_the_problem(text: str, line: int, problem: str) -> None:
    with pytest.raises(GoldenSetError) as raised:
        read(text)

    assert raised.value.line == line and problem in raised.value.problem
    assert str(raised.value).startswith(f"{SOURCE}: line {line}: ")


def test_an_empty_set_is_refused_once_read() -> None:
    with pytest.raises(GoldenSetError, match=f"^{SOURCE}: holds no example$"):
        read("\n\n")


def test_a_line_longer_than_the_limit_is_refused() -> None:
    huge = json.dumps({"input": "x" * MAX_LINE_BYTES, "label": "a"}).encode()
    with pytest.raises(GoldenSetError, match="line 1: is longer than"):
        read(huge)


def test_examples_stream_one_at_a_time() -> None:
    lines = iter([b'{"input": 1, "label": "a"}\n', b"broken\n"])
    examples = read_examples(lines, SOURCE, needs_labels=True)

    assert next(examples).line == 1  # the broken line is not read yet
    with pytest.raises(GoldenSetError, match="line 2: is not JSON"):
        next(examples)
