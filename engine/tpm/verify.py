"""Check a TPMT_SIGNATURE against a key, and signed TPMS_ATTEST data.

The signature names its own scheme and hash, so the verifier must make sure
they fit the key (an ECDSA signature presented for an RSA key is an error, not
a crash) and that the hash is one we still accept: SHA-1 is refused unless the
caller explicitly allows it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from .attest import TPMSAttest
from .constants import TPMAlg
from .errors import TPMPolicyError, TPMSignatureError, TPMUnsupportedError
from .hashing import hash_algorithm
from .keys import TPMPublicKey, public_key_from_tpmt
from .public import TPMTPublic
from .signature import ECCSignature, RSASignature, TPMTSignature

VERIFIABLE_SCHEMES = frozenset({TPMAlg.RSASSA, TPMAlg.RSAPSS, TPMAlg.ECDSA})


def verify_signature(
    key: TPMTPublic | TPMPublicKey,
    signature: TPMTSignature,
    data: bytes,
    *,
    allow_sha1: bool = False,
) -> None:
    """Raise unless *signature* is a valid signature over *data* by *key*.

    *data* is hashed with the hash the signature names. Given a TPMT_PUBLIC whose
    scheme is set, the signature must use exactly that scheme and hash, because
    the TPM refuses to sign any other way with such a key.
    """
    if signature.sig_alg not in VERIFIABLE_SCHEMES:
        raise TPMUnsupportedError(f"{signature.sig_alg.name} signatures are not supported")
    if signature.hash_alg == TPMAlg.SHA1 and not allow_sha1:
        raise TPMPolicyError("SHA-1 signatures are refused (pass allow_sha1=True to accept)")
    if isinstance(key, TPMTPublic):
        scheme = key.parameters.scheme
        if scheme.scheme != TPMAlg.NULL and (
            scheme.scheme != signature.sig_alg or scheme.hash_alg != signature.hash_alg
        ):
            raise TPMSignatureError(
                f"{signature.sig_alg.name}/{signature.hash_alg.name} signature does not match "
                f"the key's scheme {scheme.scheme.name}/{scheme.hash_alg.name}"
            )
        key = public_key_from_tpmt(key)
    hash_alg = hash_algorithm(signature.hash_alg)
    body = signature.signature
    check: Callable[[], None]
    if isinstance(key, rsa.RSAPublicKey):
        if not isinstance(body, RSASignature):
            raise TPMSignatureError(
                f"a {signature.sig_alg.name} signature cannot come from an RSA key"
            )
        pad: padding.AsymmetricPadding = (
            padding.PKCS1v15()
            if signature.sig_alg == TPMAlg.RSASSA
            # TPMs pick the salt length by spec version (digest size or maximum).
            else padding.PSS(padding.MGF1(hash_alg), padding.PSS.AUTO)
        )
        check = partial(key.verify, body.sig, data, pad, hash_alg)
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(body, ECCSignature):
            raise TPMSignatureError(
                f"a {signature.sig_alg.name} signature cannot come from an ECC key"
            )
        der = encode_dss_signature(int.from_bytes(body.r, "big"), int.from_bytes(body.s, "big"))
        check = partial(key.verify, der, data, ec.ECDSA(hash_alg))
    else:
        raise TPMUnsupportedError(f"{type(key).__name__} is not a TPM signing key")
    try:
        check()
    except (InvalidSignature, ValueError):
        raise TPMSignatureError("the signature does not verify") from None


def verify_attestation(
    key: TPMTPublic | TPMPublicKey,
    attestation: bytes,
    signature: bytes,
    *,
    allow_sha1: bool = False,
) -> TPMSAttest:
    """Parse a TPMS_ATTEST and its TPMT_SIGNATURE, verify the signature over the exact
    attestation bytes, and return the attestation. Checking what it attests (type,
    nonce in ``extra_data``, names, digests) is the caller's job."""
    parsed_signature = TPMTSignature.from_bytes(signature)
    parsed = TPMSAttest.from_bytes(attestation)
    verify_signature(key, parsed_signature, bytes(attestation), allow_sha1=allow_sha1)
    return parsed
