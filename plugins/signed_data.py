"""CMS SignedData (RFC 5652) as clouds sign instance identity documents.

AWS signs an instance identity document as a PKCS #7 SignedData (the ``pkcs7`` and
``rsa2048`` forms its metadata service serves); Azure signs its attested-data
document the same way. Both carry the signed document as the ``id-data`` content and
one signer. :func:`read_signed_data` reads such a structure from bytes an instance sent
(hostile input: anything malformed is a :class:`~engine.errors.BadRequest`, never
another exception, and at most :data:`MAX_SIGNED_DATA_BYTES` are read);
:meth:`SignedContent.verify` then checks its one signature with a key the caller
trusts. Which key that is (a certificate bundled or configured for a region, an
embedded certificate the caller has chained to a root) is the caller's business: this
module checks no certificate.

What it accepts, and nothing else:

- a ContentInfo holding a SignedData whose encapsulated content is ``id-data`` and
  present (not detached), BER as well as DER (AWS's is BER, with indefinite lengths);
- exactly one SignerInfo, its digest algorithm SHA-1, SHA-256, SHA-384 or SHA-512,
  named by the hash's OID or by the OID of an RSA signature algorithm with that hash
  (``sha256WithRSAEncryption`` as a digest algorithm: Azure names it so);
- signed attributes, if present, with exactly one ``contentType`` (``id-data``) and
  exactly one ``messageDigest`` equal to the content's digest; the signature is then
  over their DER ``SET OF`` encoding, otherwise over the content itself;
- an RSA PKCS #1 v1.5, DSA or ECDSA signature, as the key given to ``verify`` is (the
  SignerInfo's signature algorithm must belong to that key's family and, where it names
  a hash, name the digest algorithm's).

How it reads: the strict DER shapes clouds send (Azure's attested document, AWS's
``rsa2048``) are read with the project's own DER reader (:mod:`engine.der`), which costs
a fraction of a full ASN.1 parse on every identity request; anything else (BER, such as
AWS's real ``pkcs7``, other structures, and every input that is refused) is read by
asn1crypto, whose refusal messages the caller sees. Both give every input the same
answer; the tests check that on real documents and thousands of variants of them.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
from asn1crypto import cms, core
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from engine import der as _der
from engine.errors import BadRequest, ProtocolError, Unauthorized

__all__ = ["MAX_SIGNED_DATA_BYTES", "SignedContent", "read_signed_data"]

#: The most bytes :func:`read_signed_data` reads (a cloud's SignedData is a few KiB).
MAX_SIGNED_DATA_BYTES = 64 * 1024
#: The most certificates a SignedData may embed.
MAX_CERTIFICATES = 16

_ID_DATA = "1.2.840.113549.1.7.1"
_ID_SIGNED_DATA = "1.2.840.113549.1.7.2"
_CONTENT_TYPE = "1.2.840.113549.1.9.3"
_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"

#: Digest algorithm OIDs this module accepts, and the hash each means.
_DIGESTS: dict[str, str] = {
    "1.3.14.3.2.26": "sha1",
    "2.16.840.1.101.3.4.2.1": "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
    # RSA signature algorithms used as digest algorithms (Azure's attested data).
    "1.2.840.113549.1.1.5": "sha1",
    "1.2.840.113549.1.1.11": "sha256",
    "1.2.840.113549.1.1.12": "sha384",
    "1.2.840.113549.1.1.13": "sha512",
}

_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}

#: Signature algorithm OIDs: the key family each belongs to and the hash it names
#: (None: the digest algorithm's).
_SIGNATURES: dict[str, tuple[str, str | None]] = {
    "1.2.840.113549.1.1.1": ("rsa", None),
    "1.2.840.113549.1.1.5": ("rsa", "sha1"),
    "1.2.840.113549.1.1.11": ("rsa", "sha256"),
    "1.2.840.113549.1.1.12": ("rsa", "sha384"),
    "1.2.840.113549.1.1.13": ("rsa", "sha512"),
    "1.2.840.10040.4.1": ("dsa", None),
    "1.2.840.10040.4.3": ("dsa", "sha1"),
    "2.16.840.1.101.3.4.3.2": ("dsa", "sha256"),
    "1.2.840.10045.2.1": ("ecdsa", None),
    "1.2.840.10045.4.1": ("ecdsa", "sha1"),
    "1.2.840.10045.4.3.2": ("ecdsa", "sha256"),
    "1.2.840.10045.4.3.3": ("ecdsa", "sha384"),
    "1.2.840.10045.4.3.4": ("ecdsa", "sha512"),
}

T = TypeVar("T")


@attrs.frozen
class _SignerId:
    """How the SignerInfo names its certificate: issuer and serial number, or subject
    key identifier."""

    issuer_der: bytes | None = None
    serial: int | None = None
    key_identifier: bytes | None = None


@attrs.frozen(eq=False)
class SignedContent:
    """A SignedData's content and its one signer, read but not yet verified."""

    #: The signed document: the ``id-data`` eContent's bytes.
    content: bytes
    #: The certificates the SignedData embeds, in its order.
    certificates: tuple[x509.Certificate, ...]
    #: The hash the content is digested with (``sha1``, ``sha256``, ...).
    digest_algorithm: str
    _family: str
    _signature: bytes
    #: The DER ``SET OF`` of the signed attributes, or None when there are none.
    _signed_attributes: bytes | None
    _message_digest: bytes | None
    _signer_index: int | None

    def signer_certificate(self) -> x509.Certificate | None:
        """The embedded certificate the SignerInfo names, or None if none is embedded."""
        return None if self._signer_index is None else self.certificates[self._signer_index]

    def verify(self, key: PublicKeyTypes) -> None:
        """Check the signature with *key* (RSA PKCS #1 v1.5, DSA or ECDSA as the key is);
        Unauthorized if it does not verify, or the signed attributes do not sign this
        content."""
        digest = hashlib.new(self.digest_algorithm, self.content).digest()
        if self._signed_attributes is None:
            signed = self.content
        else:
            if self._message_digest is None or not hmac.compare_digest(
                self._message_digest, digest
            ):
                raise Unauthorized("the signed attributes' messageDigest is not the content's")
            signed = self._signed_attributes
        algorithm = _HASHES[self.digest_algorithm]()
        try:
            if isinstance(key, rsa.RSAPublicKey) and self._family == "rsa":
                key.verify(self._signature, signed, padding.PKCS1v15(), algorithm)
            elif isinstance(key, dsa.DSAPublicKey) and self._family == "dsa":
                key.verify(self._signature, signed, algorithm)
            elif isinstance(key, ec.EllipticCurvePublicKey) and self._family == "ecdsa":
                key.verify(self._signature, signed, ec.ECDSA(algorithm))
            else:
                raise Unauthorized(
                    f"a {self._family.upper()} signature cannot be checked with"
                    f" a {type(key).__name__.removeprefix('_')}"
                )
        except InvalidSignature:
            raise Unauthorized("the SignedData signature does not verify") from None


