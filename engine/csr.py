"""Certificate signing requests: parsed once, verified once, described once."""

from __future__ import annotations

import binascii
import hashlib
import ipaddress

import attrs
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtensionOID, NameOID, SignatureAlgorithmOID

from .der import read_tlv
from .errors import BadRequest
from .keys import KeyType, key_type_of
from .names import SAN, SANKind

MAX_CSR_BYTES = 32 * 1024


@attrs.frozen
class CSRInfo:
    """A CSR whose signature has been checked, with the facts policy needs."""

    csr: x509.CertificateSigningRequest
    der: bytes
    public_key: CertificatePublicKeyTypes
    key_type: KeyType
    common_name: str | None
    sans: tuple[SAN, ...]
    # otherName SANs (PermanentIdentifier, HardwareModuleName): kept apart, because only
    # a policy that understands them (ACME device-attest-01) may accept them.
    other_names: tuple[x509.OtherName, ...] = ()
    # The SubjectPublicKeyInfo DER as the request carries it, when read (saves encoding
    # the key again for the certificate).
    spki: bytes | None = attrs.field(default=None, repr=False)

    @property
    def sha256(self) -> bytes:
        return hashlib.sha256(self.der).digest()


_PEM_LABELS = (b"CERTIFICATE REQUEST", b"NEW CERTIFICATE REQUEST")


def _pem_body(data: bytes) -> bytes | None:
    """The DER of a PEM text holding exactly one CSR block, or None to let cryptography's
    PEM reader decide (other labels, headers, several blocks, anything unusual)."""
    text = data.strip()
    for label in _PEM_LABELS:
        begin = b"-----BEGIN " + label + b"-----"
        end = b"-----END " + label + b"-----"
        if text.startswith(begin) and text.endswith(end):
            body = text[len(begin) : -len(end)]
            if b"-" in body or b":" in body:  # another block, or RFC 1421 headers
                return None
            try:
                return binascii.a2b_base64(b"".join(body.split()), strict_mode=True)
            except binascii.Error:
                return None
    return None


def parse_csr(data: str | bytes) -> CSRInfo:
    """Parse a PEM or DER CSR, check its self-signature and its key."""
    if isinstance(data, str):
        data = data.encode("utf-8", "replace")
    if len(data) > MAX_CSR_BYTES:
        raise BadRequest("CSR is too large")
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            der = _pem_body(data)
            csr = x509.load_pem_x509_csr(data) if der is None else x509.load_der_x509_csr(der)
        else:
            der = data
            csr = x509.load_der_x509_csr(data)
    except (ValueError, TypeError, x509.InvalidVersion) as exc:
        # InvalidVersion: any version but v1 (0), which is all PKCS#10 defines.
        raise BadRequest(f"CSR cannot be parsed: {exc}") from None
    try:
        public_key = csr.public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        # UnsupportedAlgorithm: a key algorithm or curve OID cryptography does not know.
        raise BadRequest(f"CSR key cannot be read: {exc}") from None
    key_type = key_type_of(public_key)
    tbs = csr.tbs_certrequest_bytes
    if not _signature_valid(csr, public_key, tbs):
        raise BadRequest("CSR signature is invalid")
    return _describe(csr, der, public_key, key_type, tbs)


def describe_verified_csr(csr: x509.CertificateSigningRequest, der: bytes) -> CSRInfo:
    """The :class:`CSRInfo` of a request whose self-signature the caller has already
    checked over *der*, the bytes as received (SCEP reads version-2 requests, which
    cryptography only loads as a version-0 copy: *csr* is that copy, *der* the original).
    The key is checked as :func:`parse_csr` checks it."""
    try:
        public_key = csr.public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise BadRequest(f"CSR key cannot be read: {exc}") from None
    key_type = key_type_of(public_key)
    return _describe(csr, der, public_key, key_type, csr.tbs_certrequest_bytes)


def _describe(
    csr: x509.CertificateSigningRequest,
    der: bytes | None,
    public_key: CertificatePublicKeyTypes,
    key_type: KeyType,
    tbs: bytes,
) -> CSRInfo:
    facts = _simple_facts(tbs)
    if facts is None:
        common_name, sans, other_names = _facts_from_objects(csr)
        spki = None
    else:
        common_name, sans, spki = facts
        other_names = ()
    return CSRInfo(
        csr=csr,
        der=der if der is not None else csr.public_bytes(Encoding.DER),
        public_key=public_key,
        key_type=key_type,
        common_name=common_name,
        sans=sans,
        other_names=other_names,
        spki=spki,
    )


