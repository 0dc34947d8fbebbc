"""`modeldeploy archive build|verify` as the build Job and the serving pods run it (a real subprocess)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from unit.archives.slow_build import big_inputs, start_writing


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modeldeploy.archives.cli", "archive", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "src"
    root.mkdir()
    (root / "model.pt").write_bytes(b"weights" * 1000)
    (root / "handler.py").write_text("def handle(data, context):\n    return data\n")
    (root / "labels.json").write_text("{}")
    (root / "extra.txt").write_text("x")
    (root / "model-config.yaml").write_text("minWorkers: 1\n")
    (root / "requirements.txt").write_text("numpy\n")
    return {p.name: p for p in root.iterdir()} | {"root": root}


def build_args(inputs: dict[str, Path], store: Path, *extra: str) -> list[str]:
    return [
        "build",
        "--model-name",
        "iris",
        "--version",
        "1",
        "--serialized-file",
        str(inputs["model.pt"]),
        "--handler",
        f"{inputs['handler.py']}:handle",
        "--extra-files",
        f"{inputs['labels.json']},{inputs['extra.txt']}",
        "--requirements-file",
        str(inputs["requirements.txt"]),
        "--config-file",
        str(inputs["model-config.yaml"]),
        "--archive-format",
        "zip-store",
        "--store",
        str(store),
        *extra,
    ]


def test_build_prints_one_json_result_and_writes_the_termination_message(
    inputs: dict[str, Path], tmp_path: Path
) -> None:
    message = tmp_path / "termination-log"
    pin = hashlib.sha256((inputs["model.pt"]).read_bytes()).hexdigest()
    done = run(
        *build_args(
            inputs, tmp_path / "store", "--serialized-file-sha256", pin, "--termination-message-path", str(message)
        )
    )

    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert set(result) >= {"inputsDigest", "sha256", "uri", "format", "bytes", "seconds", "reused", "warnings"}
    assert result["format"] == "zip-store" and result["reused"] is False and result["warnings"] == []
    assert json.loads(message.read_text()) == result
    assert len(message.read_bytes()) <= 4096
    manifest = subprocess.run(
        ["unzip", "-p", result["uri"].removeprefix("file://"), "MAR-INF/MANIFEST.json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    model = json.loads(manifest)["model"]
    assert model["handler"] == "handler.py:handle"
    assert model["requirementsFile"] == "requirements.txt" and model["configFile"] == "model-config.yaml"

    again = run(*build_args(inputs, tmp_path / "store"))
    assert json.loads(again.stdout)["reused"] is True


def test_a_refused_input_exits_2_with_one_line_naming_input_value_and_rule(
    inputs: dict[str, Path], tmp_path: Path
) -> None:
    message = tmp_path / "termination-log"
    done = run(
        *build_args(
            inputs, tmp_path / "store", "--serialized-file-sha256", "0" * 64, "--termination-message-path", str(message)
        )
    )

    assert done.returncode == 2
    assert done.stdout == ""
    error_lines = done.stderr.strip().splitlines()
    assert len(error_lines) == 1
    assert error_lines[0].startswith("modeldeploy archive build: refused: serializedFile: ")
    assert str(inputs["model.pt"]) in error_lines[0] and "pin" in error_lines[0]
    document = json.loads(message.read_text())
    assert document["reason"] == "InputRefused" and "serializedFile" in document["message"]


def test_a_model_name_torchserve_rejects_exits_2(inputs: dict[str, Path], tmp_path: Path) -> None:
    args = build_args(inputs, tmp_path / "store")
    args[args.index("iris")] = "../iris"
    done = run(*args)
    assert done.returncode == 2
    assert "modelName: '../iris' refused" in done.stderr


def test_an_unwritable_store_exits_1(inputs: dict[str, Path], tmp_path: Path) -> None:
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    done = run(*build_args(inputs, blocker / "store"))
    assert done.returncode == 1
    assert done.stderr.startswith("modeldeploy archive build: failed: ")


def test_a_builtin_handler_needs_no_file(inputs: dict[str, Path], tmp_path: Path) -> None:
    done = run(
        "build",
        "--model-name",
        "resnet",
        "--version",
        "1",
        "--serialized-file",
        str(inputs["model.pt"]),
        "--handler",
        "image_classifier",
        "--archive-format",
        "tgz",
        "--store",
        str(tmp_path / "store"),
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["format"] == "tgz"


def test_verify_exits_0_on_match_and_1_on_mismatch(inputs: dict[str, Path], tmp_path: Path) -> None:
    built = json.loads(run(*build_args(inputs, tmp_path / "store")).stdout)

    ok = run("verify", built["uri"], "--sha256", built["sha256"])
    assert ok.returncode == 0 and "OK" in ok.stdout

    bad = run("verify", built["uri"], "--sha256", "f" * 64)
    assert bad.returncode == 1
    assert "FAILED" in bad.stderr and built["sha256"] in bad.stderr

    missing = run("verify", str(tmp_path / "nothing.mar"), "--sha256", built["sha256"])
    assert missing.returncode == 1 and "no such artifact" in missing.stderr


def test_the_termination_message_stays_within_the_kubernetes_limit() -> None:
    from modeldeploy.archives.cli import TERMINATION_MESSAGE_MAX, termination_message

    document = {
        "inputsDigest": "a" * 64,
        "sha256": "b" * 64,
        "warnings": [f"warning {i}: " + "x" * 500 for i in range(40)],
    }
    text = termination_message(document)
    assert len(text.encode()) <= TERMINATION_MESSAGE_MAX
    shortened = json.loads(text)
    assert shortened["inputsDigest"] == "a" * 64
    assert shortened["warnings"][-1] == "(more warnings in the build log)"


def test_sigterm_during_a_build_removes_the_staging_area(tmp_path: Path) -> None:
    import signal

    weights, handler = big_inputs(tmp_path)
    store = tmp_path / "store"
    process = start_writing(weights, handler, store)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 128 + signal.SIGTERM
    assert sorted(p.name for p in store.iterdir()) == []


def test_source_date_epoch_sets_created_on_and_a_bad_value_is_refused(
    inputs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    built = json.loads(run(*build_args(inputs, tmp_path / "store")).stdout)
    manifest = subprocess.run(
        ["unzip", "-p", built["uri"].removeprefix("file://"), "MAR-INF/MANIFEST.json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(manifest)["createdOn"] == "14/11/2023 22:13:20"

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    done = run(*build_args(inputs, tmp_path / "store"))
    assert done.returncode == 2 and "SOURCE_DATE_EPOCH: 'yesterday' refused" in done.stderr
