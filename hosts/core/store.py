"""The store interface and its records.

Hosts call a store from worker threads (never on the event loop). Each write
is committed before the call returns, so a record the caller has seen written
survives the process being killed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

import attrs
from cryptography import x509

from engine.accounts import Account as DeviceAccount
from engine.accounts import device_ek_urns
from engine.acme.effects import Write
from engine.acme.records import Account, Authorization, CertificateLink, Challenge, Order
from engine.crl import RevokedEntry
from engine.errors import BadRequest
from engine.inventory import Device, DeviceFilter

# The PermanentIdentifier OID (1.3.6.1.5.5.7.8.3) as DER (tag, length, value): a
# certificate without these bytes has none, so it need not be parsed to look for one.
_PERMANENT_IDENTIFIER_DER = bytes([6, 8]) + bytes.fromhex("2b06010505070803")


@attrs.frozen
class CertificateRecord:
    serial: str  # lowercase hex, no leading zeros
    issuer: str
    subject: str
    sans: tuple[str, ...]
    provisioner_type: str
    provisioner_name: str
    not_before: datetime
    not_after: datetime
    der: bytes
    evidence: dict[str, Any] = attrs.field(factory=dict)
    status: str = "active"
    created_at: datetime | None = None
    # The EK URN of the device the certificate was issued to (None if it names none);
    # the store fills it from the evidence and the certificate when it is not given.
    device: str | None = None


def certificate_device(evidence: Mapping[str, Any], der: bytes) -> str | None:
    """The device (EK URN) a certificate was issued to, if it was issued to one.

    Account certificates name it in their evidence (``device``), AK certificates too
    (``ek``); a device certificate binds it as a PermanentIdentifier with devid's
    EK-digest assigner, which only device-attest-01 writes; and an attested certificate
    may name exactly one EK in its attestation evidence.
    """
    for key in ("device", "ek"):
        value = evidence.get(key)
        if isinstance(value, str) and value.startswith("urn:ek:"):
            return value
    if _PERMANENT_IDENTIFIER_DER in der:
        try:
            urns = device_ek_urns(x509.load_der_x509_certificate(der))
        except (ValueError, BadRequest):
            urns = ()
        if len(urns) == 1:
            return urns[0]
    attestation = evidence.get("attestation")
    if isinstance(attestation, Mapping):
        ek_urns = attestation.get("ek_urns")
        if isinstance(ek_urns, list) and len(ek_urns) == 1 and isinstance(ek_urns[0], str):
            return ek_urns[0]
    return None


@attrs.frozen
class UsedToken:
    """A one-time token to mark used together with the certificate it authorized."""

    provisioner: str
    token_id: str
    expires_at: datetime
    now: datetime


@attrs.frozen
class Revocation:
    serial: str
    issuer: str
    revoked_at: datetime
    reason_code: int
    reason: str
    revoked_by: str


class Store(Protocol):
    def record_certificate(
        self, record: CertificateRecord, used_token: UsedToken | None = None
    ) -> bool:
        """Persist a newly issued certificate, committed on return.

        With *used_token*, the token is marked used in the same transaction; if it
        was used before, nothing is stored and the result is False.
        """
        ...

    def get_certificate(self, serial: str) -> CertificateRecord | None: ...

    def list_certificates(
        self, *, limit: int = 100, offset: int = 0
    ) -> Sequence[CertificateRecord]: ...

    def count_certificates(self) -> int: ...

    def certificates_of_device(self, ek_urn: str, now: datetime) -> Sequence[CertificateRecord]:
        """The active, unexpired certificates issued to the device *ek_urn*."""
        ...

    def certificates_of_provisioner(
        self, provisioner: str, now: datetime
    ) -> Sequence[CertificateRecord]:
        """The active, unexpired certificates the provisioner named *provisioner* issued."""
        ...

    def use_token(
        self, provisioner: str, token_id: str, expires_at: datetime, now: datetime
    ) -> bool:
        """Record a one-time token as used; False if it was used before."""
        ...

    def prune_tokens(self, now: datetime) -> int:
        """Forget used tokens that have expired anyway; return how many."""
        ...

    def revoke(self, revocation: Revocation) -> bool:
        """Mark a certificate revoked; False if it already was."""
        ...

    def revoked_entries(self, issuer: str, now: datetime) -> Sequence[RevokedEntry]:
        """Revocations of still-unexpired certificates of *issuer*, for its CRL."""
        ...

    def add_device(self, device: Device) -> bool:
        """Register a device; False if its EK is already registered."""
        ...

    def put_device(self, device: Device) -> None:
        """Insert or update a device (imports, inventory sync, edits)."""
        ...

    def get_device(self, ek_urn: str) -> Device | None: ...

    def list_devices(
        self, filter: DeviceFilter, *, limit: int = 100, offset: int = 0
    ) -> tuple[Sequence[Device], int]:
        """A page of devices matching *filter*, and how many match in all."""
        ...

    def delete_device(self, ek_urn: str) -> bool: ...

    def put_session(
        self,
        session_id: str,
        ek_urn: str,
        session: dict[str, Any],
        expires_at: datetime,
        now: datetime,
    ) -> None:
        """Keep a pending attestation session (and drop expired ones)."""
        ...

    def take_session(self, session_id: str) -> dict[str, Any] | None:
        """Remove and return a pending attestation session; None if there is none."""
        ...

    # --- ACME (records are the engine's; each carries the revision it was read at) ---

    def acme_account(self, provisioner: str, account_id: str) -> Account | None: ...

    def acme_account_by_thumbprint(self, provisioner: str, thumbprint: str) -> Account | None: ...

    def acme_order(self, provisioner: str, order_id: str) -> Order | None: ...

    def acme_orders_of(
        self, provisioner: str, account_id: str, *, limit: int = 1000
    ) -> Sequence[Order]:
        """An account's orders, newest first."""
        ...

    def acme_authorization(
        self, provisioner: str, authorization_id: str
    ) -> Authorization | None: ...

    def acme_authorizations(self, provisioner: str, ids: Sequence[str]) -> Sequence[Authorization]:
        """The authorizations with these ids that exist, in the order of *ids*."""
        ...

    def acme_challenge(self, provisioner: str, challenge_id: str) -> Challenge | None: ...

    def acme_challenges(self, provisioner: str, ids: Sequence[str]) -> Sequence[Challenge]:
        """The challenges with these ids that exist, in the order of *ids*."""
        ...

    def acme_processing_challenges(self) -> Sequence[Challenge]:
        """Challenges whose validation was started and has not finished (to resume them)."""
        ...

    def acme_certificate(self, serial: str) -> CertificateLink | None:
        """Which account and order an ACME certificate came from."""
        ...

    def acme_write(
        self,
        write: Write,
        *,
        certificate: CertificateRecord | None = None,
        link: CertificateLink | None = None,
    ) -> bool:
        """Store ACME records (and an issued certificate with its link) in one transaction.

        A record with revision 0 is inserted; any other replaces the stored one only if
        that is still at the same revision. False, storing nothing, on any conflict (a
        newer revision, or a key thumbprint another account of the provisioner uses).
        """
        ...

    # --- accounts (engine.accounts.Account, named DeviceAccount beside ACME's Account) ---

    def add_account(self, account: DeviceAccount) -> bool:
        """Create an account; False if its name (or id) is taken."""
        ...

    def get_account(self, name: str) -> DeviceAccount | None: ...

    def list_accounts(self) -> Sequence[DeviceAccount]:
        """Every account, by name."""
        ...

    def update_account(self, account: DeviceAccount) -> bool:
        """Replace the stored account with this id and name; False if there is none."""
        ...

    def delete_account(self, name: str) -> bool: ...

    def close(self) -> None: ...
