"""Seed encapsulation to a TPM key ("secret sharing", TPM 2.0 Part 1, 11.4.11 / C.6, C.7).

MakeCredential, Import and salted sessions hand a TPM a seed that only that
key's private part recovers. RSA keys get RSAES-OAEP with the label; ECC keys
get a one-pass ECDH whose shared x-coordinate runs through KDFe. The caller
supplies all randomness (the OAEP seed, the ephemeral key), so results are
reproducible and the engine draws nothing itself.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from .constants import TPMAlg
from .errors import TPMFormatError, TPMUnsupportedError
from .hashing import digest, digest_size, hash_algorithm
from .kdf import kdfe
from .keys import ecc_point_of, public_key_from_tpmt, tpm_curve_of
from .public import ECCParms, ECCPoint, RSAParms, TPMTPublic


@attrs.frozen
class Encapsulation:
    """A seed and the ciphertext (TPM2B_ENCRYPTED_SECRET contents) that carries it."""

    seed: bytes = attrs.field(repr=False)
    ciphertext: bytes


def _label(label: bytes | str) -> bytes:
    raw = label.encode("ascii") if isinstance(label, str) else label
    return raw if raw.endswith(b"\0") else raw + b"\0"


def _mgf1(hash_alg: TPMAlg, seed: bytes, length: int) -> bytes:
    blocks = -(-length // digest_size(hash_alg))
    return b"".join(digest(hash_alg, seed + i.to_bytes(4, "big")) for i in range(blocks))[:length]


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def oaep_encrypt(
    key: rsa.RSAPublicKey, message: bytes, hash_alg: TPMAlg, label: bytes, oaep_seed: bytes
) -> bytes:
    """RSAES-OAEP-ENCRYPT (RFC 8017, 7.1.1) with MGF1 and the caller's OAEP seed.

    `cryptography` draws the OAEP seed itself; a sans-IO engine must not, so the
    encoding is done here and only the public RSA operation remains.
    """
    h_len = digest_size(hash_alg)
    k = (key.key_size + 7) // 8
    if len(oaep_seed) != h_len:
        raise ValueError(f"the OAEP seed must be {h_len} bytes for {hash_alg.name}")
    if len(message) > k - 2 * h_len - 2:
        raise ValueError(f"message too long for RSA-{key.key_size} OAEP with {hash_alg.name}")
    data_block = digest(hash_alg, label) + bytes(k - len(message) - 2 * h_len - 2)
    data_block += b"\x01" + message
    masked_db = _xor(data_block, _mgf1(hash_alg, oaep_seed, k - h_len - 1))
    masked_seed = _xor(oaep_seed, _mgf1(hash_alg, masked_db, h_len))
    encoded = int.from_bytes(b"\x00" + masked_seed + masked_db, "big")
    numbers = key.public_numbers()
    return pow(encoded, numbers.e, numbers.n).to_bytes(k, "big")


def rsa_oaep_hash(public: TPMTPublic) -> TPMAlg:
    """The OAEP hash the TPM uses for *public*: its OAEP scheme's hash, else its nameAlg."""
    parameters = public.parameters
    if isinstance(parameters, RSAParms) and parameters.scheme.scheme == TPMAlg.OAEP:
        return parameters.scheme.hash_alg
    return public.name_alg


def rsa_encapsulate(
    public: TPMTPublic, seed: bytes, label: bytes | str, oaep_seed: bytes
) -> Encapsulation:
    """Encrypt *seed* to the RSA key *public* with OAEP and label ``label || 0``."""
    key = public_key_from_tpmt(public)
    if not isinstance(key, rsa.RSAPublicKey):
        raise TPMUnsupportedError("rsa_encapsulate needs an RSA key")
    ciphertext = oaep_encrypt(key, seed, rsa_oaep_hash(public), _label(label), oaep_seed)
    return Encapsulation(seed, ciphertext)


#: RSAES-OAEP-ENCRYPT(key, message, hash, label) done by a crypto library that draws the
#: OAEP seed itself (see :class:`engine.tpm.credential.NativeRandomness`).
OAEPEncrypt = Callable[[rsa.RSAPublicKey, bytes, TPMAlg, bytes], bytes]


def rsa_encapsulate_by(
    public: TPMTPublic, seed: bytes, label: bytes | str, encrypt: OAEPEncrypt
) -> Encapsulation:
    """:func:`rsa_encapsulate` with the OAEP encryption (and its seed) left to *encrypt*."""
    key = public_key_from_tpmt(public)
    if not isinstance(key, rsa.RSAPublicKey):
        raise TPMUnsupportedError("rsa_encapsulate needs an RSA key")
    return Encapsulation(seed, encrypt(key, seed, rsa_oaep_hash(public), _label(label)))


def rsa_decapsulate(
    private_key: rsa.RSAPrivateKey, public: TPMTPublic, ciphertext: bytes, label: bytes | str
) -> bytes:
    """Recover the seed as the TPM does (for software TPMs and tests)."""
    h = hash_algorithm(rsa_oaep_hash(public))
    oaep = padding.OAEP(padding.MGF1(h), h, _label(label))
    try:
        return private_key.decrypt(ciphertext, oaep)
    except ValueError:
        raise TPMFormatError("the encrypted seed does not decrypt under this key") from None


def _ecc_seed(public: TPMTPublic, z: bytes, label: bytes | str, ephemeral_x: bytes) -> bytes:
    assert isinstance(public.unique, ECCPoint)
    bits = 8 * digest_size(public.name_alg)
    return kdfe(public.name_alg, z, label, ephemeral_x, public.unique.x, bits)


def ecc_encapsulate(
    public: TPMTPublic, label: bytes | str, ephemeral_key: ec.EllipticCurvePrivateKey
) -> Encapsulation:
    """One-pass ECDH to the ECC key *public* with the caller's ephemeral key.

    seed = KDFe(nameAlg, Z, label, ephemeral.x, public.x, 8 * digestSize(nameAlg));
    the ciphertext is the ephemeral public point (TPMS_ECC_POINT). The key's nameAlg
    is used even when the key carries a scheme with another hash, as the TPM does.
    """
    key = public_key_from_tpmt(public)
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise TPMUnsupportedError("ecc_encapsulate needs an ECC key")
    assert isinstance(public.parameters, ECCParms)
    if tpm_curve_of(ephemeral_key) != public.parameters.curve:
        raise ValueError("the ephemeral key must be on the recipient key's curve")
    point = ecc_point_of(ephemeral_key.public_key())
    z = ephemeral_key.exchange(ec.ECDH(), key)
    return Encapsulation(_ecc_seed(public, z, label, point.x), point.to_bytes())


def ecc_decapsulate(
    private_key: ec.EllipticCurvePrivateKey,
    public: TPMTPublic,
    ciphertext: bytes,
    label: bytes | str,
) -> bytes:
    """Recover the seed as the TPM does (for software TPMs and tests)."""
    if not isinstance(public.parameters, ECCParms):
        raise TPMUnsupportedError("ecc_decapsulate needs an ECC key")
    point = ECCPoint.from_bytes(ciphertext)
    ephemeral = public_key_from_tpmt(attrs.evolve(public, unique=point))
    assert isinstance(ephemeral, ec.EllipticCurvePublicKey)
    z = private_key.exchange(ec.ECDH(), ephemeral)
    return _ecc_seed(public, z, label, point.x)
