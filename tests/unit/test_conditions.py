"""Status as a pure function: kstatus conditions, stable timestamps, minimal patches, Events on transitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from modeldeploy.conditions import (
    ConditionState,
    ConditionType,
    Phase,
    Reason,
    Verdict,
    desired_status,
    find_condition,
    format_time,
    merge_conditions,
    status_patch,
    transition_events,
)

T0 = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)

BUILDING = Verdict.of(Phase.PENDING, Reason.ARCHIVE_BUILDING, "building the archive", progressing=True)
MISSING = Verdict.of(Phase.PENDING, Reason.REFERENCE_NOT_FOUND, 'PersistentVolumeClaim "models" not found',
                     degraded=True)


def test_a_first_status_carries_all_four_conditions_with_generation_and_time() -> None:
    status = desired_status({}, BUILDING, generation=3, now=T0, fields={"revision": "abc1234567"})

    assert status["observedGeneration"] == 3
    assert status["phase"] == "Pending"
    assert status["revision"] == "abc1234567"
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Ready": "False", "Progressing": "True", "Degraded": "False", "ArchiveReady": "False"}
    for condition in status["conditions"]:
        assert condition["reason"] == "ArchiveBuilding"
        assert condition["lastTransitionTime"] == "2026-01-02T03:04:05Z"
        assert condition["observedGeneration"] == 3


def test_last_transition_time_stays_while_the_status_does_not_flip() -> None:
    first = desired_status({}, BUILDING, generation=1, now=T0)
    again = desired_status(first, Verdict.of(Phase.PENDING, Reason.ARCHIVE_BUILDING, "still building",
                                             progressing=True), generation=2, now=T1)

    ready = find_condition(again, ConditionType.READY)
    assert ready is not None
    assert ready["lastTransitionTime"] == format_time(T0)
    assert ready["message"] == "still building"
    assert ready["observedGeneration"] == 2


def test_last_transition_time_moves_only_for_the_conditions_that_flip() -> None:
    first = desired_status({}, BUILDING, generation=1, now=T0)
    flipped = desired_status(first, MISSING, generation=1, now=T1)

    times = {c["type"]: c["lastTransitionTime"] for c in flipped["conditions"]}
    assert times == {
        "Ready": format_time(T0),         # False -> False
        "Progressing": format_time(T1),   # True -> False
        "Degraded": format_time(T1),      # False -> True
        "ArchiveReady": format_time(T0),  # False -> False
    }


def test_conditions_owned_by_others_are_kept_in_place() -> None:
    foreign = {"type": "example.com/Audited", "status": "True", "reason": "Checked", "message": "",
               "lastTransitionTime": "2025-12-31T00:00:00Z"}
    first = desired_status({}, BUILDING, generation=1, now=T0)
    current = {**first, "conditions": [foreign, *first["conditions"]]}

    merged = merge_conditions(current["conditions"], MISSING.conditions, 1, T1)

    assert merged[0] == foreign
    assert [c["type"] for c in merged] == ["example.com/Audited", "Ready", "Progressing", "Degraded",
                                           "ArchiveReady"]


def test_a_settled_status_needs_no_patch() -> None:
    current = desired_status({}, BUILDING, generation=4, now=T0, fields={"revision": "abc1234567"})

    desired = desired_status(current, BUILDING, generation=4, now=T1, fields={"revision": "abc1234567"})

    assert status_patch(current, desired) is None


def test_a_patch_holds_only_the_fields_that_differ() -> None:
    current = desired_status({}, BUILDING, generation=4, now=T0, fields={"revision": "abc1234567"})

    desired = desired_status(current, BUILDING, generation=5, now=T1, fields={"revision": "def7654321"})
    patch = status_patch(current, desired)

    assert patch is not None
    assert set(patch) == {"observedGeneration", "conditions", "revision"}
    assert patch["revision"] == "def7654321"


def test_a_field_set_to_none_is_removed_only_if_present() -> None:
    current = {"phase": "Progressing", "canaryRevision": "abc1234567"}

    assert status_patch(current, {"phase": "Progressing", "canaryRevision": None}) == {"canaryRevision": None}
    assert status_patch({"phase": "Healthy"}, {"phase": "Healthy", "canaryRevision": None}) is None


def test_verdict_overrides_replace_single_conditions() -> None:
    verdict = Verdict.of(Phase.DEPLOYING, "Deploying", "pods starting", progressing=True, overrides=[
        ConditionState(ConditionType.ARCHIVE_READY, True, "ArchiveBuilt", "archive sha256 0123")])

    archive = verdict.condition(ConditionType.ARCHIVE_READY)
    assert archive is not None and (archive.status_text, archive.reason) == ("True", "ArchiveBuilt")
    ready = verdict.condition(ConditionType.READY)
    assert ready is not None and (ready.status_text, ready.reason) == ("False", "Deploying")


def test_unknown_status_is_written_as_unknown() -> None:
    assert ConditionState(ConditionType.ARCHIVE_READY, None, "Checking", "").status_text == "Unknown"


def test_events_are_posted_for_a_new_revision_and_a_phase_change_only() -> None:
    first = desired_status({}, BUILDING, generation=1, now=T0, fields={"revision": "abc1234567"})

    events = transition_events({}, first)

    assert [(e.type, e.reason) for e in events] == [("Normal", "NewRevision"), ("Normal", "ArchiveBuilding")]
    assert transition_events(first, desired_status(first, BUILDING, generation=1, now=T1,
                                                   fields={"revision": "abc1234567"})) == []


def test_a_degrading_transition_is_a_warning_naming_the_reason() -> None:
    first = desired_status({}, BUILDING, generation=1, now=T0)
    degraded = desired_status(first, MISSING, generation=1, now=T1)

    [event] = transition_events(first, degraded)

    assert (event.type, event.reason) == ("Warning", "ReferenceNotFound")
    assert 'PersistentVolumeClaim "models" not found' in event.message


def test_a_new_revision_event_names_the_one_it_replaces() -> None:
    events = transition_events({"revision": "aaaaaaaaaa", "phase": "Healthy"},
                               {"revision": "bbbbbbbbbb", "phase": "Healthy"})

    assert [(e.reason, e.message) for e in events] == [
        ("NewRevision", "Spec revision bbbbbbbbbb, replacing aaaaaaaaaa")]
