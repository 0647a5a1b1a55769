"""Accounts: the Wi-Fi networks, VPNs and services a device may reach, and the certificate
each one gets.

An account describes a client certificate: its subject common name and SANs,
written as templates over the device's inventory record (``{device.name}``,
``{device.ek}``, ...), its EKUs, key type and validity; and which devices get
it (by EK URN and/or by tag). The Account CA issues it through an X5C
provisioner per account whose leaf is the device certificate, so the names
always come from the inventory, never from the device.

Everything here is pure: ids, clocks and storage belong to the caller.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import attrs
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from .acme.finalize import read_permanent_identifier
from .attestation.akcert import PERMANENT_IDENTIFIER_OID, permanent_identifier_name
from .csr import CSRInfo
from .durations import format_duration, parse_duration
from .errors import BadRequest, Forbidden
from .inventory import (
    Device,
    check_tags,
    check_text,
    ek_urn_from_digest,
    normalize_ek_urn,
    parse_ek_urn,
    permanent_identifier_value,
)
from .jose import b64url_decode
from .keys import KeyType
from .names import SAN, SANKind
from .policy import DurationLimits
from .template import CertificateTemplate, subject_with_common_name

PROVISIONER_PREFIX = "account:"
MAX_SANS = 20
MAX_DEVICES = 10_000
MAX_TEMPLATE_LENGTH = 256
DEFAULT_VALIDITY = timedelta(hours=24)
MIN_VALIDITY = timedelta(minutes=5)
MAX_VALIDITY = timedelta(days=30)
# What a TPM 2.0 can hold and common supplicants accept; P-256 unless a supplicant needs RSA.
KEY_TYPES = (KeyType.P256, KeyType.P384, KeyType.RSA2048)
DEFAULT_KEY_TYPE = KeyType.P256
DEFAULT_COMMON_NAME = "{device.ek}"
DEFAULT_SANS = ("{device.ek}",)

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
_PLACEHOLDER = re.compile(r"\{([a-z]+\.[a-z]+)\}")
_SAN_KIND_PREFIX = re.compile(r"^(dns|ip|email|uri):", re.IGNORECASE)


class AccountType(enum.Enum):
    WIFI = "wifi"  # Wi-Fi / 802.1X (EAP-TLS)
    VPN = "vpn"
    WEB = "web"  # web / mTLS services
    GENERIC = "generic"


class AccountStatus(enum.Enum):
    ACTIVE = "active"
    DISABLED = "disabled"


EKU_NAMES: Mapping[str, x509.ObjectIdentifier] = {
    "clientAuth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "serverAuth": ExtendedKeyUsageOID.SERVER_AUTH,
    "emailProtection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "ipsecIKE": ExtendedKeyUsageOID.IPSEC_IKE,
}
DEFAULT_EKU: Mapping[AccountType, tuple[str, ...]] = {
    AccountType.WIFI: ("clientAuth",),
    AccountType.VPN: ("clientAuth",),
    AccountType.WEB: ("clientAuth",),
    AccountType.GENERIC: ("clientAuth",),
}

# Each placeholder and how it reads a device (None when the device lacks the field).
PLACEHOLDERS = (
    "device.ek",  # urn:ek:sha256:<base64>, as the inventory lists it
    "device.id",  # the same digest as base64url: the device certificate's PermanentIdentifier
    "device.name",
    "device.serial",
    "device.owner",
    "account.name",
    "account.type",
)
_DEVICE_FIELDS = {"device.name": "name", "device.serial": "serial", "device.owner": "owner"}


def provisioner_name(account_name: str) -> str:
    """The name of the X5C provisioner that issues an account's certificates."""
    return PROVISIONER_PREFIX + account_name


# --- templates -------------------------------------------------------------------------


def check_template_text(value: Any, field: str) -> str:
    """A template string: printable text whose ``{...}`` parts are all known placeholders."""
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{field} must be a non-empty string")
    if len(value) > MAX_TEMPLATE_LENGTH or any(ord(c) < 32 for c in value):
        raise BadRequest(
            f"{field} must be printable text of at most {MAX_TEMPLATE_LENGTH} characters"
        )
    for match in _PLACEHOLDER.finditer(value):
        if match.group(1) not in PLACEHOLDERS:
            known = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
            raise BadRequest(f"{field}: unknown placeholder {match.group(0)}; known: {known}")
    if "{" in _PLACEHOLDER.sub("", value) or "}" in _PLACEHOLDER.sub("", value):
        raise BadRequest(f"{field}: braces may only surround a placeholder such as {{device.name}}")
    return value


