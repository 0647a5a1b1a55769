"""AK creation evidence from real TPMs (go-attestation vectors, a GCP Windows vTPM),
checked as the Attestation CA checks it, plus the Windows quote."""

from __future__ import annotations

import base64
import json
from typing import Any

import attrs
import pytest

from engine.tpm import (
    CreationInfo,
    ObjectAttributes,
    PCRSelection,
    QuoteInfo,
    RSAParms,
    TPMAlg,
    TPMError,
    TPMPolicyError,
    TPMSAttest,
    TPMSignatureError,
    TPMSt,
    TPMTPublic,
    check_ak_public,
    pcr_digest,
    verify_ak_creation,
    verify_attestation,
)
from tests.vectors_path import VECTORS

AK_VECTORS = VECTORS / "tpm" / "ak-params"
GO_ATTESTATION = json.loads((AK_VECTORS / "go_attestation_activation_ak_params.json").read_text())
WINDOWS = json.loads((AK_VECTORS / "windows_gcp_shielded_vm.json").read_text())
EVIDENCE_FIELDS = ("Public", "CreateData", "CreateAttestation", "CreateSignature")


def _evidence(source: dict[str, str]) -> tuple[bytes, bytes, bytes, bytes]:
    public, data, attestation, signature = (base64.b64decode(source[f]) for f in EVIDENCE_FIELDS)
    return public, data, attestation, signature


ACCEPT = [pytest.param(c, id=c["name"]) for c in GO_ATTESTATION["cases"]]
REJECT = [pytest.param(c, id=c["name"]) for c in GO_ATTESTATION["negative_cases"]]


@pytest.mark.parametrize("case", ACCEPT)
def test_real_ak_evidence_is_accepted_when_sha1_is_allowed(case: dict[str, Any]) -> None:
    expected = case["expected"]
    assert expected["verdict"] == "accept"
    ak = verify_ak_creation(*_evidence(case["input"]), allow_sha1=True)
    assert ak.name.hex() == expected["ak_name"]
    assert ak.public.type == int(expected["type"], 16)
    assert ak.public.name_alg == int(expected["nameAlg"], 16)
    assert ak.public.object_attributes == int(expected["objectAttributes"], 16)
    assert ak.public.auth_policy.hex() == expected["authPolicy"]
    assert ak.public.parameters.scheme.scheme == int(expected["scheme"], 16)
    assert ak.public.parameters.scheme.hash_alg == int(expected["schemeHash"], 16)
    assert ak.attestation.type == TPMSt.ATTEST_CREATION
    assert ak.attestation.extra_data.hex() == expected["extraData"]
    attributes = ak.public.object_attributes
    for flag in ("fixedTPM", "fixedParent", "sensitiveDataOrigin", "restricted", "sign"):
        assert expected[flag] is True
    assert ObjectAttributes.DECRYPT not in attributes and expected["decrypt"] is False
    assert ObjectAttributes.NO_DA in attributes and expected["noDA"] is True


@pytest.mark.parametrize("case", ACCEPT)
def test_real_ak_evidence_signed_with_sha1_is_refused_by_default(case: dict[str, Any]) -> None:
    with pytest.raises(TPMPolicyError, match="SHA-1"):
        verify_ak_creation(*_evidence(case["input"]))


@pytest.mark.parametrize("case", REJECT)
def test_negative_cases_are_rejected_with_an_error(case: dict[str, Any]) -> None:
    assert case["expected"]["verdict"] == "reject"
    with pytest.raises(TPMError):
        verify_ak_creation(*_evidence(case["input"]), allow_sha1=True)


@pytest.mark.parametrize("name", ["rsa_public_with_ecc_signature", "ecc_public_with_rsa_signature"])
def test_signature_algorithm_that_does_not_match_the_key_is_a_signature_error(
    name: str,
) -> None:
    case = next(c for c in GO_ATTESTATION["negative_cases"] if c["name"] == name)
    with pytest.raises(TPMSignatureError, match="does not match"):
        verify_ak_creation(*_evidence(case["input"]), allow_sha1=True)


