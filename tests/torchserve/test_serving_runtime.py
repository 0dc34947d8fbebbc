"""The generated entrypoint, config.properties and readiness probe, run against real TorchServe 0.12.

Each server runs from files written exactly as the ConfigMap holds them, with the plan's paths pointed
into a temporary directory and free ports instead of 8080/8081/8082/7070/7071.

Reachability of the management API from off the loopback address is checked with 127.0.0.2: it is
not 127.0.0.1, so a listener bound to 127.0.0.1 refuses it while one bound to 0.0.0.0 answers (the
inference port proves the address is reachable). The machine's interface addresses are never used:
this workplace allows test traffic to loopback addresses only. The kernel's table of listening sockets
(/proc/net/tcp, /proc/net/tcp6) backs that up with the bound addresses themselves.
"""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from modeldeploy.api.spec import ModelConfig, PvcStore
from modeldeploy.serving import (
    ENTRYPOINT,
    READY,
    ArchiveRef,
    ServingPaths,
    ServingPlan,
    ServingPorts,
    container_env,
    model_load_failure,
    render_config,
)
from modeldeploy.settings import OperatorIdentity

pytestmark = pytest.mark.torchserve

VENV_BIN = Path(sys.executable).parent
MODEL_NAME = "iris"
MODEL_VERSION = "2"
INPUTS_DIGEST = "4f6d2c1b9e8a7d3c"
START_DEADLINE_SECONDS = 120.0
STOP_DEADLINE_SECONDS = 60.0
# Row i of the weights is (4i, 4i+1, 4i+2, 4i+3) / 10, bias 0: [1, 2, 3, 4] maps to these.
EXPECTED_PREDICTION = [2.0, 6.0, 10.0]

MODEL_SOURCE = """
import sys
import torch


class Linear(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 3)
        with torch.no_grad():
            self.layer.weight.copy_(torch.arange(12, dtype=torch.float32).reshape(3, 4) / 10)
            self.layer.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


torch.jit.script(Linear()).save(sys.argv[1])
"""

GOOD_HANDLER = """
import json

import torch


class LinearHandler:
    def __init__(self):
        self.model = None

    def initialize(self, context):
        self.model = torch.jit.load(context.system_properties["model_dir"] + "/model.pt")

    def handle(self, data, context):
        rows = []
        for item in data:
            body = item.get("body") or item.get("data")
            if isinstance(body, (bytes, bytearray)):
                body = json.loads(body)
            with torch.no_grad():
                rows.append(self.model(torch.tensor(body, dtype=torch.float32)).tolist())
        return rows


_service = LinearHandler()


def handle(data, context):
    if _service.model is None:
        _service.initialize(context)
    if data is None:
        return None
    return _service.handle(data, context)
"""

BROKEN_HANDLER = """
class BrokenHandler:
    def initialize(self, context):
        raise RuntimeError("weights do not match the architecture: expected 12 floats, found 7")


_service = BrokenHandler()


def handle(data, context):
    _service.initialize(context)
"""

T = TypeVar("T")


