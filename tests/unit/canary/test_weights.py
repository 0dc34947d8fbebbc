"""Replica counts for a weight: nearest ratio, a pod per role while a step is a canary, capacity kept."""

from __future__ import annotations

import itertools

import pytest

from modeldeploy.canary.weights import Split, desired_replicas, effective_weight, target_split


@pytest.mark.parametrize(
    ("weight", "replicas", "stable", "canary"),
    [
        (0, 4, 4, 0),
        (25, 4, 3, 1),
        (50, 4, 2, 2),
        (100, 4, 0, 4),
        (10, 10, 9, 1),     # Argo's example: 10 replicas at 10 % -> 1 canary, 9 stable
        (40, 3, 2, 1),      # nearest: 1/3 = 33 % (ceiling would give 2/3 = 67 %)
        (50, 3, 1, 2),      # halves round up
        (1, 10, 9, 1),      # any weight above 0 gets a canary pod
        (99, 10, 1, 9),     # any weight below 100 keeps a stable pod
        (25, 1, 1, 1),      # one replica: one extra pod, 50 %
        (100, 1, 0, 1),
    ],
)
def test_target_split_for_a_weight(weight: int, replicas: int, stable: int, canary: int) -> None:
    assert target_split(weight, replicas) == Split(stable=stable, canary=canary)


@pytest.mark.parametrize(("stable", "canary", "weight"), [(3, 1, 25), (0, 0, 0), (2, 1, 33), (1, 2, 67), (0, 3, 100)])
def test_effective_weight_is_the_share_of_ready_pods(stable: int, canary: int, weight: int) -> None:
    assert effective_weight(stable, canary) == weight


@pytest.mark.parametrize(
    ("target", "current", "ready", "desired"),
    [
        # a step begins: the canary surges, stable waits for it
        (Split(3, 1), Split(4, 0), Split(4, 0), Split(4, 1)),
        # the canary pod is ready: stable gives one up
        (Split(3, 1), Split(4, 1), Split(4, 1), Split(3, 1)),
        # rollback: stable back to full first, the canary stays until stable is ready
        (Split(4, 0), Split(2, 2), Split(2, 2), Split(4, 2)),
        (Split(4, 0), Split(4, 2), Split(3, 2), Split(4, 1)),
        (Split(4, 0), Split(4, 2), Split(4, 2), Split(4, 0)),
        # a broken stable pod is never compensated by shrinking the canary
        (Split(2, 2), Split(2, 2), Split(1, 2), Split(2, 2)),
    ],
)
def test_desired_replicas_keep_capacity(target: Split, current: Split, ready: Split, desired: Split) -> None:
    assert desired_replicas(target, current, ready, 4) == desired


def test_no_path_between_any_two_weights_drops_below_replicas_ready_or_exceeds_twice() -> None:
    replicas = 4
    for start, end in itertools.permutations([0, 25, 50, 75, 100], 2):
        current = target_split(start, replicas)
        ready = current
        for _ in range(10):  # pods start and stop one reconcile later
            desired = desired_replicas(target_split(end, replicas), current, ready, replicas)
            assert desired.stable + desired.canary <= 2 * replicas
            # pods removed go first among the unready, pods added become ready later
            ready = Split(min(ready.stable, desired.stable), min(ready.canary, desired.canary))
            assert ready.stable + ready.canary >= replicas, (start, end, current, desired)
            current, ready = desired, desired
        assert current == target_split(end, replicas)
