"""The CLI doubles as a kubectl plugin: `kubectl modeldeploy status iris -w`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from modeldeploy.status_command import describe
from support import REPO

FIXTURES = REPO / "tests" / "fixtures" / "modeldeployments"
VENV_BIN = Path(sys.executable).parent


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_finds_the_plugin_on_path() -> None:
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    listed = subprocess.run(["kubectl", "plugin", "list"], env=env, capture_output=True, text=True)
    assert str(VENV_BIN / "kubectl-modeldeploy") in listed.stdout

    helped = subprocess.run(["kubectl", "modeldeploy", "--help"], env=env, capture_output=True, text=True,
                            check=True)
    assert helped.stdout.startswith("usage: kubectl modeldeploy")
    assert "status" in helped.stdout

    status_help = subprocess.run(["kubectl", "modeldeploy", "status", "--help"], env=env, capture_output=True,
                                 text=True, check=True)
    assert "--watch" in status_help.stdout


def test_status_line_of_a_canary_names_revisions_step_weights_and_analysis() -> None:
    line = describe(yaml.safe_load((FIXTURES / "progressing-canary.yaml").read_text()))
    assert line.startswith("phase=Progressing stable=7f3a9c2e1b40 canary=c41d08e95a77 step=0")
    assert "weight=25% (effective 25%)" in line
    assert "analysis: error-rate=Successful(0)" in line
    assert line.endswith("canary c41d08e95a77 at step 1/3, weight 25 % (effective 25 %)")


def test_status_line_of_a_rolled_back_object_quotes_the_reason() -> None:
    line = describe(yaml.safe_load((FIXTURES / "rolledback.yaml").read_text()))
    assert line.startswith("phase=RolledBack stable=7f3a9c2e1b40 —")
    assert "error-rate 12.5 % > 1 %" in line


def test_status_line_of_a_new_object() -> None:
    assert describe({"metadata": {"name": "iris"}}) == "phase=Unknown"
