"""The CA hierarchy on disk: one root and four intermediates, keys encrypted at rest."""

from __future__ import annotations

import hashlib
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID

from engine.errors import ConfigurationError
from engine.keys import KeyType, signature_hash_for
from engine.pipeline import Issuer, random_serial
from engine.signer import SoftwareSigner
from plugins.keygen import generate_key

from .config import ISSUER_NAMES, Config, KeyPair
from .ports import SystemRandom

ROOT_LIFETIME = timedelta(days=3650)
INTERMEDIATE_LIFETIME = timedelta(days=1825)
ISSUER_TITLES = {
    "attestation": "Attestation CA",
    "agent": "Agent CA",
    "account": "Account CA",
    "tls": "TLS CA",
}


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, lowercase hex (what `devid ca root` checks)."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)


def _ca_certificate(
    subject: x509.Name,
    issuer_name: x509.Name,
    public_key: object,
    signing_key: CertificateIssuerPrivateKeyTypes,
    issuer_public_key: object,
    now: datetime,
    lifetime: timedelta,
    path_length: int | None,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(random_serial(SystemRandom()))
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)  # type: ignore[arg-type]
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public_key),  # type: ignore[arg-type]
            critical=False,
        )
    )
    return builder.sign(signing_key, signature_hash_for(signing_key))  # type: ignore[arg-type]


@attrs.frozen
class CreatedHierarchy:
    root: x509.Certificate
    files: KeyPair
    issuers: dict[str, KeyPair]


def create_hierarchy(
    data_dir: Path, name: str, password: bytes, key_type: KeyType
) -> CreatedHierarchy:
    """Write a root and the four intermediates under DIR/certs and DIR/secrets."""
    now = datetime.now(UTC)
    encryption = serialization.BestAvailableEncryption(password)
    certs = data_dir / "certs"
    certs.mkdir(parents=True, exist_ok=True)
    root_key = generate_key(key_type)
    root_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{name} Root CA"),
        ]
    )
    root = _ca_certificate(
        root_name,
        root_name,
        root_key.public_key(),
        root_key,
        root_key.public_key(),
        now,
        ROOT_LIFETIME,
        1,
    )
    root_files = KeyPair(certs / "root_ca.crt", data_dir / "secrets" / "root_ca.key")
    root_files.certificate.write_bytes(root.public_bytes(serialization.Encoding.PEM))
    write_private(
        root_files.key,
        root_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        ),
    )
    issuers = {
        issuer: create_intermediate(data_dir, issuer, name, root, root_key, password, key_type)
        for issuer in ISSUER_NAMES
    }
    return CreatedHierarchy(root=root, files=root_files, issuers=issuers)


def intermediate_files(issuer: str) -> KeyPair:
    """Where an intermediate's certificate and encrypted key live (relative to DIR)."""
    return KeyPair(Path("certs") / f"{issuer}_ca.crt", Path("secrets") / f"{issuer}_ca.key")


def create_intermediate(
    data_dir: Path,
    issuer: str,
    name: str,
    root: x509.Certificate,
    root_key: CertificateIssuerPrivateKeyTypes,
    password: bytes,
    key_type: KeyType,
) -> KeyPair:
    """A new intermediate *issuer* signed by the root: DIR/certs/ISSUER_ca.crt and its key,
    encrypted with *password*, in DIR/secrets/ISSUER_ca.key (mode 0600)."""
    key = generate_key(key_type)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{name} {ISSUER_TITLES[issuer]}"),
        ]
    )
    cert = _ca_certificate(
        subject,
        root.subject,
        key.public_key(),
        root_key,
        root_key.public_key(),
        datetime.now(UTC),
        INTERMEDIATE_LIFETIME,
        0,
    )
    relative = intermediate_files(issuer)
    files = KeyPair(data_dir / relative.certificate, data_dir / relative.key)
    # The key first: a certificate on disk always has its key beside it.
    write_private(
        files.key,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(password),
        ),
    )
    files.certificate.parent.mkdir(parents=True, exist_ok=True)
    files.certificate.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return files


def load_certificate(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except FileNotFoundError:
        raise ConfigurationError(f"certificate {path} is missing") from None
    except ValueError as exc:
        raise ConfigurationError(f"certificate {path} cannot be parsed: {exc}") from None


def load_private_key(path: Path, password: bytes) -> CertificateIssuerPrivateKeyTypes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigurationError(f"CA key {path} is missing") from None
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except (ValueError, TypeError):
        raise ConfigurationError(
            f"cannot decrypt {path}: the password is wrong"
            " (check --password-file or $DEVID_PASSWORD)"
        ) from None
    if not isinstance(
        key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
    ):
        raise ConfigurationError(f"CA key {path} has an unsupported type")
    return key


def load_issuers(config: Config, password: bytes) -> tuple[x509.Certificate, dict[str, Issuer]]:
    """Load the root certificate and decrypt the intermediates."""
    root = load_certificate(config.root.certificate)
    issuers: dict[str, Issuer] = {}
    for name, files in config.issuers.items():
        cert = load_certificate(files.certificate)
        key = load_private_key(files.key, password)
        if key.public_key() != cert.public_key():
            raise ConfigurationError(f"{files.key} does not belong to {files.certificate}")
        try:
            cert.verify_directly_issued_by(root)
        except (ValueError, TypeError, Exception) as exc:
            raise ConfigurationError(
                f"{files.certificate} is not issued by the root: {exc}"
            ) from None
        issuers[name] = Issuer(name=name, certificate=cert, signer=SoftwareSigner(key))
    return root, issuers
