"""The archive benchmark: `python benchmarks/archive.py archive [--size-mib 2048]` and `... deflate-levels`.

Times, in one run and on the same generated serialized file: a plain copy (shutil.copyfile, and the
same followed by fsync), torch-model-archiver 0.12 (its default deflate format and zip-store, through
its Python API), and our builder in every format. Prints one JSON document and updates the table in
BENCHMARKS.md between its markers.

`deflate-levels` compresses float32 and float16 weights drawn like a trained layer's (normal,
sigma 0.02) at zlib levels 1, 6 and 9 on one thread, to choose the level.

Fast tools run up to --repeat times and keep their best time (the machine is shared, noise only
ever adds time); tools slower than 20 s run once. Before every timed run, dirty pages are flushed
(os.sync, untimed) so that one tool's write-back does not slow the next one down.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modeldeploy.archives import ArchiveRequest, BuildSettings, Source, build_archive
from modeldeploy.archives.deflate import DEFAULT_LEVEL, default_workers

MIB = 1 << 20
SLOW_SECONDS = 20.0
ARCHIVE_SECTION = "archive-bench"
LEVELS_SECTION = "deflate-levels"


@dataclass
class Figure:
    """One tool's best time and its output size."""

    tool: str
    seconds: float
    output_bytes: int
    runs: int


def _generate(path: Path, size_mib: int) -> None:
    """Random (incompressible) bytes, written in 16 MiB blocks."""
    with path.open("wb") as handle:
        remaining = size_mib * MIB
        while remaining:
            block = min(remaining, 16 * MIB)
            handle.write(os.urandom(block))
            remaining -= block
    os.sync()


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


@contextlib.contextmanager
def _tempdir_for_archiver(directory: Path) -> Iterator[None]:
    """torch-model-archiver copies its inputs to tempfile.gettempdir(): keep that on the same disk."""
    previous = tempfile.tempdir
    tempfile.tempdir = str(directory)
    try:
        yield
    finally:
        tempfile.tempdir = previous


def _time(tool: str, run: Callable[[], Path], repeat: int) -> Figure:
    best: float | None = None
    output_bytes = 0
    runs = 0
    while runs < repeat:
        os.sync()
        started = time.perf_counter()
        output = run()
        elapsed = time.perf_counter() - started
        runs += 1
        output_bytes = _size(output)
        _remove(output)
        best = elapsed if best is None else min(best, elapsed)
        print(f"  {tool}: {elapsed:.2f} s", file=sys.stderr)
        if elapsed > SLOW_SECONDS:
            break
    assert best is not None
    return Figure(tool, best, output_bytes, runs)


