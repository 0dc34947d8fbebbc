"""The README's plain-kubectl requests are requests the engine accepts, one per action."""

from __future__ import annotations

import re
import subprocess

from modeldeploy.canary.requests import REQUEST_ANNOTATION, Action, parse_request
from support import REPO

REVISION = "1b2c3d4e5f"


def test_each_documented_kubectl_annotate_writes_a_request_the_engine_parses() -> None:
    lines = [line for line in (REPO / "README.md").read_text().splitlines()
             if line.startswith(f"kubectl annotate mdep NAME --overwrite {REQUEST_ANNOTATION}=")]
    actions = []
    for line in lines:
        # The shell expands the line as a user's would; print the annotation instead of writing it.
        script = line.replace("kubectl annotate mdep NAME --overwrite ", "printf '%s' ", 1)
        value = subprocess.run(["bash", "-c", script], env={"REV": REVISION, "USER": "alice", "PATH": "/usr/bin:/bin"},
                               capture_output=True, text=True, check=True).stdout
        key, _, text = value.partition("=")
        assert key == REQUEST_ANNOTATION
        request = parse_request(text)
        assert (request.revision, request.by) == (REVISION, "alice")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", request.at)
        actions.append((request.action, request.full))
    assert sorted(actions) == sorted([(Action.PROMOTE, False), (Action.PROMOTE, True), (Action.ABORT, False),
                                      (Action.RETRY, False), (Action.PAUSE, False), (Action.RESUME, False)])
