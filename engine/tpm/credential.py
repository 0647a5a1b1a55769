"""TPM2_MakeCredential in software (TPM 2.0 Part 1, 24; Part 3, 12.6).

The Attestation CA encrypts a challenge to the device's EK, bound to the Name of
the AK it checked. Only a TPM holding that EK and a loaded object with that Name
recovers it (TPM2_ActivateCredential), so the TPM itself enforces the attributes
the server verified.

credentialBlob (TPM2B_ID_OBJECT) = integrityHMAC || encIdentity, where
  symKey        = KDFa(nameAlg, seed, "STORAGE", Name, "", symmetric.keyBits)
  encIdentity   = AES-CFB(symKey, IV = 0, TPM2B_DIGEST(credential))
  hmacKey       = KDFa(nameAlg, seed, "INTEGRITY", "", "", 8 * digestSize)
  integrityHMAC = HMAC-nameAlg(hmacKey, encIdentity || Name)
and secret (TPM2B_ENCRYPTED_SECRET) carries the seed to the EK with label "IDENTITY".
"""

from __future__ import annotations

import hmac
from typing import Protocol

import attrs
from cryptography.hazmat.decrepit.ciphers.modes import CFB
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from ..ports import Random
from . import _marshal as m
from .constants import TPMAlg
from .encapsulation import (
    Encapsulation,
    ecc_decapsulate,
    ecc_encapsulate,
    rsa_decapsulate,
    rsa_encapsulate,
    rsa_encapsulate_by,
    rsa_oaep_hash,
)
from .errors import TPMFormatError, TPMPolicyError, TPMUnsupportedError
from .hashing import digest_size, hmac_digest
from .kdf import kdfa
from .keys import curve_info
from .public import ECCParms, ObjectAttributes, SymDefObject, TPMTPublic, split_name

IDENTITY_LABEL = b"IDENTITY"
#: Header of the tpm2-tools credential file (`tpm2_makecredential -o`): magic, version.
TPM2_TOOLS_CREDENTIAL_HEADER = bytes.fromhex("badcc0de00000001")


class NativeRandomness(Protocol):
    """MakeCredential's randomness drawn by the host's crypto library rather than through
    the Random port, the public-key operation with it: RSAES-OAEP in OpenSSL draws its own
    OAEP seed (instead of a modular exponentiation in Python), and a generated ephemeral
    ECC key costs one scalar multiplication (deriving one from a given scalar costs a
    second one and a key check). The seed of an RSA encapsulation still comes from the
    Random port; the engine itself draws nothing."""

    def oaep_encrypt(
        self, key: rsa.RSAPublicKey, message: bytes, hash_alg: TPMAlg, label: bytes
    ) -> bytes:
        """RSAES-OAEP-ENCRYPT of *message* with MGF1 and *hash_alg*, *label* as given."""
        ...

    def ephemeral_key(self, curve: ec.EllipticCurve) -> ec.EllipticCurvePrivateKey:
        """A fresh private key on *curve*."""
        ...


@attrs.frozen
class MakeCredentialResult:
    """TPM2_MakeCredential's two outputs, each marshalled with its u16 size."""

    credential_blob: bytes
    secret: bytes

    def to_tpm2_tools(self) -> bytes:
        """The file `tpm2_activatecredential -i` reads."""
        return TPM2_TOOLS_CREDENTIAL_HEADER + self.credential_blob + self.secret


def _check_symmetric(symmetric: SymDefObject) -> None:
    if (
        symmetric.algorithm != TPMAlg.AES
        or symmetric.mode != TPMAlg.CFB
        or symmetric.key_bits not in (128, 192, 256)
    ):
        raise TPMUnsupportedError("credential protection supports AES-CFB EKs only")


def _cfb(symmetric: SymDefObject, key: bytes) -> Cipher[CFB]:
    _check_symmetric(symmetric)
    return Cipher(algorithms.AES(key), CFB(bytes(16)))


def _keys(
    name_alg: TPMAlg, symmetric: SymDefObject, seed: bytes, object_name: bytes
) -> tuple[bytes, bytes]:
    sym_key = kdfa(name_alg, seed, "STORAGE", object_name, b"", symmetric.key_bits)
    hmac_key = kdfa(name_alg, seed, "INTEGRITY", b"", b"", 8 * digest_size(name_alg))
    return sym_key, hmac_key


def wrap_credential(ek: TPMTPublic, seed: bytes, object_name: bytes, credential: bytes) -> bytes:
    """TPM2B_ID_OBJECT protecting *credential* for *object_name* under *seed*."""
    sym_key, hmac_key = _keys(ek.name_alg, ek.parameters.symmetric, seed, object_name)
    encryptor = _cfb(ek.parameters.symmetric, sym_key).encryptor()
    enc_identity = encryptor.update(m.tpm2b(credential)) + encryptor.finalize()
    integrity = hmac_digest(ek.name_alg, hmac_key, enc_identity + object_name)
    return m.tpm2b(m.tpm2b(integrity) + enc_identity)


