"""Reading the predicted label from an answer: the body, a path, or the best score."""

from __future__ import annotations

import json
import re

import pytest

from modeldeploy.evaluation.prediction import JSON_PATH, Argmax, Body, JsonPath, PredictionError, read_label

IRIS_ANSWER = json.dumps({"probabilities": [[0.97, 0.02, 0.01]], "labels": ["setosa"], "version": "1"}).encode()


@pytest.mark.parametrize(("body", "label"), [(b"setosa", "setosa"), (b'"setosa"\n', "setosa"), (b"3", "3")])
def test_the_body_is_the_label_by_default(body: bytes, label: str) -> None:
    assert read_label(Body(), body) == label


@pytest.mark.parametrize(("path", "label"), [
    ("$.labels[0]", "setosa"),
    ("$['version']", "1"),
])
def test_a_json_path_reads_keys_and_indexes(path: str, label: str) -> None:
    assert read_label(JsonPath(path), IRIS_ANSWER) == label


def test_argmax_picks_the_best_score_of_a_torchserve_classifier_answer() -> None:
    assert read_label(Argmax(), b'{"tabby": 0.41, "tiger_cat": 0.52, "egyptian_cat": 0.07}') == "tiger_cat"
    assert read_label(Argmax(), b'[{"tabby": 0.9, "tiger_cat": 0.1}]') == "tabby"


@pytest.mark.parametrize(("prediction", "body", "why"), [
    (JsonPath("$.labels[3]"), IRIS_ANSWER, "nothing at $.labels[3]"),
    (JsonPath("$.probabilities"), IRIS_ANSWER, "is list"),
    (JsonPath("$.labels[0]"), b"<html>", "not JSON"),
    (Argmax(), b'{"tabby": "high"}', "is not a number"),
    (Argmax(), b"[]", "not a {label: score} object"),
    (Body(), b"  ", "empty"),
    (Body(), b"true", "is bool"),
])
def test_an_answer_without_a_readable_label_says_why(prediction: JsonPath | Argmax | Body, body: bytes,
                                                   why: str) -> None:
    with pytest.raises(PredictionError, match=re.escape(why)):
        read_label(prediction, body)


@pytest.mark.parametrize("path", ["labels[0]", "$.labels[-1]", "$..labels", "$.labels[*]", "$[?(@.a)]", "$.a b"])
def test_paths_outside_the_subset_are_refused(path: str) -> None:
    assert not JSON_PATH.match(path)
    with pytest.raises(ValueError, match="is not a path"):
        read_label(JsonPath(path), IRIS_ANSWER)


def test_the_accepted_paths_include_the_readmes() -> None:
    for path in ("$", "$.labels[0]", "$.predictions[0].label", "$['class name'][2]"):
        assert JSON_PATH.match(path), path

