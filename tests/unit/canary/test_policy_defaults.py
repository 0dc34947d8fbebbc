"""A policy built without a spec has the spec's own analysis and rollout defaults."""

from __future__ import annotations

import dataclasses

from modeldeploy.api.spec import parse_spec
from modeldeploy.canary.inputs import Policy
from modeldeploy.routers import ReplicasRouter

MINIMAL = {"model": {"name": "iris", "serializedFile": {"uri": "pvc://models/iris/1/model.pt"},
                     "handler": {"uri": "pvc://models/iris/handler.py"}}}


def test_a_policy_without_a_spec_defaults_like_a_spec_that_sets_nothing() -> None:
    router = ReplicasRouter()
    from_spec = Policy.from_spec(parse_spec(MINIMAL), "0123456789", router)
    bare = Policy(revision="0123456789", replicas=from_spec.replicas, steps=from_spec.steps,
                  metrics=from_spec.metrics, router=router)
    assert dataclasses.asdict(bare) == dataclasses.asdict(from_spec)