def wait_for(probe: Callable[[], T | None], what: str, deadline_seconds: float) -> T:
    """Poll `probe` until it returns something other than None, or fail after the deadline."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {deadline_seconds:.0f}s waiting for {what}")
        time.sleep(0.25)


def free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("0.0.0.0", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def http_call(host: str, port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def listening_addresses(port: int) -> set[str]:
    """Addresses the kernel has a TCP listener bound to on `port` (IPv4-mapped IPv6 shown as IPv4)."""
    found: set[str] = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            local, state = fields[1], fields[3]
            address_hex, port_hex = local.split(":")
            if state != "0A" or int(port_hex, 16) != port:
                continue
            # Each 32-bit word is stored in host (little-endian) order.
            raw = b"".join(bytes.fromhex(address_hex[i : i + 8])[::-1] for i in range(0, width, 8))
            address = ipaddress.ip_address(raw)
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
                address = address.ipv4_mapped
            found.add(str(address))
    return found


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that mention `text` (our temporary directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append(f"{entry.name}: {cmdline.strip()}")
    return found


@dataclass
class Archives:
    store_root: Path
    good_sha256: str
    broken_store_root: Path
    broken_sha256: str


def _archive(work: Path, model: Path, handler_source: str, store_root: Path) -> str:
    handler = work / "handler.py"
    handler.write_text(handler_source)
    export = store_root / INPUTS_DIGEST
    export.mkdir(parents=True)
    subprocess.run(
        [
            str(VENV_BIN / "torch-model-archiver"),
            "--model-name", MODEL_NAME,
            "--version", MODEL_VERSION,
            "--serialized-file", str(model),
            "--handler", str(handler),
            "--export-path", str(export),
        ],
        check=True,
        cwd=work,
    )  # fmt: skip
    return hashlib.sha256((export / f"{MODEL_NAME}.mar").read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> Archives:
    work = tmp_path_factory.mktemp("model")
    model = work / "model.pt"
    (work / "make_model.py").write_text(MODEL_SOURCE)
    subprocess.run([sys.executable, str(work / "make_model.py"), str(model)], check=True)
    good_root = tmp_path_factory.mktemp("store")
    broken_root = tmp_path_factory.mktemp("broken-store")
    return Archives(
        store_root=good_root,
        good_sha256=_archive(work, model, GOOD_HANDLER, good_root),
        broken_store_root=broken_root,
        broken_sha256=_archive(work, model, BROKEN_HANDLER, broken_root),
    )


@dataclass
class Server:
    plan: ServingPlan
    root: Path
    process: subprocess.Popen[bytes]
    output: Path
    env: dict[str, str]

    def ready(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["/bin/sh", self.plan.config_file(READY)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
        )

    def log(self) -> str:
        return self.output.read_text(errors="replace")

    def terminate(self) -> tuple[int, float]:
        """SIGTERM to the entrypoint alone, as the kubelet sends it; its exit status and the time taken."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        status = self.process.wait(timeout=STOP_DEADLINE_SECONDS)
        return status, time.monotonic() - started

    def kill_everything(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=STOP_DEADLINE_SECONDS)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        for line in processes_mentioning(str(self.root)):
            os.kill(int(line.split(":", 1)[0]), signal.SIGKILL)
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def make_plan(root: Path, store_root: Path, sha256: str) -> ServingPlan:
    inference, management, metrics, grpc_inference, grpc_management = free_ports(5)
    return ServingPlan(
        name="iris",
        namespace="models",
        uid="6c1f0e52-8a7b-4d2c-9e3f-0a1b2c3d4e5f",
        revision="7f3a9c01de",
        role="stable",
        replicas=1,
        model_name=MODEL_NAME,
        model_version=MODEL_VERSION,
        archive=ArchiveRef(
            uri=f"pvc://model-store/{INPUTS_DIGEST}/{MODEL_NAME}.mar",
            sha256=sha256,
            format="zip",
            store=PvcStore(claim_name="model-store"),
        ),
        operator=OperatorIdentity(image="modeldeploy/operator:test"),
        model_config=ModelConfig(
            batch_size=2, max_batch_delay_ms=10, min_workers=1, max_workers=1, startup_timeout_seconds=60
        ),
        ports=ServingPorts(
            inference=inference,
            management=management,
            metrics=metrics,
            grpc_inference=grpc_inference,
            grpc_management=grpc_management,
        ),
        paths=ServingPaths(
            config_dir=str(root / "config"),
            model_store=str(store_root),
            logs_dir=str(root / "logs"),
            tmp_dir=str(root / "tmp"),
        ),
    )


def start_server(root: Path, plan: ServingPlan) -> Server:
    for directory in ("config", "logs", "tmp"):
        (root / directory).mkdir()
    for key, content in render_config(plan).items():
        (root / "config" / key).write_text(content)
    env = {key: value for key, value in os.environ.items() if not key.startswith("TS_")}
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '/usr/bin:/bin')}"
    env.update({item["name"]: item["value"] for item in container_env(plan)})
    output = root / "container.log"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            ["/bin/sh", plan.config_file(ENTRYPOINT)],
            cwd=plan.paths.tmp_dir,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Server(plan=plan, root=root, process=process, output=output, env=env)


ServerFactory = Callable[..., Server]