def _reading(what: str, action: Callable[[], T]) -> T:
    """Run *action* (asn1crypto parses lazily and raises many kinds of errors on hostile
    bytes); any error but a ProtocolError becomes a BadRequest naming *what*."""
    try:
        return action()
    except ProtocolError:
        raise
    except Exception as exc:  # ValueError, TypeError, KeyError, OverflowError, ...
        lines = str(exc).strip().splitlines()
        reason = lines[0][:200] if lines else type(exc).__name__
        raise BadRequest(f"{what} is malformed: {reason}") from None


def _single(attributes: Any, oid: str, name: str) -> Any:
    values = [a["values"] for a in attributes if a["type"].dotted == oid]
    if len(values) != 1 or len(values[0]) != 1:
        raise BadRequest(f"the SignedData's signed attributes must hold exactly one {name}")
    return values[0][0]


def _signer_id(sid: Any) -> _SignerId:
    if sid.name == "issuer_and_serial_number":
        chosen = sid.chosen
        return _SignerId(
            issuer_der=chosen["issuer"].dump(), serial=int(chosen["serial_number"].native)
        )
    if sid.name == "subject_key_identifier":
        return _SignerId(key_identifier=bytes(sid.chosen.native))
    raise BadRequest("the SignerInfo names its certificate in no known way")


def _names(certificate: x509.Certificate, sid: _SignerId) -> bool:
    if sid.key_identifier is not None:
        try:
            ski = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        except x509.ExtensionNotFound:
            return False
        return hmac.compare_digest(ski.value.digest, sid.key_identifier)
    return certificate.serial_number == sid.serial and _issuer_der(certificate) == sid.issuer_der


