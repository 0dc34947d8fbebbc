"""The canary's pure rules: steps and weights, replica counts, measurement verdicts, rollback rules, `decide`.

No I/O here: no kopf, no Kubernetes client, no clock. The reconcile engine gathers observations,
calls `decide` and applies the `Decision`.
"""

from modeldeploy.api.events import Event
from modeldeploy.api.rollout import AbortReason, MeasurementVerdict, PauseReason, RolloutState
from modeldeploy.canary.decide import Decision, decide
from modeldeploy.canary.inputs import Measurement, MetricPolicy, Observations, Policy, RoleStatus
from modeldeploy.canary.outcome import RoleTarget
from modeldeploy.canary.requests import (
    REQUEST_ANNOTATION,
    Action,
    ManualRequest,
    RejectedRequest,
    RequestError,
    read_request,
    request_from_annotations,
)
from modeldeploy.canary.rules import ROLLBACK_RULES, Abort, first_abort
from modeldeploy.canary.schedule import MeasurementDue, due_metrics, next_measurements
from modeldeploy.canary.traffic import TrafficRouter
from modeldeploy.canary.verdicts import Bounds, Sample, Share, judge
from modeldeploy.canary.weights import Split, desired_replicas, effective_weight, target_split

__all__ = [
    "REQUEST_ANNOTATION",
    "ROLLBACK_RULES",
    "Abort",
    "AbortReason",
    "Action",
    "Bounds",
    "Decision",
    "Event",
    "ManualRequest",
    "Measurement",
    "MeasurementDue",
    "MeasurementVerdict",
    "MetricPolicy",
    "Observations",
    "PauseReason",
    "Policy",
    "RejectedRequest",
    "RequestError",
    "RoleStatus",
    "RoleTarget",
    "RolloutState",
    "Sample",
    "Share",
    "Split",
    "TrafficRouter",
    "decide",
    "desired_replicas",
    "due_metrics",
    "effective_weight",
    "first_abort",
    "judge",
    "next_measurements",
    "read_request",
    "request_from_annotations",
    "target_split",
]
