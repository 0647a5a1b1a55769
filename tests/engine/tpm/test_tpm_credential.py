"""MakeCredential end to end: keylime and go-tpm pinned outputs, and round trips."""

from __future__ import annotations

import base64
import json
from typing import Any

import attrs
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from engine.ports import CountingRandom
from engine.tpm import (
    AES_128_CFB,
    EKTemplate,
    MakeCredentialResult,
    ObjectAttributes,
    SymDefObject,
    TPMAlg,
    TPMFormatError,
    TPMPolicyError,
    TPMTPublic,
    TPMUnsupportedError,
    activate_credential,
    ek_public_from_key,
    make_credential,
    make_credential_ecc,
    make_credential_rsa,
    public_key_from_tpmt,
    rsa_decapsulate,
    unwrap_credential,
)
from engine.tpm.hashing import hash_algorithm
from engine.tpm.kdf import kdfa
from tests.vectors_path import VECTORS

TPM_VECTORS = VECTORS / "tpm"
E2E: list[dict[str, Any]] = json.loads(
    (TPM_VECTORS / "makecredential" / "makecredential_e2e.json").read_text()
)["cases"]
CASES = {case["name"]: case for case in E2E}
AK_NAME = bytes.fromhex(CASES["keylime_ecc_p256"]["object_name"])


def _ek(case: dict[str, Any]) -> TPMTPublic:
    if "ek_tpm2b_public" in case:
        return TPMTPublic.from_tpm2b(bytes.fromhex(case["ek_tpm2b_public"]))
    key = serialization.load_pem_public_key(case["ek_public_key_pem"].encode())
    assert isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
    return ek_public_from_key(key)


def _make(case: dict[str, Any], oaep_seed: bytes | None = None) -> MakeCredentialResult:
    ek = _ek(case)
    name, credential = bytes.fromhex(case["object_name"]), bytes.fromhex(case["credential"])
    if "ephemeral_private_key" in case:
        scalar = int(case["ephemeral_private_key"], 16)
        ephemeral = ec.derive_private_key(scalar, ec.SECP256R1())
        return make_credential_ecc(ek, name, credential, ephemeral_key=ephemeral)
    if oaep_seed is None:
        oaep_seed = bytes.fromhex(case["oaep_seed"])
    seed = bytes.fromhex(case["seed"])
    return make_credential_rsa(ek, name, credential, seed=seed, oaep_seed=oaep_seed)


def test_keylime_ecc_p256_reproduces_the_whole_tpm2_tools_file() -> None:
    case = CASES["keylime_ecc_p256"]
    result = _make(case)
    assert result.to_tpm2_tools().hex() == case["expected_tpm2_tools_file"]
    assert result.credential_blob.hex() == case["expected_credential_blob"]
    assert result.secret.hex() == case["expected_encrypted_secret"]


def test_keylime_rsa2048_reproduces_the_pinned_prefix_and_the_seed_decrypts() -> None:
    case = CASES["keylime_rsa2048_prefix"]
    # Upstream did not fix the OAEP randomness: any seed gives the same pinned prefix.
    result = _make(case, oaep_seed=bytes(range(32)))
    assert result.credential_blob.hex() == case["expected_credential_blob"]
    assert result.to_tpm2_tools().hex().startswith(case["expected_tpm2_tools_file_prefix"])
    assert len(result.secret) == 2 + 256


@pytest.mark.parametrize("name", ["go-tpm_rsa2048_zero_random", "go-tpm_p256_zero_random"])
def test_go_tpm_concatenation_is_reproduced_byte_for_byte(name: str) -> None:
    case = CASES[name]
    result = _make(case)
    expected = base64.b64decode(case["expected_concatenation_base64"])
    assert result.credential_blob + result.secret == expected
    assert result.credential_blob.hex() == case["expected_credential_blob"]
    assert result.secret.hex() == case["expected_encrypted_secret"]


