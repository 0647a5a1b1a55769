"""SCEP PKI messages (engine/scep): requests built and read back, CertReps built and read
back, and each way a message can be wrong refused with its failInfo."""

from __future__ import annotations

from typing import Any

import pytest
from asn1crypto import algos, cms, core
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from engine.der import tlv
from engine.ports import CountingRandom
from engine.scep import (
    MAX_MESSAGE_BYTES,
    ContentEncryption,
    FailInfo,
    MessageType,
    PKIStatus,
    SCEPFailure,
    build_cert_rep,
    certs_only,
    decrypt_envelope,
    issuer_and_serial,
    issuer_and_subject,
    read_cert_rep,
    read_certs_only,
    read_csr,
    read_issuer_and_serial,
    read_issuer_and_subject,
    read_pki_message,
)
from engine.scep.content import sign_content
from engine.scep.envelope import open_envelope
from tests.engine.scep_fixtures import (
    NOW,
    client,
    csr,
    identity,
    printable,
    ra,
    replace_attribute,
    request,
    resign,
    rsa_key,
)

ALL = frozenset(ContentEncryption)
MESSAGE_TYPE = "2.16.840.1.113733.1.9.2"
SENDER_NONCE = "2.16.840.1.113733.1.9.5"
TRANSACTION_ID = "2.16.840.1.113733.1.9.7"
CONTENT_TYPE = "1.2.840.113549.1.9.3"
MESSAGE_DIGEST = "1.2.840.113549.1.9.4"


def refused(info: FailInfo, call: Any, *args: Any, **kwargs: Any) -> SCEPFailure:
    with pytest.raises(SCEPFailure) as caught:
        call(*args, **kwargs)
    assert caught.value.fail_info is info, str(caught.value)
    return caught.value


# --- requests: the round trip ------------------------------------------------------


@pytest.mark.parametrize("encryption", list(ContentEncryption))
@pytest.mark.parametrize("key_transport", ["pkcs1v15", "oaep", "oaep-sha1"])
def test_request_round_trip(encryption: ContentEncryption, key_transport: str) -> None:
    device = rsa_key("device")
    der = csr(device, "device-1", challenge="s3cret")
    data = request(der, encryption=encryption, key_transport=key_transport)
    message = read_pki_message(data)
    assert message.message_type == MessageType.PKCS_REQ
    assert message.transaction_id == "tx-0001"
    assert message.sender_nonce == b"N" * 16
    assert message.signer == client().certificate
    assert message.certificates == (client().certificate,)
    assert message.digest == "sha256"
    assert message.signed_at == NOW
    assert message.der == data
    assert message.enveloped is not None
    plaintext = decrypt_envelope(message.enveloped, ra().certificate, ra().key, allowed=ALL)
    assert plaintext == der
    request_csr = read_csr(plaintext)
    assert request_csr.challenge == "s3cret"
    assert request_csr.version == 0
    assert request_csr.info.der == der
    assert request_csr.info.common_name == "device-1"


@pytest.mark.parametrize("digest", ["sha1", "sha256", "sha384", "sha512"])
@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_request_signers_and_digests(digest: str, kind: str) -> None:
    data = request(b"content", signer=client(kind), digest=digest)
    message = read_pki_message(data)
    assert message.digest == digest
    assert message.signer == client(kind).certificate


@pytest.mark.parametrize("message_type", list(MessageType))
def test_every_message_type_reads(message_type: MessageType) -> None:
    assert read_pki_message(request(b"x", message_type=message_type)).message_type == message_type


def test_unknown_message_type_is_kept() -> None:
    data = resign(
        request(b"x"), client().key, attributes=replace_attribute(MESSAGE_TYPE, printable("99"))
    )
    assert read_pki_message(data).message_type == 99


def test_signer_found_by_subject_key_identifier() -> None:
    signer = client()
    ski = signer.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)

    def by_key_id(si: Any) -> None:
        si["version"] = "v3"
        si["sid"] = cms.SignerIdentifier(name="subject_key_identifier", value=ski.value.digest)

    data = resign(request(b"x"), signer.key, signer_info=by_key_id)
    assert read_pki_message(data).signer == signer.certificate


