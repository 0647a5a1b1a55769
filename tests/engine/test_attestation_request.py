"""Malformed ``POST /attest`` bodies: every one is a clean 400, never another exception.

software TPM stand-in: the real swtpm exchange is tested in tests/agent.
Each test takes a valid body from the fake device (tests/attestation_fakes.py), breaks
one thing in it, and runs it through AttestRequest.parse and begin_attestation exactly
as the host does.
"""

from __future__ import annotations

import base64
import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from engine.attestation import AttestationPolicy, AttestRequest, begin_attestation
from engine.attestation.request import MAX_CERTIFICATE, MAX_EK_CERTS, MAX_STRUCTURE
from engine.errors import BadRequest, ProtocolError
from engine.inventory import Device, ek_urn
from engine.ports import CountingRandom
from tests.attestation_fakes import FakeDevice, b64, make_device, make_vendor

PARAMS = ("public", "createData", "createAttestation", "createSignature")
NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def device() -> FakeDevice:
    return make_device("rsa", "ecc")


def attempt(body: Any, device: FakeDevice | None = None) -> ProtocolError | None:
    """Run *body* through the Attestation CA; None if it was accepted, else the refusal.

    The device is registered under whatever EK the body names, so only the body's
    own faults can cause a refusal. Any exception but a ProtocolError fails the test.
    """
    try:
        request = AttestRequest.parse(body)
        registered = Device(ek_urn(request.ek_public))
        begin_attestation(request, registered, AttestationPolicy(), NOW, CountingRandom())
    except ProtocolError as exc:
        return exc
    return None


def refused(body: Any) -> BadRequest:
    error = attempt(body)
    assert isinstance(error, BadRequest), (error, body)
    assert error.status == 400 and error.detail
    return error


def with_param(device: FakeDevice, field: str, value: Any) -> dict[str, Any]:
    body = device.attest_body()
    body["params"][field] = value
    return body


def test_the_unspoiled_body_is_accepted(device: FakeDevice) -> None:
    assert attempt(device.attest_body()) is None


# --- truncation, flips, garbage ---------------------------------------------------------


@pytest.mark.parametrize("field", PARAMS)
def test_every_truncation_of_every_structure_is_refused(device: FakeDevice, field: str) -> None:
    blob = base64.b64decode(device.ak.params()[field])
    for cut in range(len(blob)):
        refused(with_param(device, field, b64(blob[:cut])))


@pytest.mark.parametrize("field", PARAMS)
def test_trailing_bytes_after_a_structure_are_refused(device: FakeDevice, field: str) -> None:
    blob = base64.b64decode(device.ak.params()[field])
    error = refused(with_param(device, field, b64(blob + b"\x00")))
    assert "attestation key rejected" in error.detail


@pytest.mark.parametrize("mask", [0x01, 0x80, 0xFF])
@pytest.mark.parametrize("field", PARAMS)
def test_every_flipped_byte_of_the_evidence_is_refused(
    device: FakeDevice, field: str, mask: int
) -> None:
    """The signature covers the attestation, which covers the name and creation data:
    no single changed byte anywhere gets through."""
    blob = base64.b64decode(device.ak.params()[field])
    for index in range(len(blob)):
        spoiled = bytearray(blob)
        spoiled[index] ^= mask
        refused(with_param(device, field, b64(bytes(spoiled))))


@pytest.mark.parametrize("field", PARAMS)
def test_random_bytes_in_place_of_a_structure_are_refused(device: FakeDevice, field: str) -> None:
    random = CountingRandom(field.encode())
    for size in (1, 2, 3, 7, 16, 64, 100, 255, 600):
        refused(with_param(device, field, b64(random.bytes(size))))


@pytest.mark.parametrize("field", PARAMS)
@pytest.mark.parametrize(
    "garbage", ["!!!!", "QUJ", "AA==AA", " AAAA", "AAAA\n", "ÄÖÜ=", "-_-_", "data:AAAA"]
)
def test_invalid_base64_is_refused(device: FakeDevice, field: str, garbage: str) -> None:
    error = refused(with_param(device, field, garbage))
    assert f"params.{field}" in error.detail and "base64" in error.detail


