"""What an ACME order allows at finalize: the policy parts a provisioner puts in its
:class:`~engine.policy.SignPolicy` for the one signing pipeline.

RFC 8555 7.4: the CSR names exactly the order's identifiers (its subject
alternative names, plus the common name if it has one). For a device order
(draft-ietf-acme-device-attest) the CSR may repeat the identifier as a
PermanentIdentifier or HardwareModuleName otherName (or its common name),
names nothing else, and must carry the key the attestation certified. The
certificate gets its names from the order, never from the CSR.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ObjectIdentifier

from .. import der
from ..attestation.akcert import (
    EK_DIGEST_ASSIGNER,
    PERMANENT_IDENTIFIER_OID,
    permanent_identifier_name,
)
from ..csr import CSRInfo
from ..errors import BadRequest
from ..jose import b64url_decode
from ..names import SANKind
from ..template import CertificateTemplate, subject_with_common_name
from .identifiers import DEVICE_TYPES, DNS, HARDWARE_MODULE, IP, PERMANENT_IDENTIFIER, Identifier
from .problems import ACMEProblem
from .records import Account, Authorization, Order

HARDWARE_MODULE_NAME_OID = ObjectIdentifier("1.3.6.1.5.5.7.8.4")
# TCG: hwType of a TPM 2.0 in a HardwareModuleName (used when the CSR names none).
TPM2_HW_TYPE = "2.23.133.1.2"


def bad_csr(detail: str) -> ACMEProblem:
    return ACMEProblem("badCSR", detail)


@attrs.frozen
class FinalizeRequest:
    """Everything a provisioner's finalize authorization looks at."""

    account: Account
    order: Order
    authorizations: tuple[Authorization, ...]
    csr: CSRInfo


# --- reading the CSR's otherNames -------------------------------------------------------


def read_permanent_identifier(value: bytes) -> str | None:
    """``PermanentIdentifier ::= SEQUENCE { identifierValue UTF8String OPTIONAL, assigner OID
    OPTIONAL }``: the identifierValue, or None."""
    try:
        tag, body, end = der.read_tlv(value)
        if tag != 0x30 or end != len(value) or not body:
            return None
        inner_tag, inner, _ = der.read_tlv(body)
    except BadRequest:
        return None
    if inner_tag != 0x0C:
        return None
    try:
        return inner.decode("utf-8")
    except UnicodeDecodeError:
        return None


def read_hardware_module_name(value: bytes) -> tuple[bytes, bytes] | None:
    """``HardwareModuleName ::= SEQUENCE { hwType OID, hwSerialNum OCTET STRING }``:
    (the hwType's DER, the serial), or None."""
    try:
        tag, body, end = der.read_tlv(value)
        if tag != 0x30 or end != len(value):
            return None
        oid_tag, _, pos = der.read_tlv(body)
        serial_tag, serial, last = der.read_tlv(body, pos)
    except BadRequest:
        return None
    if oid_tag != 0x06 or serial_tag != 0x04 or last != len(body):
        return None
    return body[:pos], serial


def hardware_module_name(hw_type_der: bytes, serial: bytes) -> x509.OtherName:
    return x509.OtherName(
        HARDWARE_MODULE_NAME_OID, der.sequence(hw_type_der, der.tlv(0x04, serial))
    )


def _csr_device_names(csr: CSRInfo) -> list[tuple[Identifier, x509.OtherName]]:
    found: list[tuple[Identifier, x509.OtherName]] = []
    for other in csr.other_names:
        if other.type_id == PERMANENT_IDENTIFIER_OID:
            value = read_permanent_identifier(other.value)
            if value is None:
                raise bad_csr("the CSR's PermanentIdentifier cannot be read")
            found.append((Identifier(PERMANENT_IDENTIFIER, value), other))
        elif other.type_id == HARDWARE_MODULE_NAME_OID:
            parsed = read_hardware_module_name(other.value)
            if parsed is None:
                raise bad_csr("the CSR's HardwareModuleName cannot be read")
            serial = parsed[1].decode("utf-8", "replace")
            found.append((Identifier(HARDWARE_MODULE, serial), other))
        else:
            raise bad_csr(
                f"the CSR names an otherName {other.type_id.dotted_string} ACME cannot validate"
            )
    return found


def _common_name_identifier(common_name: str) -> Identifier:
    try:
        return Identifier(IP, str(ipaddress.ip_address(common_name)))
    except ValueError:
        return Identifier(DNS, common_name.lower().rstrip("."))


# --- validators ---------------------------------------------------------------------------


def _difference(requested: set[Identifier], ordered: set[Identifier]) -> str:
    parts = []
    extra = sorted(i.value for i in requested - ordered)
    missing = sorted(i.value for i in ordered - requested)
    if extra:
        parts.append(f"not in the order: {', '.join(extra)[:300]}")
    if missing:
        parts.append(f"missing: {', '.join(missing)[:300]}")
    return "; ".join(parts)


