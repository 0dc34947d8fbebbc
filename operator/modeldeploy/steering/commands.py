"""`modeldeploy promote|abort|retry|pause|resume|status NAME`: steer and watch a rollout.

The steering commands write one annotation, never the spec (GitOps tools see no drift, the
generation does not move), then wait until the operator records the request as handled and print
what it did. Exit status: 0 done, 1 nothing to do or the request was ignored (nothing written in
the first case), 2 no such object or an API error, 3 written but not handled within --timeout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import queue
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

from modeldeploy.canary.requests import REQUEST_ANNOTATION, Action, ManualRequest
from modeldeploy.k8s.steering import SteeringApi
from modeldeploy.reconcile.errors import ConflictError, KubeApiError
from modeldeploy.steering.plan import (
    Refusal,
    describe_request,
    is_handled,
    outcome,
    pending_request,
    plan_request,
    request_events,
)
from modeldeploy.steering.view import build_view, render_plain, render_rich, view_to_dict

DONE, NOTHING, FAILED, TIMED_OUT = 0, 1, 2, 3
EVENT_GRACE_SECONDS = 3.0
"""How long to wait, once a request is handled, for the Event that says what it did."""

HELP = {
    Action.PROMOTE: "end the canary's current step (--full: skip the remaining steps and analysis)",
    Action.ABORT: "roll the canary back to stable now (reason Aborted)",
    Action.RETRY: "restart a rolled-back revision at step 0 with fresh counters",
    Action.PAUSE: "hold the canary's weight (analysis goes on and can still roll back)",
    Action.RESUME: "continue a rollout paused by a user",
}


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME", help="the ModelDeployment")
    parser.add_argument("-n", "--namespace", help="its namespace (default: the kubeconfig context's)")
    parser.add_argument("--context", help="the kubeconfig context to use")
    parser.add_argument("--kubeconfig", help="the kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")


def register(subparsers: Any) -> None:
    """Add the steering commands and `status` to the `modeldeploy` command line."""
    for action in Action:
        parser: argparse.ArgumentParser = subparsers.add_parser(
            action.value, help=HELP[action], description=f"{HELP[action][0].upper()}{HELP[action][1:]}. "
            "Writes the request annotation only, never the spec.")
        _common(parser)
        if action is Action.PROMOTE:
            parser.add_argument("--full", action="store_true", help="skip the remaining steps and their analysis")
        parser.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                            help="how long to wait for the operator to act on the request (0: do not wait)")
        parser.set_defaults(func=run_request, action=action)
    status: argparse.ArgumentParser = subparsers.add_parser(
        "status", help="show a rollout at a glance", description="Show where a rollout stands: revisions, step, "
        "weight, pause, each metric's last measurements and counters, the last Events.")
    _common(status)
    status.add_argument("-w", "--watch", action="store_true", help="refresh live as the object changes")
    status.add_argument("-o", "--output", choices=["text", "json"], default="text", help="json: for scripts")
    status.set_defaults(func=run_status)


def _connect(args: argparse.Namespace) -> tuple[SteeringApi, str]:
    api = SteeringApi.connect(kubeconfig=args.kubeconfig, context=args.context)
    return api, args.namespace or api.namespace


def _say(text: str) -> None:
    print(text, flush=True)


def run_request(args: argparse.Namespace) -> int:
    """Plan, write and follow one manual request."""
    try:
        api, namespace = _connect(args)
    except Exception as error:  # the client raises several kinds for a missing or broken kubeconfig
        print(f"error: no cluster configuration: {error}", file=sys.stderr)
        return FAILED
    try:
        return _request(api, namespace, args)
    except KubeApiError as error:
        print(f"error: {error}", file=sys.stderr)
        return FAILED
    finally:
        api.close()


def _request(api: SteeringApi, namespace: str, args: argparse.Namespace) -> int:
    action: Action = args.action
    for _attempt in range(5):
        body = api.get(namespace, args.name)
        if body is None:
            print(f"error: modeldeployment {namespace}/{args.name} not found", file=sys.stderr)
            return FAILED
        plan = plan_request(body, action, now=datetime.now(UTC), full=getattr(args, "full", False), by=api.user)
        if isinstance(plan, Refusal):
            _say(plan.reason)
            return NOTHING
        pending = pending_request(body)
        # The Events already there say nothing about this request (the last command's are seconds old).
        before = _event_versions(api.events(namespace, str(body["metadata"].get("uid", ""))))
        try:
            written = api.annotate(namespace, args.name, REQUEST_ANNOTATION, plan.to_annotation(),
                                   resource_version=body["metadata"]["resourceVersion"])
        except ConflictError:
            continue  # the object changed since it was read: decide again on what it is now
        if pending is not None:
            _say(f"(replaces the request not yet handled: {pending.action.value} {pending.revision[:10]} "
                 f"at {pending.at})")
        _say(describe_request(body, plan))
        if args.timeout <= 0:
            _say("written; the operator records it in status.rollout.lastRequest when it acts on it")
            return DONE
        return _follow(api, namespace, args.name, written, plan, args.timeout, before)
    print("error: the object kept changing; try again", file=sys.stderr)
    return FAILED


def _event_versions(events: list[dict[str, Any]]) -> frozenset[tuple[str, str]]:
    """Each Event's identity and version: a repeated Event gets a new version."""
    return frozenset((str(e.get("metadata", {}).get("uid")), str(e.get("metadata", {}).get("resourceVersion")))
                     for e in events)


