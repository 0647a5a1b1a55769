"""Identities, CSRs and re-signing helpers for the SCEP message tests (tests/engine/test_scep_*.py,
tests/property/test_scep_properties.py)."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from asn1crypto import cms, core
from asn1crypto import csr as asn1_csr
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import AttributeOID, NameOID

from engine.ports import CountingRandom
from engine.scep import ContentEncryption, MessageType, Signer, build_pki_message

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
KeyTypes = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@functools.cache
def rsa_key(label: str, bits: int = 2048) -> rsa.RSAPrivateKey:
    """An RSA key per label, made once per test run."""
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@functools.cache
def ec_key(label: str) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def identity(
    common_name: str,
    key: KeyTypes,
    *,
    serial: int = 1,
    issuer: str | None = None,
    key_identifier: bool = True,
) -> Signer:
    """A self-signed (or issuer-named, still self-signed) certificate for *key*."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    issuer_name = (
        subject if issuer is None else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)])
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=365))
    )
    if key_identifier:
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
    return Signer(certificate=builder.sign(key, hashes.SHA256()), key=key)


@functools.cache
def ra() -> Signer:
    """The server's RA: an RSA-2048 identity that signs CertReps and decrypts requests."""
    return identity("devid SCEP RA", rsa_key("ra"), serial=0x5CE9)


@functools.cache
def client(kind: str = "rsa") -> Signer:
    """A client's self-signed signer certificate, RSA-2048 or P-256."""
    key: KeyTypes = rsa_key("client") if kind == "rsa" else ec_key("client")
    return identity(f"client {kind}", key, serial=7)


def csr(
    key: KeyTypes,
    common_name: str = "device-1",
    *,
    challenge: str | None = None,
    challenge_type: _ASN1Type = _ASN1Type.PrintableString,
) -> bytes:
    """A DER CSR, with a challengePassword of the given string type when *challenge* is set."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    )
    if challenge is not None:
        builder = builder.add_attribute(
            AttributeOID.CHALLENGE_PASSWORD, challenge.encode("utf-8"), _tag=challenge_type
        )
    return builder.sign(key, hashes.SHA256()).public_bytes(Encoding.DER)


def sign_request_info(info: Any, key: KeyTypes) -> bytes:
    """A CSR of the asn1crypto CertificationRequestInfo *info*, signed by *key*
    (sha256WithRSAEncryption or ecdsa-with-SHA256)."""
    der = info.dump()
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(der, padding.PKCS1v15(), hashes.SHA256())
        algorithm = "sha256_rsa"
    else:
        signature = key.sign(der, ec.ECDSA(hashes.SHA256()))
        algorithm = "sha256_ecdsa"
    request = asn1_csr.CertificationRequest(
        {
            "certification_request_info": info,
            "signature_algorithm": {"algorithm": algorithm},
            "signature": signature,
        }
    )
    return bytes(request.dump())


def edit_csr(der: bytes, key: KeyTypes, edit: Callable[[Any], None]) -> bytes:
    """*der* with its CertificationRequestInfo changed by *edit*, signed again by *key*."""
    request = asn1_csr.CertificationRequest.load(der)
    info = request["certification_request_info"]
    fresh = asn1_csr.CertificationRequestInfo(
        {
            "version": info["version"],
            "subject": info["subject"],
            "subject_pk_info": info["subject_pk_info"],
            "attributes": info["attributes"],
        }
    )
    edit(fresh)
    return sign_request_info(fresh, key)


def request(
    content: bytes,
    *,
    signer: Signer | None = None,
    message_type: MessageType = MessageType.PKCS_REQ,
    transaction_id: str = "tx-0001",
    sender_nonce: bytes = b"N" * 16,
    encryption: ContentEncryption = ContentEncryption.AES256_CBC,
    digest: str = "sha256",
    key_transport: str = "pkcs1v15",
    recipient: x509.Certificate | None = None,
) -> bytes:
    """A PKIMessage from a client to :func:`ra`."""
    return build_pki_message(
        message_type=message_type,
        transaction_id=transaction_id,
        sender_nonce=sender_nonce,
        content=content,
        recipient=recipient if recipient is not None else ra().certificate,
        signer=signer if signer is not None else client(),
        now=NOW,
        random=CountingRandom(),
        encryption=encryption,
        digest=digest,
        key_transport=key_transport,
    )


def resign(
    der: bytes,
    key: KeyTypes,
    *,
    attributes: Callable[[list[Any]], list[Any]] | None = None,
    signer_info: Callable[[Any], None] | None = None,
    signed_data: Callable[[Any], None] | None = None,
    digest: str | None = None,
) -> bytes:
    """A SignedData message changed and signed again by *key*: *attributes* maps the list of
    signed attributes to a new one, *signer_info* and *signed_data* edit those (asn1crypto)
    before the signature is made; *digest* names the hash to sign with (default: the
    SignerInfo's)."""
    info = cms.ContentInfo.load(der)
    data = info["content"]
    si = data["signer_infos"][0]
    current = list(si["signed_attrs"])
    if attributes is not None:
        current = attributes(current)
    si["signed_attrs"] = cms.CMSAttributes(current)
    if signer_info is not None:
        signer_info(si)
    if signed_data is not None:
        signed_data(data)
    name = digest or si["digest_algorithm"]["algorithm"].native
    to_sign = cms.CMSAttributes(list(si["signed_attrs"])).dump(force=True)
    algorithm = {"sha1": hashes.SHA1(), "sha256": hashes.SHA256(), "md5": hashes.MD5()}[name]
    if isinstance(key, rsa.RSAPrivateKey):
        si["signature"] = key.sign(to_sign, padding.PKCS1v15(), algorithm)
    else:
        si["signature"] = key.sign(to_sign, ec.ECDSA(algorithm))
    return bytes(info.dump(force=True))


def attribute(oid: str, value: Any) -> Any:
    return cms.CMSAttribute({"type": oid, "values": [value]})


def replace_attribute(oid: str, value: Any | None) -> Callable[[list[Any]], list[Any]]:
    """An *attributes* edit for :func:`resign`: the attribute *oid* dropped, or given *value*."""

    def edit(current: list[Any]) -> list[Any]:
        kept = [a for a in current if a["type"].dotted != oid]
        return kept if value is None else [*kept, attribute(oid, value)]

    return edit


def printable(text: str) -> Any:
    return core.PrintableString(text)


def digest_of(data: bytes, name: str = "sha256") -> bytes:
    return hashlib.new(name, data).digest()