def test_eight_byte_nonce_is_accepted_and_shorter_refused() -> None:
    assert read_pki_message(request(b"x", sender_nonce=b"12345678")).sender_nonce == b"12345678"
    failure = refused(
        FailInfo.BAD_REQUEST, read_pki_message, request(b"x", sender_nonce=b"1234567")
    )
    assert failure.transaction_id == "tx-0001"
    assert failure.sender_nonce is None
    refused(FailInfo.BAD_REQUEST, read_pki_message, request(b"x", sender_nonce=b"n" * 65))


# --- requests: refused ---------------------------------------------------------------


def test_garbage_and_size_are_bad_requests() -> None:
    refused(FailInfo.BAD_REQUEST, read_pki_message, b"")
    refused(FailInfo.BAD_REQUEST, read_pki_message, b"\x30\x03\x02\x01\x00")
    refused(FailInfo.BAD_REQUEST, read_pki_message, b"not der at all")
    data = request(b"x")
    refused(FailInfo.BAD_REQUEST, read_pki_message, data + b"\x00")  # trailing bytes
    refused(FailInfo.BAD_REQUEST, read_pki_message, b"\x00" * (MAX_MESSAGE_BYTES + 1))


@pytest.mark.parametrize("cut", [1, 10, 100, 500, -1])
def test_truncated_message_is_a_bad_request(cut: int) -> None:
    data = request(b"x")
    refused(FailInfo.BAD_REQUEST, read_pki_message, data[:cut])


def test_enveloped_data_is_not_a_signed_data() -> None:
    data = request(b"x")
    enveloped = read_pki_message(data).enveloped
    assert enveloped is not None
    refused(FailInfo.BAD_REQUEST, read_pki_message, enveloped)


def test_tampered_content_fails_the_message_digest() -> None:
    data = bytearray(request(b"x" * 64))
    enveloped = read_pki_message(bytes(data)).enveloped
    assert enveloped is not None
    offset = bytes(data).index(enveloped) + len(enveloped) - 3
    data[offset] ^= 0x01
    failure = refused(FailInfo.BAD_MESSAGE_CHECK, read_pki_message, bytes(data))
    assert failure.transaction_id == "tx-0001"
    assert failure.sender_nonce == b"N" * 16
    assert failure.signer == client().certificate
    assert failure.digest == "sha256"


def test_tampered_attribute_fails_the_signature() -> None:
    data = request(b"x", transaction_id="tx-0001")
    tampered = data.replace(b"tx-0001", b"tx-0002")
    failure = refused(FailInfo.BAD_MESSAGE_CHECK, read_pki_message, tampered)
    assert failure.transaction_id == "tx-0002"


def test_tampered_signature_is_refused() -> None:
    data = bytearray(request(b"x"))
    data[-10] ^= 0x40  # the signature ends the message
    refused(FailInfo.BAD_MESSAGE_CHECK, read_pki_message, bytes(data))


def test_signed_by_another_key_is_refused() -> None:
    """The certificate names the signer (same issuer and serial), but another key signed."""
    impostor = rsa_key("impostor")
    data = resign(request(b"x"), impostor)
    refused(FailInfo.BAD_MESSAGE_CHECK, read_pki_message, data)


def test_signer_certificate_absent_is_refused() -> None:
    def drop_certificates(signed: Any) -> None:
        signed["certificates"] = cms.CertificateSet([])

    data = resign(request(b"x"), client().key, signed_data=drop_certificates)
    failure = refused(FailInfo.BAD_MESSAGE_CHECK, read_pki_message, data)
    assert failure.signer is None
    assert failure.transaction_id == "tx-0001"
    assert failure.digest == "sha256"


def test_other_certificate_with_another_serial_is_not_the_signer() -> None:
    other = identity("client rsa", rsa_key("client"), serial=8)

    def swap(signed: Any) -> None:
        signed["certificates"] = cms.CertificateSet(
            [cms.CertificateChoices.load(_choice(other.certificate))]
        )

    refused(
        FailInfo.BAD_MESSAGE_CHECK,
        read_pki_message,
        resign(request(b"x"), client().key, signed_data=swap),
    )


