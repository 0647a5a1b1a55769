"""SCEP (RFC 8894) message numbers, statuses, failure codes and the one error type."""

from __future__ import annotations

import enum

from cryptography import x509

# Nothing a SCEP client sends is larger than this (a PKCSReq with a 4096-bit CSR and a
# certificate chain is a few kilobytes).
MAX_MESSAGE_BYTES = 256 * 1024


class MessageType(enum.IntEnum):
    """messageType (RFC 8894 section 3.2.1.2)."""

    CERT_REP = 3
    RENEWAL_REQ = 17
    UPDATE_REQ = 18
    PKCS_REQ = 19
    CERT_POLL = 20
    GET_CERT = 21
    GET_CRL = 22


class PKIStatus(enum.IntEnum):
    """pkiStatus of a CertRep (section 3.2.1.3)."""

    SUCCESS = 0
    FAILURE = 2
    PENDING = 3


class FailInfo(enum.IntEnum):
    """failInfo of a FAILURE CertRep (section 3.2.1.4)."""

    BAD_ALG = 0
    BAD_MESSAGE_CHECK = 1
    BAD_REQUEST = 2
    BAD_TIME = 3
    BAD_CERT_ID = 4


class ContentEncryption(enum.Enum):
    """Content-encryption algorithms of the EnvelopedData devid reads and writes."""

    AES128_CBC = "aes128"
    AES256_CBC = "aes256"
    DES3_CBC = "des3"
    #: Single DES (56-bit key): only for clients that know nothing else (Debian's Go
    #: scepclient 2.1 always uses it), and only where a provisioner enables it.
    DES_CBC = "des"


class SCEPFailure(Exception):
    """A request refused with a SCEP failInfo; carries what could be read of the request so far,
    so the server can still address a CertRep FAILURE to it."""

    def __init__(
        self,
        fail_info: FailInfo,
        text: str,
        *,
        transaction_id: str | None = None,
        sender_nonce: bytes | None = None,
        signer: x509.Certificate | None = None,
        digest: str | None = None,
    ) -> None:
        super().__init__(text)
        self.fail_info = fail_info
        self.text = text
        self.transaction_id = transaction_id
        self.sender_nonce = sender_nonce
        self.signer = signer
        self.digest = digest

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"SCEPFailure({self.fail_info.name}, {self.text!r})"
