"""verify_signature: RSASSA, RSAPSS and ECDSA; SHA-1 refused by default; mismatches
between signature and key are errors, never crashes."""

from __future__ import annotations

import attrs
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from engine.tpm import (
    ECCSignature,
    EKTemplate,
    RSASignature,
    Scheme,
    TPMAlg,
    TPMPolicyError,
    TPMSignatureError,
    TPMTSignature,
    TPMUnsupportedError,
    public_from_key,
    verify_signature,
)

DATA = b"\xffTCG attested data"


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


@pytest.fixture(scope="module")
def ecc_key() -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(0xC0FFEE, ec.SECP256R1())


def _ecdsa(
    key: ec.EllipticCurvePrivateKey, hash_alg: TPMAlg, h: hashes.HashAlgorithm
) -> TPMTSignature:
    r, s = decode_dss_signature(key.sign(DATA, ec.ECDSA(h)))
    return TPMTSignature(
        TPMAlg.ECDSA, hash_alg, ECCSignature(r.to_bytes(32, "big"), s.to_bytes(32, "big"))
    )


def _rsassa(key: rsa.RSAPrivateKey, hash_alg: TPMAlg, h: hashes.HashAlgorithm) -> TPMTSignature:
    return TPMTSignature(
        TPMAlg.RSASSA, hash_alg, RSASignature(key.sign(DATA, padding.PKCS1v15(), h))
    )


def test_rsassa_sha256_verifies(rsa_key: rsa.RSAPrivateKey) -> None:
    verify_signature(rsa_key.public_key(), _rsassa(rsa_key, TPMAlg.SHA256, hashes.SHA256()), DATA)


@pytest.mark.parametrize("salt", [32, padding.PSS.MAX_LENGTH], ids=["digest", "max"])
def test_rsapss_verifies_with_either_tpm_salt_length(rsa_key: rsa.RSAPrivateKey, salt: int) -> None:
    pss = padding.PSS(padding.MGF1(hashes.SHA256()), salt)
    sig = TPMTSignature(
        TPMAlg.RSAPSS, TPMAlg.SHA256, RSASignature(rsa_key.sign(DATA, pss, hashes.SHA256()))
    )
    verify_signature(rsa_key.public_key(), sig, DATA)


def test_ecdsa_sha384_verifies(ecc_key: ec.EllipticCurvePrivateKey) -> None:
    verify_signature(ecc_key.public_key(), _ecdsa(ecc_key, TPMAlg.SHA384, hashes.SHA384()), DATA)


def test_verifies_through_a_tpmt_public(ecc_key: ec.EllipticCurvePrivateKey) -> None:
    public = public_from_key(ecc_key.public_key(), EKTemplate.ECC_NIST_P256.public())
    verify_signature(public, _ecdsa(ecc_key, TPMAlg.SHA256, hashes.SHA256()), DATA)


def test_other_data_does_not_verify(ecc_key: ec.EllipticCurvePrivateKey) -> None:
    sig = _ecdsa(ecc_key, TPMAlg.SHA256, hashes.SHA256())
    with pytest.raises(TPMSignatureError, match="does not verify"):
        verify_signature(ecc_key.public_key(), sig, DATA + b"!")


def test_signature_with_another_hash_than_claimed_does_not_verify(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    sig = _rsassa(rsa_key, TPMAlg.SHA384, hashes.SHA256())
    with pytest.raises(TPMSignatureError):
        verify_signature(rsa_key.public_key(), sig, DATA)


def test_sha1_is_refused_unless_allowed(rsa_key: rsa.RSAPrivateKey) -> None:
    sig = _rsassa(rsa_key, TPMAlg.SHA1, hashes.SHA1())
    with pytest.raises(TPMPolicyError, match="SHA-1"):
        verify_signature(rsa_key.public_key(), sig, DATA)
    verify_signature(rsa_key.public_key(), sig, DATA, allow_sha1=True)


def test_ecdsa_signature_for_an_rsa_key_is_an_error(
    rsa_key: rsa.RSAPrivateKey, ecc_key: ec.EllipticCurvePrivateKey
) -> None:
    sig = _ecdsa(ecc_key, TPMAlg.SHA256, hashes.SHA256())
    with pytest.raises(TPMSignatureError, match="RSA key"):
        verify_signature(rsa_key.public_key(), sig, DATA)


def test_rsa_signature_for_an_ecc_key_is_an_error(
    rsa_key: rsa.RSAPrivateKey, ecc_key: ec.EllipticCurvePrivateKey
) -> None:
    sig = _rsassa(rsa_key, TPMAlg.SHA256, hashes.SHA256())
    with pytest.raises(TPMSignatureError, match="ECC key"):
        verify_signature(ecc_key.public_key(), sig, DATA)


def test_signature_outside_the_key_scheme_is_an_error(ecc_key: ec.EllipticCurvePrivateKey) -> None:
    template = EKTemplate.ECC_NIST_P256.public()
    public = public_from_key(ecc_key.public_key(), template)
    sha384_only = attrs.evolve(
        public,
        parameters=attrs.evolve(public.parameters, scheme=Scheme(TPMAlg.ECDSA, TPMAlg.SHA384)),
    )
    with pytest.raises(TPMSignatureError, match="key's scheme"):
        verify_signature(sha384_only, _ecdsa(ecc_key, TPMAlg.SHA256, hashes.SHA256()), DATA)


@pytest.mark.parametrize(
    "sig",
    [
        TPMTSignature(TPMAlg.HMAC, TPMAlg.SHA256, bytes(32)),
        TPMTSignature(TPMAlg.NULL, TPMAlg.NULL, None),
        TPMTSignature(TPMAlg.ECDAA, TPMAlg.SHA256, ECCSignature(b"\x01", b"\x01")),
    ],
    ids=lambda s: s.sig_alg.name,
)
def test_unverifiable_schemes_are_unsupported(
    ecc_key: ec.EllipticCurvePrivateKey, sig: TPMTSignature
) -> None:
    with pytest.raises(TPMUnsupportedError):
        verify_signature(ecc_key.public_key(), sig, DATA)


def test_zero_ecdsa_values_do_not_crash(ecc_key: ec.EllipticCurvePrivateKey) -> None:
    sig = TPMTSignature(TPMAlg.ECDSA, TPMAlg.SHA256, ECCSignature(b"", b""))
    with pytest.raises(TPMSignatureError):
        verify_signature(ecc_key.public_key(), sig, DATA)


def test_wrong_length_rsa_signature_does_not_crash(rsa_key: rsa.RSAPrivateKey) -> None:
    sig = TPMTSignature(TPMAlg.RSASSA, TPMAlg.SHA256, RSASignature(b"\x01" * 10))
    with pytest.raises(TPMSignatureError):
        verify_signature(rsa_key.public_key(), sig, DATA)
