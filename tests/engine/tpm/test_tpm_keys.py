"""TPMT_PUBLIC <-> `cryptography` keys, and the TCG default EK templates."""

from __future__ import annotations

import base64
import json

import attrs
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from engine.tpm import (
    AES_128_CFB,
    AES_256_CFB,
    EK_ATTRIBUTES,
    EK_POLICY_A_SHA256,
    ECCParms,
    ECCPoint,
    EKTemplate,
    ObjectAttributes,
    RSAParms,
    TPMAlg,
    TPMEccCurve,
    TPMFormatError,
    TPMTPublic,
    TPMUnsupportedError,
    default_ek_template,
    ek_public_from_key,
    public_from_key,
    public_key_from_tpmt,
)
from engine.tpm.ek import EK_POLICY_B_SHA384, EK_POLICY_B_SHA512
from engine.tpm.keys import CURVES
from tests.vectors_path import VECTORS

TPM_VECTORS = VECTORS / "tpm"
E2E = json.loads((TPM_VECTORS / "makecredential" / "makecredential_e2e.json").read_text())["cases"]
AK_PARAMS = json.loads(
    (TPM_VECTORS / "ak-params" / "go_attestation_activation_ak_params.json").read_text()
)
KEYLIME_RSA_EK = TPMTPublic.from_tpm2b(bytes.fromhex(E2E[1]["ek_tpm2b_public"]))
KEYLIME_ECC_EK = TPMTPublic.from_tpm2b(bytes.fromhex(E2E[0]["ek_tpm2b_public"]))


def _policy_secret(hash_name: hashes.HashAlgorithm, handle: int) -> bytes:
    """TPM2_PolicySecret's policy digest for an empty policyRef."""
    size = hash_name.digest_size
    first = hashes.Hash(hash_name)
    first.update(bytes(size) + (0x151).to_bytes(4, "big") + handle.to_bytes(4, "big"))
    second = hashes.Hash(hash_name)
    second.update(first.finalize())
    return second.finalize()


def test_ek_policy_a_is_policy_secret_of_the_endorsement_hierarchy() -> None:
    assert _policy_secret(hashes.SHA256(), 0x4000000B) == EK_POLICY_A_SHA256


def test_low_range_templates_marshal_as_the_profile_gives_them() -> None:
    rsa_template = EKTemplate.RSA_2048.public().to_bytes()
    assert rsa_template.hex() == (
        "0001000b000300b20020"
        + EK_POLICY_A_SHA256.hex()
        + "00060080004300100800000000000100"
        + "00" * 256
    )
    ecc_template = EKTemplate.ECC_NIST_P256.public().to_bytes()
    assert ecc_template.hex() == (
        "0023000b000300b20020"
        + EK_POLICY_A_SHA256.hex()
        + "0006008000430010000300100020"
        + "00" * 32
        + "0020"
        + "00" * 32
    )


def test_high_range_p384_template_matches_swtpm_and_the_profile() -> None:
    template = EKTemplate.ECC_NIST_P384.public()
    assert template.name_alg == TPMAlg.SHA384
    assert template.object_attributes == 0x000300F2
    assert template.auth_policy == EK_POLICY_B_SHA384
    assert template.parameters == ECCParms(symmetric=AES_256_CFB, curve=TPMEccCurve.NIST_P384)
    assert template.unique == ECCPoint()
    assert EKTemplate.ECC_NIST_P521.public().auth_policy == EK_POLICY_B_SHA512


def test_ek_attributes_are_the_profile_attributes() -> None:
    assert EK_ATTRIBUTES == 0x000300B2
    assert ObjectAttributes.USER_WITH_AUTH not in EK_ATTRIBUTES


@pytest.mark.parametrize("ek", [KEYLIME_RSA_EK, KEYLIME_ECC_EK], ids=["rsa", "ecc"])
def test_real_ek_is_its_key_in_the_default_low_range_template(ek: TPMTPublic) -> None:
    key = public_key_from_tpmt(ek)
    assert ek_public_from_key(key) == ek
    assert ek_public_from_key(key).name() == ek.name()


def test_default_templates_by_key_type_and_size() -> None:
    p256 = ec.derive_private_key(5, ec.SECP256R1()).public_key()
    p384 = ec.derive_private_key(5, ec.SECP384R1()).public_key()
    p521 = ec.derive_private_key(5, ec.SECP521R1()).public_key()
    assert default_ek_template(p256) == EKTemplate.ECC_NIST_P256
    assert default_ek_template(p384) == EKTemplate.ECC_NIST_P384
    assert default_ek_template(p521) == EKTemplate.ECC_NIST_P521
    assert default_ek_template(public_key_from_tpmt(KEYLIME_RSA_EK)) == EKTemplate.RSA_2048
    p384_ek = ek_public_from_key(p384)
    assert p384_ek.parameters.symmetric == AES_256_CFB
    assert isinstance(p384_ek.unique, ECCPoint) and len(p384_ek.unique.x) == 48


