"""Two small things the server needs beside the message layer: the content encryption a
request used (so a reply can use the same), and plain signed content (GetNextCACert)."""

from __future__ import annotations

from datetime import datetime

from asn1crypto import cms

from .envelope import _BY_OID
from .messages import Signer, _signed_data
from .types import ContentEncryption


def content_encryption_of(enveloped: bytes) -> ContentEncryption | None:
    """The content encryption of an EnvelopedData, if it is one devid knows; None for
    anything else, unreadable input included (the decryption itself says why)."""
    try:
        info = cms.ContentInfo.load(enveloped)
        if info["content_type"].dotted != "1.2.840.113549.1.7.3":
            return None
        oid = info["content"]["encrypted_content_info"]["content_encryption_algorithm"][
            "algorithm"
        ].dotted
    except Exception:  # asn1crypto raises many types for malformed input
        return None
    return _BY_OID.get(oid)


def sign_content(*, signer: Signer, content: bytes, now: datetime, digest: str = "sha256") -> bytes:
    """*content* as id-data in a SignedData signed by *signer* (with the signing time and
    message digest as its only signed attributes): GetNextCACert's answer, whose content
    is the certs-only PKCS#7 of the next CA certificates."""
    return _signed_data(
        signer=signer, digest=digest, attributes=[], content=content, certificates=(), now=now
    )