def _sample(text: str) -> str:
    """*text* with sample values, to learn what kind of name a SAN template makes."""
    samples = {"device.ek": "urn:ek:sha256:AAAA", "device.id": "aaaa"}
    return _PLACEHOLDER.sub(lambda m: samples.get(m.group(1), "x"), text)


def san_template_kind(template: str) -> SANKind:
    """The kind of name a SAN template makes: its ``dns:``/``ip:``/``email:``/``uri:``
    prefix, else what its literal text implies; BadRequest if that is ambiguous."""
    prefix = _SAN_KIND_PREFIX.match(template)
    if prefix:
        return SANKind(prefix.group(1).lower())
    if template == "{device.ek}":
        return SANKind.URI
    if not _PLACEHOLDER.sub("", template):
        raise BadRequest(
            f"SAN template {template!r} is only a placeholder: say what kind of name it makes"
            " with a prefix, e.g. 'dns:{device.name}' or 'email:{device.owner}'"
        )
    try:
        return SAN.parse(_sample(template)).kind
    except BadRequest:
        raise BadRequest(
            f"SAN template {template!r} does not make a DNS name, IP address, email address"
            " or URI; prefix it with dns:, ip:, email: or uri: if it does"
        ) from None


def _san_body(template: str) -> str:
    prefix = _SAN_KIND_PREFIX.match(template)
    return template[prefix.end() :] if prefix else template


def check_san_template(value: Any) -> str:
    template = check_template_text(value, "each SAN template")
    kind = san_template_kind(template)
    if not _san_body(template):
        raise BadRequest(f"SAN template {template!r} is empty after its {kind.value}: prefix")
    return template


def check_eku(value: Any, account_type: AccountType) -> tuple[str, ...]:
    if value is None:
        return DEFAULT_EKU[account_type]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise BadRequest("eku must be a list of names or dotted OIDs")
    out: list[str] = []
    for item in value:
        if item not in EKU_NAMES:
            try:
                x509.ObjectIdentifier(item)
            except ValueError:
                names = ", ".join(EKU_NAMES)
                raise BadRequest(f"unknown EKU {item!r}; use one of {names} or an OID") from None
        if item not in out:
            out.append(item)
    if not out:
        raise BadRequest("eku must name at least one extended key usage")
    return tuple(out)


def eku_oids(names: Iterable[str]) -> tuple[x509.ObjectIdentifier, ...]:
    return tuple(EKU_NAMES.get(n) or x509.ObjectIdentifier(n) for n in names)


# --- the record --------------------------------------------------------------------------


@attrs.frozen
class Account:
    """One account. ``common_name`` and ``sans`` are templates; see :func:`render_template`."""

    id: str
    name: str
    type: AccountType
    common_name: str | None = DEFAULT_COMMON_NAME
    sans: tuple[str, ...] = DEFAULT_SANS
    eku: tuple[str, ...] = ("clientAuth",)
    description: str | None = None
    key_type: KeyType = DEFAULT_KEY_TYPE
    validity: timedelta = DEFAULT_VALIDITY
    tpm_key: bool = True
    pkcs12: bool = False
    devices: tuple[str, ...] = ()  # EK URNs
    tags: tuple[str, ...] = ()
    status: AccountStatus = AccountStatus.ACTIVE
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.status is AccountStatus.ACTIVE

    @property
    def provisioner_name(self) -> str:
        return provisioner_name(self.name)

    @property
    def extended_key_usage(self) -> tuple[x509.ObjectIdentifier, ...]:
        return eku_oids(self.eku)

    @property
    def durations(self) -> DurationLimits:
        """What the account's provisioner allows: up to ``validity``, by default exactly it."""
        return DurationLimits(
            minimum=min(MIN_VALIDITY, self.validity),
            maximum=self.validity,
            default=self.validity,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "type": self.type.value,
            "description": self.description,
            "commonName": self.common_name,
            "sans": list(self.sans),
            "eku": list(self.eku),
            "keyType": self.key_type.value,
            "validity": format_duration(self.validity),
            "tpmKey": self.tpm_key,
            "pkcs12": self.pkcs12,
            "devices": list(self.devices),
            "tags": list(self.tags),
            "status": self.status.value,
            "provisioner": self.provisioner_name,
            "createdAt": self.created_at.isoformat() if self.created_at else None,
            "updatedAt": self.updated_at.isoformat() if self.updated_at else None,
        }


