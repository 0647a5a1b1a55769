"""The small SCEP structures: IssuerAndSubject, IssuerAndSerialNumber, the degenerate
certs-only PKCS#7, and the algorithm tables the message readers share.

asn1crypto is untyped (Any to mypy); everything leaving this package is a typed value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from asn1crypto import cms, core
from asn1crypto import crl as asn1_crl
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import ObjectIdentifier

from .types import MAX_MESSAGE_BYTES, FailInfo, SCEPFailure

T = TypeVar("T")

# Digest algorithms of signatures, by OID and by the name the API uses.
DIGEST_NAMES = {
    "1.3.14.3.2.26": "sha1",
    "2.16.840.1.101.3.4.2.1": "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
}
HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
# Well-known algorithm names for error messages.
ALGORITHM_NAMES = {
    "1.2.840.113549.2.5": "md5",
    "1.2.840.113549.2.2": "md2",
    "2.16.840.1.101.3.4.2.4": "sha224",
    "1.2.840.113549.1.1.4": "md5WithRSAEncryption",
    "1.2.840.113549.1.1.10": "RSASSA-PSS",
    "1.3.14.3.2.7": "des-cbc",
    "1.2.840.113549.3.2": "rc2-cbc",
    "1.2.840.113549.3.4": "rc4",
    "2.16.840.1.101.3.4.1.22": "aes192-cbc",
    "2.16.840.1.101.3.4.1.6": "aes128-gcm",
    "2.16.840.1.101.3.4.1.46": "aes256-gcm",
}


def algorithm_name(oid: str) -> str:
    return ALGORITHM_NAMES.get(oid, oid)


def parsing(
    what: str, action: Callable[[], T], *, fail: Callable[[FailInfo, str], SCEPFailure]
) -> T:
    """Run *action* (reading asn1crypto values, which parse lazily and raise many kinds of
    errors on hostile bytes); any error but a SCEPFailure becomes BAD_REQUEST."""
    try:
        return action()
    except SCEPFailure:
        raise
    except Exception as exc:  # asn1crypto raises ValueError, TypeError, KeyError, ...
        raise fail(FailInfo.BAD_REQUEST, f"{what} is malformed: {_short(exc)}") from None


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _plain(info: FailInfo, text: str) -> SCEPFailure:
    return SCEPFailure(info, text)


def load_strict(spec: Any, data: bytes, what: str) -> Any:
    """One DER value of *spec* filling *data* exactly, or BAD_REQUEST."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise SCEPFailure(FailInfo.BAD_REQUEST, f"{what} must be bytes")
    data = bytes(data)
    if len(data) > MAX_MESSAGE_BYTES:
        raise SCEPFailure(FailInfo.BAD_REQUEST, f"{what} is larger than {MAX_MESSAGE_BYTES} bytes")
    if not data:
        raise SCEPFailure(FailInfo.BAD_REQUEST, f"{what} is empty")
    return parsing(what, lambda: spec.load(data, strict=True), fail=_plain)


# --- names -------------------------------------------------------------------------

_STRING_TYPES = {
    12: _ASN1Type.UTF8String,
    19: _ASN1Type.PrintableString,
    20: _ASN1Type.T61String,
    22: _ASN1Type.IA5String,
    26: _ASN1Type.VisibleString,
    28: _ASN1Type.UniversalString,
    30: _ASN1Type.BMPString,
}
_STRING_CLASSES: dict[int, Any] = {
    12: core.UTF8String,
    19: core.PrintableString,
    20: core.TeletexString,
    22: core.IA5String,
    26: core.VisibleString,
    28: core.UniversalString,
    30: core.BMPString,
}


def to_name(name: Any) -> x509.Name:
    """A cryptography Name from an asn1crypto Name, keeping each attribute's string type."""
    rdns = []
    for rdn in name.chosen:
        attributes = []
        for atv in rdn:
            oid = atv["type"].dotted
            raw = atv["value"].dump()
            tag = raw[0]
            if tag not in _STRING_CLASSES:
                raise SCEPFailure(
                    FailInfo.BAD_REQUEST, f"name attribute {oid} is not a string (tag {tag})"
                )
            value = _STRING_CLASSES[tag].load(raw, strict=True).native
            attributes.append(
                x509.NameAttribute(ObjectIdentifier(oid), value, _type=_STRING_TYPES[tag])
            )
        rdns.append(x509.RelativeDistinguishedName(attributes))
    return x509.Name(rdns)


