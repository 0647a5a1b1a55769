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

import hashlib
import hmac
from collections.abc import Sequence
from datetime import timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from engine.assurance import Assurance, SetAssurance
from engine.errors import BadRequest, ConfigurationError, Unauthorized
from engine.extensions import ProvisionerRef
from engine.pipeline import IssuedCertificate, issue_own_certificate
from engine.template import CertificateTemplate
from hosts.store import CertificateRecord

from .ca import CA, load_peer

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
    authority: CA, name: str, lifetime: timedelta = DEFAULT_ADMIN_LIFETIME
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
    template = SetAssurance(Assurance.OPERATOR).modify(template)
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


class AdminService:
    """Who may use the admin API (``/api/v1/...``): the holder of an admin token or of an
    admin client certificate."""

    def __init__(self, ca: CA, token_sha256: Sequence[str]) -> None:
        self.ca = ca
        self.token_sha256 = tuple(token_sha256)

    def check(self, bearer: str | None, peer_der: bytes | None) -> str:
        """Authenticate an admin API caller; returns who it is, or raises Unauthorized.

        A bearer token must hash to one of ``[admin] token_sha256``. A client certificate
        counts only if ``devid admin certificate`` issued it: verified against the TLS CA,
        recorded by the internal admin-client provisioner, the same bytes as the record,
        active and unexpired. Its subject counts for nothing (``client_subjects`` is
        ignored), so no certificate anyone else can obtain ever authenticates an admin.
        """
        if bearer:
            digest = hashlib.sha256(bearer.encode()).hexdigest()
            if any(hmac.compare_digest(digest, known) for known in self.token_sha256):
                return "admin-token"
            raise Unauthorized("the admin token is not valid")
        if peer_der is not None:
            cert = load_peer(peer_der)
            record, _ = self.ca.known_certificate(cert)
            subject = cert.subject.rfc4514_string()
            if not is_admin_record(record) or not hmac.compare_digest(
                record.der, cert.public_bytes(Encoding.DER)
            ):
                raise Unauthorized(
                    f"certificate {subject} is not an admin certificate (only certificates"
                    " from `devid admin certificate` open the admin API)"
                )
            return f"admin-certificate:{subject}"
        raise Unauthorized(
            "the admin API needs 'Authorization: Bearer <admin token>'"
            " or an admin client certificate (`devid admin certificate`)"
        )