def _issuer_der(certificate: x509.Certificate) -> bytes:
    """The certificate's issuer Name as its TBS part holds it (DER), read without
    decoding the name (cryptography warns about attribute lengths RFC 5280's upper bounds
    exclude, and a certificate in a SignedData is anyone's)."""
    tbs = certificate.tbs_certificate_bytes
    _, body, _ = _der.read_tlv(tbs)
    offset = 0
    tag, _, offset = _der.read_tlv(body, offset)
    if tag == 0xA0:  # [0] version
        tag, _, offset = _der.read_tlv(body, offset)  # serialNumber
    _, _, offset = _der.read_tlv(body, offset)  # signature algorithm
    start = offset
    _, _, offset = _der.read_tlv(body, offset)  # issuer
    return body[start:offset]


def _read(der: bytes) -> SignedContent:
    info = cms.ContentInfo.load(der, strict=True)
    if info["content_type"].dotted != _ID_SIGNED_DATA:
        raise BadRequest("the CMS content is not SignedData")
    signed_data = info["content"]
    encapsulated = signed_data["encap_content_info"]
    if encapsulated["content_type"].dotted != _ID_DATA:
        raise BadRequest("the SignedData's content is not id-data")
    if encapsulated["content"].native is None:
        raise BadRequest("the SignedData carries no content (detached signatures are not read)")
    content = bytes(encapsulated["content"].native)
    signer_infos = signed_data["signer_infos"]
    if len(signer_infos) != 1:
        raise BadRequest(f"the SignedData has {len(signer_infos)} signers, not one")
    signer = signer_infos[0]
    digest_oid = signer["digest_algorithm"]["algorithm"].dotted
    digest_algorithm = _DIGESTS.get(digest_oid)
    if digest_algorithm is None:
        raise BadRequest(f"the SignedData's digest algorithm {digest_oid} is not supported")
    signature_oid = signer["signature_algorithm"]["algorithm"].dotted
    if signature_oid not in _SIGNATURES:
        raise BadRequest(f"the SignedData's signature algorithm {signature_oid} is not supported")
    family, named_hash = _SIGNATURES[signature_oid]
    if named_hash is not None and named_hash != digest_algorithm:
        raise BadRequest(
            f"the SignedData's signature algorithm ({named_hash}) and digest algorithm"
            f" ({digest_algorithm}) disagree"
        )
    signature = bytes(signer["signature"].native)
    attributes = signer["signed_attrs"]
    signed_attributes: bytes | None = None
    message_digest: bytes | None = None
    if not isinstance(attributes, core.Void):
        content_type = _single(attributes, _CONTENT_TYPE, "contentType")
        if content_type.dotted != _ID_DATA:
            raise BadRequest("the signed contentType attribute is not id-data")
        message_digest = bytes(_single(attributes, _MESSAGE_DIGEST, "messageDigest").native)
        # The signature is over the attributes' DER SET OF, whatever the encoding sent.
        signed_attributes = attributes.untag().dump()
    sid = _signer_id(signer["sid"])
    certificates: list[x509.Certificate] = []
    choices = signed_data["certificates"]
    if not isinstance(choices, core.Void):
        if len(choices) > MAX_CERTIFICATES:
            raise BadRequest(f"the SignedData embeds more than {MAX_CERTIFICATES} certificates")
        for choice in choices:
            if choice.name != "certificate":
                raise BadRequest("the SignedData embeds something other than X.509 certificates")
            certificates.append(x509.load_der_x509_certificate(choice.chosen.dump()))
    signer_index = next((i for i, c in enumerate(certificates) if _names(c, sid)), None)
    return SignedContent(
        content=content,
        certificates=tuple(certificates),
        digest_algorithm=digest_algorithm,
        family=family,
        signature=signature,
        signed_attributes=signed_attributes,
        message_digest=message_digest,
        signer_index=signer_index,
    )


class _NotFast(Exception):
    """The fast reader does not handle these bytes; the general reader decides."""


def _by_encoding(by_oid: dict[str, T]) -> dict[bytes, T]:
    """*by_oid* keyed by each OID's DER encoding (tag and length included)."""
    return {_der.object_identifier(oid): value for oid, value in by_oid.items()}


