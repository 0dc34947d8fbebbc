"""S3 sources and the S3 store, against a real S3 API (moto in server mode on 127.0.0.1)."""

from __future__ import annotations

import hashlib
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from moto.server import ThreadedMotoServer

from modeldeploy.archives import (
    ArchiveRequest,
    BuildSettings,
    DigestMismatch,
    InputNotFound,
    IntegrityError,
    S3Config,
    S3Store,
    Source,
    artifact_sha256,
    build_archive,
    verify,
)
from modeldeploy.serving import verify_failure


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[S3Config, Any]]:
    """Credentials the way a Kubernetes Secret feeds them (environment), fresh buckets per test."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    config = S3Config(endpoint_url=s3_endpoint, region="us-east-1", addressing_style="path")
    client = config.client()
    for bucket in ("sources", "artifacts"):
        client.create_bucket(Bucket=bucket)
    yield config, client
    for bucket in ("sources", "artifacts"):
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                client.delete_object(Bucket=bucket, Key=item["Key"])
        for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        client.delete_bucket(Bucket=bucket)


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "src"
    root.mkdir()
    (root / "model.pt").write_bytes(os.urandom(12 * 1024 * 1024 + 3))
    (root / "handler.py").write_text("def handle(data, context):\n    return data\n")
    return {"weights": root / "model.pt", "handler": root / "handler.py"}


def keys(client: Any, bucket: str) -> list[str]:
    return sorted(item["Key"] for item in client.list_objects_v2(Bucket=bucket).get("Contents", []))


def test_an_s3_source_gives_the_same_artifact_as_the_local_file(
    s3: tuple[S3Config, Any], inputs: dict[str, Path], tmp_path: Path
) -> None:
    config, client = s3
    client.upload_file(str(inputs["weights"]), "sources", "models/iris/model.pt")
    local = ArchiveRequest(
        model_name="iris",
        version="1",
        serialized_file=Source(str(inputs["weights"])),
        handler=Source(str(inputs["handler"])),
        archive_format="zip",
    )
    remote = ArchiveRequest(
        model_name="iris",
        version="1",
        serialized_file=Source("s3://sources/models/iris/model.pt"),
        handler=Source(str(inputs["handler"])),
        archive_format="zip",
    )

    from_s3 = build_archive(remote, str(tmp_path / "a"), BuildSettings(s3=config))
    from_disk = build_archive(local, str(tmp_path / "b"))

    assert from_s3.inputs_digest == from_disk.inputs_digest
    assert from_s3.sha256 == from_disk.sha256


def test_an_s3_source_not_matching_its_pin_is_refused(
    s3: tuple[S3Config, Any], inputs: dict[str, Path], tmp_path: Path
) -> None:
    config, client = s3
    client.upload_file(str(inputs["weights"]), "sources", "model.pt")
    request = ArchiveRequest(
        model_name="iris",
        version="1",
        serialized_file=Source("s3://sources/model.pt", sha256=hashlib.sha256(b"x").hexdigest()),
        handler=Source(str(inputs["handler"])),
    )
    with pytest.raises(DigestMismatch, match="refused"):
        build_archive(request, str(tmp_path / "store"), BuildSettings(s3=config))
    assert not (tmp_path / "store").exists() or list((tmp_path / "store").iterdir()) == []


def test_a_missing_s3_object_is_refused(s3: tuple[S3Config, Any], inputs: dict[str, Path], tmp_path: Path) -> None:
    config, _ = s3
    request = ArchiveRequest(
        model_name="iris",
        version="1",
        serialized_file=Source("s3://sources/nope.pt"),
        handler=Source(str(inputs["handler"])),
    )
    with pytest.raises(InputNotFound, match=re.escape("s3://sources/nope.pt")):
        build_archive(request, str(tmp_path / "store"), BuildSettings(s3=config))


@pytest.mark.parametrize("archive_format", ["zip-store", "zip", "tgz"])
def test_the_s3_store_holds_the_same_bytes_as_a_directory_store_and_reuses_them(
    s3: tuple[S3Config, Any], inputs: dict[str, Path], tmp_path: Path, archive_format: str
) -> None:
    config, client = s3
    store = S3Store("s3://artifacts/team/models", config=config, part_bytes=5 << 20)
    request = ArchiveRequest(
        model_name="iris",
        version="1",
        serialized_file=Source(str(inputs["weights"])),
        handler=Source(str(inputs["handler"])),
        archive_format=archive_format,
    )  # type: ignore[arg-type]

    first = build_archive(request, store)
    on_disk = build_archive(request, str(tmp_path / "dir-store"))
    again = build_archive(request, store)

    suffix = ".tar.gz" if archive_format == "tgz" else ".mar"
    assert first.uri == f"s3://artifacts/team/models/{first.inputs_digest}/iris{suffix}"
    assert keys(client, "artifacts") == [
        f"team/models/{first.inputs_digest}/iris{suffix}",
        f"team/models/{first.inputs_digest}/record.json",
    ]
    assert first.sha256 == on_disk.sha256 and first.bytes == on_disk.bytes
    assert artifact_sha256(first.uri, s3=config) == first.sha256
    assert verify(first.uri, first.sha256, s3=config) == first.sha256
    assert again.reused and again.sha256 == first.sha256


def test_a_refused_build_leaves_no_object_and_no_pending_upload_in_the_s3_store(
    s3: tuple[S3Config, Any], inputs: dict[str, Path]
) -> None:
    config, client = s3
    store = S3Store("s3://artifacts/models", config=config)
    request = ArchiveRequest(
        model_name="iris",
        version="1",
        serialized_file=Source(str(inputs["weights"])),
        handler=Source(str(inputs["handler"]) + ".missing"),
    )
    with pytest.raises(InputNotFound):
        build_archive(request, store)
    assert keys(client, "artifacts") == []
    assert client.list_multipart_uploads(Bucket="artifacts").get("Uploads", []) == []


def test_an_upload_that_fails_midway_is_aborted(s3: tuple[S3Config, Any], inputs: dict[str, Path]) -> None:
    config, client = s3
    store = S3Store("s3://artifacts/models", config=config, part_bytes=5 << 20)
    request = ArchiveRequest(
        model_name="iris",
        version="1",
        serialized_file=Source(str(inputs["weights"])),
        handler=Source(str(inputs["handler"])),
    )
    # A real write to the input after the first part is uploaded (timed by wrapping upload_part):
    # the builder notices the change, fails, and must abort the multipart upload.
    original_upload = store.client.upload_part

    def upload_then_modify(**kwargs: Any) -> Any:
        answer = original_upload(**kwargs)
        with inputs["weights"].open("ab") as handle:
            handle.write(b"late write")
        return answer

    store.client.upload_part = upload_then_modify
    from modeldeploy.archives import InputChanged

    with pytest.raises(InputChanged):
        build_archive(request, store)
    assert keys(client, "artifacts") == []
    assert client.list_multipart_uploads(Bucket="artifacts").get("Uploads", []) == []


def test_verify_reports_a_missing_s3_artifact(s3: tuple[S3Config, Any]) -> None:
    config, _ = s3
    with pytest.raises(IntegrityError, match="no such artifact"):
        verify("s3://artifacts/none/iris.mar", "0" * 64, s3=config)


def test_the_cli_builds_into_s3_with_credentials_from_the_environment(
    s3: tuple[S3Config, Any], inputs: dict[str, Path], tmp_path: Path
) -> None:
    import json
    import subprocess
    import sys

    config, client = s3
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "test-key",
        "AWS_SECRET_ACCESS_KEY": "test-secret",
        "AWS_REGION": "us-east-1",
        "MODELDEPLOY_S3_ADDRESSING_STYLE": "path",
    }
    endpoint = ["--s3-endpoint", str(config.endpoint_url)]
    client.upload_file(str(inputs["handler"]), "sources", "code/handler.py")
    work = tmp_path / "work"  # missing, as a path inside a pod's emptyDir is
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "modeldeploy.archives.cli",
            "archive",
            "build",
            "--model-name",
            "iris",
            "--version",
            "1",
            "--serialized-file",
            str(inputs["weights"]),
            "--handler",
            "s3://sources/code/handler.py",
            "--archive-format",
            "zip-store",
            "--store",
            "s3://artifacts/cli",
            "--work-dir",
            str(work),
            *endpoint,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert build.returncode == 0, build.stderr
    result = json.loads(build.stdout)
    assert result["uri"] == f"s3://artifacts/cli/{result['inputsDigest']}/iris.mar"
    assert work.is_dir() and list(work.iterdir()) == []  # created, and the download of the S3 handler removed

    verify = [sys.executable, "-m", "modeldeploy.archives.cli", "archive", "verify", result["uri"],
              "--sha256", result["sha256"], *endpoint]
    check = subprocess.run(verify, capture_output=True, text=True, env=env, timeout=120)
    assert check.returncode == 0, check.stderr
    no_credentials = {key: value for key, value in env.items() if not key.startswith("AWS_")}
    denied = subprocess.run(verify, capture_output=True, text=True, timeout=120, env={
        **no_credentials, "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"})
    reason, message = verify_failure(denied.returncode, denied.stderr.strip())
    assert reason == "StoreCredentialsRefused", denied.stderr
    assert "credentials" in message


def test_a_missing_store_bucket_is_a_build_failure_not_a_refusal(
    s3: tuple[S3Config, Any], inputs: dict[str, Path]
) -> None:
    from modeldeploy.archives import BuildFailed

    config, _ = s3
    request = ArchiveRequest(
        model_name="iris",
        version="1",
        serialized_file=Source(str(inputs["weights"])),
        handler=Source(str(inputs["handler"])),
    )
    with pytest.raises(BuildFailed, match="s3://no-such-bucket/models"):
        build_archive(request, S3Store("s3://no-such-bucket/models", config=config))


def _run_rendered(argv: list[str], env: dict[str, str]) -> Any:
    import subprocess

    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)


def test_the_serving_pods_init_command_fetches_the_verified_archive_and_refuses_other_bytes(
    s3: tuple[S3Config, Any], inputs: dict[str, Path], tmp_path: Path
) -> None:
    """The init container's command, exactly as rendered (only the operator's command made local), run
    against the S3 store: the archive lands where TorchServe reads it, and a tampered one never does."""
    import sys

    from modeldeploy.api.spec import S3Store as S3StoreSpec
    from modeldeploy.serving import ArchiveRef, ServingPaths, ServingPlan, build_deployment
    from modeldeploy.settings import OperatorIdentity

    config, client = s3
    store = S3Store("s3://artifacts/models", config=config)
    request = ArchiveRequest(model_name="iris", version="1", serialized_file=Source(str(inputs["weights"])),
                             handler=Source(str(inputs["handler"])), archive_format="zip-store")
    built = build_archive(request, store)
    paths = ServingPaths(config_dir=str(tmp_path / "config"), model_store=str(tmp_path / "model-store"),
                         logs_dir=str(tmp_path / "logs"), tmp_dir=str(tmp_path / "tmp"))
    (tmp_path / "model-store").mkdir()
    (tmp_path / "tmp").mkdir()
    spec_store = S3StoreSpec(bucket="artifacts", secret_name="store-creds", endpoint=config.endpoint_url,
                             region="us-east-1")

    def init_container(sha256: str) -> dict[str, Any]:
        plan = ServingPlan(name="iris", namespace="ns", uid="u-1", revision="7f3a9c01de", role="stable",
                           replicas=1, model_name="iris", model_version="1", paths=paths,
                           archive=ArchiveRef(uri=built.uri, sha256=sha256, format="zip-store", store=spec_store),
                           operator=OperatorIdentity(command=(sys.executable, "-m", "modeldeploy")))
        (container,) = build_deployment(plan)["spec"]["template"]["spec"]["initContainers"]
        return dict(container)

    secret = {"AWS_ACCESS_KEY_ID": "test-key", "AWS_SECRET_ACCESS_KEY": "test-secret"}

    def environment(container: dict[str, Any]) -> dict[str, str]:
        env = {"PATH": os.environ["PATH"], "MODELDEPLOY_S3_ADDRESSING_STYLE": "path"}
        for item in container["env"]:
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            env[item["name"]] = secret[ref["key"]] if ref else item["value"]
        return env

    good = init_container(built.sha256)
    ok = _run_rendered(good["command"], environment(good))
    assert ok.returncode == 0, ok.stderr
    served = tmp_path / "model-store" / "iris.mar"
    assert hashlib.sha256(served.read_bytes()).hexdigest() == built.sha256
    served.unlink()

    client.put_object(Bucket="artifacts", Key=built.uri.split("/", 3)[3], Body=b"tampered")
    tampered = _run_rendered(good["command"], environment(good))
    assert verify_failure(tampered.returncode, tampered.stderr)[0] == "DigestMismatch"
    assert f"expected {built.sha256}" in tampered.stderr
    assert list((tmp_path / "model-store").iterdir()) == []  # neither the file nor a partial copy

    # The in-process moto server checks no signatures: a pod without the keys stands for refused ones.
    without_keys = {k: v for k, v in environment(good).items() if k not in secret}
    denied = _run_rendered(good["command"], {**without_keys, "AWS_CONFIG_FILE": "/nonexistent",
                                             "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"})
    reason, message = verify_failure(denied.returncode, denied.stderr.strip())
    assert reason == "StoreCredentialsRefused", denied.stderr
    assert "credentials" in message
