"""The prometheus metric provider against a real Prometheus: one sample passes on, anything else never does."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import math
import subprocess
import warnings
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from local_prometheus import Exporter, Prometheus, start_prometheus

from modeldeploy.api.rollout import MeasurementVerdict
from modeldeploy.api.spec import Metric, PrometheusProvider
from modeldeploy.canary.decide import Measurement
from modeldeploy.canary.verdicts import Bounds, judge
from modeldeploy.metrics import OperatorAccess, PrometheusMetrics, build_providers
from modeldeploy.metrics.base import ProviderError, Target
from support import wait_for

SERIES = ('modeldeploy_test_value{namespace="{{namespace}}",name="{{name}}",revision="{{revision}}",'
          'role="{{role}}"}')


def target(name: str = "iris", revision: str | None = "1b2c3d4e5f") -> Target:
    return Target(namespace="team", name=name, model_name=name, pods=(), canary_revision=revision)


def measure(address: str, query: str, *, name: str = "iris", timeout: float = 10.0, secret: str | None = None,
            secrets: Mapping[str, Mapping[str, bytes]] | None = None, window: float = 30.0,
            revision: str | None = "1b2c3d4e5f") -> Measurement:
    async def read_secret(namespace: str, secret_name: str) -> Mapping[str, bytes]:
        if secrets is None or secret_name not in secrets:
            raise ProviderError(f"Secret {namespace}/{secret_name} does not exist")
        return secrets[secret_name]

    metric = Metric(name="p99", max=250.0, provider=PrometheusProvider(
        address=address, query=query, timeout=timedelta(seconds=timeout), secret_name=secret))

    async def run() -> Measurement:
        providers = build_providers(OperatorAccess(read_secret=read_secret))
        try:
            chosen = providers.for_metric(metric)
            now = datetime.now(UTC)
            return await chosen.measure(metric, target(name, revision), now - timedelta(seconds=window), now)
        finally:
            await providers.close()

    return asyncio.run(run())


def verdict(measurement: Measurement) -> MeasurementVerdict:
    """What the canary rules make of a measurement (an error never reaches judge: it is an Error)."""
    if measurement.error is not None:
        return MeasurementVerdict.ERROR
    assert measurement.canary is not None
    return judge("p99", measurement.canary, Bounds(max=250.0), min_requests=20).verdict


def stored(prometheus: Prometheus, name: str, value: float) -> bool:
    result = prometheus.instant(f'modeldeploy_test_value{{name="{name}",revision="1b2c3d4e5f",role="canary"}}')
    if not result:
        return False
    got = float(result[0]["value"][1])
    return got == value or (math.isnan(value) and math.isnan(got))


def test_one_sample_with_every_placeholder_filled_in_is_the_value(prometheus: Prometheus,
                                                                     exporter: Exporter) -> None:
    exporter.set(120.0, name="one")
    exporter.set(999.0, name="one", revision="0000000000")  # another revision: the query must not see it
    wait_for(lambda: stored(prometheus, "one", 120.0) or None, timeout=30, message="the scrape")
    measurement = measure(prometheus.address, SERIES, name="one")
    assert measurement.error is None
    assert measurement.canary is not None and measurement.canary.value == 120.0
    assert verdict(measurement) is MeasurementVerdict.SUCCESSFUL


def test_interval_is_the_window_as_a_promql_duration(prometheus: Prometheus, exporter: Exporter) -> None:
    exporter.set(7.0, name="window")
    wait_for(lambda: stored(prometheus, "window", 7.0) or None, timeout=30, message="the scrape")
    # max_over_time over [{{interval}}] parses only when the placeholder became a duration such as 30s
    measurement = measure(prometheus.address, f"max_over_time({SERIES}[{{{{interval}}}}])", name="window")
    assert measurement.error is None, measurement.error
    assert measurement.canary is not None and measurement.canary.value == 7.0


def test_a_value_out_of_bounds_fails(prometheus: Prometheus, exporter: Exporter) -> None:
    exporter.set(900.0, name="slow")
    wait_for(lambda: stored(prometheus, "slow", 900.0) or None, timeout=30, message="the scrape")
    assert verdict(measure(prometheus.address, SERIES, name="slow")) is MeasurementVerdict.FAILED


def test_nan_is_never_a_pass(prometheus: Prometheus, exporter: Exporter) -> None:
    exporter.set(float("nan"), name="nan")
    wait_for(lambda: stored(prometheus, "nan", float("nan")) or None, timeout=30, message="the scrape")
    measurement = measure(prometheus.address, SERIES, name="nan")
    assert measurement.error is None
    assert verdict(measurement) is MeasurementVerdict.INCONCLUSIVE


def test_infinity_is_never_a_pass(prometheus: Prometheus) -> None:
    assert verdict(measure(prometheus.address, "vector(1) / 0")) is MeasurementVerdict.INCONCLUSIVE
    assert verdict(measure(prometheus.address, "-1 / 0")) is MeasurementVerdict.INCONCLUSIVE  # a scalar


def test_an_empty_result_is_never_a_pass(prometheus: Prometheus) -> None:
    measurement = measure(prometheus.address, SERIES, name="no-such-deployment")
    assert measurement.error is None
    assert measurement.canary is not None and measurement.canary.value is None
    assert verdict(measurement) is MeasurementVerdict.INCONCLUSIVE


def test_several_samples_are_an_error(prometheus: Prometheus, exporter: Exporter) -> None:
    exporter.set(1.0, name="many", role="canary")
    exporter.set(2.0, name="many", role="stable")
    wait_for(lambda: len(prometheus.instant('modeldeploy_test_value{name="many"}')) == 2 or None, timeout=30,
             message="both series")
    measurement = measure(prometheus.address, 'modeldeploy_test_value{name="{{name}}"}', name="many")
    assert measurement.error is not None and "2 samples" in measurement.error
    assert verdict(measurement) is MeasurementVerdict.ERROR


def test_a_promql_error_is_an_error_naming_it(prometheus: Prometheus) -> None:
    measurement = measure(prometheus.address, "sum(rate(modeldeploy_test_value[{{interval}}])")
    assert measurement.error is not None
    assert "400" in measurement.error and "bad_data" in measurement.error


def test_a_range_vector_is_an_error(prometheus: Prometheus) -> None:
    measurement = measure(prometheus.address, "modeldeploy_test_value[1m]")
    assert measurement.error is not None and "matrix" in measurement.error


def test_a_missing_revision_is_an_error_not_a_query_for_every_revision(prometheus: Prometheus) -> None:
    measurement = measure(prometheus.address, SERIES, revision=None)
    assert measurement.error is not None and "revision" in measurement.error


def test_prometheus_stopped_is_an_error(exporter: Exporter, tmp_path: Path) -> None:
    running = start_prometheus(tmp_path, [f"127.0.0.1:{exporter.port}"])
    try:
        wait_for(lambda: measure(running.address, "vector(3)").error is None or None, timeout=30,
                 message="a first answer")
    finally:
        running.stop()
    measurement = measure(running.address, "vector(3)")
    assert measurement.error is not None and "127.0.0.1" in measurement.error
    assert verdict(measurement) is MeasurementVerdict.ERROR


def test_an_endpoint_that_never_answers_times_out_as_an_error() -> None:
    async def scenario() -> tuple[Measurement, float]:
        held: list[asyncio.StreamWriter] = []

        async def accept_and_hang(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            held.append(writer)  # read nothing, answer nothing

        server = await asyncio.start_server(accept_and_hang, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        metric = Metric(name="p99", max=250.0, provider=PrometheusProvider(
            address=f"http://127.0.0.1:{port}", query="vector(1)", timeout=timedelta(seconds=1)))
        provider = PrometheusMetrics()
        started = asyncio.get_running_loop().time()
        now = datetime.now(UTC)
        try:
            measurement = await provider.measure(metric, target(), now - timedelta(seconds=30), now)
        finally:
            await provider.close()
            for writer in held:
                writer.close()
            server.close()
            await server.wait_closed()
        return measurement, asyncio.get_running_loop().time() - started

    measurement, took = asyncio.run(scenario())
    assert measurement.error is not None and "within 1 s" in measurement.error
    assert took < 5


def _self_signed(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "prometheus.test")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256()))
    cert = directory / "tls.crt"
    key_file = directory / "tls.key"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert, key_file


def test_tls_with_the_ca_from_the_secret(exporter: Exporter, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n")
    running = start_prometheus(tmp_path / "tls", [f"127.0.0.1:{exporter.port}"], web_config=web)
    try:
        secrets = {"prometheus-client": {"ca.crt": cert.read_bytes(), "token": b"not-checked-by-prometheus"}}
        answered = wait_for(lambda: (lambda m: m if m.error is None else None)(
            measure(running.address, "vector(5)", secret="prometheus-client", secrets=secrets)), timeout=30,
            message="an answer over TLS")
        assert isinstance(answered, Measurement) and answered.canary is not None and answered.canary.value == 5.0
        # Without the CA the server's certificate is not trusted: an Error, never a silent fallback.
        untrusted = measure(running.address, "vector(5)")
        assert untrusted.error is not None and "certificate" in untrusted.error.lower()
        # A Secret the operator cannot read is an Error naming it.
        missing = measure(running.address, "vector(5)", secret="absent", secrets=secrets)
        assert missing.error is not None and "team/absent" in missing.error
    finally:
        running.stop()
        with contextlib.suppress(subprocess.SubprocessError):
            running.process.wait(timeout=5)


def _bcrypt(password: str) -> str:
    """A bcrypt hash for Prometheus' basic_auth_users, from the system's crypt(3) (libxcrypt)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        crypt = pytest.importorskip("crypt")
    hashed: str = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 4))
    return hashed


def test_basic_auth_over_tls_from_the_secret(exporter: Exporter, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n"
                   f"basic_auth_users:\n  alice: '{_bcrypt('s3cret')}'\n")
    running = start_prometheus(tmp_path / "basic", [f"127.0.0.1:{exporter.port}"], web_config=web)
    secrets = {
        "right": {"ca.crt": cert.read_bytes(), "username": b"alice", "password": b"s3cret"},
        "wrong": {"ca.crt": cert.read_bytes(), "username": b"alice", "password": b"guess"},
        "half": {"ca.crt": cert.read_bytes(), "username": b"alice"},
    }
    try:
        answered = wait_for(lambda: (lambda m: m if m.error is None else None)(
            measure(running.address, "vector(5)", secret="right", secrets=secrets)), timeout=30,
            message="an answer with basic auth")
        assert isinstance(answered, Measurement) and answered.canary is not None and answered.canary.value == 5.0
        refused = measure(running.address, "vector(5)", secret="wrong", secrets=secrets)
        assert refused.error is not None and "401" in refused.error
        half = measure(running.address, "vector(5)", secret="half", secrets=secrets)
        assert half.error is not None and "needs both username and password" in half.error
    finally:
        running.stop()