# Fields an API/CLI record may carry, and which of them PATCH may change.
INPUT_FIELDS = frozenset(
    {
        "name",
        "type",
        "description",
        "commonName",
        "sans",
        "eku",
        "keyType",
        "validity",
        "tpmKey",
        "pkcs12",
        "devices",
        "tags",
        "status",
    }
)
CHANGEABLE_FIELDS = INPUT_FIELDS - {"name"}


def check_name(value: Any) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise BadRequest(
            "an account name is 1-63 lower-case letters, digits and _.- starting with a letter"
            " or digit, e.g. 'corp-wifi'"
        )
    return value


def _check_type(value: Any) -> AccountType:
    try:
        return AccountType(value)
    except ValueError:
        kinds = ", ".join(t.value for t in AccountType)
        raise BadRequest(f"type must be one of {kinds}") from None


def _check_status(value: Any) -> AccountStatus:
    try:
        return AccountStatus(value)
    except ValueError:
        raise BadRequest("status must be 'active' or 'disabled'") from None


def _check_key_type(value: Any) -> KeyType:
    allowed = ", ".join(k.value for k in KEY_TYPES)
    if not isinstance(value, str):
        raise BadRequest(f"keyType must be one of {allowed}")
    for key_type in KEY_TYPES:
        if key_type.value.lower() == value.strip().lower():
            return key_type
    raise BadRequest(f"keyType {value!r} is not allowed for accounts; use one of {allowed}")


def _check_validity(value: Any) -> timedelta:
    """Seconds (an integer) or a duration string, from MIN_VALIDITY to MAX_VALIDITY."""
    refusal = BadRequest(
        f"validity must be between {format_duration(MIN_VALIDITY)} and"
        f" {format_duration(MAX_VALIDITY)}"
    )
    if isinstance(value, int) and not isinstance(value, bool):
        # Checked before timedelta(), which overflows on numbers like 10**20.
        if not MIN_VALIDITY.total_seconds() <= value <= MAX_VALIDITY.total_seconds():
            raise refusal
        validity = timedelta(seconds=value)
    else:
        validity = parse_duration(value)
    if not MIN_VALIDITY <= validity <= MAX_VALIDITY:
        raise refusal
    return validity


def _check_bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise BadRequest(f"{field} must be true or false")
    return value