@pytest.mark.parametrize("case", E2E, ids=[case["name"] for case in E2E])
def test_intermediate_keys_match_the_recomputed_values(case: dict[str, Any]) -> None:
    ek = _ek(case)
    seed = bytes.fromhex(case.get("derived_seed") or case["seed"])
    name = bytes.fromhex(case["object_name"])
    sym_key = kdfa(ek.name_alg, seed, "STORAGE", name, b"", 128)
    hmac_key = kdfa(ek.name_alg, seed, "INTEGRITY", b"", b"", 256)
    assert sym_key.hex() == case["derived_sym_key"]
    assert hmac_key.hex() == case["derived_hmac_key"]
    credential = unwrap_credential(ek, seed, name, bytes.fromhex(case["expected_credential_blob"]))
    assert credential.hex() == case["credential"]


def test_ek_from_a_pem_key_gets_the_default_template_parameters() -> None:
    ek = _ek(CASES["go-tpm_rsa2048_zero_random"])
    assert ek.name_alg == TPMAlg.SHA256
    assert ek.parameters.symmetric == AES_128_CFB


def test_pinned_tpm2b_ek_equals_the_template_filled_with_its_key() -> None:
    for name in ("keylime_ecc_p256", "keylime_rsa2048_prefix"):
        ek = _ek(CASES[name])
        assert ek_public_from_key(public_key_from_tpmt(ek)) == ek


# Round trips through a software ActivateCredential, with generated EKs.


@pytest.fixture(scope="module")
def ecc_ek() -> tuple[ec.EllipticCurvePrivateKey, TPMTPublic]:
    key = ec.derive_private_key(0x1234567890ABCDEF, ec.SECP256R1())
    return key, ek_public_from_key(key.public_key())


@pytest.fixture(scope="module")
def p384_ek() -> tuple[ec.EllipticCurvePrivateKey, TPMTPublic]:
    key = ec.derive_private_key(0xFEDCBA0987654321, ec.SECP384R1())
    return key, ek_public_from_key(key.public_key(), EKTemplate.ECC_NIST_P384)


@pytest.fixture(scope="module")
def rsa_ek() -> tuple[rsa.RSAPrivateKey, TPMTPublic]:
    key = rsa.generate_private_key(65537, 2048)
    return key, ek_public_from_key(key.public_key())


def test_ecc_credential_activates_with_the_ek_private_key(
    ecc_ek: tuple[ec.EllipticCurvePrivateKey, TPMTPublic],
) -> None:
    key, ek = ecc_ek
    result = make_credential(ek, AK_NAME, b"challenge", CountingRandom(b"ecc"))
    assert activate_credential(key, ek, AK_NAME, result) == b"challenge"


def test_p384_high_range_ek_uses_sha384_and_aes256(
    p384_ek: tuple[ec.EllipticCurvePrivateKey, TPMTPublic],
) -> None:
    key, ek = p384_ek
    credential = bytes(range(48))
    result = make_credential(ek, AK_NAME, credential, CountingRandom(b"p384"))
    assert activate_credential(key, ek, AK_NAME, result) == credential
    # integrity HMAC is SHA-384 sized; encIdentity is 2 + 48 bytes.
    assert len(result.credential_blob) == 2 + 2 + 48 + 2 + 48


def test_p521_credential_draws_a_valid_521_bit_ephemeral_scalar() -> None:
    key = ec.derive_private_key(0x5EED, ec.SECP521R1())
    ek = ek_public_from_key(key.public_key())
    assert ek.name_alg == TPMAlg.SHA512
    for label in (b"a", b"b", b"c"):
        result = make_credential(ek, AK_NAME, b"challenge", CountingRandom(label))
        assert activate_credential(key, ek, AK_NAME, result) == b"challenge"
        assert len(result.secret) == 2 + 2 + 66 + 2 + 66


