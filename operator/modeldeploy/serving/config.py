"""The ConfigMap `NAME-REVISION`: TorchServe's hardened config.properties, logging, entrypoint and probe."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from modeldeploy.api.labels import ANNOTATION_CONFIG_HASH, object_meta
from modeldeploy.serving.logs import LOAD_FAILURE_AWK
from modeldeploy.serving.plan import ServingPlan

CONFIG_PROPERTIES = "config.properties"
LOG4J2_XML = "log4j2.xml"
ENTRYPOINT = "entrypoint.sh"
READY = "ready.sh"
# Kubernetes keeps at most 2048 bytes of log as a termination message: 6 lines of 300 chars fit.
_FAILURE_LINES = 6
_FAILURE_LINE_CHARS = 300


def _java_regex_for_dir(path: str) -> str:
    """A Java regex matching files under `path` (paths are [A-Za-z0-9/_.-] only, so `.` is all to quote).

    A character class rather than a backslash: config.properties would eat the backslash.
    """
    return "file://" + path.replace(".", "[.]") + "/.*"


def models_json(plan: ServingPlan) -> str:
    """TorchServe's `models=` value: the per-version worker, batching and timeout settings."""
    config = plan.model_config
    settings = {
        plan.model_name: {
            plan.model_version: {
                "defaultVersion": True,
                "marName": plan.archive.file_name,
                "minWorkers": config.min_workers,
                "maxWorkers": config.max_workers,
                "batchSize": config.batch_size,
                "maxBatchDelay": config.max_batch_delay_ms,
                "responseTimeout": config.response_timeout_seconds,
                "startupTimeout": config.startup_timeout_seconds,
            }
        }
    }
    return json.dumps(settings, sort_keys=True, separators=(",", ":"))


def jvm_args(plan: ServingPlan) -> str:
    """JVM flags: size the heap from the container's limit, no perf files, die on OOM to be restarted."""
    return " ".join(
        [
            "-XX:+UseContainerSupport",
            f"-XX:MaxRAMPercentage={plan.jvm_max_ram_percentage}",
            "-XX:-UsePerfData",
            "-XX:+ExitOnOutOfMemoryError",
        ]
    )


def render_config_properties(plan: ServingPlan) -> str:
    """TorchServe's config.properties for the plan, hardened for a pod."""
    ports = plan.ports
    config = plan.model_config
    lines = [
        f"# TorchServe 0.12 configuration of {plan.name} revision {plan.revision}, written by modeldeploy.",
        f"inference_address=http://0.0.0.0:{ports.inference}",
        "# Management stays on loopback: only the readiness probe inside the pod uses it (CVE-2023-43654).",
        f"management_address=http://127.0.0.1:{ports.management}",
        f"metrics_address=http://0.0.0.0:{ports.metrics}",
        "metrics_mode=prometheus",
        "# gRPC management is as powerful as HTTP management: pin both gRPC listeners to loopback.",
        "grpc_inference_address=127.0.0.1",
        f"grpc_inference_port={ports.grpc_inference}",
        "grpc_management_address=127.0.0.1",
        f"grpc_management_port={ports.grpc_management}",
        "# The pod serves exactly its verified archive: registering and unregistering by API answer 405.",
        "enable_model_api=false",
        "enable_envvars_config=false",
        "# Token keys are per process and expire, so no Service, probe or scraper could hold one.",
        "# Turning the check off is safe only because management listens on 127.0.0.1 and the",
        "# NetworkPolicy admits just inference (from anywhere) and metrics (from the operator's and",
        "# the monitoring namespaces).",
        "disable_token_authorization=true",
        "# Nothing but the verified model store may ever be loaded (CVE-2023-43654, CVE-2024-35198).",
        f"allowed_urls={_java_regex_for_dir(plan.model_store_dir)}",
        "install_py_dep_per_model=false",
        f"model_store={plan.model_store_dir}",
        f"load_models={plan.model_name}={plan.archive.file_name}",
        f"default_workers_per_model={config.min_workers}",
        f"models={models_json(plan)}",
        f"default_response_timeout={config.response_timeout_seconds}",
        f"default_startup_timeout={config.startup_timeout_seconds}",
        f"job_queue_size={plan.job_queue_size}",
        f"number_of_netty_threads={plan.netty_threads}",
        f"netty_client_threads={plan.netty_threads}",
        f"vmargs={jvm_args(plan)}",
    ]
    return "\n".join(lines) + "\n"


