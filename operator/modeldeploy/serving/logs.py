"""Finding why TorchServe 0.12 could not load a model, from its log or a container's termination message."""

from __future__ import annotations

import re
from dataclasses import dataclass

# log4j pattern of TorchServe's stock and our console layout: `%d{ISO8601} [%-5p] %t %c - %m%n`.
_LOG4J_LINE = re.compile(
    r"^\d{4}-\d{2}-\d{2}T[0-9:,.]+ \[(?P<level>[A-Z]+) *\] (?P<thread>\S+) (?P<logger>\S+) - (?P<message>.*)$"
)
# ts/model_service_worker.py: a handler raising RuntimeError (or running out of memory) while loading.
_PYTHON_LOAD_FAILED = re.compile(
    r"^(Failed to load model \S+, exception .*|Load model \S+ (cpu|cuda) OOM, exception .*)$"
)
# ts/model_service_worker.py: any other exception kills the worker; its traceback follows this line.
_WORKER_DIED = "Backend worker process died."
_TRACEBACK = "Traceback (most recent call last):"
# The frontend could not register the archive (corrupt zip, bad manifest); the Java exception follows.
_JAVA_LOAD_FAILED = "Failed to load model: "
_JAVA_EXCEPTION = re.compile(r"^[A-Za-z_$][A-Za-z0-9_.$]*(Exception|Error)(: .*)?$")
# The frontend's own summary of a dead worker: true but says nothing about the cause.
_GENERIC_LOAD_FAILED = re.compile(r"^Load model failed: \S+, error: .*$")
_SCAN_AHEAD = 400

# The entrypoint prints these lines of TorchServe's log when it stops before the model was ready, so the
# end of the container log (the termination message under FallbackToLogsOnError) names the failure.
# POSIX awk; the unit tests check that model_load_failure reads its output as it reads the whole log.
LOAD_FAILURE_AWK = (
    "java_next { java_next = 0; print; next } "
    "/ModelServer - Failed to load model: / { print; java_next = 1; next } "
    "/MODEL_LOG - (Failed to load model |Load model .* OOM|Backend worker process died)/ { print; next } "
    "/MODEL_LOG - [A-Za-z_][A-Za-z0-9_.]*(Error|Exception|Exit|Interrupt)(: |$)/ { print }"
)


@dataclass(frozen=True)
class _Line:
    logger: str | None
    message: str


def _parse(log_tail: str) -> list[_Line]:
    lines: list[_Line] = []
    for raw in log_tail.splitlines():
        match = _LOG4J_LINE.match(raw)
        if match:
            lines.append(_Line(match["logger"], match["message"]))
        else:
            lines.append(_Line(None, raw))
    return lines


def _worker_exception(lines: list[_Line], start: int) -> str | None:
    """The first exception line of the worker traceback after `start`: the root cause of a chain."""
    for line in lines[start + 1 : start + 1 + _SCAN_AHEAD]:
        if line.logger != "MODEL_LOG":
            continue
        text = line.message
        if not text.strip() or text == _TRACEBACK or text[0].isspace():
            continue
        if text.startswith("During handling") or text.startswith("The above exception"):
            continue
        if text == _WORKER_DIED or _PYTHON_LOAD_FAILED.match(text):
            return None
        return text.strip()
    return None


def model_load_failure(log_tail: str) -> str | None:
    """The line that says why TorchServe could not load the model, or None if the text shows no failure.

    Accepts a container log (or its tail) and the termination message the entrypoint leaves when it
    stops before the model was ready. The most specific kind of failure wins; within a kind, the last.
    """
    lines = _parse(log_tail)
    best: tuple[int, str] | None = None

    def offer(rank: int, text: str) -> None:
        nonlocal best
        if best is None or rank >= best[0]:
            best = (rank, text)

    for index, line in enumerate(lines):
        text = line.message.strip()
        if line.logger == "MODEL_LOG":
            if _PYTHON_LOAD_FAILED.match(text):
                offer(3, text)
            elif text == _WORKER_DIED:
                cause = _worker_exception(lines, index)
                if cause:
                    offer(2, f"Backend worker process died: {cause}")
                else:
                    offer(1, _WORKER_DIED)
        elif line.logger is not None and text.startswith(_JAVA_LOAD_FAILED):
            following = lines[index + 1] if index + 1 < len(lines) else None
            if following is not None and following.logger is None and _JAVA_EXCEPTION.match(following.message):
                offer(2, f"{text}: {following.message.strip()}")
            else:
                offer(1, text)
        elif line.logger is not None and _GENERIC_LOAD_FAILED.match(text):
            offer(0, text)
    return best[1] if best else None
