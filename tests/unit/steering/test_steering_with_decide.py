"""The commands' requests go through the canary's own rules (`decide`) and their answers say what happened.

Each test plans a command on an object, writes its annotation, runs one round of `decide` on it as the
engine would (status.rollout, phase and Events from the decision), and reads the answer back with
`outcome`: the pure path from a person's command to the rollout and back, without a cluster.
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from typing import Any

from modeldeploy.api.conditions import format_time
from modeldeploy.api.spec import RolloutStep
from modeldeploy.canary import Observations, Policy, RoleStatus, RolloutState, decide
from modeldeploy.canary.requests import REQUEST_ANNOTATION, Action, ManualRequest, request_from_annotations
from modeldeploy.steering.plan import Outcome, Refusal, is_handled, outcome, plan_request
from unit.canary.builders import T0
from unit.canary.builders import policy as canary_policy

STABLE, CANARY, NEWER = "7f3a9c01de", "1b2c3d4e5f", "abcdef0123"
STEPS = (RolloutStep(25, timedelta(minutes=10)), RolloutStep(50), RolloutStep(100))


def policy(revision: str = CANARY) -> Policy:
    return canary_policy(revision, STEPS, metrics=())


def world(canary: str | None = CANARY, canary_ready: int = 1) -> Observations:
    return Observations(stable=RoleStatus(revision=STABLE, replicas=4 - canary_ready, ready=4 - canary_ready),
                        canary=RoleStatus(revision=canary, replicas=canary_ready, ready=canary_ready))


class Engine:
    """One object as the engine keeps it: status.rollout, phase, a condition, and the Events posted."""

    def __init__(self) -> None:
        self.body: dict[str, Any] = {"metadata": {"name": "iris", "namespace": "team", "annotations": {}},
                                     "spec": {"rollout": {"steps": [{"weight": 25, "pause": "10m"}, {"weight": 50},
                                                                    {"weight": 100}]}},
                                     "status": {}}
        self.events: list[dict[str, Any]] = []

    def round(self, now: datetime, spec_revision: str = CANARY, observations: Observations | None = None) -> None:
        state = RolloutState.from_dict(self.body["status"].get("rollout"))
        seen = observations or world()
        request = request_from_annotations(self.body["metadata"]["annotations"])
        decision = decide(policy(spec_revision), state,
                          Observations(seen.stable, seen.canary, (), request), now)
        self.body["status"] = {"phase": decision.phase.value, "revision": spec_revision,
                               "rollout": decision.state.to_dict(), **decision.state.summary(),
                               "conditions": [{"type": "Progressing", "status": "True", "message": decision.message}]}
        self.events += [{"type": e.type, "reason": e.reason, "message": e.message, "lastTimestamp": format_time(now)}
                        for e in decision.events]

    def command(self, action: Action, now: datetime, full: bool = False) -> ManualRequest | Refusal:
        planned = plan_request(copy.deepcopy(self.body), action, now=now, full=full, by="alice")
        if isinstance(planned, ManualRequest):
            self.body["metadata"]["annotations"][REQUEST_ANNOTATION] = planned.to_annotation()
        return planned

    def answer(self, request: ManualRequest) -> Outcome:
        assert is_handled(self.body, request)
        return outcome(self.body, request, self.events)


def running_canary() -> Engine:
    engine = Engine()
    engine.round(T0 - timedelta(minutes=2), spec_revision=STABLE, observations=world(canary=None, canary_ready=0))
    engine.round(T0 - timedelta(minutes=1))  # the spec names CANARY: step 1 at 25 %
    assert engine.body["status"]["rollout"]["canaryRevision"] == CANARY
    return engine


def test_promote_ends_the_step_and_says_so() -> None:
    engine = running_canary()
    request = engine.command(Action.PROMOTE, T0)
    assert isinstance(request, ManualRequest)
    engine.round(T0 + timedelta(seconds=1))
    answer = engine.answer(request)
    assert answer.changed
    assert "Normal CanaryStep: revision 1b2c3d4e5f: step 2/3, weight 50 %" in answer.lines
    assert engine.body["status"]["rollout"]["stepIndex"] == 1


def test_promote_full_skips_to_the_promotion() -> None:
    engine = running_canary()
    request = engine.command(Action.PROMOTE, T0, full=True)
    assert isinstance(request, ManualRequest)
    engine.round(T0 + timedelta(seconds=1))
    answer = engine.answer(request)
    assert any(line.startswith("Normal Promoting:") and "promote --full requested by alice" in line
               for line in answer.lines)


def test_pause_then_resume_and_a_second_pause_is_refused_while_paused() -> None:
    engine = running_canary()
    pause = engine.command(Action.PAUSE, T0)
    assert isinstance(pause, ManualRequest)
    engine.round(T0 + timedelta(seconds=1))
    assert "Normal Paused: revision 1b2c3d4e5f paused by alice" in engine.answer(pause).lines
    assert engine.body["status"]["phase"] == "Paused"
    assert isinstance(engine.command(Action.PAUSE, T0 + timedelta(seconds=2)), Refusal)

    resume = engine.command(Action.RESUME, T0 + timedelta(seconds=3))
    assert isinstance(resume, ManualRequest)
    engine.round(T0 + timedelta(seconds=4))
    assert "Normal Resumed: revision 1b2c3d4e5f resumed by alice" in engine.answer(resume).lines


def test_abort_rolls_back_naming_who_asked_and_retry_starts_it_again() -> None:
    engine = running_canary()
    abort = engine.command(Action.ABORT, T0)
    assert isinstance(abort, ManualRequest)
    engine.round(T0 + timedelta(seconds=1))
    answer = engine.answer(abort)
    assert any(line.startswith("Warning Aborted:") and "abort requested by alice" in line for line in answer.lines)
    assert engine.body["status"]["rollout"]["aborted"]["reason"] == "Aborted"

    retry = engine.command(Action.RETRY, T0 + timedelta(seconds=5))
    assert isinstance(retry, ManualRequest) and retry.revision == CANARY
    engine.round(T0 + timedelta(seconds=6), observations=world(canary_ready=0))
    answer = engine.answer(retry)
    assert any(line.startswith("Normal CanaryStarted:") and "retry requested by alice" in line
               for line in answer.lines)
    assert engine.body["status"]["rollout"]["stepIndex"] == 0


def test_a_stale_promote_aimed_at_an_older_revision_does_nothing_and_says_so() -> None:
    engine = running_canary()
    stale = engine.command(Action.PROMOTE, T0)
    assert isinstance(stale, ManualRequest) and stale.revision == CANARY
    # Before the engine reads it, the spec moves on to a newer revision: a new canary starts at step 1.
    engine.round(T0 + timedelta(seconds=1), spec_revision=NEWER, observations=world(canary=CANARY))
    rollout = engine.body["status"]["rollout"]
    assert (rollout["canaryRevision"], rollout["stepIndex"]) == (NEWER, 0)
    answer = engine.answer(stale)
    assert not answer.changed
    assert any(line.startswith("Normal RequestIgnored: promote for revision 1b2c3d4e5f ignored")
               for line in answer.lines)
