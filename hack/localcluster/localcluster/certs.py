"""Self-made PKI for the local cluster: one CA, the API server's serving cert, client certs, SA keys."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=365)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attrs)


class PKI:
    """Creates (once) and locates every certificate and key the cluster needs."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.ca_cert = directory / "ca.crt"
        self.ca_key = directory / "ca.key"
        self.sa_key = directory / "sa.key"
        self.sa_pub = directory / "sa.pub"

    def ensure(self, serving_ips: list[str], serving_names: list[str]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if not self.ca_cert.exists():
            self._make_ca()
        if not self.sa_key.exists():
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            _write_key(self.sa_key, key)
            self.sa_pub.write_bytes(
                key.public_key().public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
            )
        self.issue("apiserver", "kube-apiserver", None, server=True, ips=serving_ips, names=serving_names)
        self.issue("admin", "localcluster-admin", "system:masters")
        self.issue("controller-manager", "system:kube-controller-manager", None)
        self.issue("scheduler", "system:kube-scheduler", None)
        self.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters")

    def _make_ca(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        name = _name("localcluster-ca")
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                    key_encipherment=False, data_encipherment=False, key_agreement=False,
                    encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        _write_key(self.ca_key, key)
        self.ca_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def issue(
        self,
        stem: str,
        common_name: str,
        organization: str | None,
        *,
        server: bool = False,
        ips: list[str] | None = None,
        names: list[str] | None = None,
    ) -> tuple[Path, Path]:
        """Issues `stem.crt`/`stem.key` signed by the CA unless they already exist."""
        crt, keyfile = self.dir / f"{stem}.crt", self.dir / f"{stem}.key"
        if crt.exists() and keyfile.exists():
            return crt, keyfile
        ca_key = serialization.load_pem_private_key(self.ca_key.read_bytes(), password=None)
        ca_cert = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name, organization))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if server:
            alt: list[x509.GeneralName] = [x509.DNSName(n) for n in names or []]
            alt += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips or []]
            builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        cert = builder.sign(ca_key, hashes.SHA256())
        _write_key(keyfile, key)
        crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return crt, keyfile
