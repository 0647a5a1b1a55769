"""SCEP PKI messages (RFC 8894 section 3): CMS SignedData with the SCEP signed attributes,
read (requests on the server, CertRep on a client) and built (CertRep on the server,
requests for clients and tests)."""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import attrs
from asn1crypto import cms, core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from ..ports import Random
from .envelope import decrypt_envelope, envelope, identifies
from .structures import (
    DIGEST_NAMES,
    HASHES,
    algorithm_name,
    load_strict,
    parsing,
    read_certificates,
    read_certs_only,
)
from .types import ContentEncryption, FailInfo, MessageType, PKIStatus, SCEPFailure

T = TypeVar("T")
_SCEP = "2.16.840.1.113733.1.9."
OID_MESSAGE_TYPE = _SCEP + "2"
OID_PKI_STATUS = _SCEP + "3"
OID_FAIL_INFO = _SCEP + "4"
OID_SENDER_NONCE = _SCEP + "5"
OID_RECIPIENT_NONCE = _SCEP + "6"
OID_TRANSACTION_ID = _SCEP + "7"
OID_FAIL_INFO_TEXT = _SCEP + "24"
_CONTENT_TYPE = "1.2.840.113549.1.9.3"
_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
_SIGNING_TIME = "1.2.840.113549.1.9.5"
_ID_DATA = "1.2.840.113549.1.7.1"
_ID_SIGNED_DATA = "1.2.840.113549.1.7.2"
# The attributes read here; each may appear once, with one value.
_READ = frozenset(
    {
        OID_MESSAGE_TYPE,
        OID_PKI_STATUS,
        OID_FAIL_INFO,
        OID_SENDER_NONCE,
        OID_RECIPIENT_NONCE,
        OID_TRANSACTION_ID,
        OID_FAIL_INFO_TEXT,
        _CONTENT_TYPE,
        _MESSAGE_DIGEST,
        _SIGNING_TIME,
    }
)
# SignerInfo signature algorithms: (key kind, hash or None for "the digest algorithm").
_SIGNATURES: dict[str, tuple[str, str | None]] = {
    "1.2.840.113549.1.1.1": ("rsa", None),
    "1.2.840.113549.1.1.5": ("rsa", "sha1"),
    "1.2.840.113549.1.1.11": ("rsa", "sha256"),
    "1.2.840.113549.1.1.12": ("rsa", "sha384"),
    "1.2.840.113549.1.1.13": ("rsa", "sha512"),
    "1.2.840.10045.4.1": ("ecdsa", "sha1"),
    "1.2.840.10045.4.3.2": ("ecdsa", "sha256"),
    "1.2.840.10045.4.3.3": ("ecdsa", "sha384"),
    "1.2.840.10045.4.3.4": ("ecdsa", "sha512"),
}
_PRINTABLE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 '()+,-./:=?")
MAX_TRANSACTION_ID = 128
NONCE_SIZES = range(8, 65)


@attrs.frozen
class Signer:
    """The identity that signs messages (server: the RA certificate; client: its signer
    certificate) and its private key."""

    certificate: x509.Certificate
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@attrs.frozen
class PKIMessage:
    """A request whose outer signature has been verified."""

    message_type: int  # as sent (an unknown number is kept; the service refuses it)
    transaction_id: str
    sender_nonce: bytes
    signer: x509.Certificate  # the certificate whose key made the (verified) signature
    certificates: tuple[x509.Certificate, ...]
    digest: str  # "sha1" | "sha256" | "sha384" | "sha512": the signerInfo's digest algorithm
    enveloped: bytes | None  # the eContent (EnvelopedData DER), None when absent
    signed_at: datetime | None  # signingTime when present, in UTC
    der: bytes = attrs.field(repr=False)


@attrs.frozen
class CertRep:
    """A CertRep read by a client."""

    status: PKIStatus
    fail_info: FailInfo | None
    fail_text: str | None
    transaction_id: str
    recipient_nonce: bytes | None
    sender_nonce: bytes | None
    certificates: tuple[x509.Certificate, ...]  # decrypted content's certificates (SUCCESS)
    crls: tuple[bytes, ...]
    signed_at: datetime | None = None  # signingTime when present, in UTC