# --- the self-signature ------------------------------------------------------------

_ECDSA = {
    SignatureAlgorithmOID.ECDSA_WITH_SHA256: ec.ECDSA(hashes.SHA256()),
    SignatureAlgorithmOID.ECDSA_WITH_SHA384: ec.ECDSA(hashes.SHA384()),
    SignatureAlgorithmOID.ECDSA_WITH_SHA512: ec.ECDSA(hashes.SHA512()),
}
_RSA_PKCS1 = {
    SignatureAlgorithmOID.RSA_WITH_SHA256: hashes.SHA256(),
    SignatureAlgorithmOID.RSA_WITH_SHA384: hashes.SHA384(),
    SignatureAlgorithmOID.RSA_WITH_SHA512: hashes.SHA512(),
}
_PKCS1V15 = padding.PKCS1v15()


def _signature_valid(
    csr: x509.CertificateSigningRequest, public_key: CertificatePublicKeyTypes, tbs: bytes
) -> bool:
    """The CSR's self-signature, checked with the key already loaded for the request.

    The usual algorithms are verified directly (the key is parsed once, not twice);
    any other (RSA-PSS, SHA-1, a mismatch of key and algorithm) is left to
    cryptography's own check, which refuses what it does not support.
    """
    oid = csr.signature_algorithm_oid
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey) and oid in _ECDSA:
            public_key.verify(csr.signature, tbs, _ECDSA[oid])
            return True
        if (
            isinstance(public_key, ed25519.Ed25519PublicKey)
            and oid == SignatureAlgorithmOID.ED25519
        ):
            public_key.verify(csr.signature, tbs)
            return True
        if isinstance(public_key, rsa.RSAPublicKey) and oid in _RSA_PKCS1:
            public_key.verify(csr.signature, tbs, _PKCS1V15, _RSA_PKCS1[oid])
            return True
    except InvalidSignature:
        return False
    try:
        return bool(csr.is_signature_valid)
    except Exception:  # unsupported signature algorithms raise from the backend
        return False


# --- names: read from the DER where the request is plain, else through cryptography ---


def _facts_from_objects(
    csr: x509.CertificateSigningRequest,
) -> tuple[str | None, tuple[SAN, ...], tuple[x509.OtherName, ...]]:
    """Common name, SANs and otherName SANs through cryptography's objects: every CSR."""
    try:
        cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        extensions = csr.extensions
    except (
        ValueError,
        TypeError,  # a name attribute of a type its OID does not allow (a BIT STRING CN)
        x509.DuplicateExtension,
        x509.UnsupportedGeneralNameType,
    ) as exc:
        raise BadRequest(f"CSR has malformed attributes: {exc}") from None
    common_name = None
    if cns:
        value = cns[0].value
        common_name = value if isinstance(value, str) else value.decode("utf-8", "replace")
    sans: tuple[SAN, ...] = ()
    other_names: tuple[x509.OtherName, ...] = ()
    try:
        ext = extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    except x509.ExtensionNotFound:
        pass
    else:
        assert isinstance(ext.value, x509.SubjectAlternativeName)
        other_names = tuple(n for n in ext.value if isinstance(n, x509.OtherName))
        if any(
            isinstance(n, x509.IPAddress) and not isinstance(n.value, _IP_ADDRESSES)
            for n in ext.value
        ):
            # An 8- or 32-byte iPAddress is an address and mask (name constraints only);
            # the DER reader refuses it too.
            raise BadRequest("CSR iPAddress SAN must be one address (4 or 16 bytes)")
        sans = tuple(
            SAN.from_general_name(name)
            for name in ext.value
            if not isinstance(name, x509.OtherName)
        )
    return common_name, sans, other_names


_IP_ADDRESSES = (ipaddress.IPv4Address, ipaddress.IPv6Address)
_OID_COMMON_NAME = b"\x55\x04\x03"  # 2.5.4.3
_OID_EXTENSION_REQUEST = b"\x2a\x86\x48\x86\xf7\x0d\x01\x09\x0e"  # 1.2.840.113549.1.9.14
_OID_SUBJECT_ALT_NAME = b"\x55\x1d\x11"  # 2.5.29.17
# Directory string types read here: UTF8String, PrintableString, IA5String.
_STRING_TAGS = frozenset({0x0C, 0x13, 0x16})
_PRINTABLE = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 '()+,-./:=?"
)


class _NotPlain(Exception):
    """The request has something :func:`_simple_facts` leaves to cryptography."""


def _read(data: bytes, offset: int, tag: int) -> tuple[bytes, int]:
    found, value, end = read_tlv(data, offset)
    if found != tag:
        raise _NotPlain
    return value, end


