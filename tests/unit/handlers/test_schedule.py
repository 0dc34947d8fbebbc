"""The resync daemon's schedule: a change acted on at once, a requeue at its time, the resync otherwise,
and nothing lost between the daemon's checks and its wait."""

from __future__ import annotations

import asyncio

from modeldeploy.handlers.schedule import Plan, Schedule, Why, plan


def test_a_change_comes_before_a_requeue_and_the_resync() -> None:
    assert plan(100.0, changed=True, due=90.0, last=0.0, resync_seconds=60) == Plan(Why.CHANGE)


def test_a_requeue_is_honoured_at_its_time_not_before() -> None:
    assert plan(100.0, changed=False, due=105.0, last=99.0, resync_seconds=60) == Plan(None, wait_seconds=5.0)
    assert plan(105.0, changed=False, due=105.0, last=99.0, resync_seconds=60) == Plan(Why.REQUEUE)


def test_without_a_change_or_a_requeue_the_object_is_resynced_a_period_after_the_last_reconcile() -> None:
    assert plan(100.0, changed=False, due=None, last=70.0, resync_seconds=60) == Plan(None, wait_seconds=30.0)
    assert plan(130.0, changed=False, due=None, last=70.0, resync_seconds=60) == Plan(Why.RESYNC)
    # A requeue later than the resync waits for the resync only.
    assert plan(100.0, changed=False, due=500.0, last=70.0, resync_seconds=60) == Plan(None, wait_seconds=30.0)


def waited(schedule: Schedule) -> Why:
    """`schedule.wait()`, bounded: a lost wake-up fails the test instead of hanging it."""
    async def bounded() -> Why:
        return await asyncio.wait_for(schedule.wait(), timeout=10)
    return asyncio.run(bounded())


def test_a_change_seen_while_the_daemon_reconciles_is_not_lost() -> None:
    """The daemon reconciles; meanwhile a child changes. The next wait returns at once (after the
    settle), even with an hour of resync and a requeue far away."""
    async def scenario() -> list[Why]:
        schedule = Schedule(3600, settle_seconds=0.0)
        schedule.changed()
        first = await asyncio.wait_for(schedule.wait(), timeout=10)
        # ... the reconcile runs: it asks to look again in an hour, and a child changes before it ends.
        schedule.look_again(3600)
        schedule.changed()
        second = await asyncio.wait_for(schedule.wait(), timeout=10)
        return [first, second]

    assert asyncio.run(scenario()) == [Why.CHANGE, Why.CHANGE]


def test_a_shorter_requeue_from_another_handler_replans_a_waiting_daemon() -> None:
    """A spec change's handler reconciled and asks to look again soon: the daemon, waiting for its hour
    of resync, wakes at the new time."""
    async def scenario() -> Why:
        schedule = Schedule(3600, settle_seconds=0.0)
        daemon = asyncio.create_task(schedule.wait())
        pending = (await asyncio.wait([daemon], timeout=0.01))[1]
        assert pending, "the daemon waits for its resync"
        schedule.look_again(0.05)
        return await asyncio.wait_for(daemon, timeout=10)

    assert asyncio.run(scenario()) is Why.REQUEUE


def test_a_requeue_does_not_make_the_daemon_reconcile_before_its_time() -> None:
    """A reconcile that asks to look again in 5 s is not followed by another at once (each reconcile
    reads the whole object and its children: looking again early costs API calls, not freshness)."""
    now = [0.0]
    schedule = Schedule(60, settle_seconds=0.0, clock=lambda: now[0])

    async def scenario() -> tuple[bool, Why]:
        schedule.look_again(5)
        early = asyncio.create_task(schedule.wait())
        done_early = bool((await asyncio.wait([early], timeout=0.05))[0])
        now[0] = 5.0
        schedule.look_again(0)  # wakes the wait to look at the clock again
        return done_early, await asyncio.wait_for(early, timeout=10)

    assert asyncio.run(scenario()) == (False, Why.REQUEUE)
