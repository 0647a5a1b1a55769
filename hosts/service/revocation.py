"""Revoking certificates: one at a time (operators, provisioners, a certificate's own key),
and all those a device or an account no longer entitles.

Disabling or removing a device revokes every certificate issued to it (its device
certificates, account certificates and AK certificates); removing or disabling an
account, or taking a device out of its assignment, revokes that account's certificates
of the devices that lost it. Each issuer's CRL is built from the store and kept until
a revocation is stored (by this process or any other: the store's revocations mark
changes) or it is :data:`CRL_REFRESH` old, so it lists each revocation as soon as it is
committed while a fleet fetching it costs one read of that mark per fetch, not a
signature and a pass over every entry. Enabling a device again revokes nothing and
restores nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs

from engine.accounts import PROVISIONER_PREFIX, Account, is_assigned, provisioner_name
from engine.crl import build_crl
from engine.errors import Conflict, NotFound, Unauthorized
from engine.inventory import Device
from engine.pipeline import Issuer
from engine.ports import Clock
from hosts.store import CertificateRecord, Revocation, Stores

from .admin import AdminService
from .audit import Auditor
from .ca import CA, load_peer, serial_hex

log = logging.getLogger("devid.ca")

#: A bare observer of events, called as the ``devid_audit`` hook is: ``(event, fields)``.
Audit = Callable[[str, Mapping[str, Any]], None]

REVOKE_PATH = "/1.0/revoke"
#: How long a CRL is valid (its nextUpdate after its thisUpdate).
CRL_LIFETIME = timedelta(hours=24)
#: A CRL no revocation changed is built again once it is this old, so that the one served
#: always has most of its lifetime ahead (and expired certificates leave it).
CRL_REFRESH = timedelta(hours=1)


@attrs.frozen
class _BuiltCRL:
    issuer: Issuer
    mark: int
    built_at: datetime
    der: bytes


# RFC 5280 CRLReason codes used here.
CESSATION_OF_OPERATION = 5
PRIVILEGE_WITHDRAWN = 9
# affiliationChanged (3) would also fit, but 9 says what happened: the privilege ended.


@attrs.frozen
class Withdrawal:
    """Why a certificate is to be revoked."""

    code: int
    reason: str


def withdrawal(
    record: CertificateRecord, device: Device | None, account: Account | None
) -> Withdrawal | None:
    """Whether the certificate *record* (issued to the device *device* names, or to a
    removed one if None) has lost what entitled it; *account* is the account its
    evidence names, if it is an account certificate. None if it still holds."""
    ek = record.device
    if ek is not None:
        if device is None:
            return Withdrawal(CESSATION_OF_OPERATION, f"the device {ek} was removed")
        if not device.active:
            return Withdrawal(PRIVILEGE_WITHDRAWN, f"the device {ek} was disabled")
    if not record.provisioner_name.startswith(PROVISIONER_PREFIX):
        return None
    name = record.provisioner_name[len(PROVISIONER_PREFIX) :]
    account_id = record.evidence.get("account_id")
    if account is None or (account_id is not None and account.id != account_id):
        return Withdrawal(CESSATION_OF_OPERATION, f"the account {name} was removed")
    if not account.active:
        return Withdrawal(PRIVILEGE_WITHDRAWN, f"the account {name} was disabled")
    if device is not None and not is_assigned(account, device):
        return Withdrawal(
            PRIVILEGE_WITHDRAWN, f"the account {name} is no longer assigned to the device {ek}"
        )
    return None


class CertificateRevoker:
    """Revokes in the store, then logs and audits each revocation."""

    def __init__(self, stores: Stores, clock: Clock, audit: Auditor | Audit | None = None) -> None:
        self.stores = stores
        self.clock = clock
        self.audit = audit

    def revoke(
        self,
        record: CertificateRecord,
        code: int,
        reason: str,
        revoked_by: str,
        actor: str | None = None,
    ) -> bool:
        """Revoke one certificate; False if it was revoked already. The audit log names
        *actor* as who did it (by default *revoked_by*): for a revocation a change
        caused, who made the change."""
        revocation = Revocation(
            serial=record.serial,
            issuer=record.issuer,
            revoked_at=self.clock.now(),
            reason_code=code,
            reason=reason,
            revoked_by=revoked_by,
        )
        if not self.stores.certificates.revoke(revocation):
            return False
        fields: dict[str, Any] = {
            "serial": record.serial,
            "issuer": record.issuer,
            "reason_code": code,
            "reason": reason,
            "by": revoked_by,
        }
        if record.device is not None:
            fields["device"] = record.device
        log.info("certificate revoked", extra=fields)
        if isinstance(self.audit, Auditor):
            self.audit.record(actor or revoked_by, "certificate.revoked", record.serial, **fields)
        elif self.audit is not None:
            self.audit("certificate.revoked", fields)
        return True

    def _withdraw(
        self, records: Sequence[CertificateRecord], revoked_by: str, actor: str | None
    ) -> list[str]:
        devices: dict[str, Device | None] = {}
        accounts: dict[str, Account | None] = {}
        revoked: list[str] = []
        for record in records:
            device = None
            if record.device is not None:
                if record.device not in devices:
                    devices[record.device] = self.stores.devices.get_device(record.device)
                device = devices[record.device]
            account = None
            name = record.evidence.get("account")
            if record.provisioner_name.startswith(PROVISIONER_PREFIX) and isinstance(name, str):
                if name not in accounts:
                    accounts[name] = self.stores.accounts.get_account(name)
                account = accounts[name]
                if account is not None and account.provisioner_name != record.provisioner_name:
                    account = None
            found = withdrawal(record, device, account)
            if found is not None and self.revoke(
                record, found.code, found.reason, revoked_by, actor
            ):
                revoked.append(record.serial)
        return revoked

    def device_changed(self, ek_urn: str, revoked_by: str, actor: str | None = None) -> list[str]:
        """Revoke the certificates of the device *ek_urn* it is no longer entitled to
        (all of them if it was disabled or removed); the serials revoked. *actor* made
        the change (the audit log's actor of each revocation)."""
        records = self.stores.certificates.certificates_of_device(ek_urn, self.clock.now())
        return self._withdraw(records, revoked_by, actor)

    def account_changed(self, name: str, revoked_by: str, actor: str | None = None) -> list[str]:
        """Revoke the certificates of the account *name* whose devices lost it (all of
        them if it was removed or disabled); the serials revoked."""
        records = self.stores.certificates.certificates_of_provisioner(
            provisioner_name(name), self.clock.now()
        )
        return self._withdraw(records, revoked_by, actor)


@attrs.frozen
class RevokeRequest:
    """A parsed ``/1.0/revoke`` request: which certificate, why, and with which credential
    (None: the admin credential or the certificate's own key over mTLS proves it)."""

    serial: int
    reason_code: int = 0
    reason: str = ""
    credential: str | None = None


class RevocationService:
    """Revocation by request (``/1.0/revoke``), by an operator, and the CRLs."""

    def __init__(self, ca: CA, revoker: CertificateRevoker, admin: AdminService) -> None:
        self.ca = ca
        self.revoker = revoker
        self.admin = admin
        self._crls: dict[str, _BuiltCRL] = {}

    def _issued_record(self, serial: int) -> CertificateRecord:
        record = self.ca.stores.certificates.get_certificate(serial_hex(serial))
        if record is None:
            raise NotFound(f"no certificate with serial {serial}")
        return record

    def _revoke(self, record: CertificateRecord, code: int, reason: str, by: str) -> None:
        if not self.revoker.revoke(record, code, reason, by):
            raise Conflict("certificate is already revoked")

    def revoke(
        self, request: RevokeRequest, peer_der: bytes | None, bearer: str | None = None
    ) -> CertificateRecord:
        """By the issuing provisioner's credential, an admin credential (``Authorization:
        Bearer <admin token>``), or the certificate's own key; the record revoked."""
        ca = self.ca
        record = self._issued_record(request.serial)
        if request.credential is not None:
            provisioner = ca.provisioners.get(record.provisioner_name)
            if provisioner is None:
                raise Unauthorized("the provisioner that issued this certificate no longer exists")
            credential = type(provisioner).read_credential(request.credential)
            if credential is None:
                raise Unauthorized(
                    f"provisioner {provisioner.name!r} does not revoke with a credential"
                )
            authorization = provisioner.authorize_revoke(
                credential, request.serial, ca.context(REVOKE_PATH)
            )
            ca.use_token(authorization.token)
            revoked_by = f"provisioner:{provisioner.name}"
        elif bearer:
            revoked_by = self.admin.check(bearer, None)
        elif peer_der is not None:
            cert = load_peer(peer_der)
            if cert.serial_number != request.serial:
                raise Unauthorized("the TLS client certificate is not the one being revoked")
            ca.known_certificate(cert)
            revoked_by = "certificate-key"
        else:
            raise Unauthorized(
                "revocation needs a token from the issuing provisioner, an admin credential"
                " or the certificate over mTLS"
            )
        self._revoke(record, request.reason_code, request.reason, revoked_by)
        return record

    def admin_revoke(
        self, serial: int, reason_code: int, reason: str, admin: str
    ) -> CertificateRecord:
        """An operator (*admin*, as :meth:`AdminService.check` named them) revokes any
        certificate this CA issued; the record revoked."""
        record = self._issued_record(serial)
        self._revoke(record, reason_code, reason, admin)
        return record

    def crl(self, issuer_name: str = "agent") -> bytes:
        """The CRL of *issuer_name* (DER): the one built last, if no revocation was
        stored since and it is less than :data:`CRL_REFRESH` old, else a new one."""
        ca = self.ca
        issuer = ca.issuers.get(issuer_name)
        if issuer is None:
            raise NotFound(f"no issuer named {issuer_name!r}")
        certificates = ca.stores.certificates
        # The mark is read before the entries: a revocation stored in between makes the
        # next request build again, never hides behind a CRL that lacks it.
        mark = certificates.revocations_mark()
        now = ca.clock.now()
        built = self._crls.get(issuer_name)
        if (
            built is not None
            and built.mark == mark
            and built.built_at <= now < (built.built_at + CRL_REFRESH)
        ):
            return built.der
        der = build_crl(
            issuer,
            certificates.revoked_entries(issuer_name, now),
            now=now,
            number=int(now.timestamp() * 1000),
            lifetime=CRL_LIFETIME,
        )
        self._crls[issuer_name] = _BuiltCRL(issuer, mark, now, der)
        return der
