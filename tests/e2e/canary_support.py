"""What the canary's whole-flow tests share: a bounded load generator and a recorder of the status line."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from e2e.helpers import mdep, predict, ready_addresses
from localcluster import LocalCluster

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
ANSWER_TIMEOUT_SECONDS = 5.0
"""How long the load waits for an answer: iris answers in milliseconds, and under 0.25 s through a
whole rollout on two cores (new pods included), so a longer wait is a stall worth failing on (a lost
SYN costs 1, 3, 7 s of retransmits), not slowness to sit out."""


@dataclass
class Answer:
    at: float
    address: str
    code: int
    error: str = ""
    seconds: float = 0.0
    version: str = ""
    """The model version that answered (the iris handler says it in each answer)."""


@dataclass
class Load:
    """Requests to the Service `iris`'s ClusterIP, at `rate` per second, for at most `seconds` and
    `rate * seconds` requests: kube-proxy spreads them over the ready pods of both roles, as it does for
    any client of the Service.

    The Service's ready endpoints are read every `refresh` seconds: `capacity` keeps (time, number of
    ready endpoints) and `endpoints` (time, the ready addresses), which tell when a pod began to take
    traffic.
    """

    cluster: LocalCluster
    namespace: str
    rate: float = 12.0
    seconds: float = 300.0
    refresh: float = 1.0
    answers: list[Answer] = field(default_factory=list)
    capacity: list[tuple[float, int]] = field(default_factory=list)
    endpoints: list[tuple[float, frozenset[str]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _service_ip: str = ""
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Load:
        self._service_ip = self.cluster.kubectl("get", "svc", "iris", "-n", self.namespace, "-o",
                                                "jsonpath={.spec.clusterIP}").stdout.strip()
        assert self._service_ip, "the Service iris has no ClusterIP"
        self._read_addresses()
        self._threads = [threading.Thread(target=self._watch_endpoints, daemon=True),
                         threading.Thread(target=self._send, daemon=True)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _read_addresses(self) -> None:
        try:
            found = ready_addresses(self.cluster, self.namespace, "iris")
        except Exception:
            return
        now = time.monotonic()
        self.capacity.append((now, len(found)))
        self.endpoints.append((now, frozenset(found)))

    def _watch_endpoints(self) -> None:
        while not self._stop.wait(self.refresh):
            self._read_addresses()

    def _send(self) -> None:
        start = time.monotonic()
        limit = int(self.rate * self.seconds)
        sent = 0
        while not self._stop.is_set() and sent < limit and time.monotonic() - start < self.seconds:
            error = version = ""
            began = time.monotonic()
            try:
                code, body = predict(self._service_ip, ROWS, timeout=ANSWER_TIMEOUT_SECONDS)
                if code != 200:
                    error = str(body)[:200]
                elif isinstance(body, dict):
                    version = str(body.get("version", ""))
            except OSError as failure:
                code, error = 0, str(failure)
            self.answers.append(Answer(time.monotonic(), self._service_ip, code, error, time.monotonic() - began,
                                       version))
            sent += 1
            next_at = start + sent / self.rate
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def codes(self, since: float = 0.0) -> Counter[int]:
        return Counter(a.code for a in self.answers if a.at >= since)

    def versions(self, since: float = 0.0) -> Counter[str]:
        """How many answers each model version gave (200s only)."""
        return Counter(a.version for a in self.answers if a.at >= since and a.code == 200)

    def slowest(self, count: int = 3) -> list[float]:
        """The longest waits for an answer, in seconds, longest first."""
        return sorted((round(a.seconds, 2) for a in self.answers), reverse=True)[:count]

    def failures(self, since: float = 0.0) -> list[str]:
        """Each failed request: when (seconds after `since`), where, what, and the ready endpoints then."""
        out = []
        for answer in self.answers:
            if answer.code != 200 and answer.at >= since:
                ready = [count for at, count in self.capacity if at <= answer.at][-1:]
                out.append(f"{answer.at - since:.1f} s {answer.address} {answer.code} {answer.error} ready={ready}")
        return out

    def first_answer_from(self, addresses: set[str]) -> float | None:
        """When one of `addresses` first stood among the Service's ready endpoints while load was sent."""
        for at, ready in self.endpoints:
            if ready & addresses and any(a.at >= at for a in self.answers):
                return at
        return None


@dataclass
class StatusLine:
    """Polls the ModelDeployment and keeps each distinct (phase, step, weight, canary) with its time."""

    cluster: LocalCluster
    namespace: str
    interval: float = 0.5
    lines: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> StatusLine:
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _poll(self) -> None:
        last: tuple[Any, ...] | None = None
        while not self._stop.wait(self.interval):
            try:
                status = mdep(self.cluster, self.namespace).get("status") or {}
            except Exception:
                continue
            rollout = status.get("rollout") or {}
            key = (status.get("phase"), status.get("currentStep"), rollout.get("weight"),
                   status.get("canaryWeight"), status.get("canaryRevision"), bool(rollout.get("aborted")))
            if key != last:
                self.lines.append((time.monotonic(), status))
                last = key

    def first(self, predicate: Any) -> float | None:
        return next((at for at, status in self.lines if predicate(status)), None)

    def weights(self) -> list[int]:
        """The distinct weights the rollout asked for, in order."""
        seen: list[int] = []
        for _, status in self.lines:
            weight = (status.get("rollout") or {}).get("weight")
            if status.get("canaryRevision") and weight is not None and (not seen or seen[-1] != weight):
                seen.append(int(weight))
        return seen
