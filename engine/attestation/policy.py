"""What the Attestation CA requires of a device's TPM."""

from __future__ import annotations

import enum
from datetime import timedelta

import attrs
from cryptography import x509


class EKCertificatePolicy(enum.Enum):
    """What to do with an EK certificate that does not chain to a trusted EK root."""

    REFUSE = "refuse"
    RECORD = "record"


@attrs.frozen
class AttestationPolicy:
    ek_roots: tuple[x509.Certificate, ...] = ()
    ek_intermediates: tuple[x509.Certificate, ...] = ()
    unverifiable_ek_certificate: EKCertificatePolicy = EKCertificatePolicy.REFUSE
    require_ek_certificate: bool = False
    challenge_lifetime: timedelta = timedelta(seconds=60)
    ak_certificate_lifetime: timedelta = timedelta(days=30)
    allow_sha1: bool = False