@attrs.frozen
class CSRNamesMatchOrder:
    """The CSR names exactly the order's identifiers (RFC 8555 7.4)."""

    identifiers: tuple[Identifier, ...]

    def validate(self, csr: CSRInfo) -> None:
        device = [i for i in self.identifiers if i.type in DEVICE_TYPES]
        for san in csr.sans:
            if san.kind not in (SANKind.DNS, SANKind.IP):
                raise bad_csr(f"the CSR names a {san.kind.value} SAN, which ACME cannot validate")
        if device:
            self._validate_device(csr, device)
            return
        if csr.other_names:
            raise bad_csr("the CSR names an otherName, which this order does not")
        requested = {
            Identifier(DNS if san.kind is SANKind.DNS else IP, san.value) for san in csr.sans
        }
        if csr.common_name is not None:
            requested.add(_common_name_identifier(csr.common_name))
        ordered = set(self.identifiers)
        if requested != ordered:
            raise bad_csr(
                "the CSR's names are not the order's identifiers ("
                + _difference(requested, ordered)
                + ")"
            )

    @staticmethod
    def _validate_device(csr: CSRInfo, device: list[Identifier]) -> None:
        if csr.sans:
            raise bad_csr("a device order's CSR names no DNS or IP SANs")
        values = {i.value for i in device}
        if csr.common_name is not None and csr.common_name not in values:
            raise bad_csr("the CSR's common name is not the ordered device identifier")
        for identifier, _ in _csr_device_names(csr):
            if identifier not in device:
                raise bad_csr(
                    f"the CSR names {identifier.type} {identifier.value!r}, which is not ordered"
                )


def _spki(key: Any) -> bytes:
    return bytes(key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))


@attrs.frozen
class PublicKeyIs:
    """device-attest-01: the CSR carries the key the attestation certified."""

    spki: bytes

    def validate(self, csr: CSRInfo) -> None:
        if _spki(csr.public_key) != self.spki:
            raise bad_csr("the CSR's key is not the key the device attestation certified")


# --- the certificate's names --------------------------------------------------------------


def _permanent_identifier_assigner(value: str, attestation: Mapping[str, Any] | None) -> str | None:
    """devid's own assigner for an EK-digest PermanentIdentifier the attestation bound."""
    if attestation is None or value not in attestation.get("permanent_identifiers", ()):
        return None
    try:
        digest = b64url_decode(value)
    except BadRequest:
        return None
    return EK_DIGEST_ASSIGNER if len(digest) == 32 else None


@attrs.frozen
class SetOrderNames:
    """Names from the order: SANs for DNS and IP, otherNames for device identifiers."""

    common_name: str | None
    identifiers: tuple[Identifier, ...]
    device_names: tuple[x509.GeneralName, ...] = ()
    extended_key_usage: tuple[x509.ObjectIdentifier, ...] | None = None

    def modify(self, template: CertificateTemplate) -> CertificateTemplate:
        sans = tuple(san for i in self.identifiers if (san := i.san()) is not None)
        changes: dict[str, Any] = {
            "subject": subject_with_common_name(self.common_name),
            "sans": sans,
            "extra_general_names": self.device_names,
        }
        if self.extended_key_usage is not None:
            changes["extended_key_usage"] = self.extended_key_usage
        return template.evolve(**changes)


def order_names(
    order: Order,
    authorizations: Sequence[Authorization],
    csr: CSRInfo,
    extended_key_usage: tuple[x509.ObjectIdentifier, ...] | None = None,
) -> SetOrderNames:
    """The certificate's names. The common name is kept only if it is an ordered value."""
    common_name: str | None = None
    if csr.common_name is not None:
        as_name = _common_name_identifier(csr.common_name)
        if as_name in order.identifiers:
            common_name = as_name.value
        elif csr.common_name in {i.value for i in order.identifiers}:
            common_name = csr.common_name
    if common_name is not None and len(common_name) > 64:
        common_name = None
    by_identifier = {a.identifier: a for a in authorizations}
    csr_hw_types = {
        i.value: other for i, other in _csr_device_names(csr) if i.type == HARDWARE_MODULE
    }
    device_names: list[x509.GeneralName] = []
    for identifier in order.identifiers:
        attestation = getattr(by_identifier.get(identifier), "attestation", None)
        if identifier.type == PERMANENT_IDENTIFIER:
            assigner = _permanent_identifier_assigner(identifier.value, attestation)
            device_names.append(permanent_identifier_name(identifier.value, assigner))
        elif identifier.type == HARDWARE_MODULE:
            requested = csr_hw_types.get(identifier.value)
            parsed = read_hardware_module_name(requested.value) if requested else None
            hw_type = parsed[0] if parsed else der.object_identifier(TPM2_HW_TYPE)
            device_names.append(hardware_module_name(hw_type, identifier.value.encode("utf-8")))
    return SetOrderNames(common_name, order.identifiers, tuple(device_names), extended_key_usage)


def attested_key(order: Order, authorizations: Sequence[Authorization]) -> bytes | None:
    """The key a device order's attestation certified (None for other orders)."""
    if not any(i.type in DEVICE_TYPES for i in order.identifiers):
        return None
    keys = {a.attested_key for a in authorizations if a.identifier.type in DEVICE_TYPES}
    if len(keys) != 1 or None in keys:
        raise bad_csr("the device order has no attested key to certify")
    key = next(iter(keys))
    assert key is not None
    return key


def evidence(request: FinalizeRequest) -> dict[str, Any]:
    """How the order was proven, stored beside the certificate."""
    out: dict[str, Any] = {
        "method": "acme",
        "provisioner": request.order.provisioner,
        "account": request.account.id,
        "order": request.order.id,
        "identifiers": [i.to_json() for i in request.order.identifiers],
    }
    attestations = [a.attestation for a in request.authorizations if a.attestation]
    if attestations:
        out["attestation"] = dict(attestations[0]) if len(attestations) == 1 else attestations
    if request.account.eab_kid:
        out["eab_kid"] = request.account.eab_kid
    return out
