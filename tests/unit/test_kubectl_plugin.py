"""The CLI doubles as a kubectl plugin: `kubectl modeldeploy status iris -w`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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
