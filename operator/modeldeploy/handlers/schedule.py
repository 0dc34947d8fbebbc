"""When the resync daemon of one ModelDeployment reconciles it next.

Three things ask for a reconcile: a change seen by a watch (one of the object's Jobs or Deployments),
a step that asked to look again after some seconds (`requeue_after`), and the resync period. A change
is acted on soon (after a short settle, so a burst of child events makes one reconcile); a requeue at its
time, not before; the resync when neither came for a whole period. A reconcile run elsewhere (a spec
change's handler) re-plans the schedule with its own `requeue_after`.

Nothing is lost between the daemon's checks and its wait: the flags are read after the wake-up event
is cleared, so a change or a new requeue arriving while the daemon reconciles makes the next wait
return at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
from collections.abc import Callable


class Why(enum.StrEnum):
    """What made the daemon reconcile."""

    CHANGE = "change"
    REQUEUE = "requeue"
    RESYNC = "resync"


@dataclasses.dataclass(frozen=True)
class Plan:
    """What to do now: reconcile (and why), or wait at most `wait_seconds`."""

    why: Why | None
    wait_seconds: float = 0.0


def plan(now: float, *, changed: bool, due: float | None, last: float, resync_seconds: float) -> Plan:
    """The next step of the daemon at `now`: a change first, then a requeue that is due, then the resync."""
    if changed:
        return Plan(Why.CHANGE)
    if due is not None and now >= due:
        return Plan(Why.REQUEUE)
    resync_at = last + resync_seconds
    if now >= resync_at:
        return Plan(Why.RESYNC)
    return Plan(None, wait_seconds=min(resync_at, due if due is not None else resync_at) - now)


class Schedule:
    """The reconcile schedule of one object, shared by its daemon (`wait`) and its handlers."""

    def __init__(self, resync_seconds: float, *, settle_seconds: float = 0.5,
                 clock: Callable[[], float] | None = None) -> None:
        self.resync_seconds = resync_seconds
        self.settle_seconds = settle_seconds
        self._clock = clock or (lambda: asyncio.get_running_loop().time())
        self._wakeup = asyncio.Event()
        self._changed = False
        self._due: float | None = None
        self._last: float | None = None

    def changed(self) -> None:
        """A watch saw a change of the object's children: reconcile soon."""
        self._changed = True
        self._wakeup.set()

    def look_again(self, after_seconds: float | None) -> None:
        """A reconcile asked to look again after `after_seconds` (None: only on a change or the resync)."""
        self._due = None if after_seconds is None else self._clock() + max(after_seconds, 0.0)
        self._wakeup.set()

    async def wait(self) -> Why:
        """Until a reconcile is due; why it is."""
        if self._last is None:
            self._last = self._clock()
        while True:
            self._wakeup.clear()
            step = plan(self._clock(), changed=self._changed, due=self._due, last=self._last,
                        resync_seconds=self.resync_seconds)
            if step.why is Why.CHANGE:
                # Let a burst of changes settle into one reconcile; the reconcile reads the world after it.
                await asyncio.sleep(self.settle_seconds)
                self._changed = False
            if step.why is not None:
                self._due = None
                self._last = self._clock()
                return step.why
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=step.wait_seconds)