# --- reading -----------------------------------------------------------------------


class _Context:
    """What has been read of a message so far, for the SCEPFailure that refuses it."""

    def __init__(self) -> None:
        self.transaction_id: str | None = None
        self.sender_nonce: bytes | None = None
        self.signer: x509.Certificate | None = None
        self.digest: str | None = None

    def fail(self, info: FailInfo, text: str) -> SCEPFailure:
        return SCEPFailure(
            info,
            text,
            transaction_id=self.transaction_id,
            sender_nonce=self.sender_nonce,
            signer=self.signer,
            digest=self.digest,
        )


@attrs.frozen
class _Signed:
    message_type: int
    transaction_id: str
    sender_nonce: bytes | None
    signer: x509.Certificate
    certificates: tuple[x509.Certificate, ...]
    digest: str
    content: bytes | None
    signed_at: datetime | None
    attributes: dict[str, Any]


@attrs.frozen
class _Parsed:
    signer_info: Any
    certificates: tuple[x509.Certificate, ...]
    asn1_certificates: tuple[Any, ...]
    content: bytes | None
    attributes: dict[str, Any]
    signed_attributes: bytes


def _parse(data: bytes, ctx: _Context) -> _Parsed:
    info = load_strict(cms.ContentInfo, data, "SCEP message")

    def read() -> _Parsed:
        if info["content_type"].dotted != _ID_SIGNED_DATA:
            raise ctx.fail(FailInfo.BAD_REQUEST, "SCEP message is not a CMS SignedData")
        signed = info["content"]
        signer_infos = signed["signer_infos"]
        if len(signer_infos) != 1:
            raise ctx.fail(
                FailInfo.BAD_REQUEST,
                f"SCEP message must have one signer, not {len(signer_infos)}",
            )
        signer_info = signer_infos[0]
        encapsulated = signed["encap_content_info"]
        if encapsulated["content_type"].dotted != _ID_DATA:
            raise ctx.fail(FailInfo.BAD_REQUEST, "SCEP message content is not id-data")
        econtent = encapsulated["content"]
        content = None if isinstance(econtent, core.Void) else econtent.native
        if content is not None and not isinstance(content, bytes):
            raise ValueError("eContent is not an OCTET STRING")
        choices = signed["certificates"]
        asn1_certificates = (
            ()
            if isinstance(choices, core.Void)
            else tuple(c.chosen for c in choices if c.name == "certificate")
        )
        certificates = tuple(read_certificates(choices))
        signed_attrs = signer_info["signed_attrs"]
        if isinstance(signed_attrs, core.Void):
            raise ctx.fail(FailInfo.BAD_REQUEST, "SCEP message has no signed attributes")
        attributes: dict[str, Any] = {}
        for attribute in signed_attrs:
            oid = attribute["type"].dotted
            if oid not in _READ:
                continue
            if oid in attributes:
                raise ctx.fail(FailInfo.BAD_REQUEST, f"signed attribute {oid} appears twice")
            values = attribute["values"]
            if len(values) != 1:
                raise ctx.fail(FailInfo.BAD_REQUEST, f"signed attribute {oid} must have one value")
            attributes[oid] = values[0]
        # The signature covers the DER SET OF the attributes, as sent.
        as_set = cms.CMSAttributes(contents=signed_attrs.contents).dump()
        return _Parsed(
            signer_info=signer_info,
            certificates=certificates,
            asn1_certificates=asn1_certificates,
            content=content,
            attributes=attributes,
            signed_attributes=bytes(as_set),
        )

    return parsing("SCEP message", read, fail=ctx.fail)


def _string(value: Any, spec: Any, what: str, ctx: _Context) -> str:
    def read() -> str:
        text = value.parse(spec).native
        if not isinstance(text, str):
            raise ValueError(f"{what} is not a string")
        return text

    text = parsing(what, read, fail=ctx.fail)
    if spec is core.PrintableString and not _PRINTABLE.issuperset(text):
        raise ctx.fail(FailInfo.BAD_REQUEST, f"{what} has characters a PrintableString cannot hold")
    return text


