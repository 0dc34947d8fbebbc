"""The layer contracts of `make lint` hold on the package, and break when a layer is crossed.

Each breaking case lints a copy of the package with one offending import added.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support import REPO

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
PACKAGE = REPO / "operator" / "modeldeploy"

pytestmark = pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is not installed (dev extra)")


def lint(source_root: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports with the repository's contracts, importing `modeldeploy` from `source_root`."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(REPO / "pyproject.toml"), "--no-cache"],
        env={**os.environ, "PYTHONPATH": str(source_root)}, cwd=source_root,
        capture_output=True, text=True, timeout=120, check=False,
    )


def package_with(tmp_path: Path, module: str, addition: str) -> Path:
    """A copy of the package whose `module` (a path inside it) ends with `addition`."""
    shutil.copytree(PACKAGE, tmp_path / "modeldeploy", ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "modeldeploy" / module
    target.write_text(target.read_text() + "\n" + addition + "\n")
    return tmp_path


def test_the_package_keeps_its_layers() -> None:
    result = lint(REPO / "operator")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout


def test_the_engine_importing_kopf_breaks_the_lint(tmp_path: Path) -> None:
    result = lint(package_with(tmp_path, "reconcile/context.py", "import kopf  # noqa: E402, F401"))

    assert result.returncode != 0
    assert "Only handlers/ and runner.py import kopf BROKEN" in result.stdout
    assert "modeldeploy.reconcile.context -> kopf" in result.stdout


def test_a_type_only_import_upwards_breaks_the_lint(tmp_path: Path) -> None:
    addition = ("from typing import TYPE_CHECKING  # noqa: E402\n"
                "if TYPE_CHECKING:\n"
                "    from modeldeploy.reconcile.context import ReconcileContext  # noqa: F401")

    result = lint(package_with(tmp_path, "api/spec/types.py", addition))

    assert result.returncode != 0
    assert "Dependencies point one way" in result.stdout and "BROKEN" in result.stdout
    assert "modeldeploy.api.spec.types -> modeldeploy.reconcile.context" in result.stdout


def test_a_step_importing_the_chain_back_breaks_the_lint(tmp_path: Path) -> None:
    result = lint(package_with(tmp_path, "reconcile/serving.py",
                               "from modeldeploy.reconcile.chain import STEPS  # noqa: E402, F401"))

    assert result.returncode != 0
    assert "The engine's steps depend on the context, never on the chain or on each other BROKEN" in result.stdout
