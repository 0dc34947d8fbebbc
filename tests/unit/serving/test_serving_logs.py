"""model_load_failure on logs that TorchServe 0.12 printed when a model failed to load (captured excerpts)."""

from __future__ import annotations

import subprocess

import pytest

from modeldeploy.serving import LOAD_FAILURE_AWK, model_load_failure

_P = "2026-11-23T01:01:40,393 [INFO ] W-9000-iris_2-stdout MODEL_LOG - "
_J = "2026-11-23T01:01:40,420 [DEBUG] W-9000-iris_2 org.pytorch.serve.wlm.WorkerThread - "
_NETTY = "2026-11-23T01:02:20,495 [INFO ] epollEventLoopGroup-5-1 org.pytorch.serve.wlm.WorkerThread - "
_BATCH = "2026-11-23T01:02:20,507 [WARN ] W-9000-iris_2 org.pytorch.serve.wlm.BatchAggregator - "
_SERVER = "2026-11-23T01:02:47,990 [INFO ] main org.pytorch.serve.ModelServer - "

# A handler whose initialize raises RuntimeError: ts/model_service_worker.py logs "Failed to load model".
RUNTIME_ERROR_LOG = f"""\
{_P}Connection accepted: /tmp/tsx/tmp/.ts.sock.9000.
{_J}Flushing req.cmd LOAD repeats 1 to backend at: 1795395700311
{_P}model_name: iris, batchSize: 4
{_P}Failed to load model iris, exception weights file is corrupt: expected 12 floats
{_P}Traceback (most recent call last):
{_P}  File "/home/venv/lib/python3.11/site-packages/ts/model_service_worker.py", line 133, in load_model
{_P}    service = model_loader.load(
{_P}  File "/tmp/models/f957b38770b1433f990303d03779ae98/bad.py", line 2, in handle
{_P}    raise RuntimeError("weights file is corrupt: expected 12 floats")
{_P}RuntimeError: weights file is corrupt: expected 12 floats
{_P}Backend worker process died.
{_P}Traceback (most recent call last):
{_P}  File "/home/venv/lib/python3.11/site-packages/ts/model_service_worker.py", line 201, in handle_connection
{_P}    raise RuntimeError("{{}} - {{}}".format(code, result))
{_P}RuntimeError: 500 - Unknown exception
{_J}W-9000-iris_2 State change WORKER_STARTED -> WORKER_ERROR
{_J}Backend worker monitoring thread interrupted or backend worker process died., responseTimeout:30sec
java.lang.InterruptedException: null
\tat java.util.concurrent.ArrayBlockingQueue.poll(ArrayBlockingQueue.java:435) ~[?:?]
\tat java.lang.Thread.run(Thread.java:840) [?:?]
2026-11-23T01:01:40,456 [INFO ] W-9000-iris_2 org.pytorch.serve.wlm.WorkerThread - Retry worker: 9000 in 1 seconds.
"""

# Any other exception kills the worker; the root cause is the traceback's exception line, and Java
# lines of other threads interleave with it.
VALUE_ERROR_LOG = f"""\
{_P}model_name: iris, batchSize: 4
{_P}Backend worker process died.
{_NETTY}9000 Worker disconnected. WORKER_STARTED
{_P}Traceback (most recent call last):
{_P}  File "/home/venv/lib/python3.11/site-packages/ts/model_loader.py", line 143, in load
{_P}    initialize_fn(service.context)
{_P}                                ^^^^^^^^^^^^^^^^^^^^^^
{_P}  File "/tmp/models/b014cdf171374f4dad24ded798ddfbc3/val.py", line 3, in initialize
{_P}    raise ValueError("model.pt has 7 weights, expected 12")
{_P}ValueError: model.pt has 7 weights, expected 12
{_J}Backend worker monitoring thread interrupted or backend worker process died., startupTimeout:60sec
java.lang.InterruptedException: null
\tat java.lang.Thread.run(Thread.java:840) [?:?]
{_BATCH}Load model failed: iris, error: Worker died.
"""