def test_key_without_a_default_template_is_unsupported() -> None:
    p224 = ec.derive_private_key(5, ec.SECP224R1()).public_key()
    with pytest.raises(TPMUnsupportedError):
        default_ek_template(p224)
    secp256k1 = ec.derive_private_key(5, ec.SECP256K1()).public_key()
    with pytest.raises(TPMUnsupportedError):
        ek_public_from_key(secp256k1)


def test_key_must_fit_the_chosen_template() -> None:
    p256 = ec.derive_private_key(5, ec.SECP256R1()).public_key()
    with pytest.raises(TPMUnsupportedError):
        ek_public_from_key(p256, EKTemplate.ECC_NIST_P384)
    with pytest.raises(TPMUnsupportedError):
        ek_public_from_key(p256, EKTemplate.RSA_2048)
    rsa_key = public_key_from_tpmt(KEYLIME_RSA_EK)
    assert isinstance(rsa_key, rsa.RSAPublicKey)
    with pytest.raises(TPMUnsupportedError):
        ek_public_from_key(rsa_key, EKTemplate.RSA_3072)
    odd_exponent = attrs.evolve(
        EKTemplate.RSA_2048.public(), parameters=RSAParms(AES_128_CFB, exponent=3)
    )
    with pytest.raises(TPMUnsupportedError, match="exponent"):
        public_from_key(rsa_key, odd_exponent)


def test_ak_publics_convert_to_keys() -> None:
    rsa_ak = TPMTPublic.from_bytes(base64.b64decode(AK_PARAMS["cases"][0]["input"]["Public"]))
    ecc_ak = TPMTPublic.from_bytes(base64.b64decode(AK_PARAMS["cases"][1]["input"]["Public"]))
    rsa_key = public_key_from_tpmt(rsa_ak)
    ecc_key = public_key_from_tpmt(ecc_ak)
    assert isinstance(rsa_key, rsa.RSAPublicKey) and rsa_key.key_size == 2048
    assert rsa_key.public_numbers().e == 65537
    assert isinstance(ecc_key, ec.EllipticCurvePublicKey)
    assert isinstance(ecc_key.curve, ec.SECP256R1)
    assert public_from_key(rsa_key, rsa_ak) == rsa_ak
    assert public_from_key(ecc_key, ecc_ak) == ecc_ak


def test_modulus_that_disagrees_with_key_bits_is_refused() -> None:
    assert isinstance(KEYLIME_RSA_EK.unique, bytes)
    short = attrs.evolve(KEYLIME_RSA_EK, unique=KEYLIME_RSA_EK.unique[1:])
    with pytest.raises(TPMFormatError, match="keyBits"):
        public_key_from_tpmt(short)
    empty = EKTemplate.RSA_3072.public()
    with pytest.raises(TPMFormatError):
        public_key_from_tpmt(empty)


def test_point_not_on_the_curve_is_refused() -> None:
    assert isinstance(KEYLIME_ECC_EK.unique, ECCPoint)
    moved = attrs.evolve(
        KEYLIME_ECC_EK, unique=ECCPoint(KEYLIME_ECC_EK.unique.x, KEYLIME_ECC_EK.unique.x)
    )
    with pytest.raises(TPMFormatError, match="not on"):
        public_key_from_tpmt(moved)
    with pytest.raises(TPMFormatError):
        public_key_from_tpmt(EKTemplate.ECC_NIST_P384.public())


def test_unsupported_curve_is_refused() -> None:
    assert isinstance(KEYLIME_ECC_EK.parameters, ECCParms)
    bn = attrs.evolve(
        KEYLIME_ECC_EK,
        parameters=attrs.evolve(KEYLIME_ECC_EK.parameters, curve=TPMEccCurve.BN_P256),
    )
    with pytest.raises(TPMUnsupportedError, match="BN_P256"):
        public_key_from_tpmt(bn)


@pytest.mark.parametrize("curve", list(CURVES), ids=lambda c: c.name)
def test_curve_orders_are_the_group_orders(curve: TPMEccCurve) -> None:
    info = CURVES[curve]
    one = ec.derive_private_key(1, info.curve).public_key().public_numbers()
    minus_one = ec.derive_private_key(info.order - 1, info.curve).public_key().public_numbers()
    assert one.x == minus_one.x and one.y != minus_one.y