def _choice(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(Encoding.DER)


@pytest.mark.parametrize(
    ("oid", "what"),
    [
        (TRANSACTION_ID, "transactionID"),
        (SENDER_NONCE, "senderNonce"),
        (MESSAGE_TYPE, "messageType"),
        (CONTENT_TYPE, "contentType"),
        (MESSAGE_DIGEST, "messageDigest"),
    ],
)
def test_missing_attribute_is_a_bad_request(oid: str, what: str) -> None:
    data = resign(request(b"x"), client().key, attributes=replace_attribute(oid, None))
    failure = refused(FailInfo.BAD_REQUEST, read_pki_message, data)
    assert what in str(failure)


def test_a_failure_carries_what_was_read_before_and_after_the_bad_attribute() -> None:
    """A missing transactionID still leaves the nonce, digest and signer to answer with;
    a malformed nonce still leaves the transactionID."""
    data = resign(request(b"x"), client().key, attributes=replace_attribute(TRANSACTION_ID, None))
    failure = refused(FailInfo.BAD_REQUEST, read_pki_message, data)
    assert failure.transaction_id is None
    assert failure.sender_nonce == b"N" * 16
    assert failure.digest == "sha256"
    assert failure.signer == client().certificate
    data = resign(
        request(b"x"), client().key, attributes=replace_attribute(SENDER_NONCE, printable("n"))
    )
    failure = refused(FailInfo.BAD_REQUEST, read_pki_message, data)
    assert failure.transaction_id == "tx-0001"
    assert failure.sender_nonce is None
    assert failure.signer == client().certificate


@pytest.mark.parametrize(
    ("oid", "value"),
    [
        (MESSAGE_TYPE, printable("PKCSReq")),
        (MESSAGE_TYPE, core.UTF8String("19")),
        (TRANSACTION_ID, printable("")),
        (TRANSACTION_ID, printable("x" * 129)),
        (TRANSACTION_ID, core.OctetString(b"tx")),
        (SENDER_NONCE, printable("0123456789abcdef")),
        (CONTENT_TYPE, cms.ContentType("signed_data")),
    ],
)
def test_malformed_attribute_is_a_bad_request(oid: str, value: Any) -> None:
    data = resign(request(b"x"), client().key, attributes=replace_attribute(oid, value))
    refused(FailInfo.BAD_REQUEST, read_pki_message, data)


def test_duplicate_attribute_is_a_bad_request() -> None:
    def twice(current: list[Any]) -> list[Any]:
        return [*current, next(a for a in current if a["type"].dotted == TRANSACTION_ID)]

    refused(
        FailInfo.BAD_REQUEST,
        read_pki_message,
        resign(request(b"x"), client().key, attributes=twice),
    )


def test_two_signers_are_a_bad_request() -> None:
    def two(signed: Any) -> None:
        infos = signed["signer_infos"]
        signed["signer_infos"] = cms.SignerInfos([infos[0], infos[0]])

    refused(
        FailInfo.BAD_REQUEST,
        read_pki_message,
        resign(request(b"x"), client().key, signed_data=two),
    )


def test_md5_digest_is_a_bad_alg() -> None:
    def md5(si: Any) -> None:
        si["digest_algorithm"] = {"algorithm": "md5"}

    data = resign(
        request(b"x", digest="sha1"),
        client().key,
        signer_info=md5,
        digest="md5",
    )
    failure = refused(FailInfo.BAD_ALG, read_pki_message, data)
    assert "md5" in str(failure)
    assert failure.transaction_id == "tx-0001"
    assert failure.digest is None


def test_unsupported_signature_algorithm_is_a_bad_alg() -> None:
    def pss(si: Any) -> None:
        si["signature_algorithm"] = {"algorithm": "1.2.840.113549.1.1.10"}

    failure = refused(
        FailInfo.BAD_ALG,
        read_pki_message,
        resign(request(b"x"), client().key, signer_info=pss),
    )
    assert "RSASSA-PSS" in str(failure)


def test_signature_hash_must_be_the_digest() -> None:
    def sha512_rsa(si: Any) -> None:
        si["signature_algorithm"] = {"algorithm": "sha512_rsa"}

    refused(
        FailInfo.BAD_ALG,
        read_pki_message,
        resign(request(b"x"), client().key, signer_info=sha512_rsa),
    )


def test_rsa_signature_by_an_ec_certificate_is_refused() -> None:
    def rsa_algorithm(si: Any) -> None:
        si["signature_algorithm"] = {"algorithm": "rsassa_pkcs1v15"}

    data = resign(request(b"x", signer=client("ec")), client("ec").key, signer_info=rsa_algorithm)
    refused(FailInfo.BAD_MESSAGE_CHECK, read_pki_message, data)


# --- the envelope ----------------------------------------------------------------------


def _enveloped(data: bytes) -> bytes:
    enveloped = read_pki_message(data).enveloped
    assert enveloped is not None
    return enveloped


@pytest.mark.parametrize("encryption", list(ContentEncryption))
def test_encryption_not_allowed_is_a_bad_alg(encryption: ContentEncryption) -> None:
    enveloped = _enveloped(request(b"x", encryption=encryption))
    failure = refused(
        FailInfo.BAD_ALG,
        decrypt_envelope,
        enveloped,
        ra().certificate,
        ra().key,
        allowed=ALL - {encryption},
    )
    assert {
        "aes128": "aes128-cbc",
        "aes256": "aes256-cbc",
        "des3": "des-ede3-cbc",
        "des": "des-cbc",
    }[encryption.value] in str(failure)


def _edit_envelope(enveloped: bytes, edit: Any) -> bytes:
    info = cms.ContentInfo.load(enveloped)
    edit(info["content"])
    return bytes(info.dump(force=True))


@pytest.mark.parametrize(
    ("oid", "name", "parameters"),
    [
        ("1.3.14.3.2.7", "des-cbc", core.OctetString(b"\x00" * 8)),
        (
            "1.2.840.113549.3.2",
            "rc2-cbc",
            algos.Rc2Params({"rc2_parameter_version": 58, "iv": b"\x00" * 8}),
        ),
        ("2.16.840.1.101.3.4.1.22", "aes192-cbc", core.OctetString(b"\x00" * 16)),
    ],
)
def test_other_ciphers_are_a_bad_alg_naming_them(oid: str, name: str, parameters: Any) -> None:
    def cipher(data: Any) -> None:
        data["encrypted_content_info"]["content_encryption_algorithm"] = {
            "algorithm": oid,
            "parameters": parameters,
        }

    enveloped = _edit_envelope(_enveloped(request(b"x")), cipher)
    # Single DES is known, but refused unless a provisioner allows it.
    allowed = ALL - {ContentEncryption.DES_CBC}
    failure = refused(
        FailInfo.BAD_ALG, decrypt_envelope, enveloped, ra().certificate, ra().key, allowed=allowed
    )
    assert name in str(failure)


def test_envelope_for_another_recipient_is_a_bad_message_check() -> None:
    other = identity("other RA", rsa_key("other-ra"), serial=99)
    enveloped = _enveloped(request(b"x", recipient=other.certificate))
    refused(
        FailInfo.BAD_MESSAGE_CHECK,
        decrypt_envelope,
        enveloped,
        ra().certificate,
        ra().key,
        allowed=ALL,
    )


def test_envelope_recipient_by_subject_key_identifier() -> None:
    ski = ra().certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)

    def by_key_id(data: Any) -> None:
        ktri = data["recipient_infos"][0].chosen
        ktri["version"] = "v2"
        ktri["rid"] = cms.RecipientIdentifier(name="subject_key_identifier", value=ski.value.digest)

    enveloped = _edit_envelope(_enveloped(request(b"hello")), by_key_id)
    assert decrypt_envelope(enveloped, ra().certificate, ra().key, allowed=ALL) == b"hello"


