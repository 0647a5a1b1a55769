"""Leaf certificates from a pre-encoded DER template and one raw signature.

cryptography's :class:`~cryptography.x509.CertificateBuilder` is the reference:
it builds Python objects for every field and extension, then encodes them in
Rust, per certificate. Most of a devid leaf is the same for every certificate
an issuer signs (version, signature algorithm, issuer name, basic constraints,
authority key identifier, the usual key and extended key usages), so
:class:`LeafEncoder` encodes those once, per issuer, and per certificate writes
only what differs (serial, validity, subject, key, subject key identifier,
names, provisioner extension), signs the TBSCertificate with the issuer's
:class:`~engine.signer.Signer` and wraps it.

The result must be byte for byte what the builder makes from the same inputs.
:meth:`LeafEncoder.for_issuer` checks that once, when the issuer is loaded, by
encoding a sample certificate both ways (the TBS part; and the whole
certificate too where the signature is deterministic: Ed25519, RSA PKCS#1
v1.5), and gives no encoder when they differ: the caller then keeps using the
builder. Per certificate, :meth:`LeafEncoder.tbs` returns None for anything it
does not encode exactly as the builder would (an unusual key or name, a
duplicate extension, a serial or date the builder refuses), and the caller
uses the builder for that certificate, which also raises the builder's errors.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtensionOID

from . import der
from .errors import BadRequest
from .extensions import PROVISIONER_OID, ProvisionerRef
from .names import SAN, SANKind
from .signer import Signer
from .template import CertificateTemplate, subject_with_common_name

#: The reference: build_certificate's CertificateBuilder path, with the issuer's
#: certificate, signer and AKI passed apart (the issuer object is being built).
ReferenceBuilder = Callable[
    [
        CertificateTemplate,
        Any,
        x509.Certificate,
        Signer,
        x509.AuthorityKeyIdentifier,
        int,
        datetime,
        datetime,
        ProvisionerRef,
    ],
    x509.Certificate,
]

_VERSION_3 = b"\xa0\x03\x02\x01\x02"
_CRITICAL = b"\x01\x01\xff"
# The builder refuses earlier dates; from 2050 on it writes GeneralizedTime.
_EARLIEST = datetime(1950, 1, 1)
_SUPPORTED_KEYS = (
    ec.EllipticCurvePublicKey,
    ed25519.Ed25519PublicKey,
    ed448.Ed448PublicKey,
    rsa.RSAPublicKey,
)
_SAN_TAGS = {SANKind.EMAIL: 0x81, SANKind.DNS: 0x82, SANKind.URI: 0x86}
# The contents of the OIDs of the two extensions a renewal computes again (2.5.29.14, .35).
_SKI_OID = b"\x55\x1d\x0e"
_AKI_OID = b"\x55\x1d\x23"


# Encodings are cached per value seen; a bound keeps memory flat whatever plugins vary.
_CACHE_LIMIT = 256
_OIDS: dict[x509.ObjectIdentifier, bytes] = {}


def _extension(oid: x509.ObjectIdentifier, critical: bool, value: bytes) -> bytes:
    body = _OIDS.get(oid)
    if body is None:
        body = der.object_identifier(oid.dotted_string)
        if len(_OIDS) < _CACHE_LIMIT:
            _OIDS[oid] = body
    if critical:
        body += _CRITICAL
    return der.tlv(0x30, body + der.tlv(0x04, value))


def _integer(value: int) -> bytes:
    """DER INTEGER of a positive number (minimal two's complement)."""
    return der.tlv(0x02, value.to_bytes((value.bit_length() + 8) // 8, "big"))


def _utc(value: datetime) -> datetime:
    """As the builder reads a time: aware ones in UTC, naive ones as UTC already."""
    if value.tzinfo is None:
        return value
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None)


def _time(value: datetime) -> bytes | None:
    """UTCTime before 2050, GeneralizedTime from then on, whole seconds (as the builder);
    None for a time the builder refuses. *value* is naive UTC (:func:`_utc`)."""
    if value < _EARLIEST:
        return None
    year = value.year
    rest = f"{value.month:02d}{value.day:02d}{value.hour:02d}{value.minute:02d}{value.second:02d}Z"
    if year < 2050:
        return b"\x17\x0d" + f"{year % 100:02d}{rest}".encode("ascii")
    return b"\x18\x0f" + f"{year:04d}{rest}".encode("ascii")


# SubjectPublicKeyInfo prefixes (up to the key bytes) and total lengths of the encodings
# cryptography writes for these keys: id-ecPublicKey + named curve + uncompressed point,
# and id-Ed25519.
_CANONICAL_SPKI = {
    91: bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d03010703420004"),
    120: bytes.fromhex("3076301006072a8648ce3d020106052b81040022036200" + "04"),
    44: bytes.fromhex("302a300506032b6570032100"),
}


def _as_builder_writes_it(spki: bytes) -> bool:
    prefix = _CANONICAL_SPKI.get(len(spki))
    return prefix is not None and spki.startswith(prefix)


def _bit_string_data(spki: bytes) -> bytes:
    """The subjectPublicKey bits of a SubjectPublicKeyInfo (RFC 5280 4.2.1.2, method 1)."""
    tag, body, _ = der.read_tlv(spki)
    if tag != 0x30:
        raise ValueError("SubjectPublicKeyInfo is not a SEQUENCE")
    _, _, offset = der.read_tlv(body)  # algorithm
    tag, bits, _ = der.read_tlv(body, offset)
    if tag != 0x03 or not bits or bits[0] != 0:
        raise ValueError("subjectPublicKey is not a whole-byte BIT STRING")
    return bits[1:]


def _general_names(sans: Sequence[SAN]) -> bytes | None:
    """The GeneralNames of plain SANs, or None for a name the builder would encode otherwise."""
    out = []
    for san in sans:
        if san.kind is SANKind.IP:
            try:
                packed = ipaddress.ip_address(san.value).packed
            except ValueError:
                return None
            out.append(der.tlv(0x87, packed))
            continue
        if not san.value.isascii():
            return None  # the builder refuses these (IA5String); let it say so
        out.append(der.tlv(_SAN_TAGS[san.kind], san.value.encode("ascii")))
    return der.tlv(0x30, b"".join(out))


class LeafEncoder:
    """Encodes and signs an issuer's leaf certificates as :func:`build_certificate` does.

    Built by :meth:`for_issuer`, which proves the equivalence on a sample first.
    Holds only encodings derived from the issuer's certificate and signer.
    """

    def __init__(
        self,
        issuer_certificate: x509.Certificate,
        signer: Signer,
        authority_key_identifier: x509.AuthorityKeyIdentifier,
        signature_algorithm: bytes,
    ) -> None:
        self.signer = signer
        self.signature_algorithm = signature_algorithm
        self.issuer_name = issuer_certificate.subject.public_bytes()
        self.basic_constraints = _extension(
            ExtensionOID.BASIC_CONSTRAINTS,
            True,
            x509.BasicConstraints(ca=False, path_length=None).public_bytes(),
        )
        self.authority_key_identifier = _extension(
            ExtensionOID.AUTHORITY_KEY_IDENTIFIER, False, authority_key_identifier.public_bytes()
        )
        # Small caches keyed by what templates vary in (a handful of values each).
        self._key_usage: dict[frozenset[str], bytes] = {}
        self._eku: dict[tuple[x509.ObjectIdentifier, ...], bytes] = {}
        self._provisioner: dict[ProvisionerRef, bytes] = {}

    # --- construction ---------------------------------------------------------------

    @classmethod
    def for_issuer(
        cls,
        issuer_certificate: x509.Certificate,
        signer: Signer,
        authority_key_identifier: x509.AuthorityKeyIdentifier,
        reference_certificate: ReferenceBuilder,
    ) -> LeafEncoder | None:
        """An encoder for this issuer, or None if it does not match the builder here."""
        try:
            public_key = signer.public_key
            sample = _sample_template()
            not_before = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
            not_after = datetime(2051, 6, 7, 8, 9, 10, tzinfo=UTC)
            provisioner = ProvisionerRef(type="JWK", name="self-check")
            serial = 0x5A3C_9F00_0102_0304_0506_0708_090A_0B0C_0D0E_0F10
            reference = reference_certificate(
                sample,
                public_key,
                issuer_certificate,
                signer,
                authority_key_identifier,
                serial,
                not_before,
                not_after,
                provisioner,
            )
            reference_der = reference.public_bytes(Encoding.DER)
            _, body, _ = der.read_tlv(reference_der)
            _, _, offset = der.read_tlv(body)  # tbsCertificate
            _, algorithm, _ = der.read_tlv(body, offset)
            encoder = cls(
                issuer_certificate,
                signer,
                authority_key_identifier,
                der.tlv(0x30, algorithm),
            )
            tbs = encoder.tbs(sample, public_key, serial, not_before, not_after, provisioner)
            if tbs is None or tbs != reference.tbs_certificate_bytes:
                return None
            certificate = encoder.certificate(tbs)
            if isinstance(public_key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey) or (
                isinstance(public_key, rsa.RSAPublicKey) and signer.hash_algorithm is not None
            ):
                # Deterministic signatures: the whole certificate must be the same bytes.
                if certificate != reference_der:
                    return None
            else:
                loaded = x509.load_der_x509_certificate(certificate)
                if loaded.tbs_certificate_bytes != reference.tbs_certificate_bytes:
                    return None
                loaded.verify_directly_issued_by(issuer_certificate)
        except Exception:
            return None
        return encoder

    # --- per certificate -----------------------------------------------------------

    def tbs(
        self,
        template: CertificateTemplate,
        public_key: Any,
        serial: int,
        not_before: datetime,
        not_after: datetime,
        provisioner: ProvisionerRef,
        spki: bytes | None = None,
    ) -> bytes | None:
        """The TBSCertificate DER :func:`build_certificate` would sign, or None to use it.

        *spki*: *public_key*'s SubjectPublicKeyInfo as the request carried it, if known;
        used when it is already in the form the builder writes (uncompressed EC points,
        Ed25519), else the key is encoded again.
        """
        if not isinstance(public_key, _SUPPORTED_KEYS):
            return None
        if serial <= 0 or serial.bit_length() > 159:
            return None
        first, last = _utc(not_before), _utc(not_after)
        start, end = _time(first), _time(last)
        if start is None or end is None or last < first:
            return None
        if spki is None or not _as_builder_writes_it(spki):
            spki = public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        ski = hashlib.sha1(_bit_string_data(spki)).digest()
        extensions = [
            self.basic_constraints,
            self._key_usage_extension(template),
            _extension(ExtensionOID.SUBJECT_KEY_IDENTIFIER, False, der.tlv(0x04, ski)),
            self.authority_key_identifier,
        ]
        seen = {
            ExtensionOID.BASIC_CONSTRAINTS,
            ExtensionOID.KEY_USAGE,
            ExtensionOID.SUBJECT_KEY_IDENTIFIER,
            ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        }
        if template.extended_key_usage:
            extensions.append(self._eku_extension(template.extended_key_usage))
            seen.add(ExtensionOID.EXTENDED_KEY_USAGE)
        if template.sans or template.extra_general_names:
            if template.extra_general_names:
                names = x509.SubjectAlternativeName(template.general_names()).public_bytes()
            else:
                encoded = _general_names(template.sans)
                if encoded is None:
                    return None
                names = encoded
            extensions.append(
                _extension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, len(template.subject) == 0, names)
            )
            seen.add(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
        extensions.append(self._provisioner_extension(provisioner))
        seen.add(PROVISIONER_OID)
        for ext in template.extra_extensions:
            if ext.oid in seen:
                return None  # the builder refuses duplicates; let it say so
            seen.add(ext.oid)
            extensions.append(_extension(ext.oid, ext.critical, ext.value.public_bytes()))
        return self._tbs(
            serial, start + end, template.subject.public_bytes(), spki, b"".join(extensions)
        )

    def _tbs(
        self, serial: int, validity: bytes, subject: bytes, spki: bytes, extensions: bytes
    ) -> bytes:
        """A v3 TBSCertificate of this issuer from its parts, encoded already (the
        extensions as their concatenated Extension SEQUENCEs)."""
        return der.tlv(
            0x30,
            b"".join(
                (
                    _VERSION_3,
                    _integer(serial),
                    self.signature_algorithm,
                    self.issuer_name,
                    der.tlv(0x30, validity),
                    subject,
                    spki,
                    der.tlv(0xA3, der.tlv(0x30, extensions)),
                )
            ),
        )

    def renewal_tbs(
        self, current_tbs: bytes, serial: int, not_before: datetime, not_after: datetime
    ) -> bytes | None:
        """The TBSCertificate :func:`engine.pipeline.renew_certificate`'s builder would sign
        for a renewal of the certificate whose TBSCertificate is *current_tbs*: its subject,
        key and extensions kept as they are encoded, a new serial and validity, a subject
        key identifier from the key and this issuer's authority key identifier first (as
        the builder adds them). None for anything the builder might write otherwise (not
        this issuer's v3 certificate, unique identifiers, a key in a form the builder
        would encode again, an explicitly non-critical flag): the caller then builds it.
        """
        if serial <= 0 or serial.bit_length() > 159:
            return None
        first, last = _utc(not_before), _utc(not_after)
        start, end = _time(first), _time(last)
        if start is None or end is None or last < first:
            return None
        try:
            tag, body, tail = der.read_tlv(current_tbs)
            if tag != 0x30 or tail != len(current_tbs):
                return None
            tag, value, offset = der.read_tlv(body)
            if tag != 0xA0 or der.tlv(0xA0, value) != _VERSION_3:
                return None
            for expected in (0x02, 0x30):  # serial, signature algorithm
                tag, _, offset = der.read_tlv(body, offset)
                if tag != expected:
                    return None
            tag, issuer, offset = der.read_tlv(body, offset)
            if tag != 0x30 or der.tlv(0x30, issuer) != self.issuer_name:
                return None
            tag, _, offset = der.read_tlv(body, offset)  # validity
            if tag != 0x30:
                return None
            subject_start = offset
            tag, _, offset = der.read_tlv(body, offset)
            spki_start = offset
            if tag != 0x30:
                return None
            tag, _, offset = der.read_tlv(body, offset)
            if tag != 0x30:
                return None
            subject, spki = body[subject_start:spki_start], body[spki_start:offset]
            if not _as_builder_writes_it(spki):
                return None
            tag, wrapped, offset = der.read_tlv(body, offset)
            if tag != 0xA3 or offset != len(body):
                return None
            tag, extensions, tail = der.read_tlv(wrapped)
            if tag != 0x30 or tail != len(wrapped):
                return None
            kept = []
            seen: set[bytes] = set()
            position = 0
            while position < len(extensions):
                start_of = position
                tag, extension, position = der.read_tlv(extensions, position)
                if tag != 0x30:
                    return None
                tag, oid, inner = der.read_tlv(extension)
                if tag != 0x06:
                    return None
                tag, flag, after = der.read_tlv(extension, inner)
                if tag == 0x01:
                    if flag != b"\xff":
                        return None  # DER never writes FALSE; the builder would drop it
                    tag, _, after = der.read_tlv(extension, after)
                if tag != 0x04 or after != len(extension) or oid in seen:
                    return None  # a duplicate: the builder's reading refuses it
                seen.add(oid)
                if oid in (_SKI_OID, _AKI_OID):
                    continue
                kept.append(extensions[start_of:position])
            ski = hashlib.sha1(_bit_string_data(spki)).digest()
        except (ValueError, BadRequest):
            return None
        identifier = der.tlv(0x04, ski)
        return self._tbs(
            serial,
            start + end,
            subject,
            spki,
            _extension(ExtensionOID.SUBJECT_KEY_IDENTIFIER, False, identifier)
            + self.authority_key_identifier
            + b"".join(kept),
        )

    def certificate(self, tbs: bytes) -> bytes:
        """Sign *tbs* with the issuer's signer: the Certificate DER."""
        signature = self.signer.sign(tbs)
        return der.tlv(0x30, tbs + self.signature_algorithm + der.tlv(0x03, b"\x00" + signature))

    # --- cached extension encodings ---------------------------------------------------

    def _key_usage_extension(self, template: CertificateTemplate) -> bytes:
        found = self._key_usage.get(template.key_usage)
        if found is None:
            value = template.key_usage_extension().public_bytes()
            found = _extension(ExtensionOID.KEY_USAGE, True, value)
            if len(self._key_usage) < _CACHE_LIMIT:
                self._key_usage[template.key_usage] = found
        return found

    def _eku_extension(self, usages: tuple[x509.ObjectIdentifier, ...]) -> bytes:
        found = self._eku.get(usages)
        if found is None:
            value = x509.ExtendedKeyUsage(list(usages)).public_bytes()
            found = _extension(ExtensionOID.EXTENDED_KEY_USAGE, False, value)
            if len(self._eku) < _CACHE_LIMIT:
                self._eku[usages] = found
        return found

    def _provisioner_extension(self, provisioner: ProvisionerRef) -> bytes:
        found = self._provisioner.get(provisioner)
        if found is None:
            ext = provisioner.to_extension()
            found = _extension(ext.oid, False, ext.value)
            if len(self._provisioner) < _CACHE_LIMIT:
                self._provisioner[provisioner] = found
        return found


def _sample_template() -> CertificateTemplate:
    """A template with every part a leaf can have, for the self-check."""
    return CertificateTemplate(
        subject=subject_with_common_name("self-check.devid.invalid"),
        sans=(
            SAN.parse("self-check.devid.invalid"),
            SAN.parse("192.0.2.7"),
            SAN.parse("2001:db8::7"),
            SAN.parse("device@devid.invalid"),
            SAN.parse("urn:devid:self-check"),
        ),
        key_usage=frozenset({"digital_signature", "key_agreement"}),
    )
