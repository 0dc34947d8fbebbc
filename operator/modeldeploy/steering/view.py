"""`modeldeploy status`: a rollout read at a glance, built from the object and its Events alone.

`build_view` is pure (the object, its Events and the time in; a `View` out); `render_plain` and
`render_rich` print it for a pipe and for a terminal, `view_to_dict` for `-o json`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from modeldeploy.api.conditions import format_time
from modeldeploy.api.rollout import MeasurementVerdict, PauseReason, parse_time
from modeldeploy.api.spec import Rollout, SpecError, parse_spec
from modeldeploy.steering.plan import event_time, phase_line, rollout_of, short

BAR_WIDTH = 40
EVENTS_SHOWN = 6
MEASUREMENTS_SHOWN = 5


@dataclasses.dataclass(frozen=True)
class MeasurementView:
    """One measurement as shown: when, at which weight, the value, its request count and verdict."""

    at: str
    weight: int
    value: float | None
    requests: int | None
    verdict: str
    message: str


@dataclasses.dataclass(frozen=True)
class MetricView:
    """A metric: its bound, its counters against the limits, its last measurements (newest last)."""

    name: str
    bound: str
    failed: int
    failure_limit: int
    consecutive_errors: int
    consecutive_error_limit: int
    inconclusive: int
    successes_at_step: int
    measurements: tuple[MeasurementView, ...]


@dataclasses.dataclass(frozen=True)
class EventView:
    """An Event of the object."""

    at: str
    type: str
    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class View:
    """Everything `modeldeploy status` shows."""

    namespace: str
    name: str
    phase: str
    summary: str
    stable: str | None
    canary: str | None
    step: int | None
    steps: int
    weight: int
    effective_weight: int
    promoting: bool
    pause: str | None
    time_left: str | None
    aborted: str | None
    last_request: str | None
    min_requests: int
    metrics: tuple[MetricView, ...]
    events: tuple[EventView, ...]
    last_progress: str | None = None
    """When the status last changed, and how long ago: a rollout that does not move shows here."""
    gate: bool = False
    """The canary stands at its weight-0 gate: its pods run behind no Service, judged by golden sets."""


def duration(span: timedelta) -> str:
    """A short human duration: 45s, 3m20s, 1h05m."""
    seconds = max(0, int(span.total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _bound(minimum: float | None, maximum: float | None) -> str:
    if minimum is not None and maximum is not None:
        return f"{minimum:g}..{maximum:g}"
    if maximum is not None:
        return f"<= {maximum:g}"
    return f">= {minimum:g}" if minimum is not None else ""


def _rollout_spec(body: Mapping[str, Any]) -> Rollout:
    try:
        return parse_spec(body.get("spec")).rollout
    except (SpecError, ValueError, TypeError, KeyError):
        return Rollout()


def build_view(body: Mapping[str, Any], events: Sequence[Mapping[str, Any]], now: datetime) -> View:
    """The view of `body` (a ModelDeployment with its status) and its `events`, at `now`."""
    metadata = body.get("metadata") or {}
    status = body.get("status") or {}
    spec = _rollout_spec(body)
    state = rollout_of(body)
    canary = state.canary_revision or status.get("canaryRevision")
    stable = state.stable_revision or status.get("stableRevision")
    steps = len(spec.steps)
    step = state.step_index if canary else None
    pause = time_left = None
    if canary and state.pause is not None:
        since = format_time(state.pause.since)
        held = duration(now - state.pause.since)
        pause = (f"paused by a user since {since} ({held})" if state.pause.reason is PauseReason.USER
                 else f"waiting for a promote request since {since} ({held})")
    elif canary and not state.promoting and state.step_started_at is not None and step is not None:
        hold = spec.steps[min(step, steps - 1)].pause
        if hold is not None:
            left = state.step_started_at + hold - now
            time_left = f"{duration(left)} of {duration(hold)} left" if left.total_seconds() > 0 else "pause over"
    aborted = None
    if state.aborted is not None:
        aborted = (f"revision {short(state.aborted.revision)} rolled back at {format_time(state.aborted.at)} "
                   f"({state.aborted.reason.value}): {state.aborted.message}")
    last_request = None
    if state.last_request is not None:
        request = state.last_request
        last_request = f"{request.action} {short(request.revision)} at {request.at}"
    analysis = spec.analysis
    metrics = []
    for metric in analysis.metrics:
        counters = state.metric(metric.name)
        metrics.append(MetricView(
            name=metric.name,
            bound=_bound(metric.min, metric.max),
            failed=counters.failed,
            failure_limit=analysis.failure_limit,
            consecutive_errors=counters.consecutive_errors,
            consecutive_error_limit=analysis.consecutive_error_limit,
            inconclusive=counters.inconclusive,
            successes_at_step=counters.successes_at_step,
            measurements=tuple(
                MeasurementView(at=format_time(m.at), weight=m.weight, value=m.value, requests=m.requests,
                                verdict=m.verdict.value, message=m.message)
                for m in counters.measurements[-MEASUREMENTS_SHOWN:]),
        ))
    dated = sorted(((event_time(e), e) for e in events), key=lambda item: item[0] or datetime.min.replace(
        tzinfo=now.tzinfo))
    shown = tuple(
        EventView(at=format_time(moment) if moment else "", type=str(e.get("type") or ""),
                  reason=str(e.get("reason") or ""), message=str(e.get("message") or ""))
        for moment, e in dated[-EVENTS_SHOWN:])
    last_progress = None
    changed = status.get("lastProgressTime")
    if isinstance(changed, str):
        try:
            moment = parse_time(changed)
        except ValueError:
            moment = None
        if moment is not None:
            last_progress = f"{format_time(moment)} ({duration(max(now - moment, timedelta(0)))} ago)"
    gate = bool(canary) and not state.promoting and step == 0 and spec.steps[0].weight == 0
    return View(
        last_progress=last_progress, gate=gate,
        namespace=str(metadata.get("namespace") or ""), name=str(metadata.get("name") or ""),
        phase=str(status.get("phase") or "Unknown"), summary=phase_line(body),
        stable=stable, canary=canary, step=step, steps=steps,
        weight=state.weight if canary else 0, effective_weight=state.effective_weight,
        promoting=state.promoting, pause=pause, time_left=time_left, aborted=aborted, last_request=last_request,
        min_requests=analysis.min_requests, metrics=tuple(metrics), events=shown,
    )


def view_to_dict(view: View) -> dict[str, Any]:
    """The view as JSON-ready data (`-o json`)."""
    return dataclasses.asdict(view)


# --- rendering ------------------------------------------------------------------------------------


def _value(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.4g}"


def _revisions(view: View) -> str:
    if view.canary:
        return f"{short(view.stable)} (stable) -> {short(view.canary)} (canary)"
    return f"{short(view.stable)} (stable)"


def _step(view: View) -> str:
    if view.step is None:
        return "no canary"
    state = "promoting" if view.promoting else f"step {view.step + 1}/{view.steps}"
    return f"gate ({state}): no user traffic, judged by golden sets" if view.gate else state


GATE_WEIGHT = "gate: the canary's pods are behind no Service"


def plain_bar(asked: int, effective: int, width: int = BAR_WIDTH) -> str:
    """`[#####+++.....]`: # the effective weight, + up to the weight asked for."""
    done = round(width * min(effective, 100) / 100)
    target = max(done, round(width * min(asked, 100) / 100))
    return "[" + "#" * done + "+" * (target - done) + "." * (width - target) + "]"