@pytest.mark.parametrize("key_transport", ["pkcs1v15", "oaep"])
def test_wrong_key_is_a_bad_message_check(key_transport: str) -> None:
    """The certificate matches but the key does not: the content key cannot be
    unwrapped (or, with implicit rejection, unwraps to garbage of the wrong length)."""
    enveloped = _enveloped(request(b"x", key_transport=key_transport))
    refused(
        FailInfo.BAD_MESSAGE_CHECK,
        decrypt_envelope,
        enveloped,
        ra().certificate,
        rsa_key("not-the-ra"),
        allowed=ALL,
    )


def test_corrupt_ciphertext_is_a_bad_message_check() -> None:
    def corrupt(data: Any) -> None:
        content = data["encrypted_content_info"]
        ciphertext = bytearray(content["encrypted_content"].native)
        ciphertext[-1] ^= 0xFF
        content["encrypted_content"] = bytes(ciphertext)

    enveloped = _edit_envelope(_enveloped(request(b"x" * 5)), corrupt)
    refused(
        FailInfo.BAD_MESSAGE_CHECK,
        decrypt_envelope,
        enveloped,
        ra().certificate,
        ra().key,
        allowed=ALL,
    )


def test_partial_block_is_a_bad_message_check() -> None:
    def cut(data: Any) -> None:
        content = data["encrypted_content_info"]
        content["encrypted_content"] = content["encrypted_content"].native[:-1]

    enveloped = _edit_envelope(_enveloped(request(b"x")), cut)
    refused(
        FailInfo.BAD_MESSAGE_CHECK,
        decrypt_envelope,
        enveloped,
        ra().certificate,
        ra().key,
        allowed=ALL,
    )


