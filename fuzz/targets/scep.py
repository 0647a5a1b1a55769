"""SCEP messages (engine/scep): what ``POST /scep/{provisioner}?operation=PKIOperation``
runs before any challenge or certificate is checked — the PKIMessage's SignedData and
its signature, the EnvelopedData decrypted with the RA key, then by message type the
CSR, IssuerAndSubject or IssuerAndSerialNumber inside — and a client's CertRep reader.

The hosts answer every :class:`engine.scep.SCEPFailure` with a CertRep FAILURE, so that
(with a well-formed failInfo) is the refusal let through here; anything else is a crash.

The first byte chooses the input's form, the rest is the input:

* ``0x00`` a PKIMessage (the whole pipeline, with the RA of ``fuzz/fixtures/scep``; the
  content encryption the service answers with is read from the envelope too);
* ``0x01`` an EnvelopedData for that RA (decrypted, then every content reader);
* ``0x02`` a CSR; ``0x03`` a CertificationRequestInfo the target signs with
  :data:`SIGNING_KEY`, so changed requests pass the self-signature;
* ``0x04`` an IssuerAndSubject or IssuerAndSerialNumber;
* ``0x05`` a CertRep (trusting the RA, decrypted with the client key) or certs-only PKCS#7;
* ``0x06`` the content of a request the target encrypts to the RA and signs with the
  client key (a valid message around any content);
* ``0x07`` the signed attributes (the SET OF's contents) of a request the target signs
  with the client key (any attributes, with a valid signature).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from engine.der import tlv
from engine.ports import CountingRandom
from engine.scep import (
    ContentEncryption,
    FailInfo,
    MessageType,
    SCEPFailure,
    Signer,
    build_pki_message,
    read_cert_rep,
    read_certs_only,
    read_csr,
    read_issuer_and_serial,
    read_issuer_and_subject,
    read_pki_message,
)
from engine.scep.envelope import open_envelope
from fuzz.harness import FIXTURES_DIR, NOW

MESSAGE, ENVELOPE, CSR, RESIGN_CSR, NAMES, CERT_REP, CONTENT, ATTRIBUTES = range(8)
FORMS = 8
SIGNING_KEY = ec.derive_private_key(0x5CE9_5EED, ec.SECP256R1())
_ECDSA_WITH_SHA256 = bytes.fromhex("300a06082a8648ce3d040302")
ALL = frozenset(ContentEncryption)
T = TypeVar("T")


def _identity(name: str) -> Signer:
    directory = FIXTURES_DIR / "scep"
    certificate = x509.load_pem_x509_certificate((directory / f"{name}.pem").read_bytes())
    key = load_pem_private_key((directory / f"{name}.key").read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return Signer(certificate=certificate, key=key)


RA = _identity("ra")
CLIENT = _identity("client")
assert isinstance(RA.key, rsa.RSAPrivateKey) and isinstance(CLIENT.key, rsa.RSAPrivateKey)
RA_KEY: rsa.RSAPrivateKey = RA.key
CLIENT_KEY: rsa.RSAPrivateKey = CLIENT.key


class BadFailure(AssertionError):
    """A SCEPFailure the server could not answer with (no failInfo, no text)."""


def refused(parse: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """Run *parse*; a well-formed SCEPFailure gives None, anything else propagates."""
    try:
        return parse(*args, **kwargs)
    except SCEPFailure as failure:
        if not isinstance(failure.fail_info, FailInfo) or not isinstance(failure.text, str):
            raise BadFailure(repr(failure)) from None
        if failure.transaction_id is not None and not failure.transaction_id:
            raise BadFailure("an empty transactionID in a failure") from None
        return None


def sign_request_info(info: bytes) -> bytes:
    """A CSR of *info* (a CertificationRequestInfo DER) signed by :data:`SIGNING_KEY`."""
    signature = SIGNING_KEY.sign(info, ec.ECDSA(hashes.SHA256()))
    return tlv(0x30, info + _ECDSA_WITH_SHA256 + tlv(0x03, b"\x00" + signature))


def content_readers(plaintext: bytes, message_type: int | None = None) -> None:
    """What the service reads in a decrypted request, by its message type (all of them
    when the type is not known)."""
    if message_type in (
        None,
        MessageType.PKCS_REQ,
        MessageType.RENEWAL_REQ,
        MessageType.UPDATE_REQ,
    ):
        refused(read_csr, plaintext)
    if message_type in (None, MessageType.CERT_POLL):
        refused(read_issuer_and_subject, plaintext)
    if message_type in (None, MessageType.GET_CERT, MessageType.GET_CRL):
        refused(read_issuer_and_serial, plaintext)


def opened(enveloped: bytes) -> bytes | None:
    """What the service runs on a request's envelope: its plaintext, and the cipher it
    answers in (None when refused)."""
    found = refused(open_envelope, enveloped, RA.certificate, RA_KEY, allowed=ALL)
    if found is None:
        return None
    plaintext, encryption = found
    if encryption not in ALL:
        raise AssertionError(f"open_envelope gave the cipher {encryption!r}")
    return plaintext


def pipeline(data: bytes) -> None:
    message = refused(read_pki_message, data)
    if message is None or message.enveloped is None:
        return
    plaintext = opened(message.enveloped)
    if plaintext is not None:
        content_readers(plaintext, message.message_type)


def message_with_content(content: bytes) -> bytes:
    return build_pki_message(
        message_type=MessageType.PKCS_REQ,
        transaction_id="fuzz-0001",
        sender_nonce=b"fuzz-nonce-16byt",
        content=content,
        recipient=RA.certificate,
        signer=CLIENT,
        now=NOW,
        random=CountingRandom(b"fuzz"),
    )


def _without_content(der: bytes) -> bytes:
    info = cms.ContentInfo.load(der)
    info["content"]["encap_content_info"] = {"content_type": "data"}
    return bytes(info.dump(force=True))


# A request without eContent (its signed attributes are the input: the messageDigest
# they must carry is that of empty content, SHA-256).
_TEMPLATE = _without_content(message_with_content(b"fuzz"))


def message_with_attributes(contents: bytes) -> bytes | None:
    """:data:`_TEMPLATE` with *contents* as its signed attributes, signed again by the
    client key; None when asn1crypto cannot even hold them (not a message to test)."""
    to_sign = tlv(0x31, contents)
    signature = CLIENT_KEY.sign(to_sign, padding.PKCS1v15(), hashes.SHA256())
    try:
        info = cms.ContentInfo.load(_TEMPLATE)
        signer_info = info["content"]["signer_infos"][0]
        signer_info["signed_attrs"] = cms.CMSAttributes(contents=contents)
        signer_info["signature"] = signature
        return bytes(info.dump(force=False))
    except Exception:  # the template cannot take these bytes: nothing was parsed yet
        return None


def test_one_input(data: bytes) -> None:
    if not data:
        return
    form, rest = data[0] % FORMS, data[1:]
    if form == MESSAGE:
        pipeline(rest)
    elif form == ENVELOPE:
        plaintext = opened(rest)
        if plaintext is not None:
            content_readers(plaintext)
    elif form == CSR:
        refused(read_csr, rest)
    elif form == RESIGN_CSR:
        refused(read_csr, sign_request_info(rest))
    elif form == NAMES:
        content_readers(rest)
    elif form == CERT_REP:
        refused(
            read_cert_rep,
            rest,
            trusted=[RA.certificate],
            recipient=CLIENT.certificate,
            key=CLIENT_KEY,
        )
        refused(read_certs_only, rest)
    elif form == CONTENT:
        pipeline(message_with_content(rest))
    else:
        message = message_with_attributes(rest)
        if message is not None:
            pipeline(message)
