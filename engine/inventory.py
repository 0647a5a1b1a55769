"""The device inventory's records and rules: a device is its TPM's Endorsement Key.

A device is identified by ``urn:ek:sha256:<base64>``: standard base64 of the
SHA-256 of the EK public key's SubjectPublicKeyInfo DER (the form other TPM
attestation CAs use, so operators can paste identifiers between systems).
Certificates carry the same digest as base64url in a PermanentIdentifier,
because the device-attest draft's grammar forbids '/' there.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import re
from datetime import datetime
from typing import Any

import attrs
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .errors import BadRequest

EK_URN_PREFIX = "urn:ek:sha256:"
MAX_TAGS = 32
_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/=-]{0,62}$")


class DeviceStatus(enum.Enum):
    ACTIVE = "active"
    DISABLED = "disabled"


def ek_digest(public_key: PublicKeyTypes) -> bytes:
    spki = public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).digest()


def ek_urn_from_digest(digest: bytes) -> str:
    return EK_URN_PREFIX + base64.b64encode(digest).decode("ascii")


def ek_urn(public_key: PublicKeyTypes) -> str:
    return ek_urn_from_digest(ek_digest(public_key))


def parse_ek_urn(text: str) -> bytes:
    """The 32-byte digest inside an EK URN; BadRequest if it is not one."""
    if not isinstance(text, str) or not text.lower().startswith(EK_URN_PREFIX):
        raise BadRequest(f"EK identifier must look like {EK_URN_PREFIX}<base64 SHA-256>")
    body = text[len(EK_URN_PREFIX) :]
    try:
        digest = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("EK identifier is not valid base64") from None
    if len(digest) != 32:
        raise BadRequest("EK identifier must hold a 32-byte SHA-256 digest")
    return digest


def normalize_ek_urn(text: str) -> str:
    return ek_urn_from_digest(parse_ek_urn(text))


_PERMANENT_IDENTIFIER_LABEL = "permanentidentifier:"
_B64_DIGEST = re.compile(r"^[A-Za-z0-9+/_-]{43}=?$")
_HEX_DIGEST = re.compile(r"^[0-9A-Fa-f]{64}$")


def ek_digest_from_identifier(text: str) -> bytes:
    """The EK digest of a device identifier in any form devid prints.

    ``urn:ek:sha256:<base64>`` (the inventory, the logs, the AK certificate's URI), the
    base64url PermanentIdentifier of device and AK certificates (bare or after
    ``PermanentIdentifier:`` as ``devid agent enroll`` shows it, or after the URN prefix),
    and the digest in hex. BadRequest for anything else.
    """
    if not isinstance(text, str):
        raise BadRequest(f"EK identifier must look like {EK_URN_PREFIX}<base64 SHA-256>")
    body = text.strip()
    if body.lower().startswith(_PERMANENT_IDENTIFIER_LABEL):
        body = body[len(_PERMANENT_IDENTIFIER_LABEL) :].strip()
    urn = body.lower().startswith(EK_URN_PREFIX)
    if urn:
        body = body[len(EK_URN_PREFIX) :]
    if _HEX_DIGEST.match(body):
        return bytes.fromhex(body)
    if not _B64_DIGEST.match(body):
        if urn:  # the URN's own complaint: not base64, or not 32 bytes
            return parse_ek_urn(text.strip())
        raise BadRequest(
            f"EK identifier must look like {EK_URN_PREFIX}<base64 SHA-256>, or be the"
            " base64url PermanentIdentifier of the device's certificates"
        )
    standard = body.rstrip("=").replace("-", "+").replace("_", "/") + "="
    try:
        digest = base64.b64decode(standard, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("EK identifier is not valid base64") from None
    if len(digest) != 32:  # pragma: no cover - 43 base64 characters are 32 bytes
        raise BadRequest("EK identifier must hold a 32-byte SHA-256 digest")
    return digest


def device_ek_urn(text: str) -> str:
    """The inventory's ``urn:ek:sha256:<base64>`` for an identifier in any form devid prints
    (:func:`ek_digest_from_identifier`)."""
    return ek_urn_from_digest(ek_digest_from_identifier(text))


def looks_like_ek_identifier(text: str) -> bool:
    try:
        ek_digest_from_identifier(text)
    except BadRequest:
        return False
    return True


def permanent_identifier_value(digest: bytes) -> str:
    """The PermanentIdentifier value for a device: base64url of its EK digest, unpadded."""
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def ek_urn_from_certificate(cert: x509.Certificate) -> str:
    return ek_urn(cert.public_key())


def check_tags(tags: Any) -> tuple[str, ...]:
    if tags is None:
        return ()
    if not isinstance(tags, list | tuple) or not all(isinstance(t, str) for t in tags):
        raise BadRequest("tags must be a list of strings")
    if len(tags) > MAX_TAGS:
        raise BadRequest(f"at most {MAX_TAGS} tags")
    for tag in tags:
        if not _TAG.match(tag):
            raise BadRequest(f"invalid tag {tag!r}: letters, digits and _.:/=- only, 1-63 chars")
    return tuple(sorted(set(tags)))


def check_text(value: Any, field: str, limit: int = 256) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > limit or any(ord(c) < 32 for c in value):
        raise BadRequest(f"{field} must be a printable string of at most {limit} characters")
    return value


@attrs.frozen
class Device:
    """One registered device."""

    ek_urn: str
    ek_certificate: bytes | None = None  # DER, when the operator registered one
    serial: str | None = None
    name: str | None = None
    owner: str | None = None
    tags: tuple[str, ...] = ()
    status: DeviceStatus = DeviceStatus.ACTIVE
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.status is DeviceStatus.ACTIVE

    def to_json(self) -> dict[str, Any]:
        return {
            "ek": self.ek_urn,
            "ekCertificate": base64.b64encode(self.ek_certificate).decode()
            if self.ek_certificate
            else None,
            "serial": self.serial,
            "name": self.name,
            "owner": self.owner,
            "tags": list(self.tags),
            "status": self.status.value,
            "createdAt": self.created_at.isoformat() if self.created_at else None,
            "updatedAt": self.updated_at.isoformat() if self.updated_at else None,
        }


@attrs.frozen
class DeviceFilter:
    status: DeviceStatus | None = None
    owner: str | None = None
    tag: str | None = None
    text: str | None = None  # matches name, serial or EK URN


def device_from_input(data: Any, *, now: datetime) -> Device:
    """Validate an API/CLI/import record into a Device (EK from ``ek`` or ``ekCertificate``)."""
    if not isinstance(data, dict):
        raise BadRequest("a device must be a JSON object")
    unknown = set(data) - {"ek", "ekCertificate", "serial", "name", "owner", "tags", "status"}
    if unknown:
        raise BadRequest(f"unknown device field(s): {', '.join(sorted(unknown))}")
    cert_der: bytes | None = None
    urn_from_cert: str | None = None
    raw_cert = data.get("ekCertificate")
    if raw_cert:
        cert_der = decode_certificate(raw_cert)
        try:
            urn_from_cert = ek_urn_from_certificate(x509.load_der_x509_certificate(cert_der))
        except (ValueError, UnsupportedAlgorithm):
            raise BadRequest("the key of ekCertificate is of an unknown type") from None
    raw_urn = data.get("ek")
    if raw_urn:
        urn = device_ek_urn(raw_urn)
        if urn_from_cert is not None and urn != urn_from_cert:
            raise BadRequest("ek does not match the public key of ekCertificate")
    elif urn_from_cert is not None:
        urn = urn_from_cert
    else:
        raise BadRequest("a device needs ek (urn:ek:sha256:...) or ekCertificate")
    status = data.get("status", "active")
    try:
        status_value = DeviceStatus(status)
    except ValueError:
        raise BadRequest("status must be 'active' or 'disabled'") from None
    return Device(
        ek_urn=urn,
        ek_certificate=cert_der,
        serial=check_text(data.get("serial"), "serial"),
        name=check_text(data.get("name"), "name"),
        owner=check_text(data.get("owner"), "owner"),
        tags=check_tags(data.get("tags")),
        status=status_value,
        created_at=now,
        updated_at=now,
    )


def decode_certificate(value: Any) -> bytes:
    """A certificate given as PEM text or standard base64 DER; returns DER."""
    if not isinstance(value, str | bytes):
        raise BadRequest("certificate must be PEM or base64 DER")
    raw = value.encode() if isinstance(value, str) else value
    try:
        if raw.lstrip().startswith(b"-----BEGIN"):
            cert = x509.load_pem_x509_certificate(raw)
        else:
            cert = x509.load_der_x509_certificate(base64.b64decode(raw, validate=True))
        return cert.public_bytes(Encoding.DER)
    except (ValueError, binascii.Error, x509.InvalidVersion):
        raise BadRequest("certificate cannot be parsed") from None
