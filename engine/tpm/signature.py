"""TPMT_SIGNATURE (Part 2, 11.3.4): a signature with its scheme and hash.

Only the structure lives here; checking one against a key is in :mod:`.verify`.
"""

from __future__ import annotations

import attrs

from . import _marshal as m
from .constants import HASH_DIGEST_SIZES, TPMAlg
from .errors import TPMFormatError
from .hashing import digest_size
from .public import MAX_ECC_KEY_BYTES, MAX_RSA_KEY_BYTES

RSA_SIGNATURE_SCHEMES = frozenset({TPMAlg.RSASSA, TPMAlg.RSAPSS})
ECC_SIGNATURE_SCHEMES = frozenset({TPMAlg.ECDSA, TPMAlg.ECDAA, TPMAlg.SM2, TPMAlg.ECSCHNORR})
SIGNATURE_ALGS = RSA_SIGNATURE_SCHEMES | ECC_SIGNATURE_SCHEMES | {TPMAlg.HMAC, TPMAlg.NULL}


@attrs.frozen
class RSASignature:
    """TPMS_SIGNATURE_RSA's signature: the big-endian signature value."""

    sig: bytes = attrs.field(validator=m.max_len(MAX_RSA_KEY_BYTES))


@attrs.frozen
class ECCSignature:
    """TPMS_SIGNATURE_ECC's r and s, big-endian as the TPM sent them."""

    r: bytes = attrs.field(validator=m.max_len(MAX_ECC_KEY_BYTES))
    s: bytes = attrs.field(validator=m.max_len(MAX_ECC_KEY_BYTES))


@attrs.frozen
class TPMTSignature:
    """TPMT_SIGNATURE: ``sig_alg`` selects the body type.

    RSASSA/RSAPSS carry an :class:`RSASignature`; ECDSA, ECDAA, SM2 and ECSCHNORR an
    :class:`ECCSignature`; HMAC the raw digest (``bytes``); NULL nothing (``None``,
    with ``hash_alg`` NULL), which TPM2_Certify returns when the signing key is NULL.
    """

    sig_alg: TPMAlg = attrs.field(validator=m.member_of(SIGNATURE_ALGS))
    hash_alg: TPMAlg
    signature: RSASignature | ECCSignature | bytes | None

    def __attrs_post_init__(self) -> None:
        if self.sig_alg == TPMAlg.NULL:
            if self.hash_alg != TPMAlg.NULL or self.signature is not None:
                raise TPMFormatError("a NULL signature has no hash and no body")
            return
        if self.hash_alg not in HASH_DIGEST_SIZES:
            raise TPMFormatError(f"{self.sig_alg.name} signature needs a hash algorithm")
        expected: type[object]
        if self.sig_alg in RSA_SIGNATURE_SCHEMES:
            expected = RSASignature
        elif self.sig_alg in ECC_SIGNATURE_SCHEMES:
            expected = ECCSignature
        else:
            expected = bytes
            if isinstance(self.signature, bytes) and len(self.signature) != digest_size(
                self.hash_alg
            ):
                raise TPMFormatError(f"an HMAC with {self.hash_alg.name} has the digest's size")
        if not isinstance(self.signature, expected):
            raise TPMFormatError(f"a {self.sig_alg.name} signature body is {expected.__name__}")

    def to_bytes(self) -> bytes:
        out = m.u16(self.sig_alg)
        if self.sig_alg == TPMAlg.NULL:
            return out
        out += m.u16(self.hash_alg)
        body = self.signature
        if isinstance(body, RSASignature):
            return out + m.tpm2b(body.sig)
        if isinstance(body, ECCSignature):
            return out + m.tpm2b(body.r) + m.tpm2b(body.s)
        assert isinstance(body, bytes)
        return out + body

    @classmethod
    def from_bytes(cls, data: bytes) -> TPMTSignature:
        return m.parse_exact(data, "TPMT_SIGNATURE", cls._read)

    @classmethod
    def _read(cls, r: m.Reader) -> TPMTSignature:
        sig_alg = r.enum(TPMAlg, 2, "sigAlg", SIGNATURE_ALGS)
        if sig_alg == TPMAlg.NULL:
            return cls(sig_alg, TPMAlg.NULL, None)
        hash_alg = r.enum(TPMAlg, 2, "signature.hash", HASH_DIGEST_SIZES)
        body: RSASignature | ECCSignature | bytes
        if sig_alg in RSA_SIGNATURE_SCHEMES:
            body = RSASignature(r.tpm2b("signature.sig", MAX_RSA_KEY_BYTES))
        elif sig_alg in ECC_SIGNATURE_SCHEMES:
            sig_r = r.tpm2b("signature.signatureR", MAX_ECC_KEY_BYTES)
            body = ECCSignature(sig_r, r.tpm2b("signature.signatureS", MAX_ECC_KEY_BYTES))
        else:
            body = r.raw(digest_size(hash_alg), "signature.digest")
        return cls(sig_alg, hash_alg, body)