def test_swapped_signature_is_refused_even_for_a_key_without_a_scheme() -> None:
    case = next(
        c for c in GO_ATTESTATION["negative_cases"] if c["name"] == "rsa_public_with_ecc_signature"
    )
    public, _, attestation, signature = _evidence(case["input"])
    ak = TPMTPublic.from_bytes(public)
    no_scheme = attrs.evolve(
        ak,
        parameters=attrs.evolve(
            ak.parameters,
            scheme=attrs.evolve(ak.parameters.scheme, scheme=TPMAlg.NULL, hash_alg=TPMAlg.NULL),
        ),
    )
    with pytest.raises(TPMSignatureError, match="RSA key"):
        verify_attestation(no_scheme, attestation, signature, allow_sha1=True)


def test_p224_ak_is_rejected_for_its_curve() -> None:
    case = next(c for c in GO_ATTESTATION["negative_cases"] if c["name"] == "ecc_public_curve_p224")
    with pytest.raises(TPMPolicyError, match="NIST_P224"):
        verify_ak_creation(*_evidence(case["input"]), allow_sha1=True)


def test_p224_ak_name_no_longer_matches_its_creation_attestation() -> None:
    case = next(c for c in GO_ATTESTATION["negative_cases"] if c["name"] == "ecc_public_curve_p224")
    public, _, attestation, _ = _evidence(case["input"])
    attested = TPMSAttest.from_bytes(attestation).attested
    assert isinstance(attested, CreationInfo)
    assert attested.object_name != TPMTPublic.from_bytes(public).name()


def test_creation_data_of_another_key_is_refused() -> None:
    rsa_case, ecc_case = GO_ATTESTATION["cases"]
    public, _, attestation, signature = _evidence(rsa_case["input"])
    other_data = base64.b64decode(ecc_case["input"]["CreateData"])
    with pytest.raises(TPMPolicyError, match="creationHash"):
        verify_ak_creation(public, other_data, attestation, signature, allow_sha1=True)


def test_attestation_for_another_key_is_refused() -> None:
    rsa_case = GO_ATTESTATION["cases"][0]
    windows = _evidence(WINDOWS["AK"])
    public, data, _, _ = _evidence(rsa_case["input"])
    with pytest.raises(TPMPolicyError, match="different object"):
        verify_ak_creation(public, data, windows[2], windows[3], allow_sha1=True)


def test_quote_is_not_creation_evidence() -> None:
    public, data, _, _ = _evidence(WINDOWS["AK"])
    quote = base64.b64decode(WINDOWS["Quote"]["Quote"])
    signature = base64.b64decode(WINDOWS["Quote"]["Signature"])
    with pytest.raises(TPMPolicyError, match="ATTEST_QUOTE"):
        verify_ak_creation(public, data, quote, signature, allow_sha1=True)


def test_malformed_evidence_is_a_format_error_not_a_crash() -> None:
    public, data, attestation, signature = _evidence(GO_ATTESTATION["cases"][0]["input"])
    for i in range(4):
        parts = [public, data, attestation, signature]
        parts[i] = parts[i][:-1]
        with pytest.raises(TPMError):
            verify_ak_creation(*parts, allow_sha1=True)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a: a & ~ObjectAttributes.FIXED_TPM, "FIXED_TPM"),
        (lambda a: a & ~ObjectAttributes.RESTRICTED, "RESTRICTED"),
        (lambda a: a & ~ObjectAttributes.SIGN, "SIGN"),
        (lambda a: a & ~ObjectAttributes.SENSITIVE_DATA_ORIGIN, "SENSITIVE_DATA_ORIGIN"),
        (lambda a: a | ObjectAttributes.DECRYPT, "decryption"),
    ],
    ids=["fixedTPM", "restricted", "sign", "sensitiveDataOrigin", "decrypt"],
)
def test_ak_attributes_are_checked_by_mask(change: Any, message: str) -> None:
    ak = TPMTPublic.from_bytes(base64.b64decode(GO_ATTESTATION["cases"][0]["input"]["Public"]))
    check_ak_public(ak)
    changed = attrs.evolve(ak, object_attributes=change(ak.object_attributes))
    with pytest.raises(TPMPolicyError, match=message):
        check_ak_public(changed)


def test_small_rsa_ak_is_refused() -> None:
    ak = TPMTPublic.from_bytes(base64.b64decode(GO_ATTESTATION["cases"][0]["input"]["Public"]))
    assert isinstance(ak.parameters, RSAParms)
    small = attrs.evolve(ak, parameters=attrs.evolve(ak.parameters, key_bits=1024))
    with pytest.raises(TPMPolicyError, match="RSA-1024"):
        check_ak_public(small)