def _octets(value: Any, what: str, ctx: _Context) -> bytes:
    octets = parsing(what, lambda: value.parse(core.OctetString).native, fail=ctx.fail)
    if not isinstance(octets, bytes) or len(octets) not in NONCE_SIZES:
        raise ctx.fail(
            FailInfo.BAD_REQUEST,
            f"{what} must be {NONCE_SIZES.start} to {NONCE_SIZES.stop - 1} bytes",
        )
    return octets


def _number(value: Any, what: str, ctx: _Context) -> int:
    text = _string(value, core.PrintableString, what, ctx)
    if not (text.isascii() and text.isdigit() and len(text) <= 9):
        raise ctx.fail(FailInfo.BAD_REQUEST, f"{what} is not a decimal number")
    return int(text)


def _required(attributes: dict[str, Any], oid: str, what: str, ctx: _Context) -> Any:
    value = attributes.get(oid)
    if value is None:
        raise ctx.fail(FailInfo.BAD_REQUEST, f"SCEP message has no {what} attribute")
    return value


def _read_signed(
    data: bytes,
    ctx: _Context,
    *,
    signers: Callable[[_Parsed], Sequence[tuple[x509.Certificate, Any]]],
    sender_nonce_required: bool,
) -> _Signed:
    parsed = _parse(data, ctx)
    attributes = parsed.attributes
    signer_info = parsed.signer_info
    # What identifies the request and its sender is read first, each part on its own, so
    # that a refusal of anything in the message can still be addressed to it.
    transaction_id, transaction_error = _attempt(lambda: _transaction_id(attributes, ctx))
    ctx.transaction_id = transaction_id
    sender_nonce, nonce_error = None, None
    if sender_nonce_required or OID_SENDER_NONCE in attributes:
        sender_nonce, nonce_error = _attempt(
            lambda: _octets(
                _required(attributes, OID_SENDER_NONCE, "senderNonce", ctx), "senderNonce", ctx
            )
        )
    ctx.sender_nonce = sender_nonce
    digest_oid, digest_error = _attempt(
        lambda: parsing(
            "digestAlgorithm",
            lambda: str(signer_info["digest_algorithm"]["algorithm"].dotted),
            fail=ctx.fail,
        )
    )
    digest = DIGEST_NAMES.get(digest_oid or "")
    ctx.digest = digest
    signer, signer_error = _attempt(lambda: _find_signer(signers(parsed), signer_info, ctx))
    ctx.signer = signer

    for error in (transaction_error, nonce_error):
        if error is not None:
            raise ctx.fail(error.fail_info, error.text)
    assert transaction_id is not None
    message_type = _number(
        _required(attributes, OID_MESSAGE_TYPE, "messageType", ctx), "messageType", ctx
    )
    signed_at = None
    if _SIGNING_TIME in attributes:
        signed_at = parsing(
            "signingTime", lambda: _utc(attributes[_SIGNING_TIME].native), fail=ctx.fail
        )
    if digest_error is not None:
        raise ctx.fail(digest_error.fail_info, digest_error.text)
    if digest is None:
        raise ctx.fail(
            FailInfo.BAD_ALG,
            f"digest algorithm {algorithm_name(digest_oid or '')} is not supported",
        )
    if signer_error is not None:
        raise ctx.fail(signer_error.fail_info, signer_error.text)
    if signer is None:
        raise ctx.fail(FailInfo.BAD_MESSAGE_CHECK, "the signer's certificate is not known")

    signature_oid, signature = parsing(
        "signature",
        lambda: (
            signer_info["signature_algorithm"]["algorithm"].dotted,
            signer_info["signature"].native,
        ),
        fail=ctx.fail,
    )
    kind_and_hash = _SIGNATURES.get(signature_oid)
    if kind_and_hash is None:
        raise ctx.fail(
            FailInfo.BAD_ALG,
            f"signature algorithm {algorithm_name(signature_oid)} is not supported",
        )
    kind, signature_hash = kind_and_hash
    if signature_hash is not None and signature_hash != digest:
        raise ctx.fail(
            FailInfo.BAD_ALG,
            f"signature hash {signature_hash} is not the digest algorithm {digest}",
        )

    content_type = parsing(
        "contentType",
        lambda: _required(attributes, _CONTENT_TYPE, "contentType", ctx).dotted,
        fail=ctx.fail,
    )
    if content_type != _ID_DATA:
        raise ctx.fail(FailInfo.BAD_REQUEST, "the contentType attribute is not id-data")
    message_digest = parsing(
        "messageDigest",
        lambda: _required(attributes, _MESSAGE_DIGEST, "messageDigest", ctx).native,
        fail=ctx.fail,
    )
    expected = hashlib.new(digest, parsed.content or b"").digest()
    if not isinstance(message_digest, bytes) or not hmac.compare_digest(message_digest, expected):
        raise ctx.fail(FailInfo.BAD_MESSAGE_CHECK, "messageDigest does not match the content")
    if not isinstance(signature, bytes):
        raise ctx.fail(FailInfo.BAD_REQUEST, "the signature is not an OCTET STRING")
    _verify(signer, kind, digest, signature, parsed.signed_attributes, ctx)
    return _Signed(
        message_type=message_type,
        transaction_id=transaction_id,
        sender_nonce=sender_nonce,
        signer=signer,
        certificates=parsed.certificates,
        digest=digest,
        content=parsed.content,
        signed_at=signed_at,
        attributes=attributes,
    )