def _counters(metric: MetricView, min_requests: int) -> str:
    return (f"failed {metric.failed}/{metric.failure_limit}  errors in a row "
            f"{metric.consecutive_errors}/{metric.consecutive_error_limit}  inconclusive {metric.inconclusive}  "
            f"successes at step {metric.successes_at_step}  minRequests {min_requests}")


def _requests(requests: int | None) -> str:
    return "-" if requests is None else str(requests)


def render_plain(view: View) -> str:
    """The view as plain text, for a pipe or a log."""
    lines = [
        f"{view.namespace}/{view.name}  {view.summary}",
        f"revision  {_revisions(view)}",
        f"rollout   {_step(view)}",
        f"weight    {GATE_WEIGHT}" if view.gate else
        f"weight    {plain_bar(view.weight, view.effective_weight)} asked {view.weight} %  "
        f"effective {view.effective_weight} %",
    ]
    if view.pause:
        lines.append(f"pause     {view.pause}")
    if view.time_left:
        lines.append(f"pause     {view.time_left}")
    if view.aborted:
        lines.append(f"aborted   {view.aborted}")
    if view.last_progress:
        lines.append(f"changed   {view.last_progress}")
    if view.last_request:
        lines.append(f"request   {view.last_request}")
    for metric in view.metrics:
        lines.append(f"metric    {metric.name} {metric.bound}  {_counters(metric, view.min_requests)}")
        for m in metric.measurements:
            lines.append(f"  {m.at}  weight {m.weight:>3} %  value {_value(m.value):>8}  requests "
                         f"{_requests(m.requests):>6}  {m.verdict}")
        if metric.measurements and metric.measurements[-1].message:
            lines.append(f"  latest: {metric.measurements[-1].message}")
    if view.events:
        lines.append("events")
        lines.extend(f"  {e.at}  {e.type:<7} {e.reason}: {e.message}" for e in view.events)
    return "\n".join(lines)


