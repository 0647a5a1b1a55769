"""Admin client certificates: the only certificates that open the admin API.

``devid admin certificate NAME`` issues one from the TLS CA through the internal
``admin-client`` provisioner, which no request can reach: the store records it under
that provisioner, so it is revocable like any certificate (and then listed in the TLS
CA's CRL). :meth:`Authority.check_admin` accepts a client certificate only if it is
such a record: verified against the TLS CA, in the store byte for byte, active and
unexpired. The subject counts for nothing, so a certificate anyone can get for the same
name (ACME http-01, a JWK token, a device certificate) never authenticates an admin.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from engine.errors import BadRequest, ConfigurationError
from engine.extensions import ProvisionerRef
from engine.pipeline import IssuedCertificate, Issuer, issue_own_certificate
from engine.ports import Clock, Random
from engine.template import CertificateTemplate
from hosts.store import CertificateRecord


class IssuingAuthority(Protocol):
    """What issuing an admin certificate needs of the CA (an ``Authority``)."""

    @property
    def issuers(self) -> Mapping[str, Issuer]: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def random(self) -> Random: ...

    def record_issued(self, issued: IssuedCertificate) -> None: ...


# type "internal": no [[provisioners]] table can have it (no plugin registers it).
ADMIN_PROVISIONER = ProvisionerRef(type="internal", name="admin-client")
ADMIN_ISSUER = "tls"
DEFAULT_ADMIN_LIFETIME = timedelta(days=30)
MAX_ADMIN_LIFETIME = timedelta(days=365)


def is_admin_record(record: CertificateRecord) -> bool:
    """Issued as an admin certificate (by ``devid admin certificate``)."""
    return (
        record.provisioner_type == ADMIN_PROVISIONER.type
        and record.provisioner_name == ADMIN_PROVISIONER.name
        and record.issuer == ADMIN_ISSUER
    )


def admin_subject(name: str) -> x509.Name:
    if not name or name != name.strip() or not name.isprintable():
        raise ConfigurationError("the admin name must be printable text without edge spaces")
    try:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    except ValueError:
        raise ConfigurationError("the admin name must be at most 64 characters") from None


def issue_admin_certificate(
    authority: IssuingAuthority, name: str, lifetime: timedelta = DEFAULT_ADMIN_LIFETIME
) -> tuple[IssuedCertificate, ec.EllipticCurvePrivateKey]:
    """A new P-256 key and a clientAuth certificate ``CN=name`` for it from the TLS CA,
    recorded in the store as the ``admin-client`` provisioner's."""
    if not timedelta(minutes=5) <= lifetime <= MAX_ADMIN_LIFETIME:
        raise ConfigurationError("an admin certificate's validity must be between 5m and 365d")
    subject = admin_subject(name)
    key = ec.generate_private_key(ec.SECP256R1())
    template = CertificateTemplate(
        subject=subject,
        key_usage=frozenset({"digital_signature"}),
        extended_key_usage=(ExtendedKeyUsageOID.CLIENT_AUTH,),
    )
    try:
        issued = issue_own_certificate(
            template,
            key.public_key(),
            authority.issuers[ADMIN_ISSUER],
            ADMIN_PROVISIONER,
            now=authority.clock.now(),
            lifetime=lifetime,
            random=authority.random,
            evidence={"method": "admin-certificate", "name": name},
        )
    except BadRequest as exc:
        raise ConfigurationError(exc.detail) from None
    authority.record_issued(issued)
    return issued, key