def render_log4j2(plan: ServingPlan) -> str:
    """Logging for a pod: everything to stdout, plus one small bounded file the entrypoint reads on failure.

    Request logs, per-request frontend lines and the metrics log files are off: kubelet probes and
    traffic would flood them, and in prometheus mode the numbers are served on the metrics port.
    """
    log_file = f"{plan.paths.logs_dir}/ts_log.log"
    pattern = "%d{ISO8601} [%-5p] %t %c - %m%n"
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Configuration>
  <Appenders>
    <Console name="STDOUT" target="SYSTEM_OUT">
      <PatternLayout pattern="{pattern}"/>
    </Console>
    <RollingFile name="ts_log" fileName="{log_file}" filePattern="{plan.paths.logs_dir}/ts_log.%i.log">
      <PatternLayout pattern="{pattern}"/>
      <Policies>
        <SizeBasedTriggeringPolicy size="10 MB"/>
      </Policies>
      <DefaultRolloverStrategy max="1"/>
    </RollingFile>
  </Appenders>
  <Loggers>
    <Logger name="ACCESS_LOG" level="off"/>
    <Logger name="TS_METRICS" level="off"/>
    <Logger name="MODEL_METRICS" level="off"/>
    <Logger name="io.netty" level="error"/>
    <Logger name="org.apache" level="off"/>
    <Logger name="org.pytorch.serve" level="info"/>
    <Logger name="org.pytorch.serve.wlm.WorkerThread" level="warn"/>
    <Logger name="org.pytorch.serve.wlm.WorkerLifeCycle" level="warn"/>
    <Logger name="org.pytorch.serve.wlm.BatchAggregator" level="warn"/>
    <Logger name="MODEL_LOG" level="info"/>
    <Root level="info">
      <AppenderRef ref="STDOUT"/>
      <AppenderRef ref="ts_log"/>
    </Root>
  </Loggers>
</Configuration>
"""


def render_entrypoint(plan: ServingPlan) -> str:
    """POSIX sh that runs TorchServe in the foreground and turns SIGTERM into `torchserve --stop`.

    Exit status: 0 after a requested stop of a serving pod; 1 (with the load failure as the last log
    lines) when TorchServe stops before the model was ready or exits on its own.
    """
    paths = plan.paths
    model = f"{plan.model_name} version {plan.model_version}"
    return f"""#!/bin/sh
# Runs TorchServe 0.12 for {plan.name} revision {plan.revision}; written by modeldeploy.
# SIGTERM to TorchServe's launcher would end only the launcher and orphan the JVM, so this wrapper
# traps it and runs `torchserve --stop`, then reports how the server ended.
set -u
export LOG_LOCATION={paths.logs_dir}
export METRICS_LOCATION={paths.logs_dir}
# TorchServe unpacks archives into java.io.tmpdir (TEMP); its pid file and worker sockets go to TMPDIR.
export TEMP={paths.tmp_dir}
export TMPDIR={paths.tmp_dir}
cd "$TMPDIR" || exit 1
# emptyDirs outlive container restarts: forget the previous run.
rm -f "$TMPDIR/.model_server.pid" {plan.ready_marker}

stopping=0
child=
stop_torchserve() {{
  stopping=1
  echo "modeldeploy: stopping TorchServe" >&2
  torchserve --stop --foreground
  # A stop that came before the launcher wrote its pid file: end the launcher before it starts the JVM.
  kill -TERM "$child" 2>/dev/null
}}
trap stop_torchserve TERM INT

