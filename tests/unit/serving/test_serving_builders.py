"""The serving builders, as tables of plans and the objects that must come out."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from modeldeploy.api.spec import ModelConfig, PvcStore, S3Store
from modeldeploy.serving import (
    CONFIG_PROPERTIES,
    ENTRYPOINT,
    LOG4J2_XML,
    READY,
    ArchiveRef,
    NetworkPolicyOptions,
    ServingPlan,
    build_configmap,
    build_deployment,
    build_network_policy,
    build_objects,
    build_pdb,
    build_services,
)
from modeldeploy.settings import OperatorIdentity

SHA = "a" * 64
DIGEST = "4f6d2c1b9e8a7d3c"
UID = "6c1f0e52-8a7b-4d2c-9e3f-0a1b2c3d4e5f"
OWNER = {
    "apiVersion": "modeldeploy.dev/v1alpha1",
    "kind": "ModelDeployment",
    "name": "iris",
    "uid": UID,
    "controller": True,
    "blockOwnerDeletion": True,
}
PVC_ARCHIVE = ArchiveRef(
    uri=f"pvc://model-store/{DIGEST}/iris.mar", sha256=SHA, format="zip-store", store=PvcStore("model-store")
)
S3_ARCHIVE = ArchiveRef(
    uri=f"s3://models/archives/{DIGEST}/iris.mar",
    sha256=SHA,
    format="zip-store",
    store=S3Store(bucket="models", secret_name="s3-creds", endpoint="http://minio:9000", region="eu-west-1"),
)


def make_plan(**overrides: Any) -> ServingPlan:
    values: dict[str, Any] = {
        "name": "iris",
        "namespace": "models",
        "uid": UID,
        "revision": "7f3a9c01de",
        "role": "stable",
        "replicas": 4,
        "model_name": "iris",
        "model_version": "2",
        "archive": PVC_ARCHIVE,
        "operator": OperatorIdentity(image="ghcr.io/example/modeldeploy:0.1.0"),
        "model_config": ModelConfig(
            batch_size=8,
            max_batch_delay_ms=20,
            min_workers=1,
            max_workers=2,
            response_timeout_seconds=30,
            startup_timeout_seconds=120,
        ),
    }
    values.update(overrides)
    return ServingPlan(**values)


def properties(plan: ServingPlan) -> dict[str, str]:
    text = build_configmap(plan)["data"][CONFIG_PROPERTIES]
    pairs = [line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#")]
    assert all(len(pair) == 2 for pair in pairs)
    keys = [key for key, _ in pairs]
    assert len(keys) == len(set(keys)), "a key set twice would silently win or lose"
    return dict((key, value) for key, value in pairs)


def pod_spec(plan: ServingPlan) -> dict[str, Any]:
    spec: dict[str, Any] = build_deployment(plan)["spec"]["template"]["spec"]
    return spec


def container(plan: ServingPlan, name: str = "torchserve") -> dict[str, Any]:
    spec = pod_spec(plan)
    matches = [c for c in spec["containers"] + spec["initContainers"] if c["name"] == name]
    assert len(matches) == 1
    result: dict[str, Any] = matches[0]
    return result


# Names, labels, owners


@pytest.mark.parametrize(
    ("role", "replicas", "expected"),
    [
        (
            "stable",
            4,
            [
                ("ConfigMap", "iris-7f3a9c01de"),
                ("NetworkPolicy", "iris"),
                ("Deployment", "iris-stable"),
                ("PodDisruptionBudget", "iris-stable"),
                ("Service", "iris"),
                ("Service", "iris-stable"),
                ("Service", "iris-canary"),
            ],
        ),
        (
            "canary",
            1,
            [
                ("ConfigMap", "iris-7f3a9c01de"),
                ("NetworkPolicy", "iris"),
                ("Deployment", "iris-canary"),
                ("Service", "iris"),
                ("Service", "iris-stable"),
                ("Service", "iris-canary"),
            ],
        ),
    ],
)
def test_objects_are_named_after_the_deployment_role_and_revision(
    role: str, replicas: int, expected: list[tuple[str, str]]
) -> None:
    objects = build_objects(make_plan(role=role, replicas=replicas))
    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == expected
    assert {o["metadata"]["namespace"] for o in objects} == {"models"}


def test_every_object_is_owned_by_the_model_deployment_and_labelled() -> None:
    for obj in build_objects(make_plan()):
        metadata = obj["metadata"]
        assert metadata["ownerReferences"] == [OWNER], obj["kind"]
        assert metadata["labels"]["app.kubernetes.io/name"] == "iris"
        assert metadata["labels"]["app.kubernetes.io/managed-by"] == "modeldeploy"
        assert metadata["labels"]["modeldeploy.dev/deployment"] == "iris"


@pytest.mark.parametrize(
    ("kind", "revision", "role"),
    [
        ("ConfigMap", "7f3a9c01de", None),
        ("Deployment", "7f3a9c01de", "canary"),
        ("PodDisruptionBudget", "7f3a9c01de", "canary"),
        ("NetworkPolicy", None, None),
    ],
)
def test_revision_and_role_labels_sit_on_the_objects_they_describe(
    kind: str, revision: str | None, role: str | None
) -> None:
    (obj,) = [o for o in build_objects(make_plan(role="canary")) if o["kind"] == kind]
    labels = obj["metadata"]["labels"]
    assert labels.get("modeldeploy.dev/revision") == revision
    assert labels.get("modeldeploy.dev/role") == role


def test_pods_carry_revision_role_and_a_selector_that_survives_new_revisions() -> None:
    deployment = build_deployment(make_plan(role="canary"))
    template_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector == {"modeldeploy.dev/deployment": "iris", "modeldeploy.dev/role": "canary"}
    assert selector.items() <= template_labels.items()
    assert template_labels["modeldeploy.dev/revision"] == "7f3a9c01de"
    next_revision = build_deployment(make_plan(role="canary", revision="1b2c3d4e5f"))
    assert next_revision["spec"]["selector"] == deployment["spec"]["selector"]


# ConfigMap


def test_identical_plans_yield_identical_configmaps_for_both_roles() -> None:
    stable = build_configmap(make_plan(role="stable", replicas=4))
    canary = build_configmap(make_plan(role="canary", replicas=1))
    assert stable == build_configmap(make_plan(role="stable", replicas=4))
    # One ConfigMap per revision is shared by the roles: it must not depend on role or replicas.
    assert stable == canary
    assert set(stable["data"]) == {CONFIG_PROPERTIES, ENTRYPOINT, LOG4J2_XML, READY}


def test_config_hash_follows_the_content() -> None:
    base = build_configmap(make_plan())["metadata"]["annotations"]["modeldeploy.dev/config-hash"]
    changed_plan = make_plan(model_config=ModelConfig(batch_size=16, min_workers=1, max_workers=2))
    changed = build_configmap(changed_plan)["metadata"]["annotations"]["modeldeploy.dev/config-hash"]
    assert re.fullmatch(r"[0-9a-f]{16}", base)
    assert changed != base
    template = build_deployment(make_plan())["spec"]["template"]["metadata"]["annotations"]
    assert template["modeldeploy.dev/config-hash"] == base


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("inference_address", "http://0.0.0.0:8080"),
        ("management_address", "http://127.0.0.1:8081"),
        ("metrics_address", "http://0.0.0.0:8082"),
        ("grpc_inference_address", "127.0.0.1"),
        ("grpc_management_address", "127.0.0.1"),
        ("grpc_inference_port", "7070"),
        ("grpc_management_port", "7071"),
        ("enable_model_api", "false"),
        ("enable_envvars_config", "false"),
        ("install_py_dep_per_model", "false"),
        ("metrics_mode", "prometheus"),
        ("disable_token_authorization", "true"),
        ("model_store", f"/home/model-server/model-store/{DIGEST}"),
        ("load_models", "iris=iris.mar"),
        ("default_workers_per_model", "1"),
        ("default_response_timeout", "30"),
        ("default_startup_timeout", "120"),
        ("job_queue_size", "100"),
        ("number_of_netty_threads", "2"),
        ("netty_client_threads", "2"),
        ("allowed_urls", f"file:///home/model-server/model-store/{DIGEST}/.*"),
    ],
)
def test_config_properties_are_hardened(key: str, expected: str) -> None:
    assert properties(make_plan())[key] == expected


def test_models_json_sets_workers_batching_and_timeouts_of_the_served_version() -> None:
    models = json.loads(properties(make_plan())["models"])
    assert models == {
        "iris": {
            "2": {
                "defaultVersion": True,
                "marName": "iris.mar",
                "minWorkers": 1,
                "maxWorkers": 2,
                "batchSize": 8,
                "maxBatchDelay": 20,
                "responseTimeout": 30,
                "startupTimeout": 120,
            }
        }
    }


def test_jvm_flags_size_the_heap_from_the_container() -> None:
    vmargs = properties(make_plan(jvm_max_ram_percentage=30))["vmargs"].split()
    assert "-XX:+UseContainerSupport" in vmargs
    assert "-XX:MaxRAMPercentage=30" in vmargs
    assert "-XX:+ExitOnOutOfMemoryError" in vmargs


def test_token_authorization_is_off_only_with_the_reason_written_next_to_it() -> None:
    text = build_configmap(make_plan())["data"][CONFIG_PROPERTIES]
    comment = text.split("disable_token_authorization=true")[0].rsplit("enable_envvars_config=false", 1)[1]
    assert "127.0.0.1" in comment and "NetworkPolicy" in comment


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        (f"file:///home/model-server/model-store/{DIGEST}/iris.mar", True),
        (f"file:///home/model-server/model-store/{DIGEST}x/iris.mar", False),
        ("file:///home/model-server/model-store/other/iris.mar", False),
        ("https://example.com/iris.mar", False),
        ("file:///etc/passwd", False),
    ],
)
def test_allowed_urls_admit_only_the_verified_model_store(url: str, allowed: bool) -> None:
    # Java and Python agree on this regex: only literals, `[.]` and `.*`.
    pattern = properties(make_plan())["allowed_urls"]
    assert bool(re.fullmatch(pattern, url)) is allowed


def test_s3_archives_are_served_from_the_pods_own_model_store() -> None:
    props = properties(make_plan(archive=S3_ARCHIVE))
    assert props["model_store"] == "/home/model-server/model-store"
    assert props["load_models"] == "iris=iris.mar"


@pytest.mark.parametrize("key", [ENTRYPOINT, READY])
def test_scripts_are_valid_posix_sh(key: str) -> None:
    script = build_configmap(make_plan())["data"][key]
    assert script.startswith("#!/bin/sh\n")
    subprocess.run(["sh", "-n"], input=script, text=True, check=True)


def test_entrypoint_runs_torchserve_in_the_foreground_and_stops_it_on_sigterm() -> None:
    script = build_configmap(make_plan())["data"][ENTRYPOINT]
    assert "trap stop_torchserve TERM INT" in script
    assert "torchserve --stop --foreground" in script
    start = script[script.index("torchserve --start") :].split("&\n")[0]
    for flag in ("--foreground", "--ncs", "--ts-config /home/model-server/config/config.properties"):
        assert flag in start
    assert "--log-config /home/model-server/config/log4j2.xml" in start
    for variable in ("LOG_LOCATION", "METRICS_LOCATION", "TEMP", "TMPDIR"):
        assert f"export {variable}=" in script


# Readiness probe: the rule, against TorchServe's describe-model answer shape


class _DescribeModel:
    """A management endpoint answering GET /models/iris/2 like TorchServe 0.12 does."""

    def __init__(self, status: int, workers: list[str]) -> None:
        import http.server
        import threading

        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.paths.append(self.path)
                described = [{"modelName": "iris", "modelVersion": "2", "workers": [{"status": s} for s in workers]}]
                body = json.dumps(described if status == 200 else {"code": status}).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.paths: list[str] = []
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def describe_model(request: pytest.FixtureRequest) -> Iterator[_DescribeModel]:
    status, workers = request.param
    endpoint = _DescribeModel(status, workers)
    yield endpoint
    endpoint.close()


@pytest.mark.parametrize(
    ("describe_model", "ready"),
    [
        ((200, ["READY", "READY"]), True),
        ((200, ["READY", "READY", "READY"]), True),
        ((200, ["READY", "UNLOADING"]), False),
        ((200, []), False),
        ((404, []), False),
    ],
    indirect=["describe_model"],
    ids=["two-ready", "three-ready", "one-loading", "no-workers", "unknown-version"],
)
def test_ready_probe_needs_min_workers_ready(describe_model: _DescribeModel, ready: bool, tmp_path: Any) -> None:
    plan = make_plan(
        model_config=ModelConfig(min_workers=2, max_workers=3),
        ports=dataclasses.replace(make_plan().ports, management=describe_model.port),
        paths=dataclasses.replace(make_plan().paths, tmp_dir=str(tmp_path)),
    )
    marker = tmp_path / ".modeldeploy-ready"
    marker.touch()
    script = build_configmap(plan)["data"][READY]
    result = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30)
    assert (result.returncode == 0) is ready, result.stdout + result.stderr
    assert describe_model.paths == ["/models/iris/2"]
    # The entrypoint reads the marker to tell a clean stop from a stop before the model was ready.
    assert marker.exists() is ready


def test_ready_probe_fails_when_the_management_api_is_down(tmp_path: Any) -> None:
    endpoint = _DescribeModel(200, [])
    port = endpoint.port
    endpoint.close()
    plan = make_plan(
        ports=dataclasses.replace(make_plan().ports, management=port),
        paths=dataclasses.replace(make_plan().paths, tmp_dir=str(tmp_path)),
    )
    result = subprocess.run(["sh", "-c", build_configmap(plan)["data"][READY]], capture_output=True, text=True)
    assert result.returncode == 1
    assert "management API not answering" in result.stdout


# Deployment

_RESTRICTED_VOLUME_TYPES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret",
}  # fmt: skip


def restricted_violations(spec: dict[str, Any]) -> list[str]:
    """The Pod Security Standard "restricted" (v1.30) checks a pod spec fails, as the admission plugin words them."""
    problems = []
    pod_context = spec.get("securityContext", {})
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            problems.append(f"{key}=true")
    for volume in spec.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= _RESTRICTED_VOLUME_TYPES:
            problems.append(f"volume {volume['name']} uses {kinds}")
    if pod_context.get("runAsUser") == 0:
        problems.append("pod runAsUser=0")
    for c in spec.get("initContainers", []) + spec["containers"]:
        context = c.get("securityContext", {})
        if context.get("privileged"):
            problems.append(f"{c['name']}: privileged")
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{c['name']}: allowPrivilegeEscalation != false")
        if "ALL" not in context.get("capabilities", {}).get("drop", []):
            problems.append(f"{c['name']}: capabilities not dropping ALL")
        if set(context.get("capabilities", {}).get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{c['name']}: capabilities added")
        if context.get("runAsNonRoot", pod_context.get("runAsNonRoot")) is not True:
            problems.append(f"{c['name']}: runAsNonRoot != true")
        if context.get("runAsUser", pod_context.get("runAsUser")) == 0:
            problems.append(f"{c['name']}: runAsUser=0")
        seccomp = context.get("seccompProfile", pod_context.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{c['name']}: seccompProfile {seccomp}")
        if any("hostPort" in port for port in c.get("ports", [])):
            problems.append(f"{c['name']}: hostPort")
    return problems


@pytest.mark.parametrize("archive", [PVC_ARCHIVE, S3_ARCHIVE], ids=["pvc", "s3"])
def test_pods_pass_the_restricted_pod_security_profile(archive: ArchiveRef) -> None:
    spec = pod_spec(make_plan(archive=archive))
    assert restricted_violations(spec) == []
    assert spec["securityContext"]["runAsUser"] == 1000
    for c in spec["initContainers"] + spec["containers"]:
        assert c["securityContext"]["readOnlyRootFilesystem"] is True


def test_restricted_check_notices_a_privileged_pod() -> None:
    spec = pod_spec(make_plan())
    spec["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    spec["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    assert len(restricted_violations(spec)) == 2


def test_pods_get_no_api_token_and_no_service_links() -> None:
    spec = pod_spec(make_plan())
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False


def test_torchserve_writes_only_to_empty_dirs() -> None:
    plan = make_plan()
    spec = pod_spec(plan)
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m for m in container(plan)["volumeMounts"]}
    writable = {path for path, m in mounts.items() if not m.get("readOnly")}
    assert writable == {"/home/model-server/logs", "/tmp"}
    assert all("emptyDir" in volumes[mounts[path]["name"]] for path in writable)
    env = {e["name"]: e["value"] for e in container(plan)["env"]}
    assert env == {
        "LOG_LOCATION": "/home/model-server/logs",
        "METRICS_LOCATION": "/home/model-server/logs",
        "TEMP": "/tmp",
        "TMPDIR": "/tmp",
    }
    assert container(plan)["workingDir"] == "/tmp"


@pytest.mark.parametrize(
    ("startup_timeout", "response_timeout", "pre_stop", "startup_failures", "grace"),
    [
        (120, 30, 5, 36, 50),
        (30, 120, 5, 18, 140),
        (7, 1, 0, 14, 16),
        (600, 600, 10, 132, 625),
    ],
)
def test_probe_and_shutdown_timings_follow_the_model_config(
    startup_timeout: int, response_timeout: int, pre_stop: int, startup_failures: int, grace: int
) -> None:
    plan = make_plan(
        model_config=ModelConfig(startup_timeout_seconds=startup_timeout, response_timeout_seconds=response_timeout),
        pre_stop_sleep_seconds=pre_stop,
    )
    serving = container(plan)
    startup = serving["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= startup_timeout + 60
    assert startup["failureThreshold"] == startup_failures
    assert pod_spec(plan)["terminationGracePeriodSeconds"] == grace
    assert pod_spec(plan)["terminationGracePeriodSeconds"] >= response_timeout + pre_stop
    if pre_stop:
        assert serving["lifecycle"] == {"preStop": {"exec": {"command": ["sleep", str(pre_stop)]}}}
    else:
        assert "lifecycle" not in serving


def test_readiness_asks_the_management_api_and_liveness_pings() -> None:
    serving = container(make_plan())
    ready = ["/bin/sh", "/home/model-server/config/ready.sh"]
    assert serving["startupProbe"]["exec"]["command"] == ready
    assert serving["readinessProbe"]["exec"]["command"] == ready
    assert serving["livenessProbe"]["httpGet"] == {"path": "/ping", "port": "inference"}
    assert serving["command"] == ["/bin/sh", "/home/model-server/config/entrypoint.sh"]
    assert serving["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert container(make_plan(), "verify-archive")["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_serving_container_uses_the_plan_image_resources_and_named_ports() -> None:
    resources = {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "4Gi"}}
    plan = make_plan(image="pytorch/torchserve:0.12.0-gpu", resources=resources)
    serving = container(plan)
    assert serving["image"] == "pytorch/torchserve:0.12.0-gpu"
    assert serving["resources"] == resources
    assert [(p["name"], p["containerPort"]) for p in serving["ports"]] == [("inference", 8080), ("metrics", 8082)]
    assert build_deployment(plan)["spec"]["replicas"] == 4


def test_pod_template_records_revision_and_archive_digest() -> None:
    annotations = build_deployment(make_plan())["spec"]["template"]["metadata"]["annotations"]
    assert annotations["modeldeploy.dev/revision"] == "7f3a9c01de"
    assert annotations["modeldeploy.dev/archive-sha256"] == SHA


def test_serving_pods_invite_prometheus_to_scrape_torchserve_metrics() -> None:
    annotations = build_deployment(make_plan())["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "8082"
    assert annotations["prometheus.io/path"] == "/metrics"


@pytest.mark.parametrize(
    ("archive", "command", "store_volume", "verify_mount_read_only"),
    [
        (
            PVC_ARCHIVE,
            [
                "modeldeploy", "archive", "verify",
                f"/home/model-server/model-store/{DIGEST}/iris.mar", "--sha256", SHA,
            ],
            {"name": "model-store", "persistentVolumeClaim": {"claimName": "model-store", "readOnly": True}},
            True,
        ),
        (
            S3_ARCHIVE,
            [
                "modeldeploy", "archive", "verify", f"s3://models/archives/{DIGEST}/iris.mar",
                "--sha256", SHA, "--output", "/home/model-server/model-store/iris.mar",
            ],
            {"name": "model-store", "emptyDir": {}},
            False,
        ),
    ],
    ids=["pvc", "s3"],
)  # fmt: skip
def test_init_container_verifies_the_archive_digest_before_torchserve_starts(
    archive: ArchiveRef, command: list[str], store_volume: dict[str, Any], verify_mount_read_only: bool
) -> None:
    plan = make_plan(archive=archive)
    verify = container(plan, "verify-archive")
    assert verify["image"] == "ghcr.io/example/modeldeploy:0.1.0"
    assert verify["command"] == command
    assert store_volume in pod_spec(plan)["volumes"]
    (store_mount,) = [m for m in verify["volumeMounts"] if m["name"] == "model-store"]
    assert store_mount["readOnly"] is verify_mount_read_only
    (served,) = [m for m in container(plan)["volumeMounts"] if m["name"] == "model-store"]
    assert served["readOnly"] is True


def test_only_the_verifier_sees_s3_credentials() -> None:
    plan = make_plan(archive=S3_ARCHIVE)
    env = {e["name"]: e for e in container(plan, "verify-archive")["env"]}
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"] == {"secretKeyRef": {"name": "s3-creds", "key": "AWS_ACCESS_KEY_ID"}}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "s3-creds"
    assert env["AWS_ENDPOINT_URL"]["value"] == "http://minio:9000"
    assert env["AWS_DEFAULT_REGION"]["value"] == "eu-west-1"
    assert not [e for e in container(plan)["env"] if e["name"].startswith("AWS_")]


def test_operator_command_prefixes_the_verify_command() -> None:
    plan = make_plan(operator=OperatorIdentity(command=("python", "-m", "modeldeploy")))
    assert container(plan, "verify-archive")["command"][:5] == ["python", "-m", "modeldeploy", "archive", "verify"]


# Management port: nowhere


def _ports_anywhere(obj: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in ("port", "containerPort", "targetPort", "hostPort", "name") and isinstance(value, (int, str)):
                yield key, value
            yield from _ports_anywhere(value)
    elif isinstance(obj, list):
        for item in obj:
            yield from _ports_anywhere(item)


@pytest.mark.parametrize("archive", [PVC_ARCHIVE, S3_ARCHIVE], ids=["pvc", "s3"])
def test_management_and_grpc_ports_are_in_no_object(archive: ArchiveRef) -> None:
    for obj in build_objects(make_plan(archive=archive)):
        for key, value in _ports_anywhere(obj):
            assert value not in (8081, 7070, 7071, "management"), (obj["kind"], key, value)


# Services, NetworkPolicy, PodDisruptionBudget


def test_services_select_both_roles_or_one_and_expose_no_management() -> None:
    services = {s["metadata"]["name"]: s["spec"] for s in build_services(make_plan())}
    assert services == {
        "iris": {
            "type": "ClusterIP",
            "selector": {"modeldeploy.dev/deployment": "iris"},
            "ports": [{"name": "inference", "port": 8080, "targetPort": "inference", "protocol": "TCP"}],
        },
        "iris-stable": {
            "type": "ClusterIP",
            "selector": {"modeldeploy.dev/deployment": "iris", "modeldeploy.dev/role": "stable"},
            "ports": [
                {"name": "inference", "port": 8080, "targetPort": "inference", "protocol": "TCP"},
                {"name": "metrics", "port": 8082, "targetPort": "metrics", "protocol": "TCP"},
            ],
        },
        "iris-canary": {
            "type": "ClusterIP",
            "selector": {"modeldeploy.dev/deployment": "iris", "modeldeploy.dev/role": "canary"},
            "ports": [
                {"name": "inference", "port": 8080, "targetPort": "inference", "protocol": "TCP"},
                {"name": "metrics", "port": 8082, "targetPort": "metrics", "protocol": "TCP"},
            ],
        },
    }
    assert build_services(make_plan(role="canary", revision="1b2c3d4e5f")) == build_services(make_plan())


@pytest.mark.parametrize(
    ("operator_namespace", "options", "metrics_from"),
    [
        ("modeldeploy-system", NetworkPolicyOptions(), ["modeldeploy-system"]),
        ("modeldeploy-system", NetworkPolicyOptions(monitoring_namespace="monitoring"),
         ["modeldeploy-system", "monitoring"]),
        ("ops", NetworkPolicyOptions(monitoring_namespace="ops"), ["ops"]),
    ],
)
def test_network_policy_opens_inference_to_all_and_metrics_to_scrapers_only(
    operator_namespace: str, options: NetworkPolicyOptions, metrics_from: list[str]
) -> None:
    operator = OperatorIdentity(image="ghcr.io/example/modeldeploy:0.1.0", namespace=operator_namespace)
    policy = build_network_policy(make_plan(network_policy=options, operator=operator))
    assert policy is not None
    spec = policy["spec"]
    assert spec["podSelector"] == {"matchLabels": {"modeldeploy.dev/deployment": "iris"}}
    assert spec["policyTypes"] == ["Ingress"]
    inference, metrics = spec["ingress"]
    assert inference == {"ports": [{"protocol": "TCP", "port": 8080}]}
    assert metrics["ports"] == [{"protocol": "TCP", "port": 8082}]
    (source,) = metrics["from"]
    (expression,) = source["namespaceSelector"]["matchExpressions"]
    assert expression == {"key": "kubernetes.io/metadata.name", "operator": "In", "values": metrics_from}


def test_network_policy_can_be_turned_off() -> None:
    assert build_network_policy(make_plan(network_policy=NetworkPolicyOptions(enabled=False))) is None


@pytest.mark.parametrize(("replicas", "has_budget"), [(0, False), (1, False), (2, True), (10, True)])
def test_disruption_budget_only_when_more_than_one_replica(replicas: int, has_budget: bool) -> None:
    budget = build_pdb(make_plan(replicas=replicas, role="canary"))
    if not has_budget:
        assert budget is None
        return
    assert budget is not None
    assert budget["metadata"]["name"] == "iris-canary"
    assert budget["spec"] == {
        "maxUnavailable": 1,
        "selector": {"matchLabels": {"modeldeploy.dev/deployment": "iris", "modeldeploy.dev/role": "canary"}},
    }


# Plan validation: errors name the field, the value and the bound


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"name": "a-very-long-model-deployment-name-that-leaves-no-room-for-x"}, "metadata.name"),
        ({"name": "Iris"}, "metadata.name"),
        ({"revision": "7F3A9C01DE"}, "revision"),
        ({"revision": "7f3a9c01"}, "revision"),
        ({"role": "blue"}, "role"),
        ({"replicas": -1}, "serving.replicas"),
        ({"model_name": "iris model"}, "model.name"),
        ({"model_version": "2'"}, "model.version"),
        ({"operator": OperatorIdentity(command=())}, "operatorCommand"),
        ({"jvm_max_ram_percentage": 95}, "jvmMaxRamPercentage"),
    ],
)
def test_invalid_plans_are_refused_naming_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=re.escape(field)):
        make_plan(**overrides)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"min_workers": 0}, "minWorkers"),
        ({"min_workers": 3, "max_workers": 2}, "maxWorkers"),
        ({"batch_size": 0}, "batchSize"),
        ({"response_timeout_seconds": 0}, "responseTimeoutSeconds"),
    ],
)
def test_invalid_model_configs_are_refused(kwargs: dict[str, int], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        ModelConfig(**kwargs)


@pytest.mark.parametrize(
    ("uri", "sha256", "store"),
    [
        (f"pvc://model-store/{DIGEST}/iris.mar", "A" * 64, PvcStore("model-store")),
        (f"pvc://other-claim/{DIGEST}/iris.mar", SHA, PvcStore("model-store")),
        (f"pvc://model-store/../{DIGEST}/iris.mar", SHA, PvcStore("model-store")),
        (f"s3://models/{DIGEST}/iris.mar", SHA, PvcStore("model-store")),
        (f"pvc://model-store/{DIGEST}/iris mar", SHA, PvcStore("model-store")),
        ("pvc://model-store/", SHA, PvcStore("model-store")),
    ],
    ids=["uppercase-sha", "other-claim", "traversal", "wrong-scheme", "space", "no-path"],
)
def test_archive_references_outside_the_store_are_refused(uri: str, sha256: str, store: PvcStore) -> None:
    with pytest.raises(ValueError, match="archive"):
        ArchiveRef(uri=uri, sha256=sha256, format="zip", store=store)
