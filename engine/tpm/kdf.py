"""The TPM's key derivation functions (TPM 2.0 Part 1, 11.4.10).

KDFa (SP 800-108 counter mode with HMAC) derives the credential's storage and
integrity keys from the seed; KDFe (SP 800-56A concatenation KDF) turns an ECDH
shared secret into that seed. Both take the label without its terminating NUL
and add it, as the TPM does.
"""

from __future__ import annotations

from .hashing import digest, digest_size, hmac_digest

#: Upper bound on derived output, far above anything a TPM derives (8 KiB).
MAX_KDF_BITS = 65536


def _label(label: bytes | str) -> bytes:
    raw = label.encode("ascii") if isinstance(label, str) else label
    return raw if raw.endswith(b"\0") else raw + b"\0"


def _check_bits(bits: int) -> None:
    if not 0 <= bits <= MAX_KDF_BITS:
        raise ValueError(f"KDF output must be 0..{MAX_KDF_BITS} bits, not {bits}")


def _truncate(stream: bytes, bits: int) -> bytes:
    """Keep ceil(bits/8) bytes; clear the unused high bits of the first byte (as the
    TPM reference implementation does)."""
    out = bytearray(stream[: (bits + 7) // 8])
    if out and bits % 8:
        out[0] &= (1 << (bits % 8)) - 1
    return bytes(out)


def kdfa(
    hash_alg: int,
    key: bytes,
    label: bytes | str,
    context_u: bytes,
    context_v: bytes,
    bits: int,
) -> bytes:
    """KDFa: HMAC-H(key, [i]32 || label || 0 || contextU || contextV || [bits]32), i = 1, 2, ..."""
    _check_bits(bits)
    suffix = _label(label) + context_u + context_v + bits.to_bytes(4, "big")
    blocks = -(-bits // (8 * digest_size(hash_alg)))
    stream = b"".join(
        hmac_digest(hash_alg, key, i.to_bytes(4, "big") + suffix) for i in range(1, blocks + 1)
    )
    return _truncate(stream, bits)


def kdfe(
    hash_alg: int,
    z: bytes,
    label: bytes | str,
    party_u: bytes,
    party_v: bytes,
    bits: int,
) -> bytes:
    """KDFe: H([i]32 || Z || label || 0 || partyUInfo || partyVInfo), i = 1, 2, ...

    For seeds, Z is the x-coordinate of the ECDH product, partyU the ephemeral
    key's x and partyV the recipient key's x, all padded to the curve size.
    """
    _check_bits(bits)
    suffix = z + _label(label) + party_u + party_v
    blocks = -(-bits // (8 * digest_size(hash_alg)))
    stream = b"".join(digest(hash_alg, i.to_bytes(4, "big") + suffix) for i in range(1, blocks + 1))
    return _truncate(stream, bits)
