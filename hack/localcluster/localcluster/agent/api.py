"""Talking to an API server that may be away: which errors are worth a retry, how long to wait
(back-off, or what Retry-After asks), a client whose calls cannot hang, and an event recorder
whose events land once the API server answers again.

A kubelet keeps every pod converging whatever the API server does; so does this agent. Writes are
retried until they land or their object is gone, and never take a worker down with them."""

from __future__ import annotations

import collections
import contextlib
import functools
import http.client
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import urllib3
from kubernetes import client
from kubernetes.client.rest import ApiException

from localcluster.agent.common import Obj, now

log = logging.getLogger("localcluster.agent")

T = TypeVar("T")

# Statuses a later try may not get: overload, throttling, the API server starting or stopping.
RETRY_STATUSES = {0, 408, 429, 500, 502, 503, 504}
# A call never waits longer than this for the API server: connecting, then reading the answer.
REQUEST_TIMEOUT = (5.0, 30.0)
MAX_QUEUED_EVENTS = 1000


def transient(error: BaseException) -> bool:
    """Whether the API server may accept the same request later (unreachable, restarting, throttling)."""
    if isinstance(error, ApiException):
        return error.status is None or error.status in RETRY_STATUSES
    return isinstance(error, urllib3.exceptions.HTTPError | http.client.HTTPException | OSError)


def retry_after(error: BaseException) -> float | None:
    """The wait a 429 or 5xx answer asks for in its Retry-After header (seconds), if any."""
    headers = getattr(error, "headers", None)
    if not isinstance(error, ApiException) or not headers:
        return None
    value = headers.get("Retry-After")
    if value is None:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    return None


def describe(error: BaseException) -> str:
    if isinstance(error, ApiException):
        return f"{error.status} {error.reason}".strip()
    return f"{type(error).__name__}: {error}"[:300]


class Backoff:
    """Exponential back-off with jitter between tries of one write; Retry-After wins when longer."""

    def __init__(self, initial: float = 0.2, maximum: float = 2.0) -> None:
        self.initial, self.maximum = initial, maximum
        self.delay = 0.0
        self.next_try = 0.0
        self.failures = 0

    def ready(self) -> bool:
        return time.monotonic() >= self.next_try

    def remaining(self) -> float:
        return max(0.0, self.next_try - time.monotonic())

    def failed(self, error: BaseException | None = None) -> float:
        """Records a failed try; returns how long to wait before the next one."""
        self.failures += 1
        self.delay = self.initial if self.delay == 0 else min(self.delay * 2, self.maximum)
        wait = self.delay * random.uniform(0.8, 1.2)
        asked = retry_after(error) if error is not None else None
        if asked is not None:
            wait = max(wait, min(asked, 60.0))
        self.next_try = time.monotonic() + wait
        return wait

    def succeeded(self) -> int:
        """Records a try that landed; returns how many had failed before it."""
        failures, self.failures, self.delay, self.next_try = self.failures, 0, 0.0, 0.0
        return failures


class OutageLog:
    """Logs the first failure of a kind of write and its recovery, not every retry in between."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.failing_since: float | None = None

    def failed(self, error: BaseException) -> None:
        if self.failing_since is None:
            self.failing_since = time.monotonic()
            log.warning("%s: %s; retrying until it lands", self.what, describe(error))

    def landed(self) -> None:
        if self.failing_since is not None:
            log.info("%s: succeeded again after %.1fs of retries", self.what,
                     time.monotonic() - self.failing_since)
            self.failing_since = None


def call_until(what: str, call: Callable[[], T], give_up: Callable[[], bool],
               wait: Callable[[float], object] = time.sleep, maximum: float = 2.0) -> T | None:
    """`call()` retried with back-off while its errors are transient; None once `give_up()` says so.

    Other errors are raised: they are answers (not found, conflict, invalid) the caller decides on."""
    backoff = Backoff(maximum=maximum)
    outage = OutageLog(what)
    while not give_up():
        try:
            result = call()
        except Exception as error:
            if not transient(error):
                raise
            outage.failed(error)
            wait(backoff.failed(error))
            continue
        outage.landed()
        return result
    return None


class TimeoutApiClient(client.ApiClient):  # type: ignore[misc]
    """An API client whose calls give up on an API server that does not answer, so a retry can follow.

    A call that names its own timeout (a watch) keeps it."""

    def request(self, method: str, url: str, query_params: Any = None, headers: Any = None,
                post_params: Any = None, body: Any = None, _preload_content: bool = True,
                _request_timeout: Any = None) -> Any:
        return super().request(method, url, query_params, headers, post_params, body, _preload_content,
                               _request_timeout if _request_timeout is not None else REQUEST_TIMEOUT)


class EventRecorder:
    """Records events about pods from one thread, in order, each retried until it lands.

    Workers never wait for the API server to record an event; an event the API server refuses
    for good (its namespace is gone) is dropped, and so are the oldest when too many wait."""

    def __init__(self, core: client.CoreV1Api, node_name: str, stopping: threading.Event) -> None:
        self.core = core
        self.node_name = node_name
        self.stopping = stopping
        self.queue: collections.deque[tuple[str, Obj]] = collections.deque()
        self.ready = threading.Condition()
        self.dropped = 0

    def event(self, obj: Obj, kind: str, reason: str, message: str) -> None:
        meta = obj["metadata"]
        stamp = now()
        body = {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {"kind": obj.get("kind", "Pod"), "apiVersion": obj.get("apiVersion", "v1"),
                               "name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]},
            "type": kind, "reason": reason, "message": message[:1024], "count": 1,
            "firstTimestamp": stamp, "lastTimestamp": stamp,
            "source": {"component": "kubelet", "host": self.node_name},
            "reportingComponent": "kubelet", "reportingInstance": self.node_name,
        }
        with self.ready:
            if len(self.queue) >= MAX_QUEUED_EVENTS:
                self.queue.popleft()
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 100 == 0:
                    log.warning("events: %d dropped while the API server is away", self.dropped)
            self.queue.append((meta["namespace"], body))
            self.ready.notify()

    def loop(self) -> None:
        while not self.stopping.is_set():
            with self.ready:
                while not self.queue and not self.stopping.is_set():
                    self.ready.wait(1)
                if self.stopping.is_set():
                    return
                namespace, body = self.queue[0]
            try:
                call_until("events", functools.partial(self.core.create_namespaced_event, namespace, body),
                           give_up=self.stopping.is_set, wait=self.stopping.wait)
            except ApiException as error:
                log.info("event %s/%s dropped: %s", namespace, body["reason"], describe(error))
            with self.ready:
                if self.queue and self.queue[0][1] is body:
                    self.queue.popleft()