def _wrong_key_length(data: Any) -> None:
    """An AES-128 content key presented as AES-256's (the IV fits both)."""
    algorithm = data["encrypted_content_info"]["content_encryption_algorithm"]
    algorithm["algorithm"] = "2.16.840.1.101.3.4.1.42"


def _bad_padding(data: Any) -> None:
    content = data["encrypted_content_info"]
    ciphertext = bytearray(content["encrypted_content"].native)
    ciphertext[-1] ^= 0xFF
    content["encrypted_content"] = bytes(ciphertext)


def _partial_block(data: Any) -> None:
    content = data["encrypted_content_info"]
    content["encrypted_content"] = content["encrypted_content"].native[:-1]


def _other_content_key(data: Any) -> None:
    ktri = data["recipient_infos"][0].chosen
    ktri["encrypted_key"] = rsa_key("ra").public_key().encrypt(b"k" * 32, asym_padding.PKCS1v15())


def _no_key_transport(data: Any) -> None:
    """An OAEP-wrapped key labelled PKCS#1 v1.5: the key transport itself fails or, with
    implicit rejection, yields a key no one chose."""
    ktri = data["recipient_infos"][0].chosen
    ktri["key_encryption_algorithm"] = {"algorithm": "rsaes_pkcs1v15", "parameters": core.Null()}


@pytest.mark.parametrize(
    ("edit", "key_transport", "encryption"),
    [
        (_wrong_key_length, "pkcs1v15", ContentEncryption.AES128_CBC),
        (_bad_padding, "pkcs1v15", ContentEncryption.AES256_CBC),
        (_bad_padding, "oaep", ContentEncryption.DES3_CBC),
        (_partial_block, "oaep", ContentEncryption.AES256_CBC),
        (_other_content_key, "pkcs1v15", ContentEncryption.AES256_CBC),
        (_no_key_transport, "oaep", ContentEncryption.AES256_CBC),
    ],
)
def test_every_failure_after_key_transport_is_refused_alike(
    edit: Any, key_transport: str, encryption: ContentEncryption
) -> None:
    """Once the content key has been unwrapped, no failure tells which step failed (key
    transport, key length, whole blocks, padding): one failInfo, one text, no oracle."""
    enveloped = _enveloped(request(b"x" * 40, key_transport=key_transport, encryption=encryption))
    failure = refused(
        FailInfo.BAD_MESSAGE_CHECK,
        decrypt_envelope,
        _edit_envelope(enveloped, edit),
        ra().certificate,
        ra().key,
        allowed=ALL,
    )
    assert failure.text == "the content cannot be decrypted"


@pytest.mark.parametrize("key_transport", ["pkcs1v15", "oaep"])
def test_a_wrong_private_key_is_refused_alike(key_transport: str) -> None:
    enveloped = _enveloped(request(b"x", key_transport=key_transport))
    failure = refused(
        FailInfo.BAD_MESSAGE_CHECK,
        decrypt_envelope,
        enveloped,
        ra().certificate,
        rsa_key("not-the-ra"),
        allowed=ALL,
    )
    assert failure.text == "the content cannot be decrypted"


def test_envelope_garbage_is_a_bad_request() -> None:
    for data in (b"", b"\x30\x00", request(b"x")):
        refused(
            FailInfo.BAD_REQUEST,
            decrypt_envelope,
            data,
            ra().certificate,
            ra().key,
            allowed=ALL,
        )


