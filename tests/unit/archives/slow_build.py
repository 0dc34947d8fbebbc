"""A build of the archive CLI slow enough to be interrupted: 96 MiB of incompressible weights at
deflate level 9, started as a process and returned once it is writing its staged archive."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path


def big_inputs(folder: Path) -> tuple[Path, Path]:
    """The weights (96 MiB of random bytes) and a handler, written in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / "model.pt"
    with weights.open("wb") as handle:
        for _ in range(96):
            handle.write(os.urandom(1 << 20))  # incompressible: deflate level 9 takes seconds
    handler = folder / "handler.py"
    handler.write_text("def handle(data, context):\n    return data\n")
    return weights, handler


def start_writing(weights: Path, handler: Path, store: Path) -> subprocess.Popen[bytes]:
    """`modeldeploy archive build` of model `big` into `store`, once its staged archive passed 1 MiB
    (fails the test when it never gets there within a minute)."""
    command = [sys.executable, "-m", "modeldeploy.archives.cli", "archive", "build", "--model-name", "big",
               "--version", "1", "--serialized-file", str(weights), "--handler", str(handler),
               "--archive-format", "zip", "--store", str(store), "--deflate-level", "9"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if [p for p in store.glob(".staging/build-*/*/big.mar") if p.stat().st_size > 1 << 20]:
            return process
        time.sleep(0.01)
    process.kill()
    process.wait(timeout=30)
    raise AssertionError("the build never started writing")