def _check_common_name(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return check_template_text(value, "commonName")


def _check_sans(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise BadRequest("sans must be a list of SAN templates")
    if len(value) > MAX_SANS:
        raise BadRequest(f"at most {MAX_SANS} SAN templates")
    out: list[str] = []
    for item in value:
        template = check_san_template(item)
        if template not in out:
            out.append(template)
    return tuple(out)


def _check_devices(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise BadRequest("devices must be a list of EK URNs (urn:ek:sha256:...)")
    if len(value) > MAX_DEVICES:
        raise BadRequest(f"at most {MAX_DEVICES} devices; assign larger groups by tag")
    return tuple(sorted({normalize_ek_urn(v) for v in value}))


def _checked(field: str, value: Any, account_type: AccountType) -> tuple[str, Any]:
    """One input field, validated, as (Account attribute, value)."""
    if field == "type":
        return "type", _check_type(value)
    if field == "description":
        return "description", check_text(value, "description", 1024)
    if field == "commonName":
        return "common_name", _check_common_name(value)
    if field == "sans":
        return "sans", _check_sans(value)
    if field == "eku":
        return "eku", check_eku(value, account_type)
    if field == "keyType":
        return "key_type", _check_key_type(value)
    if field == "validity":
        return "validity", _check_validity(value)
    if field == "tpmKey":
        return "tpm_key", _check_bool(value, "tpmKey")
    if field == "pkcs12":
        return "pkcs12", _check_bool(value, "pkcs12")
    if field == "devices":
        return "devices", _check_devices(value)
    if field == "tags":
        return "tags", check_tags(value)
    if field == "status":
        return "status", _check_status(value)
    raise BadRequest(f"unknown account field {field!r}")  # pragma: no cover - callers filter


def _require_identity(account: Account) -> Account:
    if account.common_name is None and not account.sans:
        raise BadRequest("an account needs a commonName template or at least one SAN template")
    return account


def _account(
    data: Any, *, id: str, created_at: datetime | None, updated_at: datetime | None
) -> Account:
    if not isinstance(data, dict):
        raise BadRequest("an account must be a JSON object")
    unknown = set(data) - INPUT_FIELDS
    if unknown:
        raise BadRequest(
            f"unknown account field(s): {', '.join(sorted(unknown))};"
            f" known: {', '.join(sorted(INPUT_FIELDS))}"
        )
    name = check_name(data.get("name"))
    if "type" not in data:
        kinds = ", ".join(t.value for t in AccountType)
        raise BadRequest(f"an account needs a type: {kinds}")
    account_type = _check_type(data["type"])
    values: dict[str, Any] = {"eku": DEFAULT_EKU[account_type]}
    for field, value in data.items():
        if field == "name":
            continue
        attribute, checked = _checked(field, value, account_type)
        values[attribute] = checked
    account = Account(id=id, name=name, created_at=created_at, updated_at=updated_at, **values)
    return _require_identity(account)


def account_from_input(data: Any, *, id: str, now: datetime) -> Account:
    """Validate an API/CLI record (the keys of :meth:`Account.to_json`) into a new Account."""
    return _account(data, id=id, created_at=now, updated_at=now)


def update_account(account: Account, changes: Any, *, now: datetime) -> Account:
    """Apply a PATCH: only the fields given change; the name never does."""
    if not isinstance(changes, dict):
        raise BadRequest("changes must be a JSON object")
    unknown = set(changes) - CHANGEABLE_FIELDS
    if unknown:
        raise BadRequest(
            f"cannot change {', '.join(sorted(unknown))};"
            f" changeable: {', '.join(sorted(CHANGEABLE_FIELDS))}"
        )
    account_type = _check_type(changes["type"]) if "type" in changes else account.type
    updates: dict[str, Any] = {"updated_at": now}
    for field, value in changes.items():
        attribute, checked = _checked(field, value, account_type)
        updates[attribute] = checked
    return _require_identity(attrs.evolve(account, **updates))


def account_from_store(data: Mapping[str, Any]) -> Account:
    """An account as :meth:`Account.to_json` wrote it (id and times included)."""
    created, updated = data.get("createdAt"), data.get("updatedAt")
    return _account(
        {k: v for k, v in data.items() if k in INPUT_FIELDS},
        id=str(data["id"]),
        created_at=datetime.fromisoformat(created) if created else None,
        updated_at=datetime.fromisoformat(updated) if updated else None,
    )


# --- which devices get which accounts -----------------------------------------------------


def is_assigned(account: Account, device: Device) -> bool:
    """Whether *account* names *device*, by its EK URN or one of its tags."""
    return device.ek_urn in account.devices or bool(set(account.tags) & set(device.tags))


def accounts_for(device: Device, accounts: Iterable[Account]) -> list[Account]:
    """The active accounts assigned to *device*, by name; none for a disabled device."""
    if not device.active:
        return []
    return sorted(
        (a for a in accounts if a.active and is_assigned(a, device)), key=lambda a: a.name
    )


# --- rendering ------------------------------------------------------------------------------


def placeholder_values(account: Account, device: Device) -> dict[str, str | None]:
    values: dict[str, str | None] = {
        "device.ek": device.ek_urn,
        "device.id": permanent_identifier_value(parse_ek_urn(device.ek_urn)),
        "account.name": account.name,
        "account.type": account.type.value,
    }
    for placeholder, field in _DEVICE_FIELDS.items():
        values[placeholder] = getattr(device, field)
    return values


def _fill(text: str, values: Mapping[str, str | None], account: Account, device: Device) -> str:
    def replace(match: re.Match[str]) -> str:
        value = values.get(match.group(1))
        if value is None:
            raise Forbidden(
                f"account {account.name!r} needs {match.group(0)}, which device"
                f" {device.ek_urn} does not have in the inventory"
            )
        return value

    return _PLACEHOLDER.sub(replace, text)


def _render_san(
    template: str, values: Mapping[str, str | None], account: Account, device: Device
) -> SAN:
    kind = san_template_kind(template)
    text = _fill(_san_body(template), values, account, device)
    try:
        san = SAN.parse(text)
    except BadRequest as exc:
        raise Forbidden(
            f"account {account.name!r}: SAN template {template!r} renders {text!r} for device"
            f" {device.ek_urn}: {exc.detail}"
        ) from None
    if san.kind is not kind:
        raise Forbidden(
            f"account {account.name!r}: SAN template {template!r} renders {text!r} for device"
            f" {device.ek_urn}, which is not {_KIND_WORDS[kind]}"
        )
    return san


_KIND_WORDS = {
    SANKind.DNS: "a DNS name",
    SANKind.IP: "an IP address",
    SANKind.EMAIL: "an email address",
    SANKind.URI: "a URI",
}


def render_template(account: Account, device: Device) -> tuple[str | None, tuple[SAN, ...]]:
    """The common name and SANs *account*'s certificate carries for *device*.

    Forbidden when the device lacks a field the template names, or a value does not make
    the kind of name the template promises (a name with '@' cannot turn a DNS SAN into an
    email address).
    """
    values = placeholder_values(account, device)
    common_name: str | None = None
    if account.common_name is not None:
        common_name = _fill(account.common_name, values, account, device)
        try:
            subject_with_common_name(common_name)
        except BadRequest as exc:
            raise Forbidden(
                f"account {account.name!r}: the common name for device {device.ek_urn}"
                f" is unusable: {exc.detail}"
            ) from None
    sans: list[SAN] = []
    for template in account.sans:
        san = _render_san(template, values, account, device)
        if san not in sans:
            sans.append(san)
    return common_name, tuple(sans)


# --- the device behind a device certificate -------------------------------------------------


def device_ek_urns(certificate: x509.Certificate) -> tuple[str, ...]:
    """The EK URNs a device certificate binds through PermanentIdentifier otherNames
    carrying devid's EK-digest assigner (what device-attest-01 writes after attestation).

    Plain URI SANs are not trusted: other provisioners of the same CA may put any URI in
    a certificate, but only an attested device gets this otherName.
    """
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    except ValueError:
        raise BadRequest("the certificate's SAN cannot be parsed") from None
    urns: set[str] = set()
    for other in san.get_values_for_type(x509.OtherName):
        if other.type_id != PERMANENT_IDENTIFIER_OID:
            continue
        value = read_permanent_identifier(other.value)
        if not value or other.value != permanent_identifier_name(value).value:
            continue  # not devid's EK-digest assigner
        try:
            digest = b64url_decode(value)
        except BadRequest:
            continue
        if len(digest) == 32:
            urns.add(ek_urn_from_digest(digest))
    return tuple(sorted(urns))


def device_ek_urn(certificate: x509.Certificate) -> str:
    """The one EK URN a device certificate identifies; Forbidden if none or several."""
    urns = device_ek_urns(certificate)
    if not urns:
        raise Forbidden(
            "the certificate does not identify an attested device (no PermanentIdentifier"
            " for an Endorsement Key)"
        )
    if len(urns) > 1:
        raise Forbidden("the certificate names more than one device")
    return urns[0]


# --- the sign policy's parts ----------------------------------------------------------------


@attrs.frozen
class CSRWithinTemplate:
    """The CSR may ask only for names the template renders for the device: its common
    name and each SAN must be the rendered common name or one of the rendered SANs.

    (X5C tokens always name a subject and SANs, and the CSR repeats them: a device whose
    account has no SANs sends its common name as the one SAN, and one whose account has
    no common name sends a SAN as its subject. The certificate carries exactly the
    rendered names either way.)
    """

    account: str
    common_name: str | None
    sans: frozenset[SAN]

    def validate(self, csr: CSRInfo) -> None:
        if csr.other_names:
            raise Forbidden(f"account {self.account!r} certificates carry no otherName SANs")
        allowed = {str(s) for s in self.sans}
        if self.common_name is not None:
            allowed.add(self.common_name)
        if csr.common_name is not None and csr.common_name not in allowed:
            raise Forbidden(
                f"CSR common name {csr.common_name!r} is not a name account {self.account!r}"
                " gives this device"
            )
        extra = sorted(
            str(s) for s in csr.sans if s not in self.sans and str(s) != self.common_name
        )
        if extra:
            raise Forbidden(
                f"CSR names {', '.join(extra)}, outside what account {self.account!r} gives"
                " this device"
            )


@attrs.frozen
class SetAccountCertificate:
    """Write the rendered names and the account's EKUs into the certificate, whatever the
    token and CSR asked for."""

    common_name: str | None
    sans: tuple[SAN, ...]
    extended_key_usage: tuple[x509.ObjectIdentifier, ...]

    def modify(self, template: CertificateTemplate) -> CertificateTemplate:
        return template.evolve(
            subject=subject_with_common_name(self.common_name),
            sans=self.sans,
            extra_general_names=(),
            extended_key_usage=self.extended_key_usage,
        )
