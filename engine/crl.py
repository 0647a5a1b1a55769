"""Certificate revocation lists, built from what the store says was revoked."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import attrs
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from .pipeline import Issuer

REASONS = {
    0: x509.ReasonFlags.unspecified,
    1: x509.ReasonFlags.key_compromise,
    3: x509.ReasonFlags.affiliation_changed,
    4: x509.ReasonFlags.superseded,
    5: x509.ReasonFlags.cessation_of_operation,
    6: x509.ReasonFlags.certificate_hold,
    9: x509.ReasonFlags.privilege_withdrawn,
    10: x509.ReasonFlags.aa_compromise,
}


@attrs.frozen
class RevokedEntry:
    serial: int
    revoked_at: datetime
    reason_code: int = 0


def build_crl(
    issuer: Issuer,
    entries: Iterable[RevokedEntry],
    *,
    now: datetime,
    number: int,
    lifetime: timedelta = timedelta(hours=24),
) -> bytes:
    """A DER CRL signed by *issuer*, valid from *now* for *lifetime*."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.certificate.subject)
        .last_update(now)
        .next_update(now + lifetime)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(issuer.authority_key_identifier, critical=False)
    )
    for entry in entries:
        revoked = (
            x509.RevokedCertificateBuilder()
            .serial_number(entry.serial)
            .revocation_date(entry.revoked_at)
        )
        reason = REASONS.get(entry.reason_code)
        if reason is not None and reason is not x509.ReasonFlags.unspecified:
            revoked = revoked.add_extension(x509.CRLReason(reason), critical=False)
        builder = builder.add_revoked_certificate(revoked.build())
    signer = issuer.signer
    crl = builder.sign(signer.private_key, signer.hash_algorithm)  # type: ignore[arg-type]
    return crl.public_bytes(Encoding.DER)
