"""Plain signed content (GetNextCACert's answer), beside the message layer."""

from __future__ import annotations

from datetime import datetime

from .messages import Signer, _signed_data


def sign_content(*, signer: Signer, content: bytes, now: datetime, digest: str = "sha256") -> bytes:
    """*content* as id-data in a SignedData signed by *signer* (with the signing time and
    message digest as its only signed attributes): GetNextCACert's answer, whose content
    is the certs-only PKCS#7 of the next CA certificates."""
    return _signed_data(
        signer=signer, digest=digest, attributes=[], content=content, certificates=(), now=now
    )
