"""Real SCEP messages (tests/vectors/scep/, smallstep/scep testdata: a macOS PKCSReq, the
CA's CertRep, a Microsoft NDES CertRep) read as their README says they must be."""

from __future__ import annotations

import hashlib
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from asn1crypto import csr as asn1_csr
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from engine.scep import (
    ContentEncryption,
    FailInfo,
    MessageType,
    PKIStatus,
    SCEPFailure,
    decrypt_envelope,
    read_cert_rep,
    read_csr,
    read_pki_message,
)
from tests.vectors_path import VECTORS

SCEP = VECTORS / "scep"
TRANSACTION_ID = "A13090761A30F66664F85D37433D2065E1112BA1"
NONCE = bytes.fromhex("ae7fe8816cc6bedd")
CSR_SHA256 = "e14be4f45b58155f2d1f81a46123af1c8acceb23e338c063226bf1c270b5e370"
CSR_CN = "com.apple.security.scep.063D7953-1338-4BF0-8F99-913382996224"
# Verification times of the README: the test CA expired on 2026-05-29.
TESTCA_TIME = datetime(2016, 6, 1, tzinfo=UTC)
TESTCA2_TIME = datetime(2021, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def ca() -> x509.Certificate:
    return x509.load_pem_x509_certificate((SCEP / "testca" / "ca.pem").read_bytes())


@pytest.fixture(scope="module")
def ca_key(tmp_path_factory: pytest.TempPathFactory) -> rsa.RSAPrivateKey:
    """ca.key is a legacy PEM encrypted with the empty passphrase, which cryptography
    refuses; OpenSSL decrypts it."""
    out = tmp_path_factory.mktemp("scep") / "ca.key"
    subprocess.run(
        [
            "openssl",
            "rsa",
            "-in",
            str(SCEP / "testca" / "ca.key"),
            "-passin",
            "pass:",
            "-out",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    key = load_pem_private_key(Path(out).read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def test_pkcsreq_parses_and_verifies() -> None:
    message = read_pki_message((SCEP / "PKCSReq.der").read_bytes())
    assert message.message_type == MessageType.PKCS_REQ
    assert message.transaction_id == TRANSACTION_ID
    assert message.sender_nonce == NONCE  # 8 bytes, as macOS sends
    assert message.digest == "sha1"
    assert message.signer.subject.rfc4514_string() == "C=US,CN=MDM SCEP SIGNER"
    assert message.signer.serial_number == 1
    assert message.certificates == (message.signer,)
    assert message.signed_at == datetime(2016, 5, 31, 11, 30, 13, tzinfo=UTC)
    assert message.signer.not_valid_before_utc < TESTCA_TIME
    assert message.enveloped is not None


def test_pkcsreq_decrypts_with_des3_only_when_allowed(
    ca: x509.Certificate, ca_key: rsa.RSAPrivateKey
) -> None:
    message = read_pki_message((SCEP / "PKCSReq.der").read_bytes())
    assert message.enveloped is not None
    with pytest.raises(SCEPFailure) as refused:
        decrypt_envelope(
            message.enveloped,
            ca,
            ca_key,
            allowed=frozenset({ContentEncryption.AES128_CBC, ContentEncryption.AES256_CBC}),
        )
    assert refused.value.fail_info is FailInfo.BAD_ALG
    assert "des-ede3-cbc" in str(refused.value)
    plaintext = decrypt_envelope(
        message.enveloped, ca, ca_key, allowed=frozenset({ContentEncryption.DES3_CBC})
    )
    assert len(plaintext) == 428
    assert hashlib.sha256(plaintext).hexdigest() == CSR_SHA256


def test_pkcsreq_csr_is_version_2_with_a_valid_signature_and_a_1024_bit_key(
    ca: x509.Certificate, ca_key: rsa.RSAPrivateKey
) -> None:
    """The version-2 CSR passes the version and self-signature checks, then is refused
    for its RSA-1024 key (devid's minimum is 2048 bits, for SCEP as for every request)."""
    message = read_pki_message((SCEP / "PKCSReq.der").read_bytes())
    assert message.enveloped is not None
    der = decrypt_envelope(message.enveloped, ca, ca_key, allowed=frozenset(ContentEncryption))
    info = asn1_csr.CertificationRequest.load(der)["certification_request_info"]
    assert info["version"].native == 2
    assert info["subject"].native == {"common_name": CSR_CN}
    challenges = [a for a in info["attributes"] if a["type"].native == "challenge_password"]
    assert challenges == []
    with pytest.raises(SCEPFailure) as refused:
        read_csr(der)
    assert refused.value.fail_info is FailInfo.BAD_REQUEST
    assert "1024 bits" in str(refused.value)
    # Its signature is checked first, over the request as sent:
    tampered = bytearray(der)
    tampered[-5] ^= 0x01
    with pytest.raises(SCEPFailure) as bad:
        read_csr(bytes(tampered))
    assert bad.value.fail_info is FailInfo.BAD_MESSAGE_CHECK


def test_certrep_reads_with_the_ca_as_trusted(ca: x509.Certificate) -> None:
    reply = read_cert_rep((SCEP / "CertRep.der").read_bytes(), trusted=[ca])
    assert reply.status is PKIStatus.SUCCESS
    assert reply.fail_info is None
    assert reply.transaction_id == TRANSACTION_ID
    assert reply.recipient_nonce == NONCE
    # The content (des-cbc, to a key not in the folder) is not decrypted without a key.
    assert reply.certificates == ()


def test_certrep_content_encryption_des_cbc_is_refused(
    ca: x509.Certificate, ca_key: rsa.RSAPrivateKey
) -> None:
    with pytest.raises(SCEPFailure) as refused:
        read_cert_rep((SCEP / "CertRep.der").read_bytes(), trusted=[ca], recipient=ca, key=ca_key)
    # The recipient is the request's signer, not the CA.
    assert refused.value.fail_info is FailInfo.BAD_MESSAGE_CHECK


def test_certrep_signing_time_with_a_local_offset_parses(ca: x509.Certificate) -> None:
    """signingTime is UTCTime 160531073014-0400: 11:30:14 UTC."""
    reply = read_cert_rep((SCEP / "CertRep.der").read_bytes(), trusted=[ca])
    assert reply.signed_at == datetime(2016, 5, 31, 11, 30, 14, tzinfo=UTC)
    assert ca.not_valid_before_utc < TESTCA_TIME < ca.not_valid_after_utc


def test_certrep_with_the_wrong_trust_fails(ca: x509.Certificate) -> None:
    other = x509.load_pem_x509_certificates((SCEP / "testca2" / "ca2.pem").read_bytes())
    with pytest.raises(SCEPFailure) as refused:
        read_cert_rep((SCEP / "CertRep.der").read_bytes(), trusted=other)
    assert refused.value.fail_info is FailInfo.BAD_MESSAGE_CHECK
    assert refused.value.transaction_id == TRANSACTION_ID


def test_ndes_certrep_needs_the_ra_certificate(ca: x509.Certificate) -> None:
    data = (SCEP / "testca2" / "CertRep_NoCertificatesForSigners.der").read_bytes()
    with pytest.raises(SCEPFailure) as refused:
        read_cert_rep(data, trusted=[ca])
    assert refused.value.fail_info is FailInfo.BAD_MESSAGE_CHECK
    assert refused.value.signer is None
    ra_chain = x509.load_pem_x509_certificates((SCEP / "testca2" / "ca2.pem").read_bytes())
    ra = next(c for c in ra_chain if "MSCEP-RA" in c.subject.rfc4514_string())
    assert ra.not_valid_before_utc < TESTCA2_TIME < ra.not_valid_after_utc
    reply = read_cert_rep(data, trusted=[ra])
    assert reply.status is PKIStatus.SUCCESS
    assert reply.transaction_id == "HVvzN0228V+AW+dUuDe8OPyDXD0="
    assert reply.sender_nonce == bytes.fromhex("e3455dc58f7e5b4488f5a79f2a9450fe")
    assert reply.recipient_nonce == bytes.fromhex("d99d3154de07114059af075c5c17d573")


def test_pkcsreq_is_not_a_certrep(ca: x509.Certificate) -> None:
    message = read_pki_message((SCEP / "PKCSReq.der").read_bytes())
    with pytest.raises(SCEPFailure) as refused:
        read_cert_rep((SCEP / "PKCSReq.der").read_bytes(), trusted=[message.signer])
    assert refused.value.fail_info is FailInfo.BAD_REQUEST