def test_rsa_credential_activates_with_the_ek_private_key(
    rsa_ek: tuple[rsa.RSAPrivateKey, TPMTPublic],
) -> None:
    key, ek = rsa_ek
    result = make_credential(ek, AK_NAME, b"challenge", CountingRandom(b"rsa"))
    assert activate_credential(key, ek, AK_NAME, result) == b"challenge"
    seed = rsa_decapsulate(key, ek, result.secret[2:], "IDENTITY")
    assert len(seed) == 32


def test_same_randomness_gives_the_same_result(
    ecc_ek: tuple[ec.EllipticCurvePrivateKey, TPMTPublic],
) -> None:
    _, ek = ecc_ek
    first = make_credential(ek, AK_NAME, b"c", CountingRandom(b"same"))
    assert first == make_credential(ek, AK_NAME, b"c", CountingRandom(b"same"))
    assert first != make_credential(ek, AK_NAME, b"c", CountingRandom(b"other"))


def test_credential_bound_to_another_name_fails_integrity(
    ecc_ek: tuple[ec.EllipticCurvePrivateKey, TPMTPublic],
) -> None:
    key, ek = ecc_ek
    result = make_credential(ek, AK_NAME, b"challenge", CountingRandom())
    other_name = AK_NAME[:-1] + bytes([AK_NAME[-1] ^ 1])
    with pytest.raises(TPMFormatError, match="integrity"):
        activate_credential(key, ek, other_name, result)


def test_tampered_blob_fails_integrity_without_echoing_hmacs(
    ecc_ek: tuple[ec.EllipticCurvePrivateKey, TPMTPublic],
) -> None:
    key, ek = ecc_ek
    result = make_credential(ek, AK_NAME, b"challenge", CountingRandom())
    blob = bytearray(result.credential_blob)
    blob[-1] ^= 0x80
    tampered = attrs.evolve(result, credential_blob=bytes(blob))
    with pytest.raises(TPMFormatError, match="integrity") as info:
        activate_credential(key, ek, AK_NAME, tampered)
    assert result.credential_blob[4:36].hex() not in str(info.value)


def test_credential_longer_than_the_name_alg_digest_is_refused(
    ecc_ek: tuple[ec.EllipticCurvePrivateKey, TPMTPublic],
) -> None:
    _, ek = ecc_ek
    with pytest.raises(ValueError, match="credential"):
        make_credential(ek, AK_NAME, bytes(33), CountingRandom())
    with pytest.raises(ValueError, match="credential"):
        make_credential(ek, AK_NAME, b"", CountingRandom())


def test_seed_longer_than_the_name_alg_digest_is_refused(
    rsa_ek: tuple[rsa.RSAPrivateKey, TPMTPublic],
) -> None:
    _, ek = rsa_ek
    with pytest.raises(ValueError, match="seed"):
        make_credential_rsa(ek, AK_NAME, b"c", seed=bytes(33), oaep_seed=bytes(32))


def test_malformed_object_name_is_refused(
    ecc_ek: tuple[ec.EllipticCurvePrivateKey, TPMTPublic],
) -> None:
    _, ek = ecc_ek
    for name in (b"", b"\x00\x0b" + bytes(31), b"\x00\x06" + bytes(32)):
        with pytest.raises(TPMFormatError, match="Name"):
            make_credential(ek, name, b"c", CountingRandom())


def test_ek_that_is_not_a_restricted_decryption_key_is_refused(
    ecc_ek: tuple[ec.EllipticCurvePrivateKey, TPMTPublic],
) -> None:
    _, ek = ecc_ek
    signing = attrs.evolve(ek, object_attributes=ek.object_attributes & ~ObjectAttributes.DECRYPT)
    with pytest.raises(TPMPolicyError, match="restricted decryption"):
        make_credential(signing, AK_NAME, b"c", CountingRandom())


def test_ek_without_aes_cfb_is_refused(
    ecc_ek: tuple[ec.EllipticCurvePrivateKey, TPMTPublic],
) -> None:
    _, ek = ecc_ek
    cbc = SymDefObject(TPMAlg.AES, 128, TPMAlg.CBC)
    other = attrs.evolve(ek, parameters=attrs.evolve(ek.parameters, symmetric=cbc))
    with pytest.raises(TPMUnsupportedError, match="AES-CFB"):
        make_credential(other, AK_NAME, b"c", CountingRandom())