def unwrap_credential(
    ek: TPMTPublic, seed: bytes, object_name: bytes, credential_blob: bytes
) -> bytes:
    """The inverse of :func:`wrap_credential`, as TPM2_ActivateCredential does it.

    Raises TPMFormatError if the blob is malformed or its integrity HMAC does not
    match (the TPM's TPM_RC_INTEGRITY); the message never includes either HMAC.
    """
    sym_key, hmac_key = _keys(ek.name_alg, ek.parameters.symmetric, seed, object_name)

    def read(r: m.Reader) -> tuple[bytes, bytes]:
        body = m.Reader(r.raw(r.u16("size"), "credential"), "TPM2B_ID_OBJECT.credential")
        integrity = body.tpm2b("integrityHMAC", digest_size(ek.name_alg))
        return integrity, body.raw(body.remaining, "encIdentity")

    integrity, enc_identity = m.parse_exact(credential_blob, "TPM2B_ID_OBJECT", read)
    expected = hmac_digest(ek.name_alg, hmac_key, enc_identity + object_name)
    if not hmac.compare_digest(integrity, expected):
        raise TPMFormatError("TPM2B_ID_OBJECT: integrity check failed")
    decryptor = _cfb(ek.parameters.symmetric, sym_key).decryptor()
    plain = decryptor.update(enc_identity) + decryptor.finalize()
    return m.parse_exact(plain, "encIdentity", lambda r: r.tpm2b("credential", len(plain)))


def _check_inputs(
    ek: TPMTPublic, seed: bytes | None, object_name: bytes, credential: bytes
) -> None:
    """Refuse what TPM2_MakeCredential / ActivateCredential would refuse."""
    needed = ObjectAttributes.RESTRICTED | ObjectAttributes.DECRYPT
    if ek.object_attributes & needed != needed:
        raise TPMPolicyError("MakeCredential needs a restricted decryption key (an EK)")
    _check_symmetric(ek.parameters.symmetric)
    split_name(object_name)
    limit = digest_size(ek.name_alg)
    if not 0 < len(credential) <= limit:
        raise ValueError(f"the credential must be 1..{limit} bytes for this EK's nameAlg")
    if seed is not None and not 0 < len(seed) <= limit:
        raise ValueError(f"the seed must be 1..{limit} bytes for this EK's nameAlg")


def make_credential_rsa(
    ek: TPMTPublic,
    object_name: bytes,
    credential: bytes,
    *,
    seed: bytes,
    oaep_seed: bytes,
) -> MakeCredentialResult:
    """MakeCredential to an RSA EK with the caller's *seed* and OAEP randomness."""
    _check_inputs(ek, seed, object_name, credential)
    encapsulated = rsa_encapsulate(ek, seed, IDENTITY_LABEL, oaep_seed)
    return _result(ek, encapsulated, object_name, credential)


def make_credential_ecc(
    ek: TPMTPublic,
    object_name: bytes,
    credential: bytes,
    *,
    ephemeral_key: ec.EllipticCurvePrivateKey,
) -> MakeCredentialResult:
    """MakeCredential to an ECC EK; the seed comes from ECDH with *ephemeral_key*."""
    _check_inputs(ek, None, object_name, credential)
    encapsulated = ecc_encapsulate(ek, IDENTITY_LABEL, ephemeral_key)
    return _result(ek, encapsulated, object_name, credential)


def _result(
    ek: TPMTPublic, encapsulated: Encapsulation, object_name: bytes, credential: bytes
) -> MakeCredentialResult:
    blob = wrap_credential(ek, encapsulated.seed, object_name, credential)
    return MakeCredentialResult(blob, m.tpm2b(encapsulated.ciphertext))


def make_credential(
    ek: TPMTPublic,
    object_name: bytes,
    credential: bytes,
    random: Random,
    *,
    native: NativeRandomness | None = None,
) -> MakeCredentialResult:
    """MakeCredential drawing the seed, OAEP seed or ephemeral key from *random*, or,
    given *native*, the OAEP seed or ephemeral key from the host's crypto library."""
    if isinstance(ek.parameters, ECCParms):
        info = curve_info(ek.parameters.curve)
        ephemeral = (
            native.ephemeral_key(info.curve)
            if native is not None
            else ec.derive_private_key(_scalar(random, info.order), info.curve)
        )
        return make_credential_ecc(ek, object_name, credential, ephemeral_key=ephemeral)
    size = digest_size(ek.name_alg)
    seed = random.bytes(size)
    if native is not None:
        _check_inputs(ek, seed, object_name, credential)
        encapsulated = rsa_encapsulate_by(ek, seed, IDENTITY_LABEL, native.oaep_encrypt)
        return _result(ek, encapsulated, object_name, credential)
    oaep_seed = random.bytes(digest_size(rsa_oaep_hash(ek)))
    return make_credential_rsa(ek, object_name, credential, seed=seed, oaep_seed=oaep_seed)


def _scalar(random: Random, order: int) -> int:
    """A uniform scalar in [1, order) by rejection sampling."""
    bits = order.bit_length()
    for _ in range(64):  # a healthy source needs one draw, very rarely two
        candidate = int.from_bytes(random.bytes((bits + 7) // 8), "big") >> (-bits % 8)
        if 0 < candidate < order:
            return candidate
    raise ValueError("the random source keeps returning out-of-range scalars")


def activate_credential(
    ek_private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    ek: TPMTPublic,
    object_name: bytes,
    result: MakeCredentialResult,
) -> bytes:
    """What TPM2_ActivateCredential computes, for software TPMs and tests."""

    def read_secret(r: m.Reader) -> bytes:
        return r.raw(r.u16("size"), "secret")

    ciphertext = m.parse_exact(result.secret, "TPM2B_ENCRYPTED_SECRET", read_secret)
    if isinstance(ek_private_key, rsa.RSAPrivateKey):
        seed = rsa_decapsulate(ek_private_key, ek, ciphertext, IDENTITY_LABEL)
    else:
        seed = ecc_decapsulate(ek_private_key, ek, ciphertext, IDENTITY_LABEL)
    return unwrap_credential(ek, seed, object_name, result.credential_blob)