@pytest.mark.parametrize("field", PARAMS)
@pytest.mark.parametrize("value", [123, 1.5, True, [], ["AAAA"], {}, {"b64": "AAAA"}])
def test_a_structure_of_the_wrong_type_is_refused(
    device: FakeDevice, field: str, value: Any
) -> None:
    error = refused(with_param(device, field, value))
    assert f"params.{field}" in error.detail


@pytest.mark.parametrize("field", PARAMS)
@pytest.mark.parametrize("value", [None, ""])
def test_a_missing_structure_is_refused(device: FakeDevice, field: str, value: Any) -> None:
    body = device.attest_body()
    if value is None:
        del body["params"][field]
    else:
        body["params"][field] = value
    error = refused(body)
    assert f"params.{field} is required" in error.detail


@pytest.mark.parametrize("field", PARAMS)
def test_an_oversized_structure_is_refused_before_decoding(device: FakeDevice, field: str) -> None:
    error = refused(with_param(device, field, b64(bytes(MAX_STRUCTURE + 16))))
    assert "too large" in error.detail


def test_a_structure_at_the_size_limit_is_decoded_then_refused_as_malformed(
    device: FakeDevice,
) -> None:
    error = refused(with_param(device, "createData", b64(bytes(MAX_STRUCTURE))))
    assert "attestation key rejected" in error.detail


def test_structures_swapped_with_each_other_are_refused(device: FakeDevice) -> None:
    params = device.ak.params()
    for a in PARAMS:
        for b in PARAMS:
            if a != b:
                refused(with_param(device, a, params[b]))


# --- the body's shape -----------------------------------------------------------------------


@pytest.mark.parametrize("body", [None, [], "attest", 42, True, [{"params": {}}]])
def test_a_body_that_is_not_an_object_is_refused(body: Any) -> None:
    refused(body)


@pytest.mark.parametrize("params", [None, "x", [], 3])
def test_params_must_be_an_object(device: FakeDevice, params: Any) -> None:
    body = device.attest_body()
    body["params"] = params
    assert "params" in refused(body).detail


def test_missing_params_are_refused(device: FakeDevice) -> None:
    body = device.attest_body()
    del body["params"]
    assert "params" in refused(body).detail


def test_the_tpm_1_2_activation_format_is_refused(device: FakeDevice) -> None:
    body = with_param(device, "useTCSDActivationFormat", True)
    assert "TPM 1.2" in refused(body).detail


@pytest.mark.parametrize("version", [1, "1.2", 3, None, [2]])
def test_only_tpm_2_0_is_supported(device: FakeDevice, version: Any) -> None:
    body = device.attest_body()
    body["tpmInfo"]["version"] = version
    assert "TPM 2.0" in refused(body).detail


@pytest.mark.parametrize("version", [2, "2", "2.0"])
def test_tpm_2_0_may_be_spelled_several_ways(device: FakeDevice, version: Any) -> None:
    body = device.attest_body()
    body["tpmInfo"]["version"] = version
    assert attempt(body) is None


@pytest.mark.parametrize("info", ["tpm", [1], 7])
def test_tpm_info_must_be_an_object(device: FakeDevice, info: Any) -> None:
    body = device.attest_body()
    body["tpmInfo"] = info
    refused(body)


@pytest.mark.parametrize("field", ["manufacturer", "model", "firmwareVersion"])
@pytest.mark.parametrize("value", ["x" * 129, "evil\nline", "tab\there", True, [], {"a": 1}, 1.5])
def test_tpm_info_fields_must_be_short_printable_text(
    device: FakeDevice, field: str, value: Any
) -> None:
    body = device.attest_body()
    body["tpmInfo"][field] = value
    assert f"tpmInfo.{field}" in refused(body).detail


def test_tpm_info_may_be_omitted(device: FakeDevice) -> None:
    body = device.attest_body()
    del body["tpmInfo"]
    assert attempt(body) is None


# --- the EK and its certificates --------------------------------------------------------------