def test_oaep_with_sha384_is_a_bad_alg() -> None:
    def sha384(data: Any) -> None:
        ktri = data["recipient_infos"][0].chosen
        ktri["key_encryption_algorithm"] = {
            "algorithm": "rsaes_oaep",
            "parameters": {
                "hash_algorithm": {"algorithm": "sha384"},
                "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": "sha384"}},
            },
        }

    enveloped = _edit_envelope(_enveloped(request(b"x", key_transport="oaep")), sha384)
    refused(FailInfo.BAD_ALG, decrypt_envelope, enveloped, ra().certificate, ra().key, allowed=ALL)


# --- CertRep ----------------------------------------------------------------------------


def _issued() -> x509.Certificate:
    return identity("device-1", rsa_key("device"), serial=1234, issuer="devid CA").certificate


def _cert_rep(**kwargs: Any) -> bytes:
    arguments: dict[str, Any] = {
        "signer": ra(),
        "transaction_id": "tx-0001",
        "recipient_nonce": b"N" * 16,
        "sender_nonce": b"S" * 16,
        "now": NOW,
        "random": CountingRandom(b"rep"),
    }
    arguments.update(kwargs)
    return build_cert_rep(**arguments)


@pytest.mark.parametrize("encryption", list(ContentEncryption))
@pytest.mark.parametrize("digest", ["sha1", "sha256", "sha512"])
def test_cert_rep_success_round_trip(encryption: ContentEncryption, digest: str) -> None:
    issued = _issued()
    data = _cert_rep(
        status=PKIStatus.SUCCESS,
        content=certs_only([issued]),
        recipient=client().certificate,
        encryption=encryption,
        digest=digest,
    )
    reply = read_cert_rep(
        data, trusted=[ra().certificate], recipient=client().certificate, key=client().key
    )
    assert reply.status is PKIStatus.SUCCESS
    assert reply.fail_info is None
    assert reply.fail_text is None
    assert reply.transaction_id == "tx-0001"
    assert reply.recipient_nonce == b"N" * 16
    assert reply.sender_nonce == b"S" * 16
    assert reply.certificates == (issued,)
    assert reply.crls == ()
    assert reply.signed_at == NOW
    # Without the key the content stays closed.
    assert read_cert_rep(data, trusted=[ra().certificate]).certificates == ()


def test_cert_rep_encryption_refused_by_the_client() -> None:
    data = _cert_rep(
        status=PKIStatus.SUCCESS,
        content=certs_only([_issued()]),
        recipient=client().certificate,
        encryption=ContentEncryption.DES3_CBC,
    )
    refused(
        FailInfo.BAD_ALG,
        read_cert_rep,
        data,
        trusted=[ra().certificate],
        recipient=client().certificate,
        key=client().key,
        allowed=frozenset({ContentEncryption.AES256_CBC}),
    )


def test_cert_rep_failure_with_text() -> None:
    data = _cert_rep(
        status=PKIStatus.FAILURE,
        fail_info=FailInfo.BAD_REQUEST,
        fail_text="challenge password is wrong — ünïcode",
        recipient_nonce=None,
    )
    reply = read_cert_rep(data, trusted=[ra().certificate])
    assert reply.status is PKIStatus.FAILURE
    assert reply.fail_info is FailInfo.BAD_REQUEST
    assert reply.fail_text == "challenge password is wrong — ünïcode"
    assert reply.recipient_nonce is None
    assert reply.certificates == ()
    signed = cms.ContentInfo.load(data)["content"]
    assert isinstance(signed["encap_content_info"]["content"], core.Void)


@pytest.mark.parametrize("info", list(FailInfo))
def test_cert_rep_every_fail_info(info: FailInfo) -> None:
    reply = read_cert_rep(
        _cert_rep(status=PKIStatus.FAILURE, fail_info=info), trusted=[ra().certificate]
    )
    assert reply.fail_info is info
    assert reply.fail_text is None


def test_cert_rep_pending() -> None:
    data = _cert_rep(status=PKIStatus.PENDING, signer=identity("ec RA", client("ec").key))
    signer = identity("ec RA", client("ec").key)
    reply = read_cert_rep(data, trusted=[signer.certificate])
    assert reply.status is PKIStatus.PENDING
    assert reply.fail_info is None


