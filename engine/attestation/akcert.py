"""The AK certificate: TCG's profile plus devid's binding to the device.

TCG (EK Credential Profile / AK certificate practice): X.509 v3, empty
subject, a critical SubjectAltName with a directoryName naming the TPM's
manufacturer, model and version, the key purpose tcg-kp-AIKCertificate, not a
CA. devid adds the device binding in the same SAN: a PermanentIdentifier
(RFC 4043) holding the base64url SHA-256 of the EK public key, and the
``urn:ek:sha256:`` URI the inventory uses.
"""

from __future__ import annotations

import re

import attrs
from cryptography import x509
from cryptography.x509.oid import ObjectIdentifier

from .. import der
from ..errors import BadRequest
from ..extensions import DEVID_ARC
from ..inventory import EK_URN_PREFIX, ek_urn_from_digest, permanent_identifier_value
from ..names import SAN, SANKind
from ..template import CertificateTemplate

TCG_KP_AIK_CERTIFICATE = ObjectIdentifier("2.23.133.8.3")
TCG_AT_TPM_MANUFACTURER = ObjectIdentifier("2.23.133.2.1")
TCG_AT_TPM_MODEL = ObjectIdentifier("2.23.133.2.2")
TCG_AT_TPM_VERSION = ObjectIdentifier("2.23.133.2.3")
PERMANENT_IDENTIFIER_OID = ObjectIdentifier("1.3.6.1.5.5.7.8.3")
# The assigner of devid's PermanentIdentifier values: "SHA-256 of the EK's SPKI, base64url".
EK_DIGEST_ASSIGNER = DEVID_ARC + ".2"
EK_URN_SAN_PREFIX = EK_URN_PREFIX
_ID = re.compile(r"^id:[0-9A-Fa-f]{1,16}$")


@attrs.frozen
class TPMInfo:
    """The TPM's manufacturer, model and firmware version as TCG attributes ("id:..." forms)."""

    manufacturer: str = ""
    model: str = ""
    version: str = ""

    @classmethod
    def from_client(cls, manufacturer: str, model: str, firmware: str) -> TPMInfo:
        """From the client's tpmInfo: decimal TPM_PT_MANUFACTURER, vendor string, "major.minor"."""
        maker = ""
        if manufacturer.isdigit() and int(manufacturer) < 2**32:
            maker = f"id:{int(manufacturer):08X}"
        elif _ID.match(manufacturer):
            maker = manufacturer.upper().replace("ID:", "id:")
        version = ""
        parts = firmware.split(".")
        if len(parts) == 2 and all(p.isdigit() and int(p) < 2**16 for p in parts):
            version = f"id:{int(parts[0]):04X}{int(parts[1]):04X}"
        return cls(maker, model.strip()[:64], version)

    @classmethod
    def from_ek_certificate(cls, cert: x509.Certificate) -> TPMInfo | None:
        """The TPM attributes in an EK certificate's directoryName SAN, if it has them."""
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except (x509.ExtensionNotFound, ValueError):
            return None
        values: dict[ObjectIdentifier, str] = {}
        for name in san.get_values_for_type(x509.DirectoryName):
            for attribute in name:
                if isinstance(attribute.value, str):
                    values[attribute.oid] = attribute.value
        if TCG_AT_TPM_MANUFACTURER not in values:
            return None
        return cls(
            values.get(TCG_AT_TPM_MANUFACTURER, ""),
            values.get(TCG_AT_TPM_MODEL, ""),
            values.get(TCG_AT_TPM_VERSION, ""),
        )

    def directory_name(self) -> x509.DirectoryName | None:
        attributes = [
            x509.NameAttribute(oid, value)
            for oid, value in (
                (TCG_AT_TPM_MANUFACTURER, self.manufacturer),
                (TCG_AT_TPM_MODEL, self.model),
                (TCG_AT_TPM_VERSION, self.version),
            )
            if value
        ]
        if not attributes:
            return None
        return x509.DirectoryName(x509.Name([x509.RelativeDistinguishedName(attributes)]))


def permanent_identifier_name(
    value: str, assigner: str | None = EK_DIGEST_ASSIGNER
) -> x509.OtherName:
    """An otherName SAN holding PermanentIdentifier { identifierValue, assigner }."""
    parts = [der.utf8_string(value)]
    if assigner:
        parts.append(der.object_identifier(assigner))
    return x509.OtherName(PERMANENT_IDENTIFIER_OID, der.sequence(*parts))


def ak_certificate_template(tpm: TPMInfo, ek_digest: bytes) -> CertificateTemplate:
    names: list[x509.GeneralName] = []
    directory = tpm.directory_name()
    if directory is not None:
        names.append(directory)
    names.append(permanent_identifier_name(permanent_identifier_value(ek_digest)))
    return CertificateTemplate(
        subject=x509.Name([]),
        sans=(SAN(SANKind.URI, ek_urn_from_digest(ek_digest)),),
        key_usage=frozenset({"digital_signature"}),
        extended_key_usage=(TCG_KP_AIK_CERTIFICATE,),
        extra_general_names=tuple(names),
    )


@attrs.frozen
class AKIdentities:
    """The device identities an AK certificate binds (what device-attest-01 matches)."""

    permanent_identifiers: tuple[str, ...] = ()
    ek_urns: tuple[str, ...] = ()
    hardware_serials: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.permanent_identifiers or self.ek_urns or self.hardware_serials)


def _read_permanent_identifier(value: bytes) -> str | None:
    tag, body, end = der.read_tlv(value)
    if tag != 0x30 or end != len(value):
        return None
    if not body:
        return None
    inner_tag, inner, _ = der.read_tlv(body)
    if inner_tag != 0x0C:
        return None
    return inner.decode("utf-8")


def identities_of_ak_certificate(cert: x509.Certificate) -> AKIdentities:
    """Collect PermanentIdentifier values and EK URNs from the SAN; malformed parts are skipped."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return AKIdentities()
    except ValueError as exc:
        raise BadRequest(f"the AK certificate's SAN cannot be parsed: {exc}") from None
    permanent: list[str] = []
    for other in san.get_values_for_type(x509.OtherName):
        if other.type_id != PERMANENT_IDENTIFIER_OID:
            continue
        try:
            value = _read_permanent_identifier(other.value)
        except (BadRequest, UnicodeDecodeError):
            continue
        if value:
            permanent.append(value)
    urns = [
        uri
        for uri in san.get_values_for_type(x509.UniformResourceIdentifier)
        if uri.lower().startswith(EK_URN_PREFIX)
    ]
    return AKIdentities(tuple(permanent), tuple(urns))
