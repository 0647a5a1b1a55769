"""Parsing and marshalling of TPM structures: byte-exact round trips of real data,
and malformed input (truncated, trailing, oversized, mutated) always a TPMError."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

from engine.errors import BadRequest
from engine.tpm import (
    TPM_GENERATED_VALUE,
    CertifyInfo,
    ClockInfo,
    CommandAuditInfo,
    CreationInfo,
    ECCParms,
    ECCPoint,
    ECCSignature,
    NVCertifyInfo,
    NVDigestCertifyInfo,
    ObjectAttributes,
    PCRSelection,
    PCRSelectionList,
    QuoteInfo,
    RSAParms,
    RSASignature,
    Scheme,
    SessionAuditInfo,
    TimeAttestInfo,
    TPMAlg,
    TPMEccCurve,
    TPMError,
    TPMFormatError,
    TPMSAttest,
    TPMSCreationData,
    TPMSt,
    TPMTPublic,
    TPMTSignature,
    TPMUnsupportedError,
    split_name,
)
from tests.vectors_path import VECTORS

TPM_VECTORS = VECTORS / "tpm"
AK_PARAMS = json.loads(
    (TPM_VECTORS / "ak-params" / "go_attestation_activation_ak_params.json").read_text()
)
WINDOWS = json.loads((TPM_VECTORS / "ak-params" / "windows_gcp_shielded_vm.json").read_text())
E2E = json.loads((TPM_VECTORS / "makecredential" / "makecredential_e2e.json").read_text())["cases"]
ENCAPS = [
    case
    for name in ("rsa_labeled_encaps.json", "ecc_labeled_encaps.json")
    for case in json.loads((TPM_VECTORS / "makecredential" / name).read_text())
]

Parser = Callable[[bytes], Any]
PARSERS: dict[str, Parser] = {
    "Public": TPMTPublic.from_bytes,
    "CreateData": TPMSCreationData.from_bytes,
    "CreateAttestation": TPMSAttest.from_bytes,
    "CreateSignature": TPMTSignature.from_bytes,
    "Quote": TPMSAttest.from_bytes,
    "Signature": TPMTSignature.from_bytes,
}


def _real_structures() -> list[Any]:
    """(id, parser, bytes) for every distinct real structure in the vectors."""
    found: dict[bytes, Any] = {}
    for case in AK_PARAMS["cases"]:
        for field, value in case["input"].items():
            data = base64.b64decode(value)
            found.setdefault(data, pytest.param(PARSERS[field], data, id=f"{case['name']}-{field}"))
    for field in ("Public", "CreateData", "CreateAttestation", "CreateSignature"):
        data = base64.b64decode(WINDOWS["AK"][field])
        found.setdefault(data, pytest.param(PARSERS[field], data, id=f"windows-AK-{field}"))
    for field in ("Quote", "Signature"):
        data = base64.b64decode(WINDOWS["Quote"][field])
        found.setdefault(data, pytest.param(PARSERS[field], data, id=f"windows-{field}"))
    for case in E2E:
        if "ek_tpm2b_public" in case:
            data = bytes.fromhex(case["ek_tpm2b_public"])
            found.setdefault(data, pytest.param(TPMTPublic.from_tpm2b, data, id=case["name"]))
    # One public area per distinct parameter shape among the 200 encapsulation keys.
    shapes: set[tuple[Any, ...]] = set()
    for case in ENCAPS:
        data = bytes.fromhex(case["PublicKey"])
        public = TPMTPublic.from_bytes(data)
        shape = (
            public.type,
            public.parameters.symmetric.algorithm,
            public.parameters.scheme.scheme,
        )
        if shape not in shapes:
            shapes.add(shape)
            found[data] = pytest.param(TPMTPublic.from_bytes, data, id=f"encaps-{case['Name']}")
    return list(found.values())


REAL = _real_structures()


def _marshal(value: Any, parser: Parser) -> bytes:
    if parser == TPMTPublic.from_tpm2b:
        return bytes(value.to_tpm2b())
    return bytes(value.to_bytes())


@pytest.mark.parametrize(("parser", "data"), REAL)
def test_real_structure_round_trips_byte_exact(parser: Parser, data: bytes) -> None:
    parsed = parser(data)
    assert _marshal(parsed, parser) == data
    assert parser(_marshal(parsed, parser)) == parsed


@pytest.mark.parametrize(("parser", "data"), REAL)
def test_every_truncation_of_a_real_structure_is_a_format_error(
    parser: Parser, data: bytes
) -> None:
    for length in range(len(data)):
        with pytest.raises(TPMFormatError):
            parser(data[:length])


@pytest.mark.parametrize(("parser", "data"), REAL)
def test_trailing_bytes_are_a_format_error(parser: Parser, data: bytes) -> None:
    with pytest.raises(TPMFormatError, match="trailing"):
        parser(data + b"\x00")


@pytest.mark.parametrize(("parser", "data"), REAL)
def test_mutated_structures_parse_canonically_or_raise_a_tpm_error(
    parser: Parser, data: bytes
) -> None:
    for position in range(len(data)):
        for value in {0x00, 0xFF, data[position] ^ 0x01, data[position] ^ 0x80}:
            mutated = data[:position] + bytes([value]) + data[position + 1 :]
            try:
                parsed = parser(mutated)
            except TPMError:
                continue
            assert _marshal(parsed, parser) == mutated


def test_all_200_encapsulation_public_areas_round_trip() -> None:
    for case in ENCAPS:
        data = bytes.fromhex(case["PublicKey"])
        assert TPMTPublic.from_bytes(data).to_bytes() == data


def test_ak_public_fields_are_parsed_as_documented() -> None:
    case = AK_PARAMS["cases"][0]
    public = TPMTPublic.from_bytes(base64.b64decode(case["input"]["Public"]))
    expected = case["expected"]
    assert public.type == int(expected["type"], 16) == TPMAlg.RSA
    assert public.name_alg == int(expected["nameAlg"], 16)
    assert public.object_attributes == int(expected["objectAttributes"], 16)
    assert public.auth_policy.hex() == expected["authPolicy"]
    assert public.parameters.scheme == Scheme(TPMAlg.RSASSA, TPMAlg.SHA1)
    assert isinstance(public.parameters, RSAParms)
    assert (public.parameters.key_bits, public.parameters.exponent) == (2048, 0)
    assert public.parameters.public_exponent == 65537
    assert public.name().hex() == expected["ak_name"]
    flags = public.object_attributes
    assert ObjectAttributes.NO_DA in flags and ObjectAttributes.DECRYPT not in flags


def test_ecc_ak_public_and_signature_fields() -> None:
    case = AK_PARAMS["cases"][1]
    public = TPMTPublic.from_bytes(base64.b64decode(case["input"]["Public"]))
    assert isinstance(public.parameters, ECCParms)
    assert public.parameters.curve == TPMEccCurve.NIST_P256
    assert public.parameters.kdf == Scheme()
    assert public.name().hex() == case["expected"]["ak_name"]
    signature = TPMTSignature.from_bytes(base64.b64decode(case["input"]["CreateSignature"]))
    assert (signature.sig_alg, signature.hash_alg) == (TPMAlg.ECDSA, TPMAlg.SHA1)
    assert isinstance(signature.signature, ECCSignature)


def test_creation_attestation_fields() -> None:
    case = AK_PARAMS["cases"][0]
    attest = TPMSAttest.from_bytes(base64.b64decode(case["input"]["CreateAttestation"]))
    assert attest.magic == TPM_GENERATED_VALUE
    assert attest.type == TPMSt.ATTEST_CREATION
    assert attest.extra_data == b""
    assert isinstance(attest.attested, CreationInfo)
    assert attest.attested.object_name.hex() == case["expected"]["ak_name"]


def test_windows_creation_data_fields() -> None:
    created = TPMSCreationData.from_bytes(base64.b64decode(WINDOWS["AK"]["CreateData"]))
    assert created.pcr_select == PCRSelectionList()
    assert created.pcr_digest.hex().startswith("e3b0c442")
    assert created.locality == 1
    assert created.parent_name_alg == TPMAlg.SHA256
    assert created.parent_name.hex().startswith("000b13be18")
    assert created.parent_name.hex().endswith("53bd2b")
    assert TPMSCreationData.from_tpm2b(created.to_tpm2b()) == created


def test_tpm2b_forms_round_trip() -> None:
    attest = TPMSAttest.from_bytes(base64.b64decode(WINDOWS["Quote"]["Quote"]))
    assert TPMSAttest.from_tpm2b(attest.to_tpm2b()) == attest
    public = TPMTPublic.from_bytes(base64.b64decode(WINDOWS["AK"]["Public"]))
    assert TPMTPublic.from_tpm2b(public.to_tpm2b()) == public


def test_tpm2b_size_that_disagrees_with_the_content_is_refused() -> None:
    data = bytes.fromhex(E2E[0]["ek_tpm2b_public"])
    with pytest.raises(TPMFormatError):
        TPMTPublic.from_tpm2b(data[:2] + data[2:] + b"\x00")
    longer = (int.from_bytes(data[:2], "big") + 1).to_bytes(2, "big") + data[2:] + b"\x00"
    with pytest.raises(TPMFormatError, match="trailing"):
        TPMTPublic.from_tpm2b(longer)
    with pytest.raises(TPMFormatError, match="empty"):
        TPMTPublic.from_tpm2b(b"\x00\x00")


# Constructed structures: every union member round-trips.

CLOCK = ClockInfo(clock=1, reset_count=2, restart_count=3, safe=True)
NAME = b"\x00\x0b" + bytes(range(32))
SELECTION = PCRSelectionList((PCRSelection.of(TPMAlg.SHA256, [0, 7, 23]),))

ATTESTED: list[Any] = [
    CertifyInfo(NAME, NAME),
    CreationInfo(NAME, bytes(32)),
    QuoteInfo(SELECTION, bytes(32)),
    CommandAuditInfo(5, TPMAlg.SHA256, bytes(32), bytes(32)),
    SessionAuditInfo(True, bytes(32)),
    TimeAttestInfo(99, CLOCK, 7),
    NVCertifyInfo(NAME, 4, b"nv contents"),
    NVDigestCertifyInfo(NAME, bytes(48)),
]


@pytest.mark.parametrize("attested", ATTESTED, ids=lambda a: type(a).__name__)
def test_every_attestation_type_round_trips(attested: Any) -> None:
    attest = TPMSAttest(NAME, b"nonce", CLOCK, 0x0102030405060708, attested)
    data = attest.to_bytes()
    assert data[:4] == b"\xffTCG"
    assert int.from_bytes(data[4:6], "big") == attested.TAG
    assert TPMSAttest.from_bytes(data) == attest


SIGNATURES = [
    TPMTSignature(TPMAlg.RSASSA, TPMAlg.SHA256, RSASignature(bytes(256))),
    TPMTSignature(TPMAlg.RSAPSS, TPMAlg.SHA384, RSASignature(bytes(384))),
    TPMTSignature(TPMAlg.ECDSA, TPMAlg.SHA256, ECCSignature(bytes(32), bytes(32))),
    TPMTSignature(TPMAlg.ECDAA, TPMAlg.SHA256, ECCSignature(b"\x01", b"\x02")),
    TPMTSignature(TPMAlg.HMAC, TPMAlg.SHA256, bytes(32)),
    TPMTSignature(TPMAlg.NULL, TPMAlg.NULL, None),
]


@pytest.mark.parametrize("signature", SIGNATURES, ids=lambda s: s.sig_alg.name)
def test_every_signature_type_round_trips(signature: TPMTSignature) -> None:
    assert TPMTSignature.from_bytes(signature.to_bytes()) == signature


def test_constructed_public_area_round_trips_with_ecdaa_and_kdf_schemes() -> None:
    public = TPMTPublic(
        name_alg=TPMAlg.SHA384,
        object_attributes=ObjectAttributes.SIGN | ObjectAttributes.FIXED_TPM,
        auth_policy=b"",
        parameters=ECCParms(
            scheme=Scheme(TPMAlg.ECDAA, TPMAlg.SHA256, count=3),
            curve=TPMEccCurve.BN_P256,
            kdf=Scheme(TPMAlg.KDF1_SP800_108, TPMAlg.SHA256),
        ),
        unique=ECCPoint(b"\x01" * 32, b"\x02" * 32),
    )
    assert TPMTPublic.from_bytes(public.to_bytes()) == public


# Specific malformations, with the message a peer would see.


def _public_bytes() -> bytes:
    return base64.b64decode(AK_PARAMS["cases"][0]["input"]["Public"])


def test_unknown_algorithm_id_is_named_in_the_error() -> None:
    data = b"\x00\x01\x77\x77" + _public_bytes()[4:]
    with pytest.raises(TPMFormatError, match=r"nameAlg: unknown TPMAlg value 0x7777"):
        TPMTPublic.from_bytes(data)


def test_non_hash_name_alg_is_refused() -> None:
    data = b"\x00\x01\x00\x06" + _public_bytes()[4:]
    with pytest.raises(TPMFormatError, match="AES is not allowed"):
        TPMTPublic.from_bytes(data)


def test_reserved_object_attribute_bits_are_refused() -> None:
    data = bytearray(_public_bytes())
    data[4] |= 0x80
    with pytest.raises(TPMFormatError, match="reserved bits"):
        TPMTPublic.from_bytes(bytes(data))


def test_oversized_auth_policy_is_refused() -> None:
    data = _public_bytes()[:8] + b"\x00\x41" + bytes(65) + _public_bytes()[42:]
    with pytest.raises(TPMFormatError, match="exceeds the maximum of 64"):
        TPMTPublic.from_bytes(data)


def test_unsupported_public_type_is_an_unsupported_error() -> None:
    data = b"\x00\x08" + _public_bytes()[2:]
    with pytest.raises(TPMUnsupportedError, match="KEYEDHASH"):
        TPMTPublic.from_bytes(data)


def test_attestation_without_the_tpm_generated_magic_is_refused() -> None:
    data = base64.b64decode(AK_PARAMS["cases"][0]["input"]["CreateAttestation"])
    with pytest.raises(TPMFormatError, match="TPM_GENERATED_VALUE"):
        TPMSAttest.from_bytes(b"\xffTCH" + data[4:])


def test_unknown_attestation_type_is_refused() -> None:
    data = base64.b64decode(AK_PARAMS["cases"][0]["input"]["CreateAttestation"])
    with pytest.raises(TPMFormatError, match="TPMSt"):
        TPMSAttest.from_bytes(data[:4] + b"\x80\x00" + data[6:])


def test_yes_no_other_than_zero_or_one_is_refused() -> None:
    attest = TPMSAttest(NAME, b"", CLOCK, 0, SessionAuditInfo(False, b""))
    data = bytearray(attest.to_bytes())
    data[-3] = 2  # exclusiveSession, before the empty sessionDigest
    with pytest.raises(TPMFormatError, match="TPMI_YES_NO"):
        TPMSAttest.from_bytes(bytes(data))


def test_too_many_pcr_selections_are_refused() -> None:
    with pytest.raises(TPMFormatError, match="count"):
        PCRSelectionList.from_bytes(b"\xff\xff\xff\xff")


def test_signature_algorithm_that_is_not_a_signature_scheme_is_refused() -> None:
    with pytest.raises(TPMFormatError, match="sigAlg"):
        TPMTSignature.from_bytes(b"\x00\x06\x00\x0b")


def test_parsers_refuse_text() -> None:
    with pytest.raises(TypeError):
        TPMTPublic.from_bytes("00010203")  # type: ignore[arg-type]


def test_constructors_refuse_what_the_wire_cannot_carry() -> None:
    with pytest.raises(TPMFormatError):
        ClockInfo(clock=1 << 64, reset_count=0, restart_count=0, safe=False)
    with pytest.raises(TPMFormatError):
        Scheme(TPMAlg.RSASSA)  # no hash
    with pytest.raises(TPMFormatError):
        TPMTSignature(TPMAlg.ECDSA, TPMAlg.SHA256, RSASignature(b"x"))
    with pytest.raises(TPMFormatError):
        TPMTPublic(TPMAlg.SHA256, ObjectAttributes(0), b"", RSAParms(), ECCPoint())


def test_pcr_selection_indices() -> None:
    selection = PCRSelection.of(TPMAlg.SHA1, range(24))
    assert selection.select == b"\xff\xff\xff"
    assert selection.indices == tuple(range(24))
    assert PCRSelection(TPMAlg.SHA256, b"\x81\x00\x80").indices == (0, 7, 23)


def test_split_name() -> None:
    assert split_name(NAME) == (TPMAlg.SHA256, bytes(range(32)))
    for bad in (b"", b"\x00", NAME[:-1], b"\x00\x06" + bytes(32), b"\x40\x00\x00\x0b"):
        with pytest.raises(TPMFormatError):
            split_name(bad)


def test_name_of_a_null_name_alg_object_is_unsupported() -> None:
    public = TPMTPublic(TPMAlg.NULL, ObjectAttributes(0), b"", RSAParms(), b"")
    with pytest.raises(TPMUnsupportedError):
        public.name()


def test_tpm_errors_are_value_errors_and_bad_requests() -> None:
    for error in (TPMFormatError, TPMUnsupportedError):
        assert issubclass(error, ValueError)
        assert issubclass(error, BadRequest)
    assert TPMFormatError("x").status == 400