def test_sha1_name_alg_is_refused_by_default() -> None:
    ak = TPMTPublic.from_bytes(base64.b64decode(GO_ATTESTATION["cases"][0]["input"]["Public"]))
    sha1 = attrs.evolve(ak, name_alg=TPMAlg.SHA1)
    with pytest.raises(TPMPolicyError, match="nameAlg SHA1"):
        check_ak_public(sha1)
    check_ak_public(sha1, allow_sha1=True)


# The Windows VM on a GCP Shielded VM: AK creation and a quote of PCRs 0-23.


def test_windows_ak_creation_evidence_is_valid() -> None:
    ak = verify_ak_creation(*_evidence(WINDOWS["AK"]), allow_sha1=True)
    assert ak.name.hex() == "000b4ce9b151f75089d74c15dabe9d520cffafbcafd5d43be0aad2e2d88d54717e2e"
    assert ak.public.object_attributes == 0x00050472
    assert ak.public.auth_policy.hex() == (
        "9dffcbf36c383ae699fb9868dc6dcb89d7153884be2803922c124158bfad22ae"
    )
    assert ak.creation_data.locality == 1
    assert ak.creation_data.pcr_select.selections == ()


def test_windows_quote_is_signed_by_the_ak_and_covers_the_logged_pcrs() -> None:
    ak = verify_ak_creation(*_evidence(WINDOWS["AK"]), allow_sha1=True)
    quote = verify_attestation(
        ak.public,
        base64.b64decode(WINDOWS["Quote"]["Quote"]),
        base64.b64decode(WINDOWS["Quote"]["Signature"]),
        allow_sha1=True,
    )
    assert quote.type == TPMSt.ATTEST_QUOTE
    assert quote.extra_data == base64.b64decode(WINDOWS["Quote"]["Nonce"]) == b""
    assert isinstance(quote.attested, QuoteInfo)
    (selection,) = quote.attested.pcr_select.selections
    assert selection == PCRSelection.of(TPMAlg.SHA1, range(24))
    assert quote.attested.pcr_digest.hex() == "a610f27bc687ce906243287d832706036e79f6e1"

    values = {pcr["Index"]: base64.b64decode(pcr["Digest"]) for pcr in WINDOWS["Log"]["PCRs"]}
    assert WINDOWS["Quote"]["Alg"] == TPMAlg.SHA1
    recomputed = pcr_digest(TPMAlg.SHA1, [values[i] for i in selection.indices])
    assert recomputed == quote.attested.pcr_digest


def test_windows_quote_is_refused_with_sha1_disallowed() -> None:
    ak = verify_ak_creation(*_evidence(WINDOWS["AK"]), allow_sha1=True)
    with pytest.raises(TPMPolicyError):
        verify_attestation(
            ak.public,
            base64.b64decode(WINDOWS["Quote"]["Quote"]),
            base64.b64decode(WINDOWS["Quote"]["Signature"]),
        )


def test_quote_with_a_changed_pcr_digest_does_not_verify() -> None:
    ak = verify_ak_creation(*_evidence(WINDOWS["AK"]), allow_sha1=True)
    quote = bytearray(base64.b64decode(WINDOWS["Quote"]["Quote"]))
    quote[-1] ^= 1
    with pytest.raises(TPMSignatureError):
        verify_attestation(
            ak.public,
            bytes(quote),
            base64.b64decode(WINDOWS["Quote"]["Signature"]),
            allow_sha1=True,
        )


@pytest.mark.parametrize("field", range(4), ids=list(EVIDENCE_FIELDS))
def test_mutated_evidence_is_rejected_with_a_tpm_error_never_a_crash(field: int) -> None:
    evidence = list(_evidence(GO_ATTESTATION["cases"][1]["input"]))
    original = evidence[field]
    for position in range(len(original)):
        for value in {0x00, 0xFF, original[position] ^ 0x01}:
            if value == original[position]:
                continue
            evidence[field] = original[:position] + bytes([value]) + original[position + 1 :]
            with pytest.raises(TPMError):
                verify_ak_creation(*evidence, allow_sha1=True)
