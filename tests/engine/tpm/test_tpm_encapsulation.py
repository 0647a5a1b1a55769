"""Seed encapsulation (RSA-OAEP and ECDH+KDFe) against the 200 go-tpm vectors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from engine.tpm import (
    ECCParms,
    RSAParms,
    TPMAlg,
    TPMFormatError,
    TPMTPublic,
    TPMUnsupportedError,
    ecc_decapsulate,
    ecc_encapsulate,
    rsa_decapsulate,
    rsa_encapsulate,
)
from engine.tpm._marshal import Reader, parse_exact
from engine.tpm.encapsulation import rsa_oaep_hash
from engine.tpm.hashing import digest_size
from engine.tpm.keys import curve_info
from tests.vectors_path import VECTORS

TPM_VECTORS = VECTORS / "tpm"


def _cases(name: str) -> list[Any]:
    cases: list[Any] = json.loads((TPM_VECTORS / "makecredential" / name).read_text())
    return [pytest.param(case, id=case["Name"]) for case in cases]


def _sensitive_value(data: bytes) -> bytes:
    """The private value of a TPMT_SENSITIVE (RSA: one prime; ECC: d)."""

    def read(r: Reader) -> bytes:
        r.u16("sensitiveType")
        r.tpm2b("authValue", 64)
        r.tpm2b("seedValue", 64)
        return r.tpm2b("sensitive", 1024)

    return parse_exact(data, "TPMT_SENSITIVE", read)


def _rsa_private_key(public: TPMTPublic, prime: bytes) -> rsa.RSAPrivateKey:
    assert isinstance(public.parameters, RSAParms) and isinstance(public.unique, bytes)
    n = int.from_bytes(public.unique, "big")
    e = public.parameters.public_exponent
    p = int.from_bytes(prime, "big")
    q = n // p
    assert p * q == n
    d = pow(e, -1, (p - 1) * (q - 1))
    numbers = rsa.RSAPrivateNumbers(
        p,
        q,
        d,
        rsa.rsa_crt_dmp1(d, p),
        rsa.rsa_crt_dmq1(d, q),
        rsa.rsa_crt_iqmp(p, q),
        rsa.RSAPublicNumbers(e, n),
    )
    return numbers.private_key(unsafe_skip_rsa_key_validation=True)


def _ecc_private_key(public: TPMTPublic, scalar: bytes) -> ec.EllipticCurvePrivateKey:
    assert isinstance(public.parameters, ECCParms)
    curve = curve_info(public.parameters.curve).curve
    return ec.derive_private_key(int.from_bytes(scalar, "big"), curve)


@pytest.mark.parametrize("case", _cases("rsa_labeled_encaps.json"))
def test_rsa_encapsulation_reproduces_vector(case: dict[str, Any]) -> None:
    public = TPMTPublic.from_bytes(bytes.fromhex(case["PublicKey"]))
    secret = bytes.fromhex(case["Secret"])
    result = rsa_encapsulate(public, secret, case["Label"], bytes.fromhex(case["OAEPSalt"]))
    assert result.ciphertext.hex() == case["Ciphertext"]
    assert result.seed == secret

    private_key = _rsa_private_key(public, _sensitive_value(bytes.fromhex(case["PrivateKey"])))
    ciphertext = bytes.fromhex(case["Ciphertext"])
    assert rsa_decapsulate(private_key, public, ciphertext, case["Label"]) == secret


@pytest.mark.parametrize("case", _cases("ecc_labeled_encaps.json"))
def test_ecc_encapsulation_reproduces_vector(case: dict[str, Any]) -> None:
    public = TPMTPublic.from_bytes(bytes.fromhex(case["PublicKey"]))
    ephemeral = _ecc_private_key(public, bytes.fromhex(case["EphemeralPrivate"]))
    result = ecc_encapsulate(public, case["Label"], ephemeral)
    assert result.ciphertext.hex() == case["Ciphertext"]
    assert result.seed.hex() == case["Secret"]

    private_key = _ecc_private_key(public, _sensitive_value(bytes.fromhex(case["PrivateKey"])))
    ciphertext = bytes.fromhex(case["Ciphertext"])
    assert ecc_decapsulate(private_key, public, ciphertext, case["Label"]).hex() == case["Secret"]


def _first(name: str, predicate: Any) -> dict[str, Any]:
    cases: list[dict[str, Any]] = json.loads((TPM_VECTORS / "makecredential" / name).read_text())
    return next(case for case in cases if predicate(case))


def _public(case: dict[str, Any]) -> TPMTPublic:
    return TPMTPublic.from_bytes(bytes.fromhex(case["PublicKey"]))


def test_rsa_oaep_hash_follows_an_oaep_scheme_rather_than_the_name_alg() -> None:
    case = _first(
        "rsa_labeled_encaps.json",
        lambda c: (
            _public(c).parameters.scheme.scheme == TPMAlg.OAEP
            and _public(c).parameters.scheme.hash_alg != _public(c).name_alg
        ),
    )
    public = _public(case)
    assert rsa_oaep_hash(public) == public.parameters.scheme.hash_alg != public.name_alg
    result = rsa_encapsulate(
        public, bytes.fromhex(case["Secret"]), case["Label"], bytes.fromhex(case["OAEPSalt"])
    )
    assert result.ciphertext.hex() == case["Ciphertext"]


def test_ecc_seed_uses_the_name_alg_even_with_a_scheme_of_another_hash() -> None:
    case = _first(
        "ecc_labeled_encaps.json",
        lambda c: (
            _public(c).parameters.scheme.scheme != TPMAlg.NULL
            and _public(c).parameters.scheme.hash_alg != _public(c).name_alg
        ),
    )
    public = _public(case)
    ephemeral = _ecc_private_key(public, bytes.fromhex(case["EphemeralPrivate"]))
    result = ecc_encapsulate(public, case["Label"], ephemeral)
    assert len(result.seed) == digest_size(public.name_alg)
    assert result.seed.hex() == case["Secret"]


def test_seed_is_hidden_from_repr() -> None:
    case = _first("ecc_labeled_encaps.json", lambda c: True)
    public = TPMTPublic.from_bytes(bytes.fromhex(case["PublicKey"]))
    ephemeral = _ecc_private_key(public, bytes.fromhex(case["EphemeralPrivate"]))
    result = ecc_encapsulate(public, case["Label"], ephemeral)
    assert result.seed.hex() not in repr(result)


def test_oaep_seed_must_have_the_digest_size() -> None:
    case = _first("rsa_labeled_encaps.json", lambda c: True)
    public = TPMTPublic.from_bytes(bytes.fromhex(case["PublicKey"]))
    with pytest.raises(ValueError, match="OAEP seed"):
        rsa_encapsulate(public, b"s" * 16, "IDENTITY", b"short")


def test_wrong_key_type_is_refused() -> None:
    rsa_case = _first("rsa_labeled_encaps.json", lambda c: True)
    ecc_case = _first("ecc_labeled_encaps.json", lambda c: True)
    rsa_public = TPMTPublic.from_bytes(bytes.fromhex(rsa_case["PublicKey"]))
    ecc_public = TPMTPublic.from_bytes(bytes.fromhex(ecc_case["PublicKey"]))
    with pytest.raises(TPMUnsupportedError):
        ecc_encapsulate(rsa_public, "IDENTITY", ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(TPMUnsupportedError):
        rsa_encapsulate(ecc_public, b"s" * 16, "IDENTITY", bytes(32))


def test_ephemeral_key_on_another_curve_is_refused() -> None:
    case = _first("ecc_labeled_encaps.json", lambda c: "P256" in c["Name"])
    public = TPMTPublic.from_bytes(bytes.fromhex(case["PublicKey"]))
    with pytest.raises(ValueError, match="curve"):
        ecc_encapsulate(public, "IDENTITY", ec.generate_private_key(ec.SECP384R1()))


def test_decapsulating_garbage_is_a_format_error() -> None:
    case = _first("ecc_labeled_encaps.json", lambda c: "P256" in c["Name"])
    public = TPMTPublic.from_bytes(bytes.fromhex(case["PublicKey"]))
    private_key = _ecc_private_key(public, _sensitive_value(bytes.fromhex(case["PrivateKey"])))
    with pytest.raises(TPMFormatError):
        ecc_decapsulate(private_key, public, b"\x00\x20" + bytes(32) + b"\x00\x20" + bytes(32), "X")
    with pytest.raises(TPMFormatError):
        ecc_decapsulate(private_key, public, b"\x00\x20", "X")
