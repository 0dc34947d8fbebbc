"""`modeldeploy status NAME [-w]` (also `kubectl modeldeploy status NAME -w`): where a rollout stands.

One line per change: phase, revisions, step and weights, the last analysis verdicts, and the Ready
message, the way `kubectl argo rollouts get rollout` summarises a Rollout.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from modeldeploy.k8s import KubeApi, context_namespace


def register(subparsers: Any) -> None:
    """Add the `status` sub-command to the `modeldeploy` command line."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "status", help="show where a ModelDeployment's rollout stands",
        description="Show a ModelDeployment's phase, revisions, canary step and weight, and last analysis.")
    parser.add_argument("name", help="the ModelDeployment")
    parser.add_argument("-n", "--namespace", default=None, help="its namespace (default: the context's)")
    parser.add_argument("-w", "--watch", action="store_true", help="keep printing a line at each change")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between reads with --watch")
    parser.set_defaults(func=run_status)


def describe(obj: Mapping[str, Any]) -> str:
    """One line about a ModelDeployment's status."""
    status = obj.get("status") or {}
    rollout = status.get("rollout") or {}
    parts = [f"phase={status.get('phase') or 'Unknown'}"]
    stable = rollout.get("stableRevision") or status.get("stableRevision")
    canary = rollout.get("canaryRevision") or status.get("canaryRevision")
    if stable:
        parts.append(f"stable={str(stable)[:12]}")
    if canary:
        parts.append(f"canary={str(canary)[:12]}")
        step = rollout.get("stepIndex", status.get("currentStep"))
        parts.append(f"step={step}")
        weight = rollout.get("weight")
        effective = rollout.get("effectiveWeight", status.get("canaryWeight"))
        parts.append(f"weight={weight if weight is not None else effective}% (effective {effective}%)")
    verdicts = []
    for metric, state in sorted((rollout.get("metrics") or {}).items()):
        measurements = state.get("measurements") or [] if isinstance(state, Mapping) else []
        if measurements:
            last = measurements[-1]
            shown = f"{metric}={last.get('verdict')}"
            if last.get("value") is not None:
                shown += f"({last['value']:g})"
            verdicts.append(shown)
    if verdicts:
        parts.append("analysis: " + ", ".join(verdicts))
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    if ready and ready.get("message"):
        parts.append(f"— {ready['message']}")
    return " ".join(parts)


async def _show(namespace: str, name: str, watch: bool, interval: float, out: TextIO) -> int:
    api = await asyncio.to_thread(KubeApi.connect)
    try:
        last = None
        while True:
            obj = await api.get_model_deployment(namespace, name)
            if obj is None:
                print(f"modeldeployment {namespace}/{name} not found", file=sys.stderr)
                return 1
            line = describe(obj)
            if line != last:
                print(f"{name}: {line}", file=out, flush=True)
                last = line
            if not watch:
                return 0
            await asyncio.sleep(interval)
    finally:
        api.close()


def run_status(args: argparse.Namespace) -> int:
    """Print the status once, or at each change until interrupted."""
    namespace = args.namespace or context_namespace()
    try:
        return asyncio.run(_show(namespace, args.name, args.watch, args.interval, sys.stdout))
    except KeyboardInterrupt:
        return 0
