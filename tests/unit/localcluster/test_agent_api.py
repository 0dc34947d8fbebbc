"""The node agent's writes survive an API server that is away, throttles (429) or fails (5xx)."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from localcluster.agent.api import Backoff, EventRecorder, call_until, transient


class ScriptedApiServer(http.server.ThreadingHTTPServer):
    """Answers each request with the next (status, headers) of a script, then 201 with a JSON body."""

    def __init__(self, script: list[tuple[int, dict[str, str]]], port: int = 0) -> None:
        self.script = list(script)
        self.times: list[float] = []
        self.bodies: list[Any] = []
        super().__init__(("127.0.0.1", port), Handler)


class Handler(http.server.BaseHTTPRequestHandler):
    server: ScriptedApiServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.server.times.append(time.monotonic())
        length = int(self.headers.get("Content-Length", 0))
        self.server.bodies.append(json.loads(self.rfile.read(length) or b"null"))
        status, headers = self.server.script.pop(0) if self.server.script else (201, {})
        body = json.dumps({"kind": "Status", "code": status} if status >= 300 else
                          {"kind": "Event", "apiVersion": "v1", "metadata": {"name": "e"},
                           "involvedObject": {"kind": "Pod"}}).encode()
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def core_api(port: int) -> client.CoreV1Api:
    configuration = client.Configuration()
    configuration.host = f"http://127.0.0.1:{port}"
    return client.CoreV1Api(client.ApiClient(configuration))


def serve(script: list[tuple[int, dict[str, str]]],
          port: int = 0) -> Iterator[tuple[ScriptedApiServer, client.CoreV1Api]]:
    server = ScriptedApiServer(script, port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server, core_api(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def throttling() -> Iterator[tuple[ScriptedApiServer, client.CoreV1Api]]:
    yield from serve([(429, {"Retry-After": "1"}), (503, {}), (500, {})])


@pytest.fixture
def refusing() -> Iterator[tuple[ScriptedApiServer, client.CoreV1Api]]:
    yield from serve([(403, {})])


EVENT = {"metadata": {"generateName": "p.", "namespace": "ns"}, "reason": "Started"}


def never() -> bool:
    return False


def test_a_write_is_retried_through_429_and_5xx_and_waits_as_retry_after_asks(
    throttling: tuple[ScriptedApiServer, client.CoreV1Api],
) -> None:
    server, core = throttling
    result = call_until("event", lambda: core.create_namespaced_event("ns", EVENT), give_up=never)
    assert result is not None and len(server.times) == 4  # 429, 503, 500, then it landed
    assert server.times[1] - server.times[0] >= 1.0  # Retry-After: 1
    assert server.times[3] - server.times[1] < 2.0  # 5xx without Retry-After: short back-off


def test_an_answer_that_will_not_change_is_raised_not_retried(
    refusing: tuple[ScriptedApiServer, client.CoreV1Api],
) -> None:
    server, core = refusing
    with pytest.raises(ApiException) as raised:
        call_until("event", lambda: core.create_namespaced_event("ns", EVENT), give_up=never)
    assert raised.value.status == 403 and len(server.times) == 1


def test_an_unreachable_api_server_is_retried_until_the_caller_gives_up() -> None:
    core = core_api(free_port())  # nothing listens: connections are refused
    tries: list[float] = []

    def give_up() -> bool:
        tries.append(time.monotonic())
        return len(tries) > 4

    assert call_until("event", lambda: core.create_namespaced_event("ns", EVENT), give_up=give_up) is None
    assert len(tries) == 5


def test_events_wait_in_order_while_the_api_server_is_away_then_all_land() -> None:
    stopping = threading.Event()
    port = free_port()
    recorder = EventRecorder(core_api(port), "node", stopping)
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u"}}
    sender = threading.Thread(target=recorder.loop, daemon=True)
    sender.start()
    for reason in ("Scheduled", "Started", "Killing"):
        recorder.event(pod, "Normal", reason, reason)
    time.sleep(0.5)
    assert len(recorder.queue) == 3  # nothing lost while no API server answers
    for server, _ in serve([], port):  # the API server is back
        deadline = time.monotonic() + 10
        while recorder.queue and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [body["reason"] for body in server.bodies] == ["Scheduled", "Started", "Killing"]
    stopping.set()
    sender.join(timeout=5)


@pytest.mark.parametrize(("error", "expected"), [
    (ApiException(status=429), True), (ApiException(status=503), True), (ApiException(status=500), True),
    (ApiException(status=404), False), (ApiException(status=409), False), (ApiException(status=422), False),
    (ConnectionRefusedError(), True), (ValueError(), False),
])
def test_only_errors_a_later_try_may_not_get_are_transient(error: Exception, expected: bool) -> None:
    assert transient(error) is expected


def test_back_off_doubles_to_its_ceiling_and_resets_once_a_write_lands() -> None:
    backoff = Backoff(initial=0.2, maximum=1.0)
    waits = [backoff.failed() for _ in range(5)]
    assert 0.16 <= waits[0] <= 0.24 and all(w <= 1.2 for w in waits) and waits[-1] >= 0.8
    assert not backoff.ready()
    assert backoff.succeeded() == 5 and backoff.ready()
