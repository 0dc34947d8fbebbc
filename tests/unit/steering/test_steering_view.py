"""`modeldeploy status`: the view of a rollout, from status values shaped as the engine writes them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console

from modeldeploy.api.conditions import format_time
from modeldeploy.api.rollout import (
    Aborted,
    AbortReason,
    MeasurementRecord,
    MeasurementVerdict,
    MetricState,
    Pause,
    PauseReason,
    RolloutState,
)
from modeldeploy.steering.view import build_view, plain_bar, render_plain, render_rich, view_to_dict

NOW = datetime(2026, 11, 26, 2, 10, 0, tzinfo=UTC)
STABLE = "7f3a9c01de" + "0" * 54
CANARY = "1b2c3d4e5f" + "0" * 54
SPEC = {
    "model": {"name": "iris", "serializedFile": {"uri": "pvc://models/iris/2/model.pt"},
              "handler": {"uri": "pvc://models/iris/handler.py"}},
    "rollout": {
        "steps": [{"weight": 25, "pause": "2m"}, {"weight": 50, "pause": "2m"}, {"weight": 100}],
        "analysis": {"interval": "30s", "failureLimit": 2, "consecutiveErrorLimit": 4, "minRequests": 20,
                     "metrics": [{"name": "error-rate", "provider": {"torchserve": {}}, "max": 0.01}]},
    },
}


def measurement(seconds_ago: int, verdict: MeasurementVerdict, value: float | None, requests: int | None,
                weight: int = 25) -> MeasurementRecord:
    return MeasurementRecord(at=NOW - timedelta(seconds=seconds_ago), verdict=verdict, value=value, requests=requests,
                             weight=weight, message="")


def obj(state: RolloutState, phase: str = "Progressing", message: str = "") -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "rollout": state.to_dict(), **state.summary()}
    if message:
        status["conditions"] = [{"type": "Progressing", "status": "True", "message": message}]
    return {"metadata": {"name": "iris", "namespace": "team", "uid": "u1"}, "spec": SPEC, "status": status}


RUNNING = RolloutState(
    stable_revision=STABLE, canary_revision=CANARY, step_index=1, step_started_at=NOW - timedelta(seconds=50),
    weight=50, effective_weight=40,
    metrics={"error-rate": MetricState(failed=1, consecutive_errors=2, inconclusive=3, successes_at_step=1,
                                       measurements=(measurement(90, MeasurementVerdict.SUCCESSFUL, 0.0, 120),
                                                     measurement(60, MeasurementVerdict.FAILED, 0.2, 50),
                                                     measurement(30, MeasurementVerdict.ERROR, None, None,
                                                                 weight=40)))},
)


def test_plain_view_shows_revisions_step_weight_pause_left_measurements_and_counters() -> None:
    events = [{"type": "Normal", "reason": "CanaryStep", "message": "revision 1b2c3d4e5f: step 2/3, weight 50 %",
               "lastTimestamp": format_time(NOW - timedelta(seconds=50))}]
    text = render_plain(build_view(obj(RUNNING, message="canary 1b2c3d4e5f at step 2/3"), events, NOW))
    lines = text.splitlines()
    assert lines[0] == "team/iris  phase Progressing: canary 1b2c3d4e5f at step 2/3"
    assert "revision  7f3a9c01de (stable) -> 1b2c3d4e5f (canary)" in lines
    assert "rollout   step 2/3" in lines
    assert f"weight    {plain_bar(50, 40)} asked 50 %  effective 40 %" in lines
    assert "pause     1m10s of 2m00s left" in lines
    assert ("metric    error-rate <= 0.01  failed 1/2  errors in a row 2/4  inconclusive 3  successes at step 1"
            "  minRequests 20") in lines
    assert "  2026-11-26T02:09:00Z  weight  25 %  value      0.2  requests     50  Failed" in lines
    assert "  2026-11-26T02:09:30Z  weight  40 %  value        -  requests      -  Error" in lines
    assert lines[-1] == "  2026-11-26T02:09:10Z  Normal  CanaryStep: revision 1b2c3d4e5f: step 2/3, weight 50 %"


def test_the_bar_fills_the_effective_weight_and_marks_the_weight_asked_for() -> None:
    assert plain_bar(50, 40, width=10) == "[####+.....]"
    assert plain_bar(0, 0, width=4) == "[....]"
    assert plain_bar(100, 100, width=4) == "[####]"


def test_a_user_pause_says_who_paused_since_when_and_for_how_long() -> None:
    paused = RolloutState(stable_revision=STABLE, canary_revision=CANARY, step_index=0, weight=25,
                          effective_weight=25, step_started_at=NOW - timedelta(minutes=5),
                          pause=Pause(PauseReason.USER, NOW - timedelta(seconds=75)))
    text = render_plain(build_view(obj(paused, phase="Paused"), [], NOW))
    assert "pause     paused by a user since 2026-11-26T02:08:45Z (1m15s)" in text.splitlines()


def test_a_step_without_pause_says_it_waits_for_promote() -> None:
    waiting = RolloutState(stable_revision=STABLE, canary_revision=CANARY, step_index=1, weight=50,
                           effective_weight=50, pause=Pause(PauseReason.STEP, NOW - timedelta(seconds=5)))
    view = build_view(obj(waiting, phase="Paused"), [], NOW)
    assert view.pause == "waiting for a promote request since 2026-11-26T02:09:55Z (5s)"


def test_a_rollback_shows_the_aborted_revision_and_why() -> None:
    rolled_back = RolloutState(stable_revision=STABLE, aborted=Aborted(
        CANARY, AbortReason.METRICS_UNAVAILABLE, "error-rate: 5 provider errors in a row", NOW))
    view = build_view(obj(rolled_back, phase="RolledBack"), [], NOW)
    assert view.canary is None and view.step is None
    text = render_plain(view)
    assert "rollout   no canary" in text
    assert ("aborted   revision 1b2c3d4e5f rolled back at 2026-11-26T02:10:00Z (MetricsUnavailable): "
            "error-rate: 5 provider errors in a row") in text


def test_an_object_without_status_renders() -> None:
    text = render_plain(build_view({"metadata": {"name": "iris", "namespace": "team"}, "spec": SPEC}, [], NOW))
    assert text.splitlines()[0] == "team/iris  phase Unknown"


def test_json_has_the_same_facts_for_scripts() -> None:
    data = json.loads(json.dumps(view_to_dict(build_view(obj(RUNNING), [], NOW))))
    assert (data["canary"], data["step"], data["steps"], data["weight"], data["effective_weight"]) == (
        CANARY, 1, 3, 50, 40)
    assert [m["verdict"] for m in data["metrics"][0]["measurements"]] == ["Successful", "Failed", "Error"]


def test_the_terminal_view_has_the_same_facts() -> None:
    console = Console(record=True, width=140, color_system=None)
    console.print(render_rich(build_view(obj(RUNNING), [], NOW)))
    text = console.export_text()
    assert "7f3a9c01de (stable) -> 1b2c3d4e5f (canary)" in text
    assert "step 2/3" in text and "asked 50 %  effective 40 %" in text
    assert "█" * 16 + "▒" * 4 in text
    assert "error-rate <= 0.01" in text and "failed 1/2" in text
    assert "Failed" in text and "0.2" in text and "120" in text


def test_the_view_says_when_the_status_last_changed_so_a_stalled_rollout_shows() -> None:
    body = obj(RUNNING)
    body["status"]["lastProgressTime"] = format_time(NOW - timedelta(seconds=125))
    view = build_view(body, [], NOW)
    assert "changed   2026-11-26T02:07:55Z (2m05s ago)" in render_plain(view)
    console = Console(record=True, width=140, color_system=None)
    console.print(render_rich(view))
    assert "(2m05s ago)" in console.export_text()
    assert view_to_dict(view)["last_progress"] == "2026-11-26T02:07:55Z (2m05s ago)"
    assert build_view(obj(RUNNING), [], NOW).last_progress is None


GATED_SPEC = {**SPEC, "rollout": {
    "steps": [{"weight": 0}, {"weight": 50, "pause": "2m"}, {"weight": 100}],
    "analysis": {"interval": "30s", "metrics": [{"name": "quality", "min": 0.9, "provider": {"goldenSet": {
        "source": {"uri": "pvc://models/iris/golden.jsonl"}}}}]}}}


def test_a_canary_at_the_gate_shows_gate_not_a_weight_and_the_latest_verdict_with_stables_value() -> None:
    verdict = ("quality = 0.651 over 1000 examples (95 % interval 0.62..0.68), stable 0.973, below min 0.9; "
               "versicolor 210/333 right (123 as virginica)")
    state = RolloutState(stable_revision=STABLE, canary_revision=CANARY, step_index=0,
                         step_started_at=NOW - timedelta(seconds=20), weight=0, effective_weight=0,
                         metrics={"quality": MetricState(failed=1, measurements=(MeasurementRecord(
                             at=NOW, verdict=MeasurementVerdict.FAILED, value=0.651, requests=1000, weight=0,
                             message=verdict),))})
    body = {**obj(state), "spec": GATED_SPEC}

    text = render_plain(build_view(body, [], NOW))

    assert "rollout   gate (step 1/3): no user traffic, judged by golden sets" in text
    assert "weight    gate: the canary's pods are behind no Service" in text
    assert f"  latest: {verdict}" in text
    assert build_view(body, [], NOW).gate and not build_view(obj(RUNNING), [], NOW).gate
