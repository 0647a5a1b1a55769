"""The PKCS#10 request inside a PKCSReq, RenewalReq or UpdateReq, read leniently where
real clients need it (version 1 or 2 CertificationRequestInfo) and strictly elsewhere."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from asn1crypto import core
from asn1crypto import csr as asn1_csr
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key

from ..csr import MAX_CSR_BYTES, CSRInfo, describe_verified_csr
from ..errors import BadRequest
from .structures import algorithm_name, load_strict, parsing
from .types import FailInfo, SCEPFailure

_CHALLENGE_PASSWORD = "1.2.840.113549.1.9.7"
# DirectoryString alternatives a challengePassword may use (UniversalString is refused).
_CHALLENGE_TYPES = frozenset(
    {"printable_string", "utf8_string", "ia5_string", "bmp_string", "teletex_string"}
)
_RSA: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "1.2.840.113549.1.1.5": hashes.SHA1,
    "1.2.840.113549.1.1.11": hashes.SHA256,
    "1.2.840.113549.1.1.12": hashes.SHA384,
    "1.2.840.113549.1.1.13": hashes.SHA512,
}
_ECDSA: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "1.2.840.10045.4.1": hashes.SHA1,
    "1.2.840.10045.4.3.2": hashes.SHA256,
    "1.2.840.10045.4.3.3": hashes.SHA384,
    "1.2.840.10045.4.3.4": hashes.SHA512,
}
_ED25519 = "1.3.101.112"


@attrs.frozen
class SCEPCSR:
    """A SCEP client's CSR: the facts the signing pipeline needs, and its challenge."""

    info: CSRInfo  # info.der is the CSR exactly as received
    challenge: str | None  # challengePassword; None when absent
    version: int  # the CertificationRequestInfo version as sent (0, 1 or 2)


def _fail(info: FailInfo, text: str) -> SCEPFailure:
    return SCEPFailure(info, text)


def read_csr(der: bytes) -> SCEPCSR:
    """Read and verify a PKCS#10 request: versions 0, 1 and 2 (some Apple devices send 2),
    the self-signature over the CertificationRequestInfo as sent, at most one
    challengePassword with one value."""
    if isinstance(der, bytes | bytearray) and len(der) > MAX_CSR_BYTES:
        raise SCEPFailure(FailInfo.BAD_REQUEST, f"CSR is larger than {MAX_CSR_BYTES} bytes")
    request = load_strict(asn1_csr.CertificationRequest, der, "CSR")
    der = bytes(der)

    def read() -> tuple[int, Any, bytes, str, bytes, bytes, str | None]:
        info = request["certification_request_info"]
        version = core.Integer.load(info["version"].dump()).native
        spki = bytes(info["subject_pk_info"].dump())
        algorithm = request["signature_algorithm"]["algorithm"].dotted
        signature = request["signature"].native
        if not isinstance(signature, bytes):
            raise ValueError("signature is not a BIT STRING of whole bytes")
        return version, info, bytes(info.dump()), algorithm, signature, spki, _challenge(info)

    version, info, signed, algorithm, signature, spki, challenge = parsing("CSR", read, fail=_fail)
    if version not in (0, 1, 2):
        raise SCEPFailure(FailInfo.BAD_REQUEST, f"CSR version {version} is not 0, 1 or 2")
    try:
        public_key = load_der_public_key(spki)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise SCEPFailure(FailInfo.BAD_REQUEST, f"CSR key cannot be read: {exc}") from None
    _verify(public_key, algorithm, signature, signed)
    if version == 0:
        loadable = der
    else:
        # cryptography loads version 0 only: a copy with version 0, for its objects; the
        # signature was checked above over the request as sent.
        loadable = parsing("CSR", lambda: _as_version_0(request, info), fail=_fail)
    try:
        csr = x509.load_der_x509_csr(loadable)
        csr_info = describe_verified_csr(csr, der)
    except BadRequest as exc:
        raise SCEPFailure(FailInfo.BAD_REQUEST, exc.detail) from None
    except (ValueError, TypeError, x509.InvalidVersion, UnsupportedAlgorithm) as exc:
        raise SCEPFailure(FailInfo.BAD_REQUEST, f"CSR cannot be parsed: {exc}") from None
    return SCEPCSR(info=csr_info, challenge=challenge, version=version)


def _as_version_0(request: Any, info: Any) -> bytes:
    """The request with its version INTEGER set to 0 (the signature no longer covers it)."""
    copy = asn1_csr.CertificationRequest(
        {
            "certification_request_info": asn1_csr.CertificationRequestInfo(
                {
                    "version": 0,
                    "subject": info["subject"],
                    "subject_pk_info": info["subject_pk_info"],
                    "attributes": info["attributes"],
                }
            ),
            "signature_algorithm": request["signature_algorithm"],
            "signature": request["signature"],
        }
    )
    return bytes(copy.dump())


def _challenge(info: Any) -> str | None:
    challenge = None
    seen = False
    for attribute in info["attributes"]:
        if attribute["type"].dotted != _CHALLENGE_PASSWORD:
            continue
        if seen:
            raise SCEPFailure(FailInfo.BAD_REQUEST, "CSR has several challengePassword attributes")
        seen = True
        values = attribute["values"]
        if len(values) != 1:
            raise SCEPFailure(FailInfo.BAD_REQUEST, "challengePassword must have exactly one value")
        value = values[0]
        if value.name not in _CHALLENGE_TYPES:
            raise SCEPFailure(
                FailInfo.BAD_REQUEST, f"challengePassword of type {value.name} is not accepted"
            )
        text = value.chosen.native
        if not isinstance(text, str):
            raise ValueError("challengePassword is not a string")
        challenge = text
    return challenge


def _verify(public_key: Any, algorithm: str, signature: bytes, signed: bytes) -> None:
    try:
        if algorithm in _RSA and isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, signed, padding.PKCS1v15(), _RSA[algorithm]())
            return
        if algorithm in _ECDSA and isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, signed, ec.ECDSA(_ECDSA[algorithm]()))
            return
        if algorithm == _ED25519 and isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(signature, signed)
            return
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        raise SCEPFailure(FailInfo.BAD_MESSAGE_CHECK, "CSR signature is invalid") from None
    if algorithm in _RSA or algorithm in _ECDSA or algorithm == _ED25519:
        raise SCEPFailure(
            FailInfo.BAD_MESSAGE_CHECK, "CSR signature algorithm does not fit its key"
        )
    raise SCEPFailure(
        FailInfo.BAD_ALG, f"CSR signature algorithm {algorithm_name(algorithm)} is not supported"
    )
