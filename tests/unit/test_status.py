"""Status as a pure function: kstatus conditions, stable timestamps, typed fields, minimal patches, Events."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from modeldeploy.api.conditions import (
    ConditionState,
    ConditionType,
    Phase,
    Reason,
    ReconcileOutcome,
    format_time,
    merge_conditions,
)
from modeldeploy.api.rollout import RolloutState
from modeldeploy.api.status import (
    ArchiveStatus,
    RolloutStatus,
    StableTemplate,
    Status,
    desired_status,
    status_patch,
    transition_events,
)

T0 = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)

BUILDING = ReconcileOutcome.of(Phase.PENDING, Reason.ARCHIVE_BUILDING, "building the archive", progressing=True)
MISSING = ReconcileOutcome.of(Phase.PENDING, Reason.REFERENCE_NOT_FOUND, 'PersistentVolumeClaim "models" not found',
                              degraded=True)
ARCHIVE = ArchiveStatus(revision="abc1234567", build_key="abcdef012345", inputs_digest="d" * 64,
                        sha256="a" * 64, uri="pvc://model-store/x/iris.mar", format="zip-store", bytes=14694)


def with_revision(revision: str) -> Status:
    return Status(revision=revision)


def test_a_first_status_carries_every_condition_with_generation_and_time() -> None:
    status = desired_status(with_revision("abc1234567"), BUILDING, generation=3, now=T0).render()

    assert status["observedGeneration"] == 3
    assert status["phase"] == "Pending"
    assert status["revision"] == "abc1234567"
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Ready": "False", "Progressing": "True", "Degraded": "False", "ArchiveReady": "False", "Stalled": "False"}
    for condition in status["conditions"]:
        assert condition["reason"] == "ArchiveBuilding"
        assert condition["lastTransitionTime"] == "2026-01-02T03:04:05Z"
        assert condition["observedGeneration"] == 3


def test_last_transition_time_stays_while_the_status_does_not_flip() -> None:
    first = desired_status(Status(), BUILDING, generation=1, now=T0)
    again = desired_status(first, ReconcileOutcome.of(Phase.PENDING, Reason.ARCHIVE_BUILDING, "still building",
                                                      progressing=True), generation=2, now=T1)

    ready = again.condition(ConditionType.READY)
    assert ready is not None
    assert ready["lastTransitionTime"] == format_time(T0)
    assert ready["message"] == "still building"
    assert ready["observedGeneration"] == 2


def test_last_transition_time_moves_only_for_the_conditions_that_flip() -> None:
    first = desired_status(Status(), BUILDING, generation=1, now=T0)
    flipped = desired_status(first, MISSING, generation=1, now=T1)

    times = {c["type"]: c["lastTransitionTime"] for c in flipped.conditions}
    assert times == {
        "Ready": format_time(T0),         # False -> False
        "Progressing": format_time(T1),   # True -> False
        "Degraded": format_time(T1),      # False -> True
        "ArchiveReady": format_time(T0),  # False -> False
        "Stalled": format_time(T0),       # False -> False
    }


def test_stalled_is_true_only_where_the_operator_cannot_get_further_alone() -> None:
    for phase in Phase:
        verdict = ReconcileOutcome.of(phase, "Why", "message")
        stalled = verdict.condition(ConditionType.STALLED)
        assert stalled is not None
        assert stalled.status is (phase in {Phase.FAILED, Phase.ROLLED_BACK}), phase


def test_conditions_owned_by_others_are_kept_in_place() -> None:
    foreign = {"type": "example.com/Audited", "status": "True", "reason": "Checked", "message": "",
               "lastTransitionTime": "2025-12-31T00:00:00Z"}
    first = desired_status(Status(), BUILDING, generation=1, now=T0)

    merged = merge_conditions([foreign, *first.conditions], MISSING.conditions, 1, T1)

    assert merged[0] == foreign
    assert [c["type"] for c in merged] == ["example.com/Audited", "Ready", "Progressing", "Degraded",
                                           "ArchiveReady", "Stalled"]


def test_a_settled_status_needs_no_patch() -> None:
    current = desired_status(with_revision("abc1234567"), BUILDING, generation=4, now=T0).render()

    desired = desired_status(Status.parse(current), BUILDING, generation=4, now=T1)

    assert status_patch(current, desired.render()) is None


def test_a_patch_holds_only_the_fields_that_differ() -> None:
    current = desired_status(with_revision("abc1234567"), BUILDING, generation=4, now=T0).render()

    working = dataclasses.replace(Status.parse(current), revision="def7654321")
    patch = status_patch(current, desired_status(working, BUILDING, generation=5, now=T1).render())

    assert patch is not None
    assert set(patch) == {"observedGeneration", "conditions", "revision"}
    assert patch["revision"] == "def7654321"


def test_a_field_set_to_none_is_removed_only_if_present() -> None:
    current = {"phase": "Progressing", "canaryRevision": "abc1234567"}

    assert status_patch(current, {"phase": "Progressing", "canaryRevision": None}) == {"canaryRevision": None}
    assert status_patch({"phase": "Healthy"}, {"phase": "Healthy", "canaryRevision": None}) is None


def test_a_finished_canary_is_removed_from_the_written_status() -> None:
    current = {"phase": "Progressing", "stableRevision": "aaaaaaaaaa", "canaryRevision": "bbbbbbbbbb"}

    promoted = dataclasses.replace(Status.parse(current), stable_revision="bbbbbbbbbb", canary_revision=None)

    assert status_patch(current, promoted.render()) == {"stableRevision": "bbbbbbbbbb", "canaryRevision": None}


def test_a_status_survives_parse_and_render_unchanged() -> None:
    written = desired_status(
        Status(revision="abc1234567", stable_revision="abc1234567", canary_revision="0123456789",
               archive=ARCHIVE, rollout=RolloutStatus(current_step=1, canary_weight=20)),
        BUILDING, generation=2, now=T0).render()

    assert Status.parse(written).render() == written
    assert written["archive"]["buildKey"] == "abcdef012345"
    assert (written["currentStep"], written["canaryWeight"]) == (1, 20)


def test_the_stable_template_is_kept_beside_the_rollout_state_and_read_back_apart() -> None:
    spec = {"model": {"name": "iris"}, "serving": {"replicas": 2}, "rollout": {"steps": [{"weight": 100}]}}
    template = StableTemplate.of("abc1234567", spec, ARCHIVE)
    written = Status(rollout=RolloutStatus(state=RolloutState(), stable=template)).render()

    assert written["rollout"] == {"stepIndex": 0, "weight": 0, "effectiveWeight": 0, "metrics": {}, "stable": {
        "revision": "abc1234567", "spec": '{"model":{"name":"iris"},"serving":{"replicas":2}}',
        "archive": ARCHIVE.render()}}
    parsed = Status.parse(written).rollout
    assert parsed.stable == StableTemplate.of("abc1234567", spec, ARCHIVE) and parsed.state == RolloutState()
    assert RolloutStatus.parse({"rollout": {"stable": {"revision": "abc1234567"}}}).stable is None


def test_a_partial_archive_in_status_reads_as_no_archive() -> None:
    assert Status.parse({"archive": {"buildKey": "abcdef012345"}}).archive is None
    assert Status.parse({"phase": "Sideways"}).phase is None


def test_verdict_overrides_replace_single_conditions() -> None:
    verdict = ReconcileOutcome.of(Phase.DEPLOYING, "Deploying", "pods starting", progressing=True, overrides=[
        ConditionState(ConditionType.ARCHIVE_READY, True, "ArchiveBuilt", "archive sha256 0123")])

    archive = verdict.condition(ConditionType.ARCHIVE_READY)
    assert archive is not None and (archive.status_text, archive.reason) == ("True", "ArchiveBuilt")
    ready = verdict.condition(ConditionType.READY)
    assert ready is not None and (ready.status_text, ready.reason) == ("False", "Deploying")


def test_unknown_status_is_written_as_unknown() -> None:
    assert ConditionState(ConditionType.ARCHIVE_READY, None, "Checking", "").status_text == "Unknown"


def test_events_are_posted_for_a_new_revision_and_a_phase_change_only() -> None:
    first = desired_status(with_revision("abc1234567"), BUILDING, generation=1, now=T0)

    events = transition_events(Status(), first)

    assert [(e.type, e.reason) for e in events] == [("Normal", "NewRevision"), ("Normal", "ArchiveBuilding")]
    assert transition_events(first, desired_status(first, BUILDING, generation=1, now=T1)) == []


def test_a_degrading_transition_is_a_warning_naming_the_reason() -> None:
    first = desired_status(Status(), BUILDING, generation=1, now=T0)
    degraded = desired_status(first, MISSING, generation=1, now=T1)

    [event] = transition_events(first, degraded)

    assert (event.type, event.reason) == ("Warning", "ReferenceNotFound")
    assert 'PersistentVolumeClaim "models" not found' in event.message


def test_a_new_revision_event_names_the_one_it_replaces() -> None:
    events = transition_events(Status(revision="aaaaaaaaaa", phase=Phase.HEALTHY),
                               Status(revision="bbbbbbbbbb", phase=Phase.HEALTHY))

    assert [(e.reason, e.message) for e in events] == [
        ("NewRevision", "Spec revision bbbbbbbbbb, replacing aaaaaaaaaa")]


def test_a_key_gone_from_a_nested_status_object_is_removed_by_the_patch() -> None:
    current = {"rollout": {"stableRevision": "1111111111", "canaryRevision": "2222222222", "stepIndex": 1}}
    desired = {"rollout": {"stableRevision": "2222222222", "stepIndex": 0}}

    assert status_patch(current, desired) == {"rollout": {"stableRevision": "2222222222", "stepIndex": 0,
                                                          "canaryRevision": None}}
    assert status_patch(desired, desired) is None
