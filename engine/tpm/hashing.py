"""Map TPM hash algorithm IDs to `cryptography` hashes.

Every digest, HMAC and KDF in this package goes through here, so an algorithm
the TPM names but we cannot compute fails in one place with one message.
"""

from __future__ import annotations

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, hmac

from .constants import HASH_DIGEST_SIZES, TPMAlg
from .errors import TPMUnsupportedError

_HASHES: dict[TPMAlg, type[hashes.HashAlgorithm]] = {
    TPMAlg.SHA1: hashes.SHA1,
    TPMAlg.SHA256: hashes.SHA256,
    TPMAlg.SHA384: hashes.SHA384,
    TPMAlg.SHA512: hashes.SHA512,
    TPMAlg.SM3_256: hashes.SM3,
    TPMAlg.SHA3_256: hashes.SHA3_256,
    TPMAlg.SHA3_384: hashes.SHA3_384,
    TPMAlg.SHA3_512: hashes.SHA3_512,
}


def is_hash_alg(alg: int) -> bool:
    """True when *alg* names a hash algorithm (TPMI_ALG_HASH without NULL)."""
    return alg in HASH_DIGEST_SIZES


def hash_algorithm(alg: int) -> hashes.HashAlgorithm:
    """The `cryptography` hash object for the TPM hash algorithm *alg*."""
    try:
        return _HASHES[TPMAlg(alg)]()
    except (KeyError, ValueError):
        raise TPMUnsupportedError(f"unsupported TPM hash algorithm 0x{alg:04x}") from None


def digest_size(alg: int) -> int:
    """Digest size in bytes of the TPM hash algorithm *alg*."""
    try:
        return HASH_DIGEST_SIZES[TPMAlg(alg)]
    except (KeyError, ValueError):
        raise TPMUnsupportedError(f"unsupported TPM hash algorithm 0x{alg:04x}") from None


def digest(alg: int, data: bytes) -> bytes:
    """H_alg(data)."""
    try:
        h = hashes.Hash(hash_algorithm(alg))
    except UnsupportedAlgorithm:  # e.g. SM3 in an OpenSSL built without it
        raise TPMUnsupportedError(f"hash algorithm 0x{alg:04x} is not available") from None
    h.update(data)
    return h.finalize()


def hmac_digest(alg: int, key: bytes, data: bytes) -> bytes:
    """HMAC-H_alg(key, data)."""
    try:
        mac = hmac.HMAC(key, hash_algorithm(alg))
    except UnsupportedAlgorithm:
        raise TPMUnsupportedError(f"hash algorithm 0x{alg:04x} is not available") from None
    mac.update(data)
    return mac.finalize()
