"""The SCEP registration authority (RA) of each SCEP provisioner: its key and certificate.

SCEP clients encrypt their requests to the RA certificate GetCACert hands out, and
verify the CA's replies with it. The RA key only decrypts requests and signs replies;
it is never the issuing key (a leaked RA key signs no certificate). Each SCEP
provisioner has its own: an RSA-2048 key (SCEP's key transport is RSA), kept encrypted
with the CA password in ``DIR/secrets/scep_NAME_ra.key``, and a certificate from the
provisioner's issuer in ``DIR/certs/scep_NAME_ra.crt`` (key usage digitalSignature
and keyEncipherment, not a CA), made on first use and made again when it has less
than :data:`RA_RENEW_BEFORE` left, its issuer changed, or its files do not match.
"""

from __future__ import annotations

import fcntl
import logging
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from engine.errors import ConfigurationError
from engine.pipeline import Issuer, random_serial
from engine.ports import Random
from engine.scep import Signer

from .pki import write_private

log = logging.getLogger("devid.scep")


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on *path* (made if missing) between processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


RA_LIFETIME = timedelta(days=365)
RA_RENEW_BEFORE = timedelta(days=30)
RA_KEY_BITS = 2048
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")


def ra_files(data_dir: Path, provisioner: str) -> tuple[Path, Path]:
    """The RA certificate and key files of *provisioner* (certificate, key)."""
    stem = "scep_" + _SAFE_NAME.sub("_", provisioner) + "_ra"
    return data_dir / "certs" / f"{stem}.crt", data_dir / "secrets" / f"{stem}.key"


class RAKeys:
    """Loads (or makes) each SCEP provisioner's RA identity, once per process."""

    def __init__(
        self, data_dir: Path, password: Callable[[], bytes | None], random: Random
    ) -> None:
        self.data_dir = data_dir
        self._password = password
        self.random = random
        self._lock = threading.Lock()
        self._loaded: dict[tuple[str, str], Signer] = {}

    @property
    def password(self) -> bytes | None:
        return self._password()

    def signer(self, provisioner: str, issuer: Issuer, now: datetime) -> Signer:
        """The RA identity of *provisioner*, whose certificate *issuer* signed, valid at
        *now* for at least :data:`RA_RENEW_BEFORE` more."""
        key = (provisioner, issuer.name)
        with self._lock:
            found = self._loaded.get(key)
            if found is not None and found.certificate.not_valid_after_utc - now > RA_RENEW_BEFORE:
                return found
            signer = self._load(provisioner, issuer, now)
            if signer is None:
                # Server processes (--workers) share the files: one makes the RA, and the
                # others, waiting on the lock, then load it instead of making their own.
                with _file_lock(ra_files(self.data_dir, provisioner)[1].with_suffix(".lock")):
                    signer = self._load(provisioner, issuer, now) or self._create(
                        provisioner, issuer, now
                    )
            self._loaded[key] = signer
            return signer

    def _load(self, provisioner: str, issuer: Issuer, now: datetime) -> Signer | None:
        cert_path, key_path = ra_files(self.data_dir, provisioner)
        if not cert_path.exists() or not key_path.exists() or self.password is None:
            return None
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            key = serialization.load_pem_private_key(key_path.read_bytes(), self.password)
        except (OSError, ValueError, TypeError) as exc:
            log.warning(
                "SCEP RA of %s: cannot read %s (%s); making a new one", provisioner, cert_path, exc
            )
            return None
        if not isinstance(key, rsa.RSAPrivateKey):
            return None
        if key.public_key() != cert.public_key():
            return None
        try:
            cert.verify_directly_issued_by(issuer.certificate)
        except (ValueError, TypeError, InvalidSignature):
            log.info("SCEP RA of %s: issuer changed; making a new RA certificate", provisioner)
            return None
        if cert.not_valid_after_utc - now <= RA_RENEW_BEFORE:
            log.info(
                "SCEP RA of %s: certificate expires %s; making a new one",
                provisioner,
                cert.not_valid_after_utc.isoformat(),
            )
            return None
        return Signer(certificate=cert, key=key)

    def _create(self, provisioner: str, issuer: Issuer, now: datetime) -> Signer:
        if self.password is None:
            raise ConfigurationError(
                f"SCEP provisioner {provisioner!r}: its RA key cannot be made without the CA"
                " password"
            )
        cert_path, key_path = ra_files(self.data_dir, provisioner)
        key = rsa.generate_private_key(public_exponent=65537, key_size=RA_KEY_BITS)
        ca_cert = issuer.certificate
        organisation = [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, str(a.value))
            for a in ca_cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        ][:1]
        common_name = x509.NameAttribute(NameOID.COMMON_NAME, f"SCEP RA {provisioner}"[:64])
        attributes = [*organisation, common_name]
        not_after = min(now + RA_LIFETIME, ca_cert.not_valid_after_utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attributes))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(random_serial(self.random))
            .not_valid_before(now - timedelta(minutes=1))
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=True,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(issuer.authority_key_identifier, critical=False)
        )
        signer_key = issuer.signer.private_key
        cert = builder.sign(signer_key, issuer.signer.hash_algorithm)  # type: ignore[arg-type]
        # The key first: a certificate on disk always has its key beside it.
        write_private(
            key_path,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(self.password),
            ),
        )
        cert_path.parent.mkdir(parents=True, exist_ok=True)
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        log.info(
            "SCEP RA of %s: new RA certificate %s, valid until %s",
            provisioner,
            format(cert.serial_number, "x"),
            not_after.isoformat(),
        )
        return Signer(certificate=cert, key=key)