def _attempt(read: Callable[[], T]) -> tuple[T | None, SCEPFailure | None]:
    try:
        return read(), None
    except SCEPFailure as failure:
        return None, failure


def _transaction_id(attributes: dict[str, Any], ctx: _Context) -> str:
    value = _required(attributes, OID_TRANSACTION_ID, "transactionID", ctx)
    transaction_id = _string(value, core.PrintableString, "transactionID", ctx)
    if not 1 <= len(transaction_id) <= MAX_TRANSACTION_ID:
        raise ctx.fail(
            FailInfo.BAD_REQUEST, f"transactionID must be 1 to {MAX_TRANSACTION_ID} characters"
        )
    return transaction_id


def _find_signer(
    candidates: Sequence[tuple[x509.Certificate, Any]], signer_info: Any, ctx: _Context
) -> x509.Certificate | None:
    """The candidate certificate the SignerInfo's sid names (None if none does)."""

    def find() -> x509.Certificate | None:
        sid = signer_info["sid"]
        for certificate, asn1_certificate in candidates:
            if identifies(sid, asn1_certificate):
                return certificate
        return None

    return parsing("signer identifier", find, fail=ctx.fail)


def _utc(value: object) -> datetime:
    if not isinstance(value, datetime):
        raise ValueError("signingTime is not a time")
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _verify(
    signer: x509.Certificate, kind: str, digest: str, signature: bytes, data: bytes, ctx: _Context
) -> None:
    try:
        public_key = signer.public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ctx.fail(FailInfo.BAD_ALG, "the signer's key cannot be read") from None
    algorithm = HASHES[digest]()
    try:
        if kind == "rsa" and isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, data, padding.PKCS1v15(), algorithm)
            return
        if kind == "ecdsa" and isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, data, ec.ECDSA(algorithm))
            return
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        raise ctx.fail(FailInfo.BAD_MESSAGE_CHECK, "the message signature is invalid") from None
    raise ctx.fail(FailInfo.BAD_MESSAGE_CHECK, f"the signer's key cannot make a {kind} signature")


def read_pki_message(data: bytes) -> PKIMessage:
    """A client's request (PKCSReq, RenewalReq, CertPoll, GetCert, GetCRL ...): its
    structure, its SCEP attributes and its signature, by a certificate the message carries."""
    ctx = _Context()

    def own(parsed: _Parsed) -> Sequence[tuple[x509.Certificate, Any]]:
        return list(zip(parsed.certificates, parsed.asn1_certificates, strict=True))

    signed = _read_signed(data, ctx, signers=own, sender_nonce_required=True)
    assert signed.sender_nonce is not None
    return PKIMessage(
        message_type=signed.message_type,
        transaction_id=signed.transaction_id,
        sender_nonce=signed.sender_nonce,
        signer=signed.signer,
        certificates=signed.certificates,
        digest=signed.digest,
        enveloped=signed.content,
        signed_at=signed.signed_at,
        der=bytes(data),
    )