def test_cert_rep_carries_the_certificates_given() -> None:
    extra = identity("devid CA", rsa_key("ca"), serial=2).certificate
    data = _cert_rep(status=PKIStatus.PENDING, certificates=[extra, ra().certificate])
    certificates = cms.ContentInfo.load(data)["content"]["certificates"]
    ders = sorted(c.chosen.dump() for c in certificates)
    assert ders == sorted(
        [ra().certificate.public_bytes(Encoding.DER), extra.public_bytes(Encoding.DER)]
    )


def test_cert_rep_from_an_untrusted_signer_is_refused() -> None:
    data = _cert_rep(status=PKIStatus.PENDING)
    refused(FailInfo.BAD_MESSAGE_CHECK, read_cert_rep, data, trusted=[client().certificate])
    refused(FailInfo.BAD_MESSAGE_CHECK, read_cert_rep, data, trusted=[])


def test_cert_rep_signed_attributes_are_sorted_der() -> None:
    data = _cert_rep(status=PKIStatus.FAILURE, fail_info=FailInfo.BAD_TIME, fail_text="late")
    attrs = cms.ContentInfo.load(data)["content"]["signer_infos"][0]["signed_attrs"]
    encodings = [a.dump() for a in attrs]
    assert encodings == sorted(encodings)
    assert {a["type"].dotted for a in attrs} == {
        CONTENT_TYPE,
        MESSAGE_DIGEST,
        "1.2.840.113549.1.9.5",
        MESSAGE_TYPE,
        "2.16.840.1.113733.1.9.3",
        "2.16.840.1.113733.1.9.4",
        TRANSACTION_ID,
        SENDER_NONCE,
        "2.16.840.1.113733.1.9.6",
        "2.16.840.1.113733.1.9.24",
    }


@pytest.mark.parametrize(
    "kwargs",
    [
        {"status": PKIStatus.SUCCESS},
        {"status": PKIStatus.SUCCESS, "content": b"x"},
        {"status": PKIStatus.FAILURE},
        {"status": PKIStatus.PENDING, "fail_info": FailInfo.BAD_ALG},
        {"status": PKIStatus.PENDING, "content": b"x"},
        {"status": PKIStatus.PENDING, "digest": "md5"},
        {"status": PKIStatus.PENDING, "transaction_id": "tx_0001"},
    ],
)
def test_cert_rep_programming_errors(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        _cert_rep(**kwargs)


def test_a_request_is_not_a_cert_rep() -> None:
    refused(FailInfo.BAD_REQUEST, read_cert_rep, request(b"x"), trusted=[client().certificate])


# --- certs-only ---------------------------------------------------------------------------


def test_certs_only_round_trip_with_crls() -> None:
    ca = identity("devid CA", rsa_key("ca"), serial=2)
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(NOW)
        .next_update(NOW.replace(day=2))
        .sign(ca.key, hashes.SHA256())
        .public_bytes(Encoding.DER)
    )
    data = certs_only([ca.certificate, _issued()], [crl])
    assert read_certs_only(data) == ((ca.certificate, _issued()), (crl,))
    assert read_certs_only(certs_only([])) == ((), ())


def test_certs_only_refuses_signers_and_garbage() -> None:
    refused(FailInfo.BAD_REQUEST, read_certs_only, request(b"x"))
    refused(FailInfo.BAD_REQUEST, read_certs_only, b"\x30\x80")


# --- IssuerAndSubject, IssuerAndSerialNumber ---------------------------------------------


def test_issuer_and_subject_round_trip_keeps_string_types() -> None:
    issuer = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example"),
            x509.NameAttribute(NameOID.COMMON_NAME, "devid CA"),
        ]
    )
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "gerät-1"),
            x509.NameAttribute(NameOID.EMAIL_ADDRESS, "a@example.com"),
        ]
    )
    data = issuer_and_subject(issuer, subject)
    read_issuer, read_subject = read_issuer_and_subject(data)
    assert (read_issuer, read_subject) == (issuer, subject)
    # Byte for byte: PrintableString, UTF8String and IA5String stay what they were.
    assert read_issuer.public_bytes() == issuer.public_bytes()
    assert read_subject.public_bytes() == subject.public_bytes()