def _directory_string(tag: int, value: bytes) -> str:
    if tag not in _STRING_TAGS:
        raise _NotPlain
    if tag == 0x0C:
        return value.decode("utf-8")  # UnicodeDecodeError is a ValueError: not plain
    if not value.isascii() or (tag == 0x13 and not _PRINTABLE.issuperset(value)):
        raise _NotPlain
    return value.decode("ascii")


def _subject_common_name(name: bytes) -> str | None:
    """The first common name of a Name whose RDNs are single plain strings."""
    common_name = None
    pos = 0
    while pos < len(name):
        rdn, pos = _read(name, pos, 0x31)
        attribute, rdn_end = _read(rdn, 0, 0x30)
        if rdn_end != len(rdn):
            raise _NotPlain  # a multi-valued RDN
        oid, offset = _read(attribute, 0, 0x06)
        tag, value, end = read_tlv(attribute, offset)
        if end != len(attribute):
            raise _NotPlain
        text = _directory_string(tag, value)
        if oid == _OID_COMMON_NAME and common_name is None:
            common_name = text
    return common_name


def _general_names(names: bytes) -> tuple[SAN, ...]:
    """dNSName, rfc822Name, URI and iPAddress entries; anything else is not plain."""
    out: list[SAN] = []
    pos = 0
    while pos < len(names):
        tag, value, pos = read_tlv(names, pos)
        if tag == 0x87:
            if len(value) not in (4, 16):
                raise _NotPlain
            out.append(SAN(SANKind.IP, str(ipaddress.ip_address(value))))
            continue
        if tag not in (0x81, 0x82, 0x86) or not value.isascii():
            raise _NotPlain
        text = value.decode("ascii")
        if tag == 0x82:
            out.append(SAN(SANKind.DNS, text.lower().rstrip(".")))
        elif tag == 0x81:
            out.append(SAN(SANKind.EMAIL, text.lower()))
        else:
            out.append(SAN(SANKind.URI, text))
    return tuple(out)


def _subject_alt_names(attributes: bytes) -> tuple[SAN, ...]:
    """The SANs of an attribute set holding at most one extensionRequest, whose only
    extension is a SubjectAlternativeName of plain names (or no extension at all)."""
    sans: tuple[SAN, ...] = ()
    seen_request = False
    pos = 0
    while pos < len(attributes):
        attribute, pos = _read(attributes, pos, 0x30)
        oid, offset = _read(attribute, 0, 0x06)
        if oid != _OID_EXTENSION_REQUEST:
            continue  # other attributes (challengePassword ...) are not read by devid
        if seen_request:
            raise _NotPlain
        seen_request = True
        values, end = _read(attribute, offset, 0x31)
        extensions, values_end = _read(values, 0, 0x30)
        if end != len(attribute) or values_end != len(values):
            raise _NotPlain
        ext_pos = 0
        while ext_pos < len(extensions):
            extension, ext_pos = _read(extensions, ext_pos, 0x30)
            ext_oid, offset = _read(extension, 0, 0x06)
            if ext_oid != _OID_SUBJECT_ALT_NAME or sans:
                raise _NotPlain  # another extension, or a second SAN one
            tag, value, offset = read_tlv(extension, offset)
            if tag == 0x01:  # critical flag
                if value != b"\xff":
                    raise _NotPlain
                tag, value, offset = read_tlv(extension, offset)
            if tag != 0x04 or offset != len(extension):
                raise _NotPlain
            names, names_end = _read(value, 0, 0x30)
            if names_end != len(value) or not names:
                raise _NotPlain
            sans = _general_names(names)
    return sans


def _simple_facts(tbs: bytes) -> tuple[str | None, tuple[SAN, ...], bytes] | None:
    """Common name, SANs and the SubjectPublicKeyInfo DER read straight from the
    CertificationRequestInfo, for the plain requests clients send; None for anything
    else, which then goes through cryptography's objects (and their errors)."""
    try:
        info, end = _read(tbs, 0, 0x30)
        if end != len(tbs):
            return None
        version, pos = _read(info, 0, 0x02)
        if version != b"\x00":
            return None
        subject, pos = _read(info, pos, 0x30)
        spki_start = pos
        _, pos = _read(info, pos, 0x30)
        spki = info[spki_start:pos]
        attributes, pos = _read(info, pos, 0xA0)
        if pos != len(info):
            return None
        return _subject_common_name(subject), _subject_alt_names(attributes), spki
    except (_NotPlain, BadRequest, ValueError):
        return None
