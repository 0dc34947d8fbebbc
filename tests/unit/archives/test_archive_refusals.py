"""Inputs the builder refuses: each refusal names the input, the value and the rule, and leaves the store clean."""

from __future__ import annotations

import hashlib
import http.server
import os
import pickle
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import torch

from modeldeploy.archives import (
    ArchiveRequest,
    BuildSettings,
    BuiltinHandler,
    DigestMismatch,
    InputNotFound,
    InputRefused,
    Limits,
    SizeLimitExceeded,
    Source,
    UnsafeName,
    UnsafePath,
    UnsupportedOption,
    build_archive,
)


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "src"
    root.mkdir()
    weights = root / "model.pt"
    weights.write_bytes(b"\x01\x02\x03" * 1000)
    handler = root / "handler.py"
    handler.write_text("def handle(data, context):\n    return data\n")
    return {"root": root, "weights": weights, "handler": handler}


def request_for(inputs: dict[str, Path], **changes: object) -> ArchiveRequest:
    request = ArchiveRequest(
        model_name="iris",
        version="1",
        serialized_file=Source(str(inputs["weights"])),
        handler=Source(str(inputs["handler"])),
        archive_format="zip-store",
    )
    return replace(request, **changes)  # type: ignore[arg-type]


def assert_store_clean(store: Path) -> None:
    """No artifact, no staging left-over: the store looks as if the build never ran."""
    if not store.exists():
        return
    assert sorted(p.name for p in store.iterdir()) == [], f"left in the store: {list(store.rglob('*'))}"


def refused(
    expected: type[InputRefused], request: ArchiveRequest, store: Path, settings: BuildSettings | None = None
) -> InputRefused:
    with pytest.raises(expected) as caught:
        build_archive(request, str(store), settings)
    assert_store_clean(store)
    error = caught.value
    assert "\n" not in str(error)
    assert str(error).startswith(f"{error.input_name}: ")
    assert "refused: " in str(error)
    return error


@pytest.mark.parametrize(
    ("archive_name", "rule"),
    [
        ("../evil.py", "'..'"),
        ("sub/../../evil.py", "'..'"),
        ("/etc/cron.d/evil", "absolute"),
        ("evil\x00.py", "NUL"),
        ("sub\\..\\evil.py", "backslash"),
        ("MAR-INF/MANIFEST.json", "reserved"),
        (".bashrc", "must match"),
    ],
)
def test_zip_slip_and_unsafe_entry_names_are_refused(
    inputs: dict[str, Path], tmp_path: Path, archive_name: str, rule: str
) -> None:
    extra = inputs["root"] / "labels.json"
    extra.write_text("{}")
    error = refused(
        UnsafeName, request_for(inputs, extra_files=(Source(str(extra), archive_name=archive_name),)), tmp_path / "s"
    )
    assert error.input_name == "extraFiles[0]"
    assert error.value == archive_name
    assert rule in error.rule


@pytest.mark.parametrize("name", ["-iris", ".iris", "iris/x", "ir is", "iris\x00", "", "a" * 129, "iris;rm"])
def test_model_names_torchserve_rejects_are_refused(inputs: dict[str, Path], tmp_path: Path, name: str) -> None:
    error = refused(UnsafeName, request_for(inputs, model_name=name), tmp_path / "store")
    assert error.input_name == "modelName"


def test_unsafe_version_is_refused(inputs: dict[str, Path], tmp_path: Path) -> None:
    error = refused(UnsafeName, request_for(inputs, version="1/../2"), tmp_path / "store")
    assert error.input_name == "modelVersion"


