"""The node agent hands out pod addresses as the CNI host-local IPAM does: round the range, never
straight back to the address a pod has just given up."""

from __future__ import annotations

import pytest

from localcluster.network import Bridge


def test_addresses_follow_the_gateway_in_order() -> None:
    bridge = Bridge("lcbrT", "10.0.0.0/29")
    assert bridge.gateway == "10.0.0.1"
    assert [bridge.allocate() for _ in range(3)] == ["10.0.0.2", "10.0.0.3", "10.0.0.4"]


def test_a_freed_address_is_handed_out_again_only_once_the_range_came_round() -> None:
    bridge = Bridge("lcbrT", "10.0.0.0/29")  # hosts .2 to .6 for pods
    first = bridge.allocate()
    bridge.allocate()
    bridge.release(first)
    assert [bridge.allocate() for _ in range(3)] == ["10.0.0.4", "10.0.0.5", "10.0.0.6"]
    assert bridge.allocate() == first


def test_an_exhausted_range_says_so() -> None:
    bridge = Bridge("lcbrT", "10.0.0.0/30")  # one host address besides the gateway
    assert bridge.allocate() == "10.0.0.2"
    with pytest.raises(RuntimeError, match=r"no free pod address left in 10\.0\.0\.0/30"):
        bridge.allocate()
