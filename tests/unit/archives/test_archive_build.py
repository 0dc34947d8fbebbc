"""The archive builder on real files: reproducible bytes, content addressing, reuse, crash safety, formats."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import tarfile
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from modeldeploy.archives import (
    FORMATS,
    ArchiveRequest,
    BuildSettings,
    BuiltinHandler,
    IntegrityError,
    Source,
    artifact_sha256,
    build_archive,
    inputs_digest,
    verify,
)
from unit.archives.slow_build import big_inputs, start_writing

BIG = 9 * 1024 * 1024 + 12345  # several read chunks and deflate chunks, not a multiple of either


def write_inputs(root: Path) -> dict[str, Path]:
    """Model inputs like a user's: weights (random + compressible), handler, config, extra files."""
    root.mkdir(parents=True, exist_ok=True)
    weights = root / "model.pt"
    # Deterministic, and compressible like real weights: an 8 KiB pseudo-random block repeated.
    block = b"".join(hashlib.sha256(b"weights" + bytes([i])).digest() for i in range(256))
    weights.write_bytes((block * (BIG // len(block) + 1))[:BIG])
    handler = root / "handler.py"
    handler.write_text("def handle(data, context):\n    return data\n")
    config = root / "model-config.yaml"
    config.write_text("minWorkers: 1\nmaxWorkers: 1\n")
    labels = root / "index_to_name.json"
    labels.write_text('{"0": "a", "1": "b"}\n')
    extras = root / "vocab"
    (extras / "sub").mkdir(parents=True, exist_ok=True)
    (extras / "words.txt").write_text("alpha\nbeta\n")
    (extras / "sub" / "more.txt").write_text("gamma\n")
    (extras / "__pycache__").mkdir(exist_ok=True)
    (extras / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"compiled")
    (extras / ".hidden").write_text("not packaged")
    return {"weights": weights, "handler": handler, "config": config, "labels": labels, "extras": extras}


def make_request(files: dict[str, Path], archive_format: str = "zip-store", **changes: object) -> ArchiveRequest:
    request = ArchiveRequest(
        model_name="iris",
        version="1",
        serialized_file=Source(str(files["weights"])),
        handler=Source(str(files["handler"])),
        extra_files=(Source(str(files["labels"])), Source(str(files["extras"]))),
        config_file=Source(str(files["config"])),
        archive_format=archive_format,  # type: ignore[arg-type]
    )
    return replace(request, **changes)  # type: ignore[arg-type]


def published(store: Path) -> list[str]:
    """Digest folders visible in a store."""
    return sorted(p.name for p in store.iterdir() if p.name != ".staging") if store.exists() else []


def leftovers(store: Path) -> list[str]:
    """Anything under the staging area."""
    staging = store / ".staging"
    return sorted(str(p) for p in staging.rglob("*")) if staging.exists() else []


def artifact_bytes(uri: str) -> bytes:
    return Path(uri.removeprefix("file://")).read_bytes()


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    return write_inputs(tmp_path / "inputs")


@pytest.mark.parametrize("archive_format", FORMATS)
def test_two_builds_of_the_same_inputs_are_byte_identical(
    inputs: dict[str, Path], tmp_path: Path, archive_format: str
) -> None:
    request = make_request(inputs, archive_format)
    first = build_archive(request, str(tmp_path / "store-a"), BuildSettings(workers=1))
    second = build_archive(request, str(tmp_path / "store-b"), BuildSettings(workers=2))

    assert first.inputs_digest == second.inputs_digest
    assert first.sha256 == second.sha256
    assert not first.reused and not second.reused
    assert artifact_sha256(first.uri) == first.sha256
    if archive_format != "no-archive":
        assert artifact_bytes(first.uri) == artifact_bytes(second.uri)
        assert hashlib.sha256(artifact_bytes(first.uri)).hexdigest() == first.sha256
        assert first.bytes == len(artifact_bytes(first.uri))


def test_inputs_in_another_directory_with_other_mtimes_give_the_same_artifact(
    inputs: dict[str, Path], tmp_path: Path
) -> None:
    copies = write_inputs(tmp_path / "elsewhere")
    for path in copies.values():
        if path.is_file():
            os.utime(path, (1_000_000, 1_000_000))

    original = build_archive(make_request(inputs, "zip"), str(tmp_path / "store-a"))
    moved = build_archive(make_request(copies, "zip"), str(tmp_path / "store-b"))

    assert moved.inputs_digest == original.inputs_digest
    assert moved.sha256 == original.sha256


@pytest.mark.parametrize(
    "change",
    [
        "weights byte",
        "handler text",
        "extra file renamed",
        "extra file added",
        "model name",
        "version",
        "format",
        "created-on epoch",
        "built-in handler",
        "handler entry point",
        "deflate level",
        "config dropped",
    ],
)
def test_any_input_or_option_change_gives_a_new_inputs_digest(
    inputs: dict[str, Path], tmp_path: Path, change: str
) -> None:
    base = make_request(inputs, "zip")
    before = inputs_digest(base)
    changed = base
    if change == "weights byte":
        with inputs["weights"].open("r+b") as handle:
            handle.seek(BIG // 2)
            old = handle.read(1)
            handle.seek(BIG // 2)
            handle.write(bytes([old[0] ^ 1]))
    elif change == "handler text":
        inputs["handler"].write_text("def handle(data, context):\n    return None\n")
    elif change == "extra file renamed":
        changed = replace(
            base, extra_files=(Source(str(inputs["labels"]), archive_name="labels.json"), Source(str(inputs["extras"])))
        )
    elif change == "extra file added":
        (inputs["extras"] / "new.txt").write_text("delta\n")
    elif change == "model name":
        changed = replace(base, model_name="iris2")
    elif change == "version":
        changed = replace(base, version="2")
    elif change == "format":
        changed = replace(base, archive_format="tgz")
    elif change == "created-on epoch":
        changed = replace(base, created_on_epoch=1_700_000_000)
    elif change == "built-in handler":
        changed = replace(base, handler=BuiltinHandler("base_handler"))
    elif change == "handler entry point":
        changed = replace(base, handler_entry_point="handle")
    elif change == "deflate level":
        changed = replace(base, deflate_level=6)
    elif change == "config dropped":
        changed = replace(base, config_file=None)

    assert inputs_digest(changed) != before


def test_the_result_digest_is_the_digest_of_the_request(inputs: dict[str, Path], tmp_path: Path) -> None:
    request = make_request(inputs, "tgz")
    assert build_archive(request, str(tmp_path / "store")).inputs_digest == inputs_digest(request)


@pytest.mark.parametrize("archive_format", FORMATS)
def test_a_second_build_reuses_the_artifact_without_rewriting_it(
    inputs: dict[str, Path], tmp_path: Path, archive_format: str
) -> None:
    store = tmp_path / "store"
    request = make_request(inputs, archive_format)
    first = build_archive(request, str(store))
    artifact = Path(first.uri.removeprefix("file://"))
    record = artifact.parent / "record.json"
    before = (artifact.stat().st_mtime_ns, artifact.stat().st_ino, record.stat().st_mtime_ns)
    time.sleep(0.01)  # a rewrite would then show a later mtime

    second = build_archive(request, str(store))

    assert second.reused
    assert (second.inputs_digest, second.sha256, second.uri) == (first.inputs_digest, first.sha256, first.uri)
    assert (artifact.stat().st_mtime_ns, artifact.stat().st_ino, record.stat().st_mtime_ns) == before
    assert published(store) == [first.inputs_digest]
    assert leftovers(store) == []


def test_a_damaged_artifact_is_rebuilt_instead_of_reused(inputs: dict[str, Path], tmp_path: Path) -> None:
    store = tmp_path / "store"
    request = make_request(inputs, "zip-store")
    first = build_archive(request, str(store))
    artifact = Path(first.uri.removeprefix("file://"))
    with artifact.open("r+b") as handle:
        handle.truncate(100)

    again = build_archive(request, str(store))

    assert not again.reused
    assert artifact_sha256(again.uri) == first.sha256


def test_zip_archives_hold_the_inputs_and_a_canonical_manifest(inputs: dict[str, Path], tmp_path: Path) -> None:
    for archive_format, method in (("zip", zipfile.ZIP_DEFLATED), ("zip-store", zipfile.ZIP_STORED)):
        result = build_archive(
            make_request(inputs, archive_format, created_on_epoch=1_700_000_000), str(tmp_path / archive_format)
        )
        with zipfile.ZipFile(result.uri.removeprefix("file://")) as archive:
            assert archive.testzip() is None
            names = archive.namelist()
            assert names == sorted(names)
            assert names == [
                "MAR-INF/MANIFEST.json",
                "handler.py",
                "index_to_name.json",
                "model-config.yaml",
                "model.pt",
                "sub/more.txt",
                "words.txt",
            ]
            assert archive.read("model.pt") == inputs["weights"].read_bytes()
            assert archive.read("sub/more.txt") == b"gamma\n"
            assert {info.compress_type for info in archive.infolist()} == {method}
            assert {info.date_time for info in archive.infolist()} == {(2023, 11, 14, 22, 13, 20)}
            assert {info.external_attr >> 16 for info in archive.infolist()} == {0o100644}
            manifest = archive.read("MAR-INF/MANIFEST.json").decode()
        assert manifest == (
            "{\n"
            '  "archiverVersion": "0.12.0",\n'
            '  "createdOn": "14/11/2023 22:13:20",\n'
            '  "model": {\n'
            '    "configFile": "model-config.yaml",\n'
            '    "handler": "handler.py",\n'
            '    "modelName": "iris",\n'
            '    "modelVersion": "1",\n'
            '    "serializedFile": "model.pt"\n'
            "  },\n"
            '  "runtime": "python"\n'
            "}"
        )


def test_deflate_shrinks_compressible_weights(inputs: dict[str, Path], tmp_path: Path) -> None:
    stored = build_archive(make_request(inputs, "zip-store"), str(tmp_path / "a"))
    deflated = build_archive(make_request(inputs, "zip"), str(tmp_path / "b"))
    assert deflated.bytes < stored.bytes * 0.5


def test_tgz_has_one_top_directory_fixed_owners_and_times(inputs: dict[str, Path], tmp_path: Path) -> None:
    result = build_archive(make_request(inputs, "tgz", created_on_epoch=1234), str(tmp_path / "store"))
    raw = artifact_bytes(result.uri)
    assert raw[4:8] == b"\x00\x00\x00\x00"  # gzip header mtime
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as archive:
        members = archive.getmembers()
        assert [m.name for m in members] == [
            "iris",
            "iris/MAR-INF",
            "iris/MAR-INF/MANIFEST.json",
            "iris/handler.py",
            "iris/index_to_name.json",
            "iris/model-config.yaml",
            "iris/model.pt",
            "iris/sub",
            "iris/sub/more.txt",
            "iris/words.txt",
        ]
        assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in members} == {(0, 0, "", "", 1234)}
        assert {m.mode for m in members if m.isfile()} == {0o644}
        extracted = archive.extractfile("iris/model.pt")
        assert extracted is not None and extracted.read() == inputs["weights"].read_bytes()


def test_no_archive_is_a_directory_whose_digest_sha256sum_can_check(inputs: dict[str, Path], tmp_path: Path) -> None:
    result = build_archive(make_request(inputs, "no-archive"), str(tmp_path / "store"))
    directory = Path(result.uri.removeprefix("file://"))
    files = sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())
    assert files == [
        "MAR-INF/MANIFEST.json",
        "handler.py",
        "index_to_name.json",
        "model-config.yaml",
        "model.pt",
        "sub/more.txt",
        "words.txt",
    ]
    assert {oct((directory / f).stat().st_mode & 0o777) for f in files} == {"0o644"}
    assert {(directory / f).stat().st_mtime for f in files} == {0}
    shell = subprocess.run(
        "find . -type f | sed 's|^\\./||' | LC_ALL=C sort | xargs -d '\\n' sha256sum | sha256sum",
        shell=True,
        cwd=directory,
        capture_output=True,
        text=True,
        check=True,
    )
    assert shell.stdout.split()[0] == result.sha256


def test_verify_accepts_the_artifact_and_rejects_a_changed_one(inputs: dict[str, Path], tmp_path: Path) -> None:
    result = build_archive(make_request(inputs, "zip-store"), str(tmp_path / "store"))
    assert verify(result.uri, result.sha256) == result.sha256
    with pytest.raises(IntegrityError, match="expected"):
        verify(result.uri, "0" * 64)
    path = Path(result.uri.removeprefix("file://"))
    with path.open("r+b") as handle:
        handle.seek(200)
        handle.write(b"X")
    with pytest.raises(IntegrityError, match=result.sha256):
        verify(str(path), result.sha256)


def test_a_killed_build_leaves_no_visible_artifact_and_the_next_build_succeeds(tmp_path: Path) -> None:
    inputs_root = tmp_path / "inputs"
    weights, handler = big_inputs(inputs_root)
    store = tmp_path / "store"
    process = start_writing(weights, handler, store)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)

    assert published(store) == []
    result = build_archive(
        ArchiveRequest(
            model_name="big",
            version="1",
            serialized_file=Source(str(weights)),
            handler=Source(str(inputs_root / "handler.py")),
            archive_format="zip",
            deflate_level=9,
        ),
        str(store),
    )
    assert not result.reused
    assert published(store) == [result.inputs_digest]
    with zipfile.ZipFile(result.uri.removeprefix("file://")) as archive:
        assert archive.testzip() is None


def test_concurrent_identical_builds_publish_one_artifact(inputs: dict[str, Path], tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    store = tmp_path / "store"
    request = make_request(inputs, "zip-store")
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda _: build_archive(request, str(store)), range(3)))

    assert len({r.sha256 for r in results}) == 1
    assert published(store) == [results[0].inputs_digest]
    assert leftovers(store) == []
    assert verify(results[0].uri, results[0].sha256)