VERDICT_STYLES = {
    MeasurementVerdict.SUCCESSFUL.value: "green",
    MeasurementVerdict.FAILED.value: "bold red",
    MeasurementVerdict.INCONCLUSIVE.value: "yellow",
    MeasurementVerdict.ERROR.value: "magenta",
}

PHASE_STYLES = {
    "Healthy": "green", "Progressing": "cyan", "Paused": "yellow", "Degraded": "bold red",
    "RolledBack": "bold red", "Failed": "bold red",
}


def rich_bar(asked: int, effective: int, width: int = BAR_WIDTH) -> Text:
    """The weight bar: solid up to the effective weight, light up to the weight asked for."""
    done = round(width * min(effective, 100) / 100)
    target = max(done, round(width * min(asked, 100) / 100))
    bar = Text()
    bar.append("█" * done, style="cyan")
    bar.append("▒" * (target - done), style="cyan dim")
    bar.append("░" * (width - target), style="dim")
    return bar


def render_rich(view: View) -> RenderableType:
    """The view for a terminal: colours, a weight bar and tables."""
    head = Text()
    head.append(f"{view.namespace}/{view.name}  ", style="bold")
    head.append(view.phase, style=PHASE_STYLES.get(view.phase, ""))
    head.append(f"  {view.summary.split(': ', 1)[1]}" if ": " in view.summary else "")
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    facts.add_row("revision", _revisions(view))
    facts.add_row("rollout", _step(view))
    if view.gate:
        facts.add_row("weight", Text(GATE_WEIGHT, style="yellow"))
    else:
        weight = rich_bar(view.weight, view.effective_weight)
        weight.append(f"  asked {view.weight} %  effective {view.effective_weight} %")
        facts.add_row("weight", weight)
    if view.pause:
        facts.add_row("pause", Text(view.pause, style="yellow"))
    if view.time_left:
        facts.add_row("pause", view.time_left)
    if view.aborted:
        facts.add_row("aborted", Text(view.aborted, style="red"))
    if view.last_progress:
        facts.add_row("changed", view.last_progress)
    if view.last_request:
        facts.add_row("request", view.last_request)
    parts: list[RenderableType] = [head, facts]
    for metric in view.metrics:
        table = Table(title=f"{metric.name} {metric.bound}", title_justify="left", expand=False)
        for column in ("at", "weight", "value", "requests", "verdict"):
            table.add_column(column, justify="right" if column in ("weight", "value", "requests") else "left")
        for m in metric.measurements:
            table.add_row(m.at, f"{m.weight} %", _value(m.value), _requests(m.requests),
                          Text(m.verdict, style=VERDICT_STYLES.get(m.verdict, "")))
        parts.append(table)
        if metric.measurements and metric.measurements[-1].message:
            parts.append(Text(f"latest: {metric.measurements[-1].message}"))
        parts.append(Text(_counters(metric, view.min_requests), style="dim"))
    if view.events:
        events = Table(title="events", title_justify="left", show_header=False, box=None, padding=(0, 1))
        for e in view.events:
            events.add_row(e.at, Text(e.type, style="yellow" if e.type == "Warning" else ""), e.reason, e.message)
        parts.append(events)
    return Group(*parts)
