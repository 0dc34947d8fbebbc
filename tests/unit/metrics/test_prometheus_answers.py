"""Reading a Prometheus answer: exactly one finite sample is a value; anything else never passes."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from modeldeploy.api.placeholders import fill_query
from modeldeploy.metrics.base import ProviderError
from modeldeploy.metrics.prometheus import promql_duration, sample_from_response


def vector(*values: str) -> dict[str, object]:
    return {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"pod": f"p{i}"}, "value": [1764122400.0, value]} for i, value in enumerate(values)]}}


def test_one_sample_and_a_scalar_are_values() -> None:
    assert sample_from_response(vector("0.25")).value == 0.25
    scalar = {"status": "success", "data": {"resultType": "scalar", "result": [1764122400.0, "3"]}}
    assert sample_from_response(scalar).value == 3.0


@pytest.mark.parametrize("text", ["NaN", "+Inf", "-Inf"])
def test_nan_and_infinities_come_back_as_such_for_an_inconclusive_verdict(text: str) -> None:
    value = sample_from_response(vector(text)).value
    assert value is not None and not math.isfinite(value)


def test_an_empty_vector_has_no_value() -> None:
    assert sample_from_response(vector()).value is None


@pytest.mark.parametrize(("answer", "says"), [
    (vector("1", "2", "3", "4"), "4 samples"),
    ({"status": "success", "data": {"resultType": "matrix", "result": []}}, "matrix"),
    ({"status": "success", "data": {"resultType": "string", "result": [0, "x"]}}, "string"),
    ({"status": "error", "errorType": "bad_data", "error": "parse error"}, "bad_data"),
    (vector("fast"), "not a number"),
    ([], "not a JSON object"),
])
def test_anything_else_is_an_error_that_says_what(answer: object, says: str) -> None:
    with pytest.raises(ProviderError, match=says):
        sample_from_response(answer)


def test_placeholders_are_filled_with_or_without_spaces_and_unknown_ones_left_alone() -> None:
    values = {"namespace": "team", "name": "iris", "revision": "1b2c3d4e5f", "role": "canary", "interval": "30s"}
    query = ('rate(x{namespace="{{namespace}}",d="{{ name }}",rev="{{revision}}",role="{{role}}"}'
             '[{{interval}}]) {{other}}')
    assert fill_query(query, values) == (
        'rate(x{namespace="team",d="iris",rev="1b2c3d4e5f",role="canary"}[30s]) {{other}}')


def test_the_interval_is_whole_seconds() -> None:
    assert promql_duration(timedelta(seconds=29.6)) == "30s"
    assert promql_duration(timedelta(0)) == "1s"