def read_cert_rep(
    data: bytes,
    *,
    trusted: Sequence[x509.Certificate],
    recipient: x509.Certificate | None = None,
    key: rsa.RSAPrivateKey | None = None,
    allowed: frozenset[ContentEncryption] = frozenset(ContentEncryption),
) -> CertRep:
    """A server's CertRep, signed by one of *trusted* (the RA certificate from GetCACert);
    a SUCCESS reply's content is decrypted when *recipient* and *key* are given."""
    ctx = _Context()
    known = [
        (certificate, asn1_x509.Certificate.load(certificate.public_bytes(Encoding.DER)))
        for certificate in trusted
    ]
    signed = _read_signed(data, ctx, signers=lambda _: known, sender_nonce_required=False)
    if signed.message_type != MessageType.CERT_REP:
        raise ctx.fail(FailInfo.BAD_REQUEST, f"messageType {signed.message_type} is not CertRep")
    attributes = signed.attributes
    status_number = _number(
        _required(attributes, OID_PKI_STATUS, "pkiStatus", ctx), "pkiStatus", ctx
    )
    if status_number not in PKIStatus.__members__.values():
        raise ctx.fail(FailInfo.BAD_REQUEST, f"pkiStatus {status_number} is unknown")
    status = PKIStatus(status_number)
    fail_info = None
    if status is PKIStatus.FAILURE:
        number = _number(_required(attributes, OID_FAIL_INFO, "failInfo", ctx), "failInfo", ctx)
        if number not in FailInfo.__members__.values():
            raise ctx.fail(FailInfo.BAD_REQUEST, f"failInfo {number} is unknown")
        fail_info = FailInfo(number)
    fail_text = None
    if OID_FAIL_INFO_TEXT in attributes:
        fail_text = _string(attributes[OID_FAIL_INFO_TEXT], core.UTF8String, "failInfoText", ctx)
    recipient_nonce = None
    if OID_RECIPIENT_NONCE in attributes:
        recipient_nonce = _octets(attributes[OID_RECIPIENT_NONCE], "recipientNonce", ctx)
    certificates: tuple[x509.Certificate, ...] = ()
    crls: tuple[bytes, ...] = ()
    if status is PKIStatus.SUCCESS and recipient is not None and key is not None:
        if signed.content is None:
            raise ctx.fail(FailInfo.BAD_REQUEST, "a SUCCESS CertRep has no content")
        plaintext = decrypt_envelope(signed.content, recipient, key, allowed=allowed)
        certificates, crls = read_certs_only(plaintext)
    return CertRep(
        status=status,
        fail_info=fail_info,
        fail_text=fail_text,
        transaction_id=signed.transaction_id,
        recipient_nonce=recipient_nonce,
        sender_nonce=signed.sender_nonce,
        certificates=certificates,
        crls=crls,
        signed_at=signed.signed_at,
    )


# --- building ----------------------------------------------------------------------


# Building assembles each structure from the DER of its parts, every part encoded by
# asn1crypto and the parts that never change for a signer or an algorithm encoded once:
# filling asn1crypto's structures from dicts costs several times the RSA signature.


@functools.lru_cache(maxsize=64)
def _oid(oid: str) -> bytes:
    return bytes(core.ObjectIdentifier(oid).dump())


@functools.lru_cache(maxsize=32)
def _digest_algorithm(digest: str) -> bytes:
    return bytes(cms.DigestAlgorithm({"algorithm": digest}).dump())


@functools.lru_cache(maxsize=32)
def _signature_algorithm(name: str) -> bytes:
    return bytes(cms.SignedDigestAlgorithm({"algorithm": name}).dump())