def test_a_symlink_escaping_the_source_directory_is_refused(inputs: dict[str, Path], tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("token")
    link = inputs["root"] / "model.pt.link"
    link.symlink_to(secret)
    error = refused(UnsafePath, request_for(inputs, serialized_file=Source(str(link))), tmp_path / "store")
    assert error.input_name == "serializedFile"
    assert "outside the source root" in error.rule and str(secret) in error.rule


def test_a_symlink_inside_an_extra_directory_escaping_it_is_refused(inputs: dict[str, Path], tmp_path: Path) -> None:
    extras = inputs["root"] / "extras"
    extras.mkdir()
    (extras / "ok.txt").write_text("fine")
    (extras / "passwd").symlink_to("/etc/passwd")
    error = refused(UnsafePath, request_for(inputs, extra_files=(Source(str(extras)),)), tmp_path / "store")
    assert error.input_name == "extraFiles[0]"
    assert error.value == str(extras / "passwd")


def test_a_source_outside_the_configured_source_root_is_refused(inputs: dict[str, Path], tmp_path: Path) -> None:
    outside = tmp_path / "other" / "model.pt"
    outside.parent.mkdir()
    outside.write_bytes(b"x")
    settings = BuildSettings(source_root=str(inputs["root"]))
    error = refused(UnsafePath, request_for(inputs, serialized_file=Source(str(outside))), tmp_path / "s", settings)
    assert "outside the source root" in error.rule


def test_a_symlink_that_stays_inside_the_source_root_is_packaged(inputs: dict[str, Path], tmp_path: Path) -> None:
    (inputs["root"] / "weights").mkdir()
    real = inputs["root"] / "weights" / "real.pt"
    real.write_bytes(b"weights")
    link = inputs["root"] / "model.pt.link"
    link.symlink_to(real)
    settings = BuildSettings(source_root=str(inputs["root"]))
    result = build_archive(
        request_for(inputs, serialized_file=Source(str(link), archive_name="model.pt")),
        str(tmp_path / "store"),
        settings,
    )
    assert not result.reused


def test_a_missing_file_is_refused(inputs: dict[str, Path], tmp_path: Path) -> None:
    missing = inputs["root"] / "nope.py"
    error = refused(InputNotFound, request_for(inputs, handler=Source(str(missing))), tmp_path / "store")
    assert (error.input_name, error.value) == ("handler", str(missing))


def test_a_directory_where_a_file_is_expected_is_refused(inputs: dict[str, Path], tmp_path: Path) -> None:
    refused(UnsafePath, request_for(inputs, serialized_file=Source(str(inputs["root"]))), tmp_path / "store")


def test_a_fifo_is_refused(inputs: dict[str, Path], tmp_path: Path) -> None:
    fifo = inputs["root"] / "model.fifo"
    os.mkfifo(fifo)
    error = refused(UnsafePath, request_for(inputs, serialized_file=Source(str(fifo))), tmp_path / "store")
    assert "regular file" in error.rule


def test_a_local_file_not_matching_its_pin_is_refused(inputs: dict[str, Path], tmp_path: Path) -> None:
    pin = hashlib.sha256(b"something else").hexdigest()
    actual = hashlib.sha256(inputs["weights"].read_bytes()).hexdigest()
    error = refused(
        DigestMismatch,
        request_for(inputs, serialized_file=Source(str(inputs["weights"]), sha256=pin)),
        tmp_path / "store",
    )
    assert pin in error.rule and actual in error.rule


def test_a_malformed_pin_is_refused(inputs: dict[str, Path], tmp_path: Path) -> None:
    refused(
        UnsafeName,
        request_for(inputs, serialized_file=Source(str(inputs["weights"]), sha256="abc")),
        tmp_path / "store",
    )


def test_a_file_over_the_size_limit_is_refused(inputs: dict[str, Path], tmp_path: Path) -> None:
    settings = BuildSettings(limits=Limits(max_file_bytes=1000))
    error = refused(SizeLimitExceeded, request_for(inputs), tmp_path / "store", settings)
    assert error.input_name == "serializedFile" and "1000" in error.rule


def test_inputs_over_the_total_size_limit_are_refused(inputs: dict[str, Path], tmp_path: Path) -> None:
    settings = BuildSettings(limits=Limits(max_total_bytes=3010))
    error = refused(SizeLimitExceeded, request_for(inputs), tmp_path / "store", settings)
    assert "3010" in error.rule


def test_two_inputs_with_one_archive_name_are_refused(inputs: dict[str, Path], tmp_path: Path) -> None:
    other = inputs["root"] / "other"
    other.mkdir()
    (other / "handler.py").write_text("x = 1\n")
    error = refused(
        UnsafeName, request_for(inputs, extra_files=(Source(str(other / "handler.py")),)), tmp_path / "store"
    )
    assert "handler already uses" in error.rule


def test_a_handler_that_is_neither_builtin_nor_python_is_refused(inputs: dict[str, Path], tmp_path: Path) -> None:
    script = inputs["root"] / "handler.sh"
    script.write_text("#!/bin/sh\n")
    refused(InputRefused, request_for(inputs, handler=Source(str(script))), tmp_path / "store")
    refused(InputRefused, request_for(inputs, handler=BuiltinHandler("rm_rf_handler")), tmp_path / "store")


def test_pvc_and_unknown_schemes_are_refused_with_guidance(inputs: dict[str, Path], tmp_path: Path) -> None:
    error = refused(
        InputRefused, request_for(inputs, serialized_file=Source("pvc://models/iris/model.pt")), tmp_path / "store"
    )
    assert "mounted" in error.rule
    refused(InputRefused, request_for(inputs, serialized_file=Source("ftp://host/model.pt")), tmp_path / "store")


def test_no_archive_in_an_s3_store_is_refused(inputs: dict[str, Path]) -> None:
    from modeldeploy.archives import S3Store

    store = S3Store("s3://bucket/prefix", client=object())
    with pytest.raises(UnsupportedOption, match="no-archive"):
        build_archive(request_for(inputs, archive_format="no-archive"), store)


# Pickle-based weights ----------------------------------------------------------------------------------


class _Trap:
    """Unpickling this creates a marker file: proof that the builder never unpickles anything."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.marker, "w"))


def test_pickled_weights_are_packaged_never_loaded_and_warned_about(inputs: dict[str, Path], tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    trap = inputs["root"] / "weights.pth"
    trap.write_bytes(pickle.dumps(_Trap(str(marker)), protocol=4))
    saved = inputs["root"] / "state.bin"
    torch.save({"weight": torch.zeros(2)}, saved)
    scripted = inputs["root"] / "scripted.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(scripted))

    result = build_archive(
        request_for(inputs, serialized_file=Source(str(trap)), extra_files=(Source(str(saved)), Source(str(scripted)))),
        str(tmp_path / "store"),
    )

    assert not marker.exists()
    assert len(result.warnings) == 2
    pickle_warning, zip_warning = sorted(result.warnings, key=lambda w: "weights.pth" not in w)
    assert pickle_warning.startswith("serializedFile: weights.pth is a pickle")
    assert "TorchScript" in pickle_warning and "safetensors" in pickle_warning
    assert zip_warning.startswith("extraFiles[0]: state.bin is a torch.save() zip")
    again = build_archive(
        request_for(inputs, serialized_file=Source(str(trap)), extra_files=(Source(str(saved)), Source(str(scripted)))),
        str(tmp_path / "store"),
    )
    assert again.reused and again.warnings == result.warnings


def test_torchscript_weights_raise_no_warning(inputs: dict[str, Path], tmp_path: Path) -> None:
    scripted = inputs["root"] / "model.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(scripted))
    result = build_archive(request_for(inputs), str(tmp_path / "store"))
    assert result.warnings == ()


# Remote sources over HTTP(S) ------------------------------------------------------------------------------


class _Server:
    def __init__(self, directory: Path, tls: ssl.SSLContext | None) -> None:
        handler = type(
            "Quiet",
            (http.server.SimpleHTTPRequestHandler,),
            {
                "log_message": lambda *args: None,
            },
        )
        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0),
            lambda *a: handler(*a, directory=str(directory)),  # type: ignore[misc]
        )
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.scheme = "https" if tls else "http"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        port = self.httpd.server_address[1]
        return f"{self.scheme}://127.0.0.1:{port}/{name}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


def _self_signed(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path = tmp_path / "cert.pem"
    key_path = tmp_path / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context, cert_path


@pytest.fixture
def served(tmp_path: Path) -> Iterator[dict[str, object]]:
    root = tmp_path / "www"
    root.mkdir()
    (root / "model.pt").write_bytes(os.urandom(5 * 1024 * 1024 + 7))
    context, ca = _self_signed(tmp_path)
    plain = _Server(root, None)
    secure = _Server(root, context)
    try:
        yield {"root": root, "http": plain, "https": secure, "ca": ca}
    finally:
        plain.close()
        secure.close()


def test_an_https_source_with_its_pin_is_downloaded_and_packaged(
    inputs: dict[str, Path], tmp_path: Path, served: dict[str, object]
) -> None:
    server, root = served["https"], served["root"]
    assert isinstance(server, _Server) and isinstance(root, Path)
    content = (root / "model.pt").read_bytes()
    pin = hashlib.sha256(content).hexdigest()
    settings = BuildSettings(ca_bundle=str(served["ca"]))
    store = tmp_path / "store"

    remote = build_archive(
        request_for(inputs, serialized_file=Source(server.url("model.pt"), sha256=pin)), str(store), settings
    )
    (inputs["root"] / "model.pt").write_bytes(content)
    local = build_archive(request_for(inputs), str(tmp_path / "local"))

    assert remote.inputs_digest == local.inputs_digest  # content-addressed: where a source came from does not matter
    assert remote.sha256 == local.sha256
    assert sorted(p.name for p in store.iterdir()) == [remote.inputs_digest]


def test_a_download_not_matching_its_pin_is_refused_and_removed(
    inputs: dict[str, Path], tmp_path: Path, served: dict[str, object]
) -> None:
    server = served["http"]
    assert isinstance(server, _Server)
    pin = hashlib.sha256(b"what we expected").hexdigest()
    error = refused(
        DigestMismatch,
        request_for(inputs, serialized_file=Source(server.url("model.pt"), sha256=pin)),
        tmp_path / "store",
        BuildSettings(allow_insecure_http=True),
    )
    assert error.value == server.url("model.pt") and pin in error.rule


def test_plain_http_is_refused_unless_explicitly_allowed(
    inputs: dict[str, Path], tmp_path: Path, served: dict[str, object]
) -> None:
    server = served["http"]
    assert isinstance(server, _Server)
    error = refused(
        InputRefused,
        request_for(inputs, serialized_file=Source(server.url("model.pt"), sha256="a" * 64)),
        tmp_path / "store",
    )
    assert "plain http" in error.rule


def test_https_without_a_pin_is_refused(inputs: dict[str, Path], tmp_path: Path, served: dict[str, object]) -> None:
    server = served["https"]
    assert isinstance(server, _Server)
    error = refused(
        InputRefused,
        request_for(inputs, serialized_file=Source(server.url("model.pt"))),
        tmp_path / "store",
        BuildSettings(ca_bundle=str(served["ca"])),
    )
    assert "pin" in error.rule


def test_an_untrusted_certificate_is_refused(
    inputs: dict[str, Path], tmp_path: Path, served: dict[str, object]
) -> None:
    server = served["https"]
    assert isinstance(server, _Server)
    error = refused(
        InputRefused,
        request_for(inputs, serialized_file=Source(server.url("model.pt"), sha256="a" * 64)),
        tmp_path / "store",
    )
    assert "TLS verification failed" in error.rule


def test_a_missing_remote_file_is_refused(inputs: dict[str, Path], tmp_path: Path, served: dict[str, object]) -> None:
    server = served["https"]
    assert isinstance(server, _Server)
    error = refused(
        InputNotFound,
        request_for(inputs, serialized_file=Source(server.url("gone.pt"), sha256="a" * 64)),
        tmp_path / "store",
        BuildSettings(ca_bundle=str(served["ca"])),
    )
    assert "404" in error.rule


def test_a_download_over_the_size_limit_is_refused(
    inputs: dict[str, Path], tmp_path: Path, served: dict[str, object]
) -> None:
    server = served["https"]
    assert isinstance(server, _Server)
    refused(
        SizeLimitExceeded,
        request_for(inputs, serialized_file=Source(server.url("model.pt"), sha256="a" * 64)),
        tmp_path / "store",
        BuildSettings(ca_bundle=str(served["ca"]), limits=Limits(max_file_bytes=1 << 20)),
    )


def test_an_unreachable_server_is_a_retryable_failure(inputs: dict[str, Path], tmp_path: Path) -> None:
    from modeldeploy.archives import SourceUnavailable

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(SourceUnavailable):
        build_archive(
            request_for(inputs, serialized_file=Source(f"https://127.0.0.1:{port}/m.pt", sha256="a" * 64)),
            str(tmp_path / "store"),
            BuildSettings(timeout_seconds=5),
        )
    assert_store_clean(tmp_path / "store")