def run_archive_benchmark(size_mib: int, workdir: Path, repeat: int) -> dict[str, Any]:
    """Run every tool once (or up to repeat times) on one generated file; return the figures as JSON."""
    from model_archiver import ModelArchiver, ModelArchiverConfig  # type: ignore[import-untyped]

    inputs = workdir / "inputs"
    inputs.mkdir()
    weights = inputs / "model.pt"
    handler = inputs / "handler.py"
    handler.write_text("def handle(data, context):\n    return data\n")
    print(f"generating {size_mib} MiB of random bytes in {inputs}", file=sys.stderr)
    _generate(weights, size_mib)
    out = workdir / "out"
    out.mkdir()

    def copy(durable: bool) -> Callable[[], Path]:
        def run() -> Path:
            target = out / "copy.pt"
            shutil.copyfile(weights, target)
            if durable:
                fd = os.open(target, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            return target

        return run

    def sha256_only() -> Path:
        digest = hashlib.sha256()
        with weights.open("rb", buffering=0) as handle:
            while chunk := handle.read(4 * MIB):
                digest.update(chunk)
        marker = out / "sha256.txt"
        marker.write_text(digest.hexdigest())
        return marker

    def archiver(archive_format: str) -> Callable[[], Path]:
        def run() -> Path:
            config = ModelArchiverConfig(
                model_name="bench",
                handler=str(handler),
                version="1",
                serialized_file=str(weights),
                export_path=str(out),
                archive_format=archive_format,
                force=True,
            )
            with _tempdir_for_archiver(workdir):
                ModelArchiver.generate_model_archive(config)
            return out / "bench.mar"

        return run

    def ours(archive_format: str) -> Callable[[], Path]:
        def run() -> Path:
            store = out / "store"
            request = ArchiveRequest(
                model_name="bench",
                version="1",
                serialized_file=Source(str(weights)),
                handler=Source(str(handler)),
                archive_format=archive_format,  # type: ignore[arg-type]
            )
            build_archive(request, str(store), BuildSettings())
            return store

        return run

    tools: list[tuple[str, Callable[[], Path]]] = [
        ("copy (shutil.copyfile)", copy(durable=False)),
        ("copy + fsync", copy(durable=True)),
        ("sha256 of the input (one pass, reference)", sha256_only),
        ("torch-model-archiver default (deflate)", archiver("default")),
        ("torch-model-archiver zip-store", archiver("zip-store")),
        ("modeldeploy zip-store", ours("zip-store")),
        ("modeldeploy no-archive", ours("no-archive")),
        ("modeldeploy zip (deflate)", ours("zip")),
        ("modeldeploy tgz", ours("tgz")),
    ]
    figures = [_time(name, run, repeat) for name, run in tools]
    by_name = {figure.tool: figure for figure in figures}
    copy_seconds = by_name["copy (shutil.copyfile)"].seconds
    tma_seconds = by_name["torch-model-archiver default (deflate)"].seconds
    results: dict[str, Any] = {}
    for figure in figures:
        results[figure.tool] = {
            "seconds": round(figure.seconds, 3),
            "mibPerSecond": round(size_mib / figure.seconds, 1),
            "timeVsCopy": round(figure.seconds / copy_seconds, 3),
            "timeVsTmaDefault": round(figure.seconds / tma_seconds, 4),
            "outputBytes": figure.output_bytes,
            "runs": figure.runs,
        }
    ours_store = by_name["modeldeploy zip-store"].seconds
    goals = {
        "zipStoreAtLeast10xFasterThanTmaDefault": tma_seconds / ours_store >= 10,
        "zipStoreWithin1.5xOfCopy": ours_store / copy_seconds <= 1.5,
        "deflateNoSlowerThanTmaDeflate": by_name["modeldeploy zip (deflate)"].seconds <= tma_seconds,
    }
    return {
        "benchmark": "archive",
        "sizeMiB": size_mib,
        "input": "random bytes (incompressible)",
        "environment": environment(workdir),
        "figures": results,
        "goals": goals,
    }


def environment(workdir: Path) -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    filesystem = "unknown"
    with contextlib.suppress(OSError), open("/proc/mounts", encoding="utf-8") as handle:
        best = ""
        for line in handle:
            fields = line.split()
            if len(fields) > 2 and str(workdir).startswith(fields[1]) and len(fields[1]) > len(best):
                best, filesystem = fields[1], fields[2]
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "deflateThreads": default_workers(),
        "python": platform.python_version(),
        "zlib": zlib.ZLIB_RUNTIME_VERSION,
        "deflateLevel": DEFAULT_LEVEL,
        "filesystem": filesystem,
        "loadAverage": [round(value, 2) for value in os.getloadavg()],
    }


def markdown_table(report: dict[str, Any]) -> str:
    """The figures as a Markdown table with the goals under it."""
    env = report["environment"]
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {report['sizeMiB']} MiB of {report['input']}: "
        f"{env['cpu']}, {env['cpus']} CPUs (load average {env['loadAverage'][0]} at the end), "
        f"{env['filesystem']}, Python {env['python']}, zlib {env['zlib']}, deflate level {env['deflateLevel']} "
        f"on {env['deflateThreads']} threads.",
        "",
        "| tool | seconds | MiB/s | time vs copy | time vs torch-model-archiver default | output bytes | runs |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for tool, figure in report["figures"].items():
        lines.append(
            f"| {tool} | {figure['seconds']:.2f} | {figure['mibPerSecond']:.0f} | {figure['timeVsCopy']:.2f}x | "
            f"{figure['timeVsTmaDefault']:.3f}x | {figure['outputBytes']} | {figure['runs']} |"
        )
    lines.append("")
    for goal, met in report["goals"].items():
        lines.append(f"- {goal}: {'met' if met else 'NOT met'}")
    return "\n".join(lines)