@functools.lru_cache(maxsize=16)
def _signer_identity(certificate: x509.Certificate) -> tuple[bytes, bytes]:
    """A signer certificate's DER and its SignerIdentifier (issuerAndSerialNumber) DER."""
    der = certificate.public_bytes(Encoding.DER)
    tbs = asn1_x509.Certificate.load(der)["tbs_certificate"]
    sid = cms.SignerIdentifier(
        name="issuer_and_serial_number",
        value=cms.IssuerAndSerialNumber(
            {"issuer": tbs["issuer"], "serial_number": tbs["serial_number"]}
        ),
    )
    return der, bytes(sid.dump())


_VERSION_1 = bytes(cms.CMSVersion("v1").dump())


def _attribute(oid: str, value: Any) -> bytes:
    """The DER of a CMSAttribute of *oid* with the one (asn1crypto) *value*."""
    values = cms.SetOfAny(contents=bytes(value.dump()))
    return bytes(cms.CMSAttribute(contents=_oid(oid) + bytes(values.dump())).dump())


def _time(now: datetime) -> Any:
    if now.tzinfo is None:
        raise ValueError("now must be a timezone-aware datetime")
    now = now.astimezone(UTC)
    if 1950 <= now.year < 2050:
        return cms.Time(name="utc_time", value=now)
    return cms.Time(name="generalized_time", value=now)


def _signed_data(
    *,
    signer: Signer,
    digest: str,
    attributes: list[bytes],
    content: bytes | None,
    certificates: Sequence[x509.Certificate],
    now: datetime,
) -> bytes:
    if digest not in HASHES:
        raise ValueError(f"digest must be one of {', '.join(HASHES)}")
    digested = hashlib.new(digest, content or b"").digest()
    everything = [
        _attribute(_CONTENT_TYPE, cms.ContentType("data")),
        _attribute(_SIGNING_TIME, _time(now)),
        _attribute(_MESSAGE_DIGEST, core.OctetString(digested)),
        *attributes,
    ]
    # DER orders a SET OF by the encodings of its elements.
    signed_attrs = b"".join(sorted(everything))
    to_sign = bytes(cms.CMSAttributes(contents=signed_attrs).dump())
    algorithm = HASHES[digest]()
    if isinstance(signer.key, rsa.RSAPrivateKey):
        signature = signer.key.sign(to_sign, padding.PKCS1v15(), algorithm)
        signature_algorithm = "rsassa_pkcs1v15"
    elif isinstance(signer.key, ec.EllipticCurvePrivateKey):
        signature = signer.key.sign(to_sign, ec.ECDSA(algorithm))
        signature_algorithm = f"{digest}_ecdsa"
    else:
        raise ValueError("the signer's key must be RSA or EC")
    own, sid = _signer_identity(signer.certificate)
    included = [own]
    seen = {own}
    for certificate in certificates:
        der = certificate.public_bytes(Encoding.DER)
        if der not in seen:
            seen.add(der)
            included.append(der)
    digest_algorithm = _digest_algorithm(digest)
    signer_info = cms.SignerInfo(
        contents=b"".join(
            (
                _VERSION_1,
                sid,
                digest_algorithm,
                bytes(cms.CMSAttributes(contents=signed_attrs, implicit=0).dump()),
                _signature_algorithm(signature_algorithm),
                bytes(core.OctetString(signature).dump()),
            )
        )
    )
    encapsulated = _oid(_ID_DATA)
    if content is not None:
        encapsulated += bytes(core.OctetString(content, explicit=0).dump())
    signed = cms.SignedData(
        contents=b"".join(
            (
                _VERSION_1,
                bytes(cms.DigestAlgorithms(contents=digest_algorithm).dump()),
                bytes(cms.EncapsulatedContentInfo(contents=encapsulated).dump()),
                bytes(cms.CertificateSet(contents=b"".join(included), implicit=0).dump()),
                bytes(cms.SignerInfos(contents=bytes(signer_info.dump())).dump()),
            )
        ),
        explicit=0,
    )
    return bytes(cms.ContentInfo(contents=_oid(_ID_SIGNED_DATA) + bytes(signed.dump())).dump())