@pytest.fixture
def server_factory(tmp_path: Path, archives: Archives) -> Iterator[ServerFactory]:
    servers: list[Server] = []
    squatters: list[socket.socket] = []

    def start(broken: bool = False, inference_port_taken: bool = False) -> Server:
        root = tmp_path / f"pod{len(servers)}"
        root.mkdir()
        store = archives.broken_store_root if broken else archives.store_root
        sha = archives.broken_sha256 if broken else archives.good_sha256
        plan = make_plan(root, store, sha)
        if inference_port_taken:
            squatter = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            squatter.bind(("0.0.0.0", plan.ports.inference))
            squatter.listen()
            squatters.append(squatter)
        server = start_server(root, plan)
        servers.append(server)
        return server

    yield start
    for squatter in squatters:
        squatter.close()
    for server in servers:
        server.kill_everything()
        assert not processes_mentioning(str(server.root))


@dataclass
class ReadyServer:
    server: Server
    first_probe: subprocess.CompletedProcess[str]
    seconds_to_ready: float


@pytest.fixture(scope="module")
def ready_server(tmp_path_factory: pytest.TempPathFactory, archives: Archives) -> Iterator[ReadyServer]:
    root = tmp_path_factory.mktemp("pod")
    server = start_server(root, make_plan(root, archives.store_root, archives.good_sha256))
    try:
        started = time.monotonic()
        first_probe = server.ready()

        def ready_now() -> bool | None:
            assert server.process.poll() is None, server.log()[-4000:]
            return True if server.ready().returncode == 0 else None

        wait_for(ready_now, "ready.sh to report the model ready", START_DEADLINE_SECONDS)
        yield ReadyServer(server, first_probe, time.monotonic() - started)
    finally:
        server.kill_everything()
        assert not processes_mentioning(str(root))


def test_ready_probe_fails_before_the_model_is_loaded_and_passes_after(ready_server: ReadyServer) -> None:
    assert ready_server.first_probe.returncode != 0
    assert "not answering" in ready_server.first_probe.stdout or "0/1" in ready_server.first_probe.stdout
    after = ready_server.server.ready()
    assert after.returncode == 0, after.stdout + after.stderr
    assert f"/models/{MODEL_NAME}/{MODEL_VERSION}: 1/1 workers READY" in after.stdout
    print(f"model ready {ready_server.seconds_to_ready:.1f}s after the entrypoint started")


def test_management_api_answers_only_on_loopback(ready_server: ReadyServer) -> None:
    ports = ready_server.server.plan.ports
    status, body = http_call("127.0.0.1", ports.management, "GET", "/models")
    assert status == 200 and MODEL_NAME in json.loads(body)["models"][0]["modelName"]
    # 127.0.0.2 reaches 0.0.0.0 listeners (inference answers) but not a 127.0.0.1 one.
    assert http_call("127.0.0.2", ports.inference, "GET", "/ping")[0] == 200
    with pytest.raises(ConnectionRefusedError):
        http_call("127.0.0.2", ports.management, "GET", "/models")
    assert listening_addresses(ports.management) == {"127.0.0.1"}
    assert listening_addresses(ports.grpc_management) == {"127.0.0.1"}
    assert listening_addresses(ports.grpc_inference) == {"127.0.0.1"}
    assert listening_addresses(ports.inference) <= {"0.0.0.0", "::"}
    assert listening_addresses(ports.metrics) <= {"0.0.0.0", "::"}


def test_model_api_refuses_to_register_or_unregister_models(ready_server: ReadyServer) -> None:
    management = ready_server.server.plan.ports.management
    status, _ = http_call("127.0.0.1", management, "POST", "/models?url=https://example.invalid/evil.mar")
    assert status == 405
    status, _ = http_call("127.0.0.1", management, "DELETE", f"/models/{MODEL_NAME}/{MODEL_VERSION}")
    assert status == 405
    assert ready_server.server.ready().returncode == 0


def test_predictions_answer_on_the_inference_port(ready_server: ReadyServer) -> None:
    inference = ready_server.server.plan.ports.inference
    status, body = http_call(
        "127.0.0.1", inference, "POST", f"/predictions/{MODEL_NAME}/{MODEL_VERSION}", b"[1, 2, 3, 4]"
    )
    assert status == 200, body
    assert json.loads(body) == pytest.approx(EXPECTED_PREDICTION)