def _follow(api: SteeringApi, namespace: str, name: str, body: dict[str, Any], request: ManualRequest,
            timeout: float, before: frozenset[tuple[str, str]] = frozenset()) -> int:
    """Wait until the engine records `request` as handled; print what it did (Events in `before` are older)."""
    deadline = time.monotonic() + timeout
    current: dict[str, Any] | None = body
    while current is not None and not is_handled(current, request):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            _say(f"not handled within {timeout:g} s: is the operator running? (the request stays on the object "
                 f"and is acted on when it runs; `modeldeploy status {name}` shows when)")
            return TIMED_OUT
        resource_version = current["metadata"]["resourceVersion"]
        for changed in api.watch(namespace, name, resource_version, int(min(remaining, 30)) or 1):
            current = changed
            if is_handled(current, request) or time.monotonic() >= deadline:
                break
        else:
            current = api.get(namespace, name)
    if current is None:
        _say(f"modeldeployment {namespace}/{name} was deleted")
        return FAILED
    uid = str(current["metadata"].get("uid", ""))
    grace = time.monotonic() + min(EVENT_GRACE_SECONDS, max(0.0, deadline - time.monotonic()))

    def new_events() -> list[dict[str, Any]]:
        return [e for e in api.events(namespace, uid) if not _event_versions([e]) <= before]

    events = new_events()
    while not request_events(events, request, current) and time.monotonic() < grace:
        time.sleep(0.5)
        events = new_events()
    result = outcome(current, request, events)
    _say("handled:")
    for line in result.lines:
        _say(f"  {line}")
    return DONE if result.changed else NOTHING


def run_status(args: argparse.Namespace) -> int:
    """Print the view once, or keep it live with -w."""
    try:
        api, namespace = _connect(args)
    except Exception as error:  # the client raises several kinds for a missing or broken kubeconfig
        print(f"error: no cluster configuration: {error}", file=sys.stderr)
        return FAILED
    try:
        body = api.get(namespace, args.name)
        if body is None:
            print(f"error: modeldeployment {namespace}/{args.name} not found", file=sys.stderr)
            return FAILED
        if not args.watch:
            _print_view(body, api.events(namespace, body["metadata"]["uid"]), args.output)
            return DONE
        return _watch(api, namespace, args.name, body, args.output)
    except KubeApiError as error:
        print(f"error: {error}", file=sys.stderr)
        return FAILED
    except KeyboardInterrupt:
        return DONE
    finally:
        api.close()


def _print_view(body: dict[str, Any], events: list[dict[str, Any]], output: str) -> None:
    view = build_view(body, events, datetime.now(UTC))
    if output == "json":
        _say(json.dumps(view_to_dict(view), sort_keys=True))
    elif sys.stdout.isatty():
        from rich.console import Console

        Console().print(render_rich(view))
    else:
        _say(render_plain(view))


def _watch_object(api: SteeringApi, namespace: str, name: str, body: dict[str, Any],
                  changes: queue.Queue[dict[str, Any] | None], stop: threading.Event) -> None:
    """Put each new version of the object on `changes` (None when it is gone) until `stop`."""
    current: dict[str, Any] | None = body
    while not stop.is_set() and current is not None:
        try:
            for changed in api.watch(namespace, name, current["metadata"]["resourceVersion"], 30):
                current = changed
                changes.put(changed)
                if stop.is_set():
                    return
            current = api.get(namespace, name)
            if current is not None:
                changes.put(current)
        except KubeApiError:
            time.sleep(1)
    changes.put(None)


EVENTS_EVERY_SECONDS = 2.0


def _watch(api: SteeringApi, namespace: str, name: str, body: dict[str, Any], output: str) -> int:
    """Re-render on every change of the object, and every second for the clocks; Events every 2 s."""
    changes: queue.Queue[dict[str, Any] | None] = queue.Queue()
    stop = threading.Event()
    thread = threading.Thread(target=_watch_object, args=(api, namespace, name, body, changes, stop), daemon=True)
    thread.start()
    uid = str(body["metadata"]["uid"])
    events = api.events(namespace, uid)
    events_at = time.monotonic()
    live = output == "text" and sys.stdout.isatty()
    try:
        if live:
            from rich.console import Console
            from rich.live import Live

            with Live(render_rich(build_view(body, events, datetime.now(UTC))), console=Console(),
                      refresh_per_second=4, screen=False) as screen:
                while True:
                    gone, body, events, events_at = _next(changes, api, namespace, uid, body, events, events_at)
                    if gone:
                        break
                    screen.update(render_rich(build_view(body, events, datetime.now(UTC))))
        else:
            # A pipe gets a new block only when the object or its Events change, not for each tick of a clock.
            last: tuple[object, ...] = ()
            while True:
                seen = (body["metadata"].get("resourceVersion"),
                        tuple(e.get("metadata", {}).get("resourceVersion") for e in events))
                if seen != last:
                    view = build_view(body, events, datetime.now(UTC))
                    _say(json.dumps(view_to_dict(view), sort_keys=True) if output == "json"
                         else render_plain(view) + "\n")
                    last = seen
                gone, body, events, events_at = _next(changes, api, namespace, uid, body, events, events_at)
                if gone:
                    break
    finally:
        stop.set()
    _say(f"modeldeployment {namespace}/{name} was deleted")
    return DONE


def _next(changes: queue.Queue[dict[str, Any] | None], api: SteeringApi, namespace: str, uid: str,
          body: dict[str, Any], events: list[dict[str, Any]], events_at: float
          ) -> tuple[bool, dict[str, Any], list[dict[str, Any]], float]:
    """Wait up to a second for a change; refresh the Events when due. True first when the object is gone."""
    try:
        changed = changes.get(timeout=1.0)
    except queue.Empty:
        changed = body
    if changed is None:
        return True, body, events, events_at
    if changed is not body or time.monotonic() - events_at >= EVENTS_EVERY_SECONDS:
        with contextlib.suppress(KubeApiError):
            events = api.events(namespace, uid)
        events_at = time.monotonic()
    return False, changed, events, events_at
