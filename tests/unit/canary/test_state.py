"""The rollout state round-trips through status.rollout; manual requests parse from their annotation."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import pytest

from modeldeploy.api.conditions import format_time
from modeldeploy.api.rollout import (
    Aborted,
    AbortReason,
    HandledRequest,
    MeasurementRecord,
    MeasurementVerdict,
    MetricState,
    Pause,
    PauseReason,
    RolloutState,
    parse_time,
)
from modeldeploy.canary.requests import (
    REQUEST_ANNOTATION,
    Action,
    ManualRequest,
    RequestError,
    parse_request,
    request_from_annotations,
)
from unit.canary.builders import T0


def test_a_full_state_round_trips_through_camel_case_json() -> None:
    state = RolloutState(
        stable_revision="7f3a9c01de", canary_revision="1b2c3d4e5f", step_index=1, step_started_at=T0,
        weight=50, effective_weight=50, weight_since=T0, unready_since=None, ready_since=T0,
        pause=Pause(PauseReason.USER, T0),
        metrics={"error-rate": MetricState(
            failed=1, inconclusive=2, consecutive_errors=0, successes_at_step=1, last_at=T0,
            measurements=(MeasurementRecord(T0, MeasurementVerdict.FAILED, 0.3, 100, 25, "error-rate = 0.3"),
                          MeasurementRecord(T0, MeasurementVerdict.INCONCLUSIVE, math.nan, 0, 25)))},
        aborted=Aborted("0a0a0a0a0a", AbortReason.ANALYSIS_FAILED, "error-rate = 0.3", T0),
        last_request=HandledRequest("pause", "1b2c3d4e5f", "2026-11-26T02:00:00Z"),
    )
    stored = json.loads(json.dumps(state.to_dict()))
    assert stored["canaryRevision"] == "1b2c3d4e5f"
    assert stored["stepStartedAt"] == "2026-11-26T02:00:00Z"
    assert stored["pause"] == {"reason": "user", "since": "2026-11-26T02:00:00Z"}
    assert stored["metrics"]["error-rate"]["consecutiveErrors"] == 0
    assert "value" not in stored["metrics"]["error-rate"]["measurements"][1]   # NaN is not JSON
    again = RolloutState.from_dict(stored)
    assert again.to_dict() == state.to_dict()


def test_an_empty_status_is_a_fresh_state() -> None:
    assert RolloutState.from_dict(None) == RolloutState()
    assert RolloutState.from_dict({}) == RolloutState()


def test_times_are_stored_to_the_second_in_utc() -> None:
    assert format_time(datetime(2026, 1, 1, 12, 0, 0, 999999, tzinfo=UTC)) == "2026-01-01T12:00:00Z"
    assert parse_time("2026-01-01T13:00:00+01:00") == datetime(2026, 1, 1, 12, tzinfo=UTC)


def test_a_request_round_trips_through_its_annotation() -> None:
    request = ManualRequest(Action.PROMOTE, "1b2c3d4e5f", "2026-11-26T02:00:00Z", full=True, by="alice")
    assert request_from_annotations({REQUEST_ANNOTATION: request.to_annotation()}) == request
    assert request_from_annotations({"other": "x"}) is None


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("not json", "not JSON"),
        ('["promote"]', "JSON object"),
        ('{"action": "deploy", "revision": "r", "at": "2026-11-26T02:00:00Z"}', "must be one of"),
        ('{"action": "promote", "at": "2026-11-26T02:00:00Z"}', "revision must name"),
        ('{"action": "promote", "revision": "r", "at": "yesterday"}', "not an RFC 3339 time"),
        ('{"action": "promote", "revision": "r", "at": "2026-11-26T02:00:00Z", "full": "yes"}', "full must be"),
    ],
)
def test_a_malformed_request_is_refused_with_the_reason(text: str, complaint: str) -> None:
    with pytest.raises(RequestError, match=complaint):
        parse_request(text)


def test_the_summary_fills_the_status_fields_the_crd_already_has() -> None:
    state = RolloutState(
        stable_revision="7f3a9c01de", canary_revision="1b2c3d4e5f", step_index=1, effective_weight=50,
        metrics={"error-rate": MetricState(failed=1, consecutive_errors=2, inconclusive=3,
                                           measurements=(MeasurementRecord(T0, MeasurementVerdict.FAILED, 0.3,
                                                                           100, 25),))},
    )
    summary = state.summary()
    assert (summary["stableRevision"], summary["canaryRevision"], summary["currentStep"], summary["canaryWeight"]) \
        == ("7f3a9c01de", "1b2c3d4e5f", 1, 50)
    assert summary["analysis"] == {
        "failedChecks": 1, "consecutiveErrors": 2, "inconclusive": 3,
        "measurements": [{"metric": "error-rate", "phase": "Failed", "at": "2026-11-26T02:00:00Z", "value": 0.3,
                          "requests": 100}],
    }