def test_rsa_credential_to_an_ecc_ek_is_refused(
    ecc_ek: tuple[ec.EllipticCurvePrivateKey, TPMTPublic],
) -> None:
    _, ek = ecc_ek
    with pytest.raises(TPMUnsupportedError):
        make_credential_rsa(ek, AK_NAME, b"c", seed=bytes(32), oaep_seed=bytes(32))


class _StuckRandom:
    def bytes(self, n: int) -> bytes:
        return bytes(n)


def test_a_broken_random_source_is_an_error_not_a_hang(
    ecc_ek: tuple[ec.EllipticCurvePrivateKey, TPMTPublic],
) -> None:
    _, ek = ecc_ek
    with pytest.raises(ValueError, match="random source"):
        make_credential(ek, AK_NAME, b"c", _StuckRandom())


class _Native:
    """NativeRandomness through cryptography, recording what it was asked for."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def oaep_encrypt(
        self, key: rsa.RSAPublicKey, message: bytes, hash_alg: TPMAlg, label: bytes
    ) -> bytes:
        self.calls.append(f"oaep {hash_alg.name} {label!r}")
        algorithm = hash_algorithm(hash_alg)
        return key.encrypt(message, padding.OAEP(padding.MGF1(algorithm), algorithm, label))

    def ephemeral_key(self, curve: ec.EllipticCurve) -> ec.EllipticCurvePrivateKey:
        self.calls.append(f"ephemeral {curve.name}")
        return ec.generate_private_key(curve)


def test_native_rsa_credential_activates_and_keeps_the_seed_from_random(
    rsa_ek: tuple[rsa.RSAPrivateKey, TPMTPublic],
) -> None:
    key, ek = rsa_ek
    native = _Native()
    result = make_credential(ek, AK_NAME, b"challenge", CountingRandom(b"n"), native=native)
    assert native.calls == ["oaep SHA256 b'IDENTITY\\x00'"]
    assert activate_credential(key, ek, AK_NAME, result) == b"challenge"
    seed = rsa_decapsulate(key, ek, result.secret[2:], "IDENTITY")
    assert seed == CountingRandom(b"n").bytes(32)


def test_native_rsa_3072_uses_the_eks_oaep_hash() -> None:
    key = rsa.generate_private_key(65537, 3072)
    ek = ek_public_from_key(key.public_key(), EKTemplate.RSA_3072)
    native = _Native()
    result = make_credential(ek, AK_NAME, bytes(48), CountingRandom(), native=native)
    assert native.calls == ["oaep SHA384 b'IDENTITY\\x00'"]
    assert activate_credential(key, ek, AK_NAME, result) == bytes(48)


def test_native_ecc_credential_activates(
    p384_ek: tuple[ec.EllipticCurvePrivateKey, TPMTPublic],
) -> None:
    key, ek = p384_ek
    native = _Native()
    result = make_credential(ek, AK_NAME, b"challenge", CountingRandom(), native=native)
    assert native.calls == ["ephemeral secp384r1"]
    assert activate_credential(key, ek, AK_NAME, result) == b"challenge"


def test_native_credential_refuses_what_make_credential_refuses(
    rsa_ek: tuple[rsa.RSAPrivateKey, TPMTPublic],
) -> None:
    _, ek = rsa_ek
    with pytest.raises(ValueError, match="credential"):
        make_credential(ek, AK_NAME, bytes(33), CountingRandom(), native=_Native())
    signing = attrs.evolve(ek, object_attributes=ek.object_attributes & ~ObjectAttributes.DECRYPT)
    with pytest.raises(TPMPolicyError, match="restricted decryption"):
        make_credential(signing, AK_NAME, b"c", CountingRandom(), native=_Native())
