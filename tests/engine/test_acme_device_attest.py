"""engine.acme.device_attest: the attObj payload, bounded CBOR, and the identity binding."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from engine.acme.device_attest import (
    MAX_ATTESTATION_BYTES,
    AttestedDevice,
    attestation_bytes,
    check_binding,
    decode_attestation_object,
)
from engine.acme.identifiers import Identifier
from engine.acme.problems import ACMEProblem
from engine.jose import b64url_encode


def test_a_plain_attestation_object_decodes() -> None:
    raw = cbor2.dumps({"fmt": "tpm", "attStmt": {"ver": "2.0", "x5c": [b"\x30"]}, "authData": b""})
    decoded = decode_attestation_object(raw)
    assert decoded.format == "tpm"
    assert decoded.statement == {"ver": "2.0", "x5c": [b"\x30"]}


@pytest.mark.parametrize(
    "payload",
    [{}, {"attObj": ""}, {"attObj": 1}, {"attObj": "a+b/"}, {"attObj": "A" * 50_000}],
)
def test_payloads_without_a_usable_att_obj_are_malformed(payload: dict[str, Any]) -> None:
    with pytest.raises(ACMEProblem) as excinfo:
        attestation_bytes(payload)
    assert excinfo.value.problem == "malformed"


def _nested(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = {"a": value}
    return value


def _fan_out(levels: int) -> Any:
    """A DAG through shared references: tiny to send, exponential to walk naively."""
    value: Any = cbor2.CBORTag(28, [0])
    for _ in range(levels):
        value = cbor2.CBORTag(28, [value, cbor2.CBORTag(29, 0)])
    return value


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xff",
        b"\x9f" * 100,
        cbor2.dumps("a string"),
        cbor2.dumps({"fmt": 1, "attStmt": {}}),
        cbor2.dumps({"fmt": "tpm"}),
        cbor2.dumps({"fmt": "tpm", "attStmt": []}),
        cbor2.dumps({"fmt": "tpm", "attStmt": {}, "other": 1}),
        cbor2.dumps({"fmt": "x" * 65, "attStmt": {}}),
        cbor2.dumps({"fmt": "tpm", "attStmt": {"t": cbor2.CBORTag(0, "2020-01-01T00:00:00Z")}}),
        cbor2.dumps({"fmt": "tpm", "attStmt": {"t": cbor2.CBORTag(999, 1)}}),
        cbor2.dumps({"fmt": "tpm", "attStmt": {"s": {1, 2}}}),
        cbor2.dumps({"fmt": "tpm", "attStmt": _nested(30)}),
        cbor2.dumps({"fmt": "tpm", "attStmt": {"x": cbor2.CBORTag(28, [cbor2.CBORTag(29, 0)])}}),
        cbor2.dumps({"fmt": "tpm", "attStmt": {"x": _fan_out(14)}}),
        b"\xa2"
        + cbor2.dumps("fmt")[0:]
        + cbor2.dumps("tpm")
        + cbor2.dumps("fmt")
        + cbor2.dumps("x"),
        b"\x5b" + (2**62).to_bytes(8, "big") + b"short",
        b"\x00" * (MAX_ATTESTATION_BYTES + 1),
    ],
    ids=[
        "empty",
        "break",
        "unterminated",
        "not a map",
        "fmt not a string",
        "no attStmt",
        "attStmt not a map",
        "unknown member",
        "long fmt",
        "datetime tag",
        "unknown tag",
        "a set",
        "too deep",
        "cycle",
        "shared-reference fan-out",
        "duplicate key",
        "huge declared length",
        "too large",
    ],
)
def test_hostile_cbor_is_a_bad_statement(raw: bytes) -> None:
    with pytest.raises(ACMEProblem) as excinfo:
        decode_attestation_object(raw)
    assert excinfo.value.problem == "badAttestationStatement"


def _device(**identities: tuple[str, ...]) -> AttestedDevice:
    return AttestedDevice.from_parts(
        "tpm", ec.generate_private_key(ec.SECP256R1()).public_key(), **identities
    )


@pytest.mark.parametrize(
    ("identifier", "device"),
    [
        (Identifier("permanent-identifier", "abc"), _device(permanent_identifiers=("abc",))),
        (
            Identifier("permanent-identifier", "urn:ek:sha256:x"),
            _device(ek_urns=("urn:ek:sha256:x",)),
        ),
        (Identifier("hardware-module", "SN1"), _device(serial_numbers=("SN1",))),
    ],
)
def test_an_identifier_the_attestation_binds_passes(
    identifier: Identifier, device: AttestedDevice
) -> None:
    check_binding(identifier, device)


@pytest.mark.parametrize(
    ("identifier", "device", "why"),
    [
        (Identifier("permanent-identifier", "abc"), _device(), "binds no device identity"),
        (
            Identifier("permanent-identifier", "abc"),
            _device(permanent_identifiers=("abd",)),
            "does not bind",
        ),
        (
            Identifier("permanent-identifier", "ABC"),
            _device(permanent_identifiers=("abc",)),
            "does not bind",
        ),
    ],
    ids=["no identity (a bare AK certificate)", "another identity", "case matters"],
)
def test_an_identifier_the_attestation_does_not_bind_is_unauthorized(
    identifier: Identifier, device: AttestedDevice, why: str
) -> None:
    with pytest.raises(ACMEProblem, match=why) as excinfo:
        check_binding(identifier, device)
    assert excinfo.value.problem == "unauthorized"


def test_evidence_is_json_ready() -> None:
    device = AttestedDevice.from_parts(
        "apple",
        ec.generate_private_key(ec.SECP256R1()).public_key(),
        serial_numbers=("SN1",),
        evidence={"nonce": b"\x00\x01", "nested": {"k": [b"\xff"]}},
    )
    record = device.evidence_record()
    assert record["evidence"] == {"nonce": "AAE=", "nested": {"k": ["/w=="]}}
    assert record["serial_numbers"] == ["SN1"]
    json.dumps(record)


def test_evidence_names_the_chain_by_digest_not_by_its_certificates() -> None:
    root_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "chain")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(root_key.public_key())
        .serial_number(1)
        .not_valid_before(datetime(2026, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2027, 1, 1, tzinfo=UTC))
        .sign(root_key, hashes.SHA256())
    )
    device = AttestedDevice.from_parts("tpm", root_key.public_key(), chain=(cert,))
    record = device.evidence_record()
    der = cert.public_bytes(Encoding.DER)
    assert record["chain_sha256"] == [hashlib.sha256(der).hexdigest()]
    assert "chain" not in record and base64.b64encode(der).decode() not in json.dumps(record)
    assert b64url_encode(device.public_key)  # SubjectPublicKeyInfo DER