def from_name(name: x509.Name) -> Any:
    return asn1_x509.Name.load(name.public_bytes())


class IssuerAndSubject(core.Sequence):  # type: ignore[misc]
    """CertPoll's messageData (RFC 8894 section 3.3.3)."""

    _fields = [("issuer", asn1_x509.Name), ("subject", asn1_x509.Name)]


def read_issuer_and_subject(content: bytes) -> tuple[x509.Name, x509.Name]:
    """The (issuer, subject) of a CertPoll's IssuerAndSubject."""
    value = load_strict(IssuerAndSubject, content, "IssuerAndSubject")
    return parsing(
        "IssuerAndSubject",
        lambda: (to_name(value["issuer"]), to_name(value["subject"])),
        fail=_plain,
    )


def read_issuer_and_serial(content: bytes) -> tuple[x509.Name, int]:
    """The (issuer, serial number) of a GetCert or GetCRL IssuerAndSerialNumber."""
    value = load_strict(cms.IssuerAndSerialNumber, content, "IssuerAndSerialNumber")

    def read() -> tuple[x509.Name, int]:
        serial = value["serial_number"].native
        if not isinstance(serial, int):
            raise ValueError("serial number is not an INTEGER")
        return to_name(value["issuer"]), serial

    return parsing("IssuerAndSerialNumber", read, fail=_plain)


def issuer_and_subject(issuer: x509.Name, subject: x509.Name) -> bytes:
    """IssuerAndSubject DER (what a client's CertPoll carries)."""
    value = IssuerAndSubject({"issuer": from_name(issuer), "subject": from_name(subject)})
    return bytes(value.dump())


def issuer_and_serial(issuer: x509.Name, serial: int) -> bytes:
    """IssuerAndSerialNumber DER (what a client's GetCert or GetCRL carries)."""
    value = cms.IssuerAndSerialNumber({"issuer": from_name(issuer), "serial_number": serial})
    return bytes(value.dump())


# --- certs-only PKCS#7 ---------------------------------------------------------------


def certs_only(certificates: Sequence[x509.Certificate], crls: Sequence[bytes] = ()) -> bytes:
    """A degenerate PKCS#7 SignedData (no signers, no content) carrying *certificates*
    and the DER CRLs *crls*: GetCACert, CertRep content and GetCRL replies."""
    signed: dict[str, Any] = {
        "version": "v1",
        "digest_algorithms": [],
        "encap_content_info": {"content_type": "data"},
        "certificates": [
            asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER)) for cert in certificates
        ],
        "signer_infos": [],
    }
    if crls:
        signed["crls"] = [asn1_crl.CertificateList.load(der) for der in crls]
    info = cms.ContentInfo({"content_type": "signed_data", "content": cms.SignedData(signed)})
    return bytes(info.dump())


def read_certs_only(der: bytes) -> tuple[tuple[x509.Certificate, ...], tuple[bytes, ...]]:
    """The certificates and DER CRLs of a certs-only PKCS#7."""
    info = load_strict(cms.ContentInfo, der, "certs-only PKCS#7")

    def read() -> tuple[tuple[x509.Certificate, ...], tuple[bytes, ...]]:
        if info["content_type"].dotted != "1.2.840.113549.1.7.2":
            raise ValueError("not a SignedData")
        signed = info["content"]
        if len(signed["signer_infos"]):
            raise ValueError("a certs-only PKCS#7 has no signers")
        certificates = tuple(read_certificates(signed["certificates"]))
        crls: list[bytes] = []
        for choice in () if isinstance(signed["crls"], core.Void) else signed["crls"]:
            if choice.name != "crl":
                raise ValueError(f"unsupported revocation information {choice.name}")
            crls.append(bytes(choice.chosen.dump()))
        return certificates, tuple(crls)

    return parsing("certs-only PKCS#7", read, fail=_plain)


def read_certificates(certificates: Any) -> list[x509.Certificate]:
    """The X.509 certificates of a CertificateSet (other kinds are skipped); raises
    ValueError for a certificate cryptography cannot load."""
    out: list[x509.Certificate] = []
    if isinstance(certificates, core.Void):
        return out
    for choice in certificates:
        if choice.name == "certificate":
            out.append(x509.load_der_x509_certificate(bytes(choice.chosen.dump())))
    return out
