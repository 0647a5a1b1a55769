"""ACME Renewal Information (RFC 9773): certificate identifiers and suggested windows."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from cryptography import x509

from ..errors import BadRequest
from ..jose import b64url_decode, b64url_encode
from .problems import malformed
from .records import rfc3339

RETRY_AFTER = timedelta(hours=6)


def serial_content(serial: int) -> bytes:
    """The content octets of the DER INTEGER (two's complement, minimal)."""
    return serial.to_bytes((serial.bit_length() + 8) // 8, "big", signed=True)


def cert_id(certificate: x509.Certificate) -> str:
    """``base64url(AKI keyIdentifier) "." base64url(serial)`` (RFC 9773 4.1)."""
    aki = certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    if aki.key_identifier is None:
        raise BadRequest("the certificate's AKI has no keyIdentifier")
    serial = serial_content(certificate.serial_number)
    return f"{b64url_encode(aki.key_identifier)}.{b64url_encode(serial)}"


def parse_cert_id(text: str) -> tuple[bytes, int]:
    """(the AKI keyIdentifier, the serial number) a certificate identifier names."""
    parts = text.split(".")
    if len(parts) != 2 or not all(parts) or len(text) > 256:
        raise malformed("a certificate identifier is base64url(AKI) '.' base64url(serial)")
    try:
        key_identifier = b64url_decode(parts[0], what="the AKI keyIdentifier")
        serial_bytes = b64url_decode(parts[1], what="the serial number")
    except BadRequest as exc:
        raise malformed(exc.detail) from None
    serial = int.from_bytes(serial_bytes, "big", signed=True)
    if serial <= 0 or serial_content(serial) != serial_bytes:
        raise malformed("the serial number is not a positive DER INTEGER's content")
    return key_identifier, serial


def suggested_window(
    not_before: datetime, not_after: datetime, *, revoked: bool, now: datetime
) -> tuple[datetime, datetime]:
    """Renew in the last third of the lifetime; a revoked certificate: right away."""
    if revoked:
        return now - timedelta(hours=1), now
    lifetime = not_after - not_before
    return not_before + lifetime * 2 / 3, not_before + lifetime * 5 / 6


def renewal_info_json(start: datetime, end: datetime) -> dict[str, Any]:
    return {"suggestedWindow": {"start": rfc3339(start), "end": rfc3339(end)}}