def test_issuer_and_serial_round_trip() -> None:
    issuer = ra().certificate.subject
    for serial in (1, 0x4700000002F5400D7585DD8788000000000002, 2**159):
        assert read_issuer_and_serial(issuer_and_serial(issuer, serial)) == (issuer, serial)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x30\x00",
        b"\x30\x04\x30\x00\x30\x00\x00",
        # a name attribute that is not a string (an INTEGER common name)
        bytes.fromhex("3014" + "3010310e300c0603550403" + "020500000000ff" + "3000")[:0]
        + bytes.fromhex("3012300e310c300a06035504030203010203" + "3000"),
    ],
)
def test_issuer_and_subject_garbage_is_a_bad_request(data: bytes) -> None:
    refused(FailInfo.BAD_REQUEST, read_issuer_and_subject, data)
    refused(FailInfo.BAD_REQUEST, read_issuer_and_serial, data)


def test_issuer_and_serial_is_not_issuer_and_subject() -> None:
    data = issuer_and_serial(ra().certificate.subject, 5)
    refused(FailInfo.BAD_REQUEST, read_issuer_and_subject, data)
    refused(
        FailInfo.BAD_REQUEST,
        read_issuer_and_serial,
        issuer_and_subject(ra().certificate.subject, ra().certificate.subject),
    )


# --- BER encryptedContent, and the two helpers the service uses -------------------------


def _constructed(enveloped: bytes, chunk: int, *, chunk_tag: int = 0x04) -> bytes:
    """*enveloped* with its encryptedContent sent as Go's pkcs7 sends it: [0] constructed,
    with a definite length, holding OCTET STRING chunks of *chunk* bytes (*chunk_tag*
    gives the last chunk another tag)."""
    info = cms.ContentInfo.load(enveloped)
    data = info["content"]
    content = data["encrypted_content_info"]
    ciphertext = content["encrypted_content"].native
    pieces = [ciphertext[i : i + chunk] for i in range(0, len(ciphertext), chunk)]
    chunks = b"".join(tlv(0x04, piece) for piece in pieces[:-1]) + tlv(chunk_tag, pieces[-1])
    encrypted_content_info = tlv(
        0x30,
        content["content_type"].dump()
        + content["content_encryption_algorithm"].dump()
        + tlv(0xA0, chunks),
    )
    enveloped_data = tlv(
        0x30, data["version"].dump() + data["recipient_infos"].dump() + encrypted_content_info
    )
    return tlv(0x30, info["content_type"].dump() + tlv(0xA0, enveloped_data))


@pytest.mark.parametrize("chunk", [1, 16, 1000])
def test_constructed_encrypted_content_decrypts(chunk: int) -> None:
    enveloped = _enveloped(request(b"a CSR" * 40))
    constructed = _constructed(enveloped, chunk)
    assert constructed != enveloped
    assert decrypt_envelope(constructed, ra().certificate, ra().key, allowed=ALL) == b"a CSR" * 40


def test_constructed_encrypted_content_with_a_bad_chunk_is_a_bad_request() -> None:
    broken = _constructed(_enveloped(request(b"x" * 40)), 16, chunk_tag=0x02)
    refused(FailInfo.BAD_REQUEST, decrypt_envelope, broken, ra().certificate, ra().key, allowed=ALL)


def test_open_envelope_names_the_cipher_the_sender_used() -> None:
    for encryption in ContentEncryption:
        enveloped = _enveloped(request(b"x", encryption=encryption))
        assert open_envelope(enveloped, ra().certificate, ra().key, allowed=ALL) == (
            b"x",
            encryption,
        )


def test_sign_content_reads_back_as_signed_id_data() -> None:
    content = certs_only([ra().certificate])
    data = sign_content(signer=ra(), content=content, now=NOW)
    signed = cms.ContentInfo.load(data)["content"]
    assert signed["encap_content_info"]["content"].native == content
    attributes = {a["type"].dotted for a in signed["signer_infos"][0]["signed_attrs"]}
    assert attributes == {CONTENT_TYPE, MESSAGE_DIGEST, "1.2.840.113549.1.9.5"}