# A handler importing a missing module: a chained traceback whose first exception is the cause.
IMPORT_ERROR_LOG = f"""\
{_P}Backend worker process died.
{_P}Traceback (most recent call last):
{_P}  File "/home/venv/lib/python3.11/site-packages/ts/model_loader.py", line 108, in load
{_P}    module, function_name = self._load_handler_file(handler)
{_P}  File "/tmp/models/379177d062914937b1296a43fc2186f0/imp.py", line 1, in <module>
{_P}    import sklearn_missing_module_xyz
{_P}ModuleNotFoundError: No module named 'sklearn_missing_module_xyz'
{_P}
{_P}During handling of the above exception, another exception occurred:
{_P}
{_P}Traceback (most recent call last):
{_P}  File "/home/venv/lib/python3.11/site-packages/ts/model_loader.py", line 159, in _load_default_handler
{_P}    module = importlib.import_module(module_name, "ts.torch_handler")
{_P}ModuleNotFoundError: No module named 'ts.torch_handler.imp'
{_BATCH}Load model failed: iris, error: Worker died.
"""

# A truncated archive: the frontend cannot even unpack it.
CORRUPT_ARCHIVE_LOG = f"""\
Model API enabled: false
2026-11-23T01:02:47,933 [INFO ] main org.pytorch.serve.ModelServer - Loading initial models: iris.mar
2026-11-23T01:02:47,949 [WARN ] main org.pytorch.serve.ModelServer - Failed to load model: iris.mar
java.io.EOFException: Unexpected end of ZLIB input stream
\tat java.util.zip.InflaterInputStream.fill(InflaterInputStream.java:244) ~[?:?]
\tat org.pytorch.serve.archive.utils.ZipUtils.unzip(ZipUtils.java:46) ~[model-server.jar:?]
{_SERVER}Initialize Inference server with: EpollServerSocketChannel.
"""

HEALTHY_LOG = f"""\
2026-11-23T01:08:48,148 [INFO ] main org.pytorch.serve.wlm.ModelManager - Model iris loaded.
2026-11-23T01:08:48,208 [INFO ] main org.pytorch.serve.ModelServer - Management API bind to: http://127.0.0.1:8081
Model server started.
{_P}Torch worker started.
{_P}model_name: iris, batchSize: 2
2026-11-23T01:08:49,995 [INFO ] W-9000-iris_2 org.pytorch.serve.wlm.WorkerThread - Backend response time: 63
"""


@pytest.mark.parametrize(
    ("log", "expected"),
    [
        (RUNTIME_ERROR_LOG, "Failed to load model iris, exception weights file is corrupt: expected 12 floats"),
        (VALUE_ERROR_LOG, "Backend worker process died: ValueError: model.pt has 7 weights, expected 12"),
        (
            IMPORT_ERROR_LOG,
            "Backend worker process died: ModuleNotFoundError: No module named 'sklearn_missing_module_xyz'",
        ),
        (
            CORRUPT_ARCHIVE_LOG,
            "Failed to load model: iris.mar: java.io.EOFException: Unexpected end of ZLIB input stream",
        ),
        (HEALTHY_LOG, None),
        ("", None),
    ],
    ids=["runtime-error", "value-error", "import-error", "corrupt-archive", "healthy", "empty"],
)
def test_model_load_failure_names_the_cause(log: str, expected: str | None) -> None:
    assert model_load_failure(log) == expected


def test_model_load_failure_falls_back_to_the_frontend_summary_when_the_traceback_is_cut_off() -> None:
    tail = VALUE_ERROR_LOG.splitlines()[-1]
    assert model_load_failure(tail) == "Load model failed: iris, error: Worker died."


def test_model_load_failure_reports_a_death_whose_traceback_is_cut_off() -> None:
    assert model_load_failure(f"{_P}Backend worker process died.\n{_P}Traceback (most recent call last):\n") == (
        "Backend worker process died."
    )


def test_model_load_failure_prefers_the_latest_failure_of_the_same_kind() -> None:
    log = (
        f"{_P}Failed to load model iris, exception first attempt\n"
        f"{_P}Failed to load model iris, exception second attempt\n"
    )
    assert model_load_failure(log) == "Failed to load model iris, exception second attempt"


@pytest.mark.parametrize(
    "log",
    [RUNTIME_ERROR_LOG, VALUE_ERROR_LOG, IMPORT_ERROR_LOG, CORRUPT_ARCHIVE_LOG],
    ids=["runtime-error", "value-error", "import-error", "corrupt-archive"],
)
def test_entrypoint_failure_summary_names_the_same_cause_as_the_whole_log(log: str) -> None:
    # The entrypoint prints these lines last; Kubernetes keeps them as the termination message.
    summary = subprocess.run(["awk", LOAD_FAILURE_AWK], input=log, capture_output=True, text=True, check=True)
    assert summary.stdout
    assert len(summary.stdout.splitlines()) < len(log.splitlines())
    assert model_load_failure(summary.stdout) == model_load_failure(log)