_ID_DATA_DER = _der.object_identifier(_ID_DATA)
_ID_SIGNED_DATA_DER = _der.object_identifier(_ID_SIGNED_DATA)
_CONTENT_TYPE_DER = _der.object_identifier(_CONTENT_TYPE)
_MESSAGE_DIGEST_DER = _der.object_identifier(_MESSAGE_DIGEST)
_DIGESTS_DER = _by_encoding(_DIGESTS)
_SIGNATURES_DER = _by_encoding(_SIGNATURES)
#: Signed attributes the fast reader steps over (their values are not read by either
#: reader): signingTime, smimeCapabilities, signingCertificate(V2), cmsAlgorithmProtection.
_OTHER_ATTRIBUTES_DER = frozenset(
    _der.object_identifier(oid)
    for oid in (
        "1.2.840.113549.1.9.5",
        "1.2.840.113549.1.9.15",
        "1.2.840.113549.1.9.16.2.12",
        "1.2.840.113549.1.9.16.2.47",
        "1.2.840.113549.1.9.52",
    )
)
_NULL = b"\x05\x00"


def _element(data: bytes, offset: int, tag: int) -> tuple[bytes, int]:
    """The value of the strict-DER element of *tag* at *offset* (a one-byte tag, a
    definite length in its shortest form) and the offset after it; _NotFast otherwise."""
    try:
        found, value, end = _der.read_tlv(data, offset)
    except BadRequest:
        raise _NotFast from None
    size = len(value)
    header = end - offset - size
    if found != tag or header != (2 if size < 0x80 else 2 + (size.bit_length() + 7) // 8):
        raise _NotFast
    return value, end


def _elements(data: bytes, tag: int) -> list[tuple[bytes, bytes]]:
    """The elements of *tag* that *data* consists of: each one's whole encoding and
    value."""
    out: list[tuple[bytes, bytes]] = []
    offset = 0
    while offset < len(data):
        value, end = _element(data, offset, tag)
        out.append((data[offset:end], value))
        offset = end
    return out


def _algorithm(data: bytes, offset: int) -> tuple[bytes, int]:
    """An AlgorithmIdentifier: its OID's encoding (absent or NULL parameters only)."""
    body, end = _element(data, offset, 0x30)
    _, position = _element(body, 0, 0x06)
    if body[position:] not in (b"", _NULL):
        raise _NotFast
    return body[:position], end


def _fast_read(data: bytes) -> SignedContent:
    """Read *data* as :func:`_read` does, for the strict DER forms clouds send (one
    SignerInfo, X.509 certificates only, no CRLs or unsigned attributes): the same
    SignedContent for every input it accepts. Anything else, every refusal included, is
    _NotFast, and :func:`_read` gives the answer (and its message)."""
    info, end = _element(data, 0, 0x30)
    if end != len(data):
        raise _NotFast
    _, position = _element(info, 0, 0x06)
    if info[:position] != _ID_SIGNED_DATA_DER:
        raise _NotFast
    explicit, position = _element(info, position, 0xA0)
    if position != len(info):
        raise _NotFast
    signed_data, position = _element(explicit, 0, 0x30)
    if position != len(explicit):
        raise _NotFast
    _, position = _element(signed_data, 0, 0x02)  # version
    _, position = _element(signed_data, position, 0x31)  # digestAlgorithms
    encapsulated, position = _element(signed_data, position, 0x30)
    choices: list[bytes] = []
    if signed_data[position : position + 1] == b"\xa0":
        certificate_set, position = _element(signed_data, position, 0xA0)
        choices = [whole for whole, _ in _elements(certificate_set, 0x30)]
        if len(choices) > MAX_CERTIFICATES:
            raise _NotFast
    signer_infos, position = _element(signed_data, position, 0x31)
    if position != len(signed_data):
        raise _NotFast
    _, inner = _element(encapsulated, 0, 0x06)
    if encapsulated[:inner] != _ID_DATA_DER:
        raise _NotFast
    wrapped, inner = _element(encapsulated, inner, 0xA0)
    content, end = _element(wrapped, 0, 0x04)
    if inner != len(encapsulated) or end != len(wrapped):
        raise _NotFast
    signer, end = _element(signer_infos, 0, 0x30)
    if end != len(signer_infos):
        raise _NotFast
    _, position = _element(signer, 0, 0x02)  # version
    sid, position = _fast_signer_id(signer, position)
    digest, position = _algorithm(signer, position)
    if digest not in _DIGESTS_DER:
        raise _NotFast
    signed_attributes: bytes | None = None
    message_digest: bytes | None = None
    if signer[position : position + 1] == b"\xa0":
        attributes, position = _element(signer, position, 0xA0)
        message_digest = _fast_attributes(attributes)
        signed_attributes = _der.tlv(0x31, attributes)
    signature_algorithm, position = _algorithm(signer, position)
    if signature_algorithm not in _SIGNATURES_DER:
        raise _NotFast
    signature, position = _element(signer, position, 0x04)
    if position != len(signer):
        raise _NotFast
    digest_algorithm = _DIGESTS_DER[digest]
    family, named_hash = _SIGNATURES_DER[signature_algorithm]
    if named_hash is not None and named_hash != digest_algorithm:
        raise _NotFast
    try:
        certificates = [x509.load_der_x509_certificate(choice) for choice in choices]
        signer_index = next((i for i, c in enumerate(certificates) if _names(c, sid)), None)
    except Exception:  # cryptography refuses a certificate (lazily too): _read words it
        raise _NotFast from None
    return SignedContent(
        content=content,
        certificates=tuple(certificates),
        digest_algorithm=digest_algorithm,
        family=family,
        signature=signature,
        signed_attributes=signed_attributes,
        message_digest=message_digest,
        signer_index=signer_index,
    )


def _fast_signer_id(signer: bytes, offset: int) -> tuple[_SignerId, int]:
    """The SignerInfo's sid at *offset* (issuer and serial number, or a subject key
    identifier: [0] IMPLICIT OCTET STRING) and the offset after it."""
    if signer[offset : offset + 1] == b"\x80":
        identifier, after = _element(signer, offset, 0x80)
        return _SignerId(key_identifier=identifier), after
    body, after = _element(signer, offset, 0x30)
    _, position = _element(body, 0, 0x30)
    serial, end = _element(body, position, 0x02)
    if end != len(body) or not serial:
        raise _NotFast
    issuer = body[:position]
    return _SignerId(issuer_der=issuer, serial=int.from_bytes(serial, "big", signed=True)), after


def _fast_attributes(attributes: bytes) -> bytes:
    """Check the signed attributes' contentType (exactly one, id-data) and find their one
    messageDigest, stepping over the other attributes :data:`_OTHER_ATTRIBUTES_DER` names."""
    content_types: list[bytes] = []
    message_digests: list[bytes] = []
    for _, body in _elements(attributes, 0x30):
        _, position = _element(body, 0, 0x06)
        values, end = _element(body, position, 0x31)
        if end != len(body):
            raise _NotFast
        kind = body[:position]
        if kind == _CONTENT_TYPE_DER:
            content_types.append(values)
        elif kind == _MESSAGE_DIGEST_DER:
            message_digests.append(values)
        elif kind not in _OTHER_ATTRIBUTES_DER:
            raise _NotFast
    if len(content_types) != 1 or len(message_digests) != 1:
        raise _NotFast
    if content_types[0] != _ID_DATA_DER:
        raise _NotFast
    digest, end = _element(message_digests[0], 0, 0x04)
    if end != len(message_digests[0]):
        raise _NotFast
    return digest


def read_signed_data(der: bytes) -> SignedContent:
    """Read a ContentInfo holding SignedData (see the module docstring for what is
    accepted). BadRequest, with a message saying what is wrong, for anything else; no
    other exception, whatever the bytes."""
    if not isinstance(der, bytes | bytearray | memoryview):
        raise BadRequest("the SignedData must be bytes")
    data = bytes(der)
    if not data:
        raise BadRequest("the SignedData is empty")
    if len(data) > MAX_SIGNED_DATA_BYTES:
        raise BadRequest(f"the SignedData is larger than {MAX_SIGNED_DATA_BYTES} bytes")
    try:
        return _fast_read(data)
    except _NotFast:
        return _read_general(data)


def _read_general(data: bytes) -> SignedContent:
    """The general reader (asn1crypto: BER as well as DER, every structure and every
    refusal's message): what :func:`read_signed_data` answers for the bytes the fast
    reader leaves to it."""
    return _reading("the SignedData", lambda: _read(data))