def test_a_body_without_ek_or_ek_certificates_is_refused(device: FakeDevice) -> None:
    body = device.attest_body(send_ek=False)
    assert "needs ek or ekCerts" in refused(body).detail


@pytest.mark.parametrize("value", ["!!", 17, ["x"], b64(b"not a key"), b64(bytes(MAX_CERTIFICATE))])
def test_an_ek_that_is_not_a_public_key_is_refused(device: FakeDevice, value: Any) -> None:
    body = device.attest_body()
    body["ek"] = value
    assert "ek" in refused(body).detail


def test_an_oversized_ek_is_refused(device: FakeDevice) -> None:
    body = device.attest_body()
    body["ek"] = b64(bytes(3 * MAX_CERTIFICATE))
    assert "too large" in refused(body).detail


def _spki(key: Any) -> str:
    return b64(key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))


@pytest.mark.parametrize(
    "make_key",
    [
        pytest.param(lambda: ed25519.Ed25519PrivateKey.generate().public_key(), id="ed25519"),
        pytest.param(lambda: ec.generate_private_key(ec.SECP224R1()).public_key(), id="p224"),
        pytest.param(lambda: ec.generate_private_key(ec.SECP256K1()).public_key(), id="secp256k1"),
        pytest.param(lambda: rsa.generate_private_key(65537, 1024).public_key(), id="rsa1024"),
        pytest.param(lambda: rsa.generate_private_key(3, 2048).public_key(), id="rsa-e3"),
    ],
)
def test_an_ek_no_tcg_template_fits_is_refused(device: FakeDevice, make_key: Any) -> None:
    body = device.attest_body()
    body["ek"] = _spki(make_key())
    refused(body)


@pytest.mark.parametrize("certs", ["cert", {"a": 1}, 5])
def test_ek_certs_must_be_a_list(device: FakeDevice, certs: Any) -> None:
    body = device.attest_body()
    body["ekCerts"] = certs
    assert "ekCerts" in refused(body).detail


def test_at_most_four_ek_certificates_are_read(device: FakeDevice) -> None:
    vendor = make_vendor()
    cert = vendor.ek_certificate(device.ek.public_key)
    body = device.attest_body(ek_certs=[cert] * (MAX_EK_CERTS + 1))
    assert "at most" in refused(body).detail


@pytest.mark.parametrize(
    "entry", [None, "", 12, "!!!", b64(b"\x30\x03\x02\x01\x01"), b64(bytes(MAX_CERTIFICATE + 64))]
)
def test_an_ek_certificate_that_is_not_a_certificate_is_refused(
    device: FakeDevice, entry: Any
) -> None:
    body = device.attest_body()
    body["ekCerts"] = [entry]
    assert "ekCerts[0]" in refused(body).detail


def test_a_truncated_ek_certificate_is_refused(device: FakeDevice) -> None:
    vendor = make_vendor()
    der = base64.b64decode(
        device.attest_body(ek_certs=[vendor.ek_certificate(device.ek.public_key)])["ekCerts"][0]
    )
    for cut in range(0, len(der), 7):
        body = device.attest_body()
        body["ekCerts"] = [b64(der[:cut])]
        refused(body)


def test_the_request_is_never_modified(device: FakeDevice) -> None:
    body = device.attest_body()
    before = copy.deepcopy(body)
    attempt(body)
    assert body == before


def test_the_ek_certificate_is_kept_as_received() -> None:
    vendor = make_vendor()
    certified = make_device("ecc", "ecc", vendor=vendor)
    body = certified.attest_body()
    request = AttestRequest.parse(body)
    assert request.ek_urn == ek_urn(request.ek_public)
    ders = [base64.b64decode(c) for c in body["ekCerts"]]
    assert len(ders) == 1 and list(request.ek_certificate_ders) == ders
    assert request.ek_certificate_der(request.ek_certificates[0]) == ders[0]
    assert ders[0] == request.ek_certificates[0].public_bytes(Encoding.DER)
    policy = AttestationPolicy(ek_roots=(vendor.root,))
    session, _ = begin_attestation(request, Device(request.ek_urn), policy, NOW, CountingRandom())
    assert session.ek_certificate == ders[0] and session.ek_certificate_verified
