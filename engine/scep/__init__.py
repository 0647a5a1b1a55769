"""SCEP (RFC 8894) messages, sans-IO: reading and verifying the PKI messages clients send,
decrypting their EnvelopedData, reading their CSRs, and building CertRep replies and
certs-only PKCS#7. Every refusal is a :class:`SCEPFailure` carrying the failInfo to answer."""

from __future__ import annotations

from .envelope import decrypt_envelope
from .messages import (
    CertRep,
    PKIMessage,
    Signer,
    build_cert_rep,
    build_pki_message,
    read_cert_rep,
    read_pki_message,
)
from .request import SCEPCSR, read_csr
from .structures import (
    certs_only,
    issuer_and_serial,
    issuer_and_subject,
    read_certs_only,
    read_issuer_and_serial,
    read_issuer_and_subject,
)
from .types import (
    MAX_MESSAGE_BYTES,
    ContentEncryption,
    FailInfo,
    MessageType,
    PKIStatus,
    SCEPFailure,
)

__all__ = [
    "MAX_MESSAGE_BYTES",
    "SCEPCSR",
    "CertRep",
    "ContentEncryption",
    "FailInfo",
    "MessageType",
    "PKIMessage",
    "PKIStatus",
    "SCEPFailure",
    "Signer",
    "build_cert_rep",
    "build_pki_message",
    "certs_only",
    "decrypt_envelope",
    "issuer_and_serial",
    "issuer_and_subject",
    "read_cert_rep",
    "read_certs_only",
    "read_csr",
    "read_issuer_and_serial",
    "read_issuer_and_subject",
    "read_pki_message",
]
