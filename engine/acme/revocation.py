"""revokeCert (RFC 8555 7.6): by the account that ordered the certificate, or by the
certificate's own key; either way only for certificates this provisioner issued."""

from __future__ import annotations

from typing import Any

import attrs
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ..errors import BadRequest
from ..jose import b64url_decode, jwk_from_public_key, jwk_thumbprint
from .problems import ACMEProblem, malformed, unauthorized
from .records import Account

# RFC 5280 CRLReason codes an ACME client may ask for: unspecified, keyCompromise,
# affiliationChanged, superseded, cessationOfOperation, privilegeWithdrawn.
ALLOWED_REASONS = frozenset({0, 1, 3, 4, 5, 9})


@attrs.frozen
class RevocationRequest:
    certificate: x509.Certificate
    der: bytes
    reason: int

    @property
    def serial(self) -> str:
        return format(self.certificate.serial_number, "x")


def parse_revocation(payload: dict[str, Any]) -> RevocationRequest:
    text = payload.get("certificate")
    if not isinstance(text, str) or not text:
        raise malformed("revokeCert needs certificate: the base64url DER of the certificate")
    try:
        der = b64url_decode(text, what="certificate")
        certificate = x509.load_der_x509_certificate(der)
    except (BadRequest, ValueError, x509.InvalidVersion):
        raise malformed("the certificate to revoke cannot be parsed") from None
    reason = payload.get("reason", 0)
    if isinstance(reason, bool) or not isinstance(reason, int) or reason not in ALLOWED_REASONS:
        raise ACMEProblem(
            "badRevocationReason",
            f"reason must be one of {', '.join(map(str, sorted(ALLOWED_REASONS)))}",
        )
    return RevocationRequest(certificate, certificate.public_bytes(Encoding.DER), reason)


def authorize_revocation(
    request: RevocationRequest,
    *,
    stored_der: bytes,
    issued_here: bool,
    owner: str | None,
    account: Account | None,
    signer_thumbprint: str | None,
) -> str:
    """Who may revoke: returns how the requester was authorized (stored with the revocation).

    *issued_here*: this provisioner issued the certificate; *owner*: the account that
    ordered it; *account*: the requesting account (kid); *signer_thumbprint*: the
    thumbprint of the jwk that signed a request without kid.
    """
    if stored_der != request.der:
        raise unauthorized("the certificate is not the one this CA issued with that serial")
    if not issued_here:
        raise unauthorized("this ACME provisioner did not issue the certificate")
    if account is not None:
        if owner is None or owner != account.id:
            raise unauthorized("the certificate was ordered by another account")
        return f"acme-account:{account.id}"
    try:
        certificate_key = jwk_thumbprint(jwk_from_public_key(request.certificate.public_key()))  # type: ignore[arg-type]
    except (BadRequest, TypeError):
        raise unauthorized("the certificate's key cannot sign ACME requests") from None
    if signer_thumbprint != certificate_key:
        raise unauthorized(
            "the request is signed neither by the account nor by the certificate's key"
        )
    return "acme-certificate-key"
