"""The CSR inside a SCEP request (engine.scep.read_csr): versions 0 to 2, the
self-signature over the request as sent, the challengePassword in its string types."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from asn1crypto import core
from asn1crypto import csr as asn1_csr
from cryptography.x509.name import _ASN1Type

from engine.csr import parse_csr
from engine.der import tlv
from engine.scep import FailInfo, SCEPFailure, read_csr
from tests.engine.scep_fixtures import csr, ec_key, edit_csr, rsa_key
from tests.vectors_path import VECTORS

X509 = VECTORS / "x509"
CHALLENGE = "1.2.840.113549.1.9.7"


def _pem_to_der(text: bytes) -> bytes:
    body = b"".join(line for line in text.splitlines() if line and not line.startswith(b"-----"))
    return base64.b64decode(body)


def refused(info: FailInfo, der: bytes) -> SCEPFailure:
    with pytest.raises(SCEPFailure) as caught:
        read_csr(der)
    assert caught.value.fail_info is info, str(caught.value)
    return caught.value


@pytest.mark.parametrize(
    ("name", "challenge"),
    [("challengePassword.csr", "challengePassword"), ("challengePasswordUTF8.csr", "\U0001f510")],
)
def test_vectors_with_a_challenge(name: str, challenge: str) -> None:
    der = _pem_to_der((X509 / name).read_bytes())
    request = read_csr(der)
    assert request.challenge == challenge
    assert request.version == 0
    assert request.info.der == der
    assert request.info.common_name == "commonName"
    assert {san.value for san in request.info.sans} >= {"foo.com", "bar.com"}


def test_version_0_reads_as_parse_csr_reads_it() -> None:
    der = csr(rsa_key("device"), "device-1")
    request = read_csr(der)
    assert request.challenge is None
    assert request.info == parse_csr(der)


def _set_version(version: int) -> Any:
    def edit(info: Any) -> None:
        info["version"] = version

    return edit


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_versions_1_and_2_are_read(version: int, kind: str) -> None:
    key = rsa_key("device") if kind == "rsa" else ec_key("device")
    original = csr(key, "com.apple.security.scep.0001", challenge="pw")
    der = edit_csr(original, key, _set_version(version))
    request = read_csr(der)
    assert request.version == version
    assert request.info.der == der  # the bytes as received, not the version-0 copy
    assert request.info.common_name == "com.apple.security.scep.0001"
    assert request.challenge == "pw"
    assert request.info.public_key.public_numbers() == key.public_key().public_numbers()


def test_version_3_is_refused() -> None:
    key = rsa_key("device")
    der = edit_csr(csr(key), key, _set_version(3))
    assert "version 3" in str(refused(FailInfo.BAD_REQUEST, der))


def test_version_2_signature_is_checked_over_the_bytes_sent() -> None:
    """Changing the version after signing breaks the signature: the check runs over the
    request as sent, not over the version-0 copy."""
    key = rsa_key("device")
    signed_as_0 = asn1_csr.CertificationRequest.load(csr(key))
    info = signed_as_0["certification_request_info"]
    changed = asn1_csr.CertificationRequest(
        {
            "certification_request_info": asn1_csr.CertificationRequestInfo(
                {
                    "version": 2,
                    "subject": info["subject"],
                    "subject_pk_info": info["subject_pk_info"],
                    "attributes": info["attributes"],
                }
            ),
            "signature_algorithm": signed_as_0["signature_algorithm"],
            "signature": signed_as_0["signature"],
        }
    ).dump()
    refused(FailInfo.BAD_MESSAGE_CHECK, changed)


def test_invalid_signature_is_a_bad_message_check() -> None:
    der = bytearray(csr(rsa_key("device")))
    der[-1] ^= 0x01
    refused(FailInfo.BAD_MESSAGE_CHECK, bytes(der))


def test_signature_by_another_key_is_a_bad_message_check() -> None:
    der = edit_csr(csr(rsa_key("device")), rsa_key("other"), lambda info: None)
    refused(FailInfo.BAD_MESSAGE_CHECK, der)


def test_unsupported_signature_algorithm_is_a_bad_alg() -> None:
    der = asn1_csr.CertificationRequest.load(csr(rsa_key("device")))
    der["signature_algorithm"] = {"algorithm": "md5_rsa"}
    refused(FailInfo.BAD_ALG, der.dump(force=True))


@pytest.mark.parametrize(
    ("string_type", "value"),
    [
        (_ASN1Type.PrintableString, "abc 123"),
        (_ASN1Type.UTF8String, "pässwört"),
        (_ASN1Type.IA5String, "pw@example"),
        (_ASN1Type.BMPString, "pässwört"),
        (_ASN1Type.T61String, "teletex"),
    ],
)
def test_challenge_string_types(string_type: _ASN1Type, value: str) -> None:
    key = rsa_key("device")
    spec = {
        _ASN1Type.PrintableString: core.PrintableString,
        _ASN1Type.UTF8String: core.UTF8String,
        _ASN1Type.IA5String: core.IA5String,
        _ASN1Type.BMPString: core.BMPString,
        _ASN1Type.T61String: core.TeletexString,
    }[string_type]
    der = edit_csr(csr(key), key, _challenge([[spec(value)]]))
    assert read_csr(der).challenge == value


def _challenge(attributes: list[list[Any]]) -> Any:
    """An edit adding one challengePassword attribute per list, with those values."""

    def edit(info: Any) -> None:
        current = list(info["attributes"])
        for values in attributes:
            body = core.ObjectIdentifier(CHALLENGE).dump() + tlv(
                0x31, b"".join(v.dump() for v in values)
            )
            current.append(asn1_csr.CRIAttribute.load(tlv(0x30, body)))
        info["attributes"] = asn1_csr.CRIAttributes(current)

    return edit


def test_challenge_with_two_values_is_refused() -> None:
    key = rsa_key("device")
    der = edit_csr(
        csr(key), key, _challenge([[core.PrintableString("a"), core.PrintableString("b")]])
    )
    refused(FailInfo.BAD_REQUEST, der)


def test_two_challenge_attributes_are_refused() -> None:
    key = rsa_key("device")
    der = edit_csr(
        csr(key), key, _challenge([[core.PrintableString("a")], [core.PrintableString("a")]])
    )
    refused(FailInfo.BAD_REQUEST, der)


@pytest.mark.parametrize(
    "value",
    [
        core.UniversalString("pw"),
        core.OctetString(b"pw"),
        core.Integer(5),
        core.VisibleString("pw"),
    ],
)
def test_challenge_of_another_type_is_refused(value: Any) -> None:
    key = rsa_key("device")
    der = edit_csr(csr(key), key, _challenge([[value]]))
    refused(FailInfo.BAD_REQUEST, der)


def test_weak_key_is_refused_as_everywhere() -> None:
    key = rsa_key("weak", 1024)
    refused(FailInfo.BAD_REQUEST, csr(key))


@pytest.mark.parametrize(
    "data",
    [b"", b"\x30\x00", b"\x30\x03\x02\x01\x00", b"garbage", b"\x30" + b"\x84\xff\xff\xff\xff"],
)
def test_garbage_is_a_bad_request(data: bytes) -> None:
    refused(FailInfo.BAD_REQUEST, data)


def test_trailing_bytes_and_size() -> None:
    der = csr(rsa_key("device"))
    refused(FailInfo.BAD_REQUEST, der + b"\x00")
    refused(FailInfo.BAD_REQUEST, b"\x30" * (64 * 1024))