report_load_failure() {{
  awk '{LOAD_FAILURE_AWK}' {paths.logs_dir}/ts_log.log 2>/dev/null \\
    | tail -n {_FAILURE_LINES} | cut -c1-{_FAILURE_LINE_CHARS} >&2
  echo "modeldeploy: TorchServe stopped before model {model} was ready" >&2
}}

torchserve --start --foreground --ncs \\
  --ts-config {plan.config_file(CONFIG_PROPERTIES)} \\
  --log-config {plan.config_file(LOG4J2_XML)} &
child=$!
wait "$child"
status=$?
# A trapped signal interrupts `wait` while the child still runs: wait again for its own status.
while kill -0 "$child" 2>/dev/null; do
  wait "$child"
  status=$?
done

if [ "$stopping" = 1 ] && [ -f {plan.ready_marker} ]; then
  exit 0
fi
report_load_failure
# An unrequested exit is a failure, and Kubernetes keeps the log tail only for failed containers.
if [ "$stopping" = 1 ] || [ "$status" = 0 ]; then
  exit 1
fi
exit "$status"
"""


def render_ready(plan: ServingPlan) -> str:
    """POSIX sh probe: ready only when the management API reports >= minWorkers READY workers.

    `/ping` answers 200 while workers load and with no model at all, so it cannot say ready.
    Python instead of curl: the TorchServe image always has python3. It keeps a marker file while
    ready, which the entrypoint reads to tell a clean stop from a stop before the model loaded.
    """
    url_path = f"/models/{plan.model_name}/{plan.model_version}"
    program = f"""
import http.client, json, os, sys
PORT = {plan.ports.management}
PATH = {json.dumps(url_path)}
MIN_READY = {plan.model_config.min_workers}
MARKER = {json.dumps(plan.ready_marker)}

def verdict():
    try:
        connection = http.client.HTTPConnection("127.0.0.1", PORT, timeout=3)
        connection.request("GET", PATH)
        response = connection.getresponse()
        body = response.read()
    except OSError as error:
        return False, "management API not answering: %s" % error
    if response.status != 200:
        return False, "GET %s: HTTP %d %s" % (PATH, response.status, body[:200].decode("utf-8", "replace"))
    statuses = [w.get("status", "?") for m in json.loads(body) for w in m.get("workers", [])]
    ready = statuses.count("READY")
    summary = "%s: %d/%d workers READY (%s)" % (PATH, ready, MIN_READY, ",".join(statuses) or "none")
    return ready >= MIN_READY, summary

ok, summary = verdict()
print(summary)
if ok:
    open(MARKER, "w").close()
elif os.path.exists(MARKER):
    os.remove(MARKER)
sys.exit(0 if ok else 1)
"""
    if "'" in program:  # pragma: no cover - guarded by the plan's validation of names and paths
        raise ValueError("the readiness program must not contain single quotes")
    return f"""#!/bin/sh
# Readiness of {plan.model_name} version {plan.model_version} for {plan.name} revision {plan.revision}.
exec python3 -c '{program}'
"""


def render_config(plan: ServingPlan) -> dict[str, str]:
    """The ConfigMap's data: every file the serving container reads from `paths.config_dir`."""
    return {
        CONFIG_PROPERTIES: render_config_properties(plan),
        ENTRYPOINT: render_entrypoint(plan),
        LOG4J2_XML: render_log4j2(plan),
        READY: render_ready(plan),
    }


def config_hash(data: dict[str, str]) -> str:
    """A short digest of the ConfigMap data; pods carry it so a content change rolls them."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(canonical).hexdigest()[:16]


def build_configmap(plan: ServingPlan) -> dict[str, Any]:
    """ConfigMap `NAME-REVISION` with config.properties, log4j2.xml, entrypoint.sh and ready.sh."""
    data = render_config(plan)
    metadata = object_meta(plan.configmap_name, plan.name, plan.namespace, plan.uid, plan.revision_labels)
    metadata["annotations"] = {ANNOTATION_CONFIG_HASH: config_hash(data)}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}
