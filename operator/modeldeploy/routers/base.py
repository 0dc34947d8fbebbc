"""The traffic router protocol (defined beside the rules that call it, in modeldeploy.canary)."""

from __future__ import annotations

from modeldeploy.canary.traffic import TrafficRouter
from modeldeploy.canary.weights import Split

RoleCounts = Split
"""Pods per role (stable, canary)."""

__all__ = ["RoleCounts", "TrafficRouter"]