def _requests_total(metrics_port: int) -> float:
    status, body = http_call("127.0.0.1", metrics_port, "GET", "/metrics")
    assert status == 200
    pattern = re.compile(r'^ts_inference_requests_total\{[^}]*model_name="iris"[^}]*\} ([0-9.eE+]+)$', re.M)
    return sum(float(value) for value in pattern.findall(body.decode()))


def test_metrics_port_counts_inference_requests(ready_server: ReadyServer) -> None:
    ports = ready_server.server.plan.ports
    before = _requests_total(ports.metrics)
    status, _ = http_call(
        "127.0.0.1", ports.inference, "POST", f"/predictions/{MODEL_NAME}/{MODEL_VERSION}", b"[0, 0, 0, 1]"
    )
    assert status == 200
    after = wait_for(
        lambda: total if (total := _requests_total(ports.metrics)) >= before + 1 else None,
        "ts_inference_requests_total to count the request",
        30,
    )
    assert after >= before + 1


def test_sigterm_stops_torchserve_cleanly_and_leaves_no_java(
    server_factory: ServerFactory,
) -> None:
    server = server_factory()
    wait_for(
        lambda: True if server.ready().returncode == 0 else None,
        "the model to become ready",
        START_DEADLINE_SECONDS,
    )
    status, seconds = server.terminate()
    assert status == 0, server.log()[-4000:]
    assert seconds < STOP_DEADLINE_SECONDS
    assert not [line for line in processes_mentioning(str(server.root)) if "java" in line]
    assert not processes_mentioning(str(server.root))
    # --ncs: no config snapshot that could override the ConfigMap on the next start.
    assert not (server.root / "logs" / "config").exists()
    print(f"entrypoint exited {status} {seconds:.1f}s after SIGTERM")


def test_model_load_failure_keeps_pod_unready_and_names_the_error(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(broken=True)
    expected = "Failed to load model iris, exception weights do not match the architecture: expected 12 floats, found 7"

    def failed_twice() -> bool | None:
        assert server.process.poll() is None, server.log()[-4000:]
        return True if server.log().count("Failed to load model iris") >= 2 else None

    # Two failures: TorchServe retried the load and still failed.
    wait_for(failed_twice, "TorchServe to fail loading the model twice", START_DEADLINE_SECONDS)
    probe = server.ready()
    assert probe.returncode != 0
    assert "0/1 workers READY" in probe.stdout or "not answering" in probe.stdout
    assert model_load_failure(server.log()) == expected

    status, _ = server.terminate()
    assert status == 1
    # What Kubernetes keeps as the termination message under FallbackToLogsOnError.
    termination_message = server.output.read_bytes()[-2048:].decode(errors="replace")
    assert model_load_failure(termination_message) == expected
    assert termination_message.rstrip().endswith(
        f"TorchServe stopped before model {MODEL_NAME} version {MODEL_VERSION} was ready"
    )


def test_torchserve_exiting_on_its_own_fails_the_container(server_factory: ServerFactory) -> None:
    server = server_factory(inference_port_taken=True)
    status = wait_for(server.process.poll, "the entrypoint to exit on its own", START_DEADLINE_SECONDS)
    assert status != 0
    assert (
        server.log()
        .rstrip()
        .endswith(f"TorchServe stopped before model {MODEL_NAME} version {MODEL_VERSION} was ready")
    )
    assert not processes_mentioning(str(server.root))


def test_sigterm_right_after_start_still_stops_everything(server_factory: ServerFactory) -> None:
    server = server_factory()
    # As when a pod is deleted while TorchServe is still starting: the launcher runs, the JVM may not yet.
    wait_for(
        lambda: [line for line in processes_mentioning(str(server.root)) if "--start" in line] or None,
        "the TorchServe launcher to start",
        10,
    )
    status, seconds = server.terminate()
    assert status == 1, server.log()[-4000:]
    assert seconds < STOP_DEADLINE_SECONDS
    assert not processes_mentioning(str(server.root))