def update_markdown(path: Path, section: str, title: str, table: str) -> None:
    """Replace the text between the section's markers (or append the section with them)."""
    start, end = f"<!-- {section}:start -->", f"<!-- {section}:end -->"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    block = f"{start}\n{table}\n{end}"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        _, after = rest.split(end, 1)
        text = before + block + after
    else:
        text = text.rstrip() + f"\n\n## {title}\n\n{block}\n"
    path.write_text(text, encoding="utf-8")


def run_levels_benchmark(size_mib: int) -> dict[str, Any]:
    """zlib levels 1, 6 and 9 on float weights: MiB/s on one thread and compressed/original size."""
    import numpy as np

    generator = np.random.default_rng(0)
    count = size_mib * MIB // 4
    samples = {
        "float32": generator.normal(0.0, 0.02, size=count).astype(np.float32).tobytes(),
        "float16": generator.normal(0.0, 0.02, size=count * 2).astype(np.float16).tobytes(),
    }
    figures: dict[str, dict[str, float]] = {}
    for dtype, data in samples.items():
        for level in (1, 6, 9):
            started = time.perf_counter()
            compressed = zlib.compress(data, level)
            elapsed = time.perf_counter() - started
            figures[f"{dtype} level {level}"] = {
                "mibPerSecond": round(len(data) / MIB / elapsed, 1),
                "ratio": round(len(compressed) / len(data), 4),
            }
    return {"benchmark": "deflate-levels", "sizeMiB": size_mib, "zlib": zlib.ZLIB_RUNTIME_VERSION, "figures": figures}


def levels_table(report: dict[str, Any]) -> str:
    """The level figures as a Markdown table."""
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {report['sizeMiB']} MiB per sample, one thread, "
        f"zlib {report['zlib']}.",
        "",
        "| weights, level | MiB/s | compressed / original |",
        "|---|---:|---:|",
    ]
    for name, figure in report["figures"].items():
        lines.append(f"| {name} | {figure['mibPerSecond']:.1f} | {figure['ratio']:.4f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the chosen benchmark."""
    parser = argparse.ArgumentParser(
        prog="python benchmarks/archive.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="benchmark", required=True)
    archive = commands.add_parser("archive", help="archive builders against a plain copy")
    archive.add_argument("--size-mib", type=int, default=2048, help="size of the serialized file (default 2048)")
    archive.add_argument("--dir", help="work directory (default: a new temporary directory, removed after)")
    archive.add_argument("--repeat", type=int, default=3, help="best of this many runs for tools under 20 s")
    archive.add_argument("--markdown", default="BENCHMARKS.md", help="Markdown file to update ('' to skip)")
    levels = commands.add_parser("deflate-levels", help="zlib levels on float weights")
    levels.add_argument("--size-mib", type=int, default=64, help="size of each sample (default 64)")
    levels.add_argument("--markdown", default="BENCHMARKS.md", help="Markdown file to update ('' to skip)")
    args = parser.parse_args(argv)
    if args.size_mib < 1:
        parser.error("--size-mib must be at least 1")
    if args.benchmark == "deflate-levels":
        report = run_levels_benchmark(args.size_mib)
        print(json.dumps(report, indent=2))
        if args.markdown:
            update_markdown(Path(args.markdown), LEVELS_SECTION, "Deflate levels", levels_table(report))
        return 0
    with tempfile.TemporaryDirectory(prefix="modeldeploy-bench-", dir=args.dir) as workdir:
        report = run_archive_benchmark(args.size_mib, Path(workdir), max(1, args.repeat))
    print(json.dumps(report, indent=2))
    if args.markdown:
        update_markdown(Path(args.markdown), ARCHIVE_SECTION, "Archive builds", markdown_table(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