def _printable(value: str, what: str) -> Any:
    if not _PRINTABLE.issuperset(value):
        raise ValueError(f"{what} has characters a PrintableString cannot hold")
    return core.PrintableString(value)


def build_cert_rep(
    *,
    signer: Signer,
    transaction_id: str,
    recipient_nonce: bytes | None,
    sender_nonce: bytes,
    status: PKIStatus,
    now: datetime,
    random: Random,
    digest: str = "sha256",
    fail_info: FailInfo | None = None,
    fail_text: str | None = None,
    content: bytes | None = None,
    recipient: x509.Certificate | None = None,
    encryption: ContentEncryption = ContentEncryption.AES256_CBC,
    certificates: Sequence[x509.Certificate] = (),
) -> bytes:
    """A CertRep signed by *signer*. SUCCESS carries *content* (the certs-only PKCS#7 of
    the issued certificate, or a CRL) encrypted to *recipient*; FAILURE carries
    *fail_info* (and *fail_text* as failInfoText); PENDING carries nothing."""
    status = PKIStatus(status)
    if status is PKIStatus.SUCCESS and (content is None or recipient is None):
        raise ValueError("a SUCCESS CertRep needs content and a recipient")
    if status is not PKIStatus.SUCCESS and content is not None:
        raise ValueError(f"a {status.name} CertRep carries no content")
    if status is PKIStatus.FAILURE and fail_info is None:
        raise ValueError("a FAILURE CertRep needs fail_info")
    if status is not PKIStatus.FAILURE and fail_info is not None:
        raise ValueError(f"a {status.name} CertRep carries no fail_info")
    attributes = [
        _attribute(OID_MESSAGE_TYPE, core.PrintableString(str(int(MessageType.CERT_REP)))),
        _attribute(OID_PKI_STATUS, core.PrintableString(str(int(status)))),
        _attribute(OID_TRANSACTION_ID, _printable(transaction_id, "transaction_id")),
        _attribute(OID_SENDER_NONCE, core.OctetString(sender_nonce)),
    ]
    if recipient_nonce is not None:
        attributes.append(_attribute(OID_RECIPIENT_NONCE, core.OctetString(recipient_nonce)))
    if fail_info is not None:
        attributes.append(
            _attribute(OID_FAIL_INFO, core.PrintableString(str(int(FailInfo(fail_info)))))
        )
    if fail_text is not None:
        attributes.append(_attribute(OID_FAIL_INFO_TEXT, core.UTF8String(fail_text)))
    enveloped = None
    if content is not None and recipient is not None:
        enveloped = envelope(content, recipient, random=random, encryption=encryption)
    return _signed_data(
        signer=signer,
        digest=digest,
        attributes=attributes,
        content=enveloped,
        certificates=certificates,
        now=now,
    )


def build_pki_message(
    *,
    message_type: MessageType,
    transaction_id: str,
    sender_nonce: bytes,
    content: bytes,
    recipient: x509.Certificate,
    signer: Signer,
    now: datetime,
    random: Random,
    encryption: ContentEncryption = ContentEncryption.AES256_CBC,
    digest: str = "sha256",
    key_transport: str = "pkcs1v15",
) -> bytes:
    """A client's request: *content* (a CSR, IssuerAndSubject or IssuerAndSerialNumber)
    encrypted to *recipient* (the RA certificate), signed by *signer*.
    *key_transport*: "pkcs1v15", "oaep" (SHA-256) or "oaep-sha1"."""
    attributes = [
        _attribute(OID_MESSAGE_TYPE, core.PrintableString(str(int(message_type)))),
        _attribute(OID_TRANSACTION_ID, _printable(transaction_id, "transaction_id")),
        _attribute(OID_SENDER_NONCE, core.OctetString(sender_nonce)),
    ]
    enveloped = envelope(
        content, recipient, random=random, encryption=encryption, key_transport=key_transport
    )
    return _signed_data(
        signer=signer,
        digest=digest,
        attributes=attributes,
        content=enveloped,
        certificates=(),
        now=now,
    )
