"""The records the stores keep, whatever the backend.

A certificate's record says what was issued, by which provisioner, and to which
device; a used token is claimed in the same commit as the certificate it
authorized; a revocation is kept for the CRL of the certificate's issuer.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs
from cryptography import x509

from engine.accounts import device_ek_urns
from engine.errors import BadRequest

# The PermanentIdentifier OID (1.3.6.1.5.5.7.8.3) as DER (tag, length, value): a
# certificate without these bytes has none, so it need not be parsed to look for one.
_PERMANENT_IDENTIFIER_DER = bytes([6, 8]) + bytes.fromhex("2b06010505070803")


@attrs.frozen
class CertificateRecord:
    serial: str  # lowercase hex, no leading zeros
    issuer: str
    subject: str
    sans: tuple[str, ...]
    provisioner_type: str
    provisioner_name: str
    not_before: datetime
    not_after: datetime
    der: bytes
    evidence: dict[str, Any] = attrs.field(factory=dict)
    status: str = "active"
    created_at: datetime | None = None
    # The EK URN of the device the certificate was issued to (None if it names none);
    # the store fills it from the evidence and the certificate when it is not given.
    device: str | None = None


def certificate_device(evidence: Mapping[str, Any], der: bytes) -> str | None:
    """The device (EK URN) a certificate was issued to, if it was issued to one.

    Account certificates name it in their evidence (``device``), AK certificates too
    (``ek``); a device certificate binds it as a PermanentIdentifier with devid's
    EK-digest assigner, which only device-attest-01 writes; and an attested certificate
    may name exactly one EK in its attestation evidence.
    """
    for key in ("device", "ek"):
        value = evidence.get(key)
        if isinstance(value, str) and value.startswith("urn:ek:"):
            return value
    if _PERMANENT_IDENTIFIER_DER in der:
        try:
            urns = device_ek_urns(x509.load_der_x509_certificate(der))
        except (ValueError, BadRequest):
            urns = ()
        if len(urns) == 1:
            return urns[0]
    attestation = evidence.get("attestation")
    if isinstance(attestation, Mapping):
        ek_urns = attestation.get("ek_urns")
        if isinstance(ek_urns, list) and len(ek_urns) == 1 and isinstance(ek_urns[0], str):
            return ek_urns[0]
    return None


@attrs.frozen
class UsedToken:
    """A one-time token to mark used together with the certificate it authorized."""

    provisioner: str
    token_id: str
    expires_at: datetime
    now: datetime


@attrs.frozen
class Revocation:
    serial: str
    issuer: str
    revoked_at: datetime
    reason_code: int
    reason: str
    revoked_by: str
