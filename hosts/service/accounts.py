"""Device accounts (Wi-Fi, VPN, …): their operations (REST API, CLI), and the listing a
device fetches over mTLS.

Each account ``NAME`` has a provisioner ``account:NAME`` on the Account CA, of the
account plugin's type (plugins/accounts says what it checks); the provisioner registry
(:mod:`hosts.service.provisioners`) rebuilds them when accounts change.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from cryptography import x509

from engine.accounts import (
    Account,
    AccountType,
    account_from_input,
    accounts_for,
    check_name,
    render_template,
    update_account,
)
from engine.durations import format_duration
from engine.errors import BadRequest, Conflict, Forbidden, NotFound, ProtocolError, Unauthorized
from engine.inventory import Device, normalize_ek_urn
from engine.ports import Clock, Random
from hosts.store import Stores
from plugins.api import registered_device, verify_certificate_token

from .audit import SYSTEM, Auditor
from .ca import CA, load_peer
from .revocation import Audit, CertificateRevoker

log = logging.getLogger("devid.accounts")

ACCOUNT_ISSUER = "account"
# The type of the account plugin's provisioners (plugins/accounts), built by the host.
ACCOUNT_PROVISIONER_TYPE = "ACCOUNT"
DEVICE_ISSUER = "agent"
SIGN_PATH = "/1.0/sign"
REVOKED_BY = "accounts"


# --- operations (REST API and CLI) ---------------------------------------------------------


class Accounts:
    """Device accounts' operations. Each change is audited under the *actor* the call
    names, else the one this was made with (the CLI's user, ``system``)."""

    def __init__(
        self,
        stores: Stores,
        clock: Clock,
        random: Random,
        on_change: Callable[[], None] | None = None,
        *,
        audit: Auditor | Audit | None = None,
        actor: str = SYSTEM,
    ) -> None:
        self.stores = stores
        self.clock = clock
        self.random = random
        self.on_change = on_change
        self.audit = audit
        self.actor = actor
        self.revoker = CertificateRevoker(stores, clock, audit)

    def _record(self, actor: str | None, action: str, name: str, **details: Any) -> None:
        if isinstance(self.audit, Auditor):  # a bare Audit callable sees revocations only
            self.audit.record(actor or self.actor, action, name, **details)

    def _withdraw(self, name: str, actor: str | None = None) -> None:
        """Revoke the account's certificates of devices that no longer have it (all of
        them once it is removed or disabled)."""
        revoked = self.revoker.account_changed(name, REVOKED_BY, actor or self.actor)
        if revoked:
            log.info("account certificates revoked", extra={"account": name, "count": len(revoked)})

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def add(self, data: Any, actor: str | None = None) -> Account:
        account = account_from_input(data, id=self.random.bytes(16).hex(), now=self.clock.now())
        if not self.stores.accounts.add_account(account):
            raise Conflict(f"an account named {account.name!r} already exists")
        log.info("account added", extra={"account": account.name, "type": account.type.value})
        self._record(actor, "account.added", account.name, type=account.type.value)
        self._changed()
        return account

    def get(self, name: str) -> Account:
        account = self.stores.accounts.get_account(check_name(name))
        if account is None:
            raise NotFound(f"no account named {name!r}")
        return account

    def list(self, query: Mapping[str, str] | None = None) -> dict[str, Any]:
        query = query or {}
        accounts = list(self.stores.accounts.list_accounts())
        kind = query.get("type")
        if kind:
            if kind not in {t.value for t in AccountType}:
                raise BadRequest(f"type must be one of {', '.join(t.value for t in AccountType)}")
            accounts = [a for a in accounts if a.type.value == kind]
        status = query.get("status")
        if status:
            if status not in ("active", "disabled"):
                raise BadRequest("status must be 'active' or 'disabled'")
            accounts = [a for a in accounts if a.status.value == status]
        device = query.get("device")
        if device:
            found = self.stores.devices.get_device(normalize_ek_urn(device))
            accounts = accounts_for(found, accounts) if found is not None else []
        return {"accounts": [a.to_json() for a in accounts], "total": len(accounts)}

    def update(self, name: str, changes: Any, actor: str | None = None) -> Account:
        account = self.get(name)
        updated = update_account(account, changes, now=self.clock.now())
        if not self.stores.accounts.update_account(updated):
            raise NotFound(f"no account named {name!r}")
        log.info("account updated", extra={"account": name, "fields": sorted(changes)})
        action = "account.updated"
        if updated.status != account.status:
            action = "account.enabled" if updated.active else "account.disabled"
        self._record(actor, action, name, fields=sorted(changes))
        self._withdraw(name, actor)
        self._changed()
        return updated

    def remove(self, name: str, actor: str | None = None) -> None:
        if not self.stores.accounts.delete_account(check_name(name)):
            raise NotFound(f"no account named {name!r}")
        log.info("account removed", extra={"account": name})
        self._record(actor, "account.removed", name)
        self._withdraw(name, actor)
        self._changed()


# --- what a device fetches: GET /api/v1/device/accounts over mTLS --------------------------


def _audience(ca: CA, base_url: str) -> str:
    """The sign URL for tokens: under the name the device reached us by if it is one
    of ours, else under the first configured one (never the Host header's)."""
    base = ca.endpoints.base_url(base_url)
    return base + SIGN_PATH if base else ""


def device_view(account: Account, device: Device, audience: str) -> dict[str, Any]:
    """What the agent needs for one account (ProtocolError if its names cannot render)."""
    common_name, sans = render_template(account, device)
    return {
        "name": account.name,
        "type": account.type.value,
        "description": account.description,
        "provisioner": account.provisioner_name,
        "audience": audience,
        "commonName": common_name,
        "sans": [str(s) for s in sans],
        "eku": list(account.eku),
        "keyType": account.key_type.value,
        "validity": format_duration(account.validity),
        "validitySeconds": int(account.validity.total_seconds()),
        "tpmKey": account.tpm_key,
        "pkcs12": account.pkcs12,
        "updatedAt": account.updated_at.isoformat() if account.updated_at else None,
    }


DEVICE_API = "/api/v1/device/accounts"
DEVICE_API_PROVISIONER = "device-api"


def _certificate_from_token(ca: CA, bearer: str) -> x509.Certificate:
    """The device certificate behind an x5c token signed by its (TPM-resident) key.

    The same proof as mTLS with that certificate, for clients whose TLS stack cannot
    use a key that lives in a TPM: the token's x5c chain must lead to the Agent CA,
    its signature must verify with the certificate's key, its audience must be this
    endpoint, and it works once.
    """
    token = verify_certificate_token(
        bearer,
        name=DEVICE_API_PROVISIONER,
        roots=[ca.issuers[DEVICE_ISSUER].certificate],
        ctx=ca.context(DEVICE_API),
    )
    ca.use_token(token.use)
    return token.leaf


def device_accounts(
    ca: CA, peer_der: bytes | None, base_url: str = "", bearer: str | None = None
) -> dict[str, Any]:
    """The accounts assigned to the device whose certificate is the TLS client certificate,
    or whose key signed the bearer x5c token."""
    if peer_der is None and bearer:
        cert = _certificate_from_token(ca, bearer)
    elif peer_der is None:
        raise Unauthorized(
            "present the device certificate (from the Agent CA) as the TLS client certificate,"
            " or an x5c token signed by its key as 'Authorization: Bearer'"
        )
    else:
        cert = load_peer(peer_der)
    _, issuer = ca.known_certificate(cert)
    if issuer.name != DEVICE_ISSUER:
        raise Forbidden("only a device certificate from the Agent CA can list accounts")
    device = registered_device(ca.lookup, cert)
    accounts = ca.stores.accounts.list_accounts()
    ca.provisioners.sync_accounts_if_changed(accounts)
    audience = _audience(ca, base_url)
    ready: list[dict[str, Any]] = []
    unavailable: list[dict[str, str]] = []
    for account in accounts_for(device, accounts):
        try:
            ready.append(device_view(account, device, audience))
        except ProtocolError as exc:
            unavailable.append({"name": account.name, "reason": exc.detail})
    return {
        "device": {"ek": device.ek_urn, "name": device.name},
        "accounts": ready,
        "unavailable": unavailable,
    }
