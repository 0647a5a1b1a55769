"""The records a provisioner receives and returns (the class itself: plugins.base).

A provisioner type is a :class:`plugins.base.Provisioner` subclass registered
through :func:`plugins.hookspecs.devid_provisioner_types`; a provisioner is an
instance of it built from one ``[[provisioners]]`` table of ``devid.toml``.
Its ``authorize_*`` methods are pure: they check a credential and return an
:class:`Authorization` holding a sign policy; they never sign, store or fetch.

Renewal (``POST /1.0/renew``) is authorized by the provisioner that issued the
certificate, through ``authorize_renew``: the host gathers the facts (the
certificate's store record, the device, the device certificate and the account
it names) into a :class:`RenewContext`, and the provisioner decides. A
provisioner that does not override ``authorize_renew`` renews nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import attrs
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from engine.accounts import Account, device_ek_urn
from engine.errors import Forbidden, Unauthorized
from engine.inventory import Device
from engine.policy import SignPolicy

from .remote import RemoteKeys


@attrs.frozen
class AuthorizeContext:
    """Facts the host supplies when asking a provisioner to authorize a request."""

    now: datetime
    # The token audiences this endpoint accepts (its own URLs).
    audiences: frozenset[str]


@attrs.frozen
class TokenUse:
    """A one-time credential the host must record as used before it acts on it."""

    provisioner: str
    token_id: str
    expires_at: datetime


@attrs.frozen
class Authorization:
    """The result of a successful authorization."""

    policy: SignPolicy | None
    token: TokenUse | None = None


@attrs.frozen
class CertificateFacts:
    """What the store records about a certificate this CA issued."""

    serial: str  # lowercase hex
    issuer: str
    provisioner_type: str
    provisioner_name: str
    status: str  # "active" or "revoked"
    not_before: datetime
    not_after: datetime
    evidence: Mapping[str, Any] = attrs.field(factory=dict)
    device: str | None = None  # the EK URN of the device it was issued to, if any
    der: bytes | None = None  # the certificate itself, where the host read it


@attrs.frozen
class RenewContext:
    """The facts the host gathers for ``authorize_renew``, read at the time of the request.

    ``device`` is the inventory record of ``record.device`` (None if the certificate names
    no device, or the device was removed); ``leaf`` the record of the certificate that
    signed the token the certificate was issued for (evidence ``leaf_serial``; for an
    account certificate, the device certificate); ``account`` the account the evidence
    names (``account``). Each is None when there is none.
    """

    now: datetime
    certificate: x509.Certificate
    record: CertificateFacts
    device: Device | None = None
    leaf: CertificateFacts | None = None
    account: Account | None = None


@attrs.frozen
class RenewAuthorization:
    """A renewal the provisioner allows.

    The renewed certificate ends no later than ``not_after_limit`` (when given), and its
    evidence records ``checked``: what the provisioner verified.
    """

    checked: Mapping[str, Any] = attrs.field(factory=dict)
    not_after_limit: datetime | None = None


def require_active_device(ctx: RenewContext) -> dict[str, Any]:
    """The device the certificate was issued to is registered and active (and the host
    found the certificate itself active). Returns what was checked, for the evidence."""
    ek = ctx.record.device
    if ek is None:
        raise Forbidden("the certificate does not name the device it was issued to")
    if ctx.device is None or ctx.device.ek_urn != ek:
        raise Forbidden(f"the device {ek} is not in this CA's inventory")
    if not ctx.device.active:
        raise Forbidden(f"the device {ek} is disabled")
    return {"device": ek, "device_status": ctx.device.status.value}


def require_active_leaf(ctx: RenewContext, *, device: str | None = None) -> CertificateFacts:
    """The certificate whose key signed the original token is one this CA issued, still
    active and unexpired (and, given *device*, issued to that device)."""
    leaf = ctx.leaf
    if leaf is None:
        raise Unauthorized("the certificate that obtained this one is unknown to this CA")
    if leaf.status != "active":
        raise Unauthorized(f"the certificate that obtained this one is {leaf.status}")
    if leaf.not_after <= ctx.now:
        raise Unauthorized("the certificate that obtained this one has expired")
    if device is not None and leaf.device != device:
        raise Forbidden("the certificate that obtained this one was issued to another device")
    return leaf


class Lookup(Protocol):
    """Read-only access to the CA's records, for provisioners that decide on state.

    Handed in through :class:`ProvisionerEnvironment` (``lookup``).
    Each call reads the store as it is now; nothing can be written through it.
    """

    def device(self, ek_urn: str) -> Device | None:
        """The inventory record of the device with this EK URN, if registered."""
        ...

    def certificate(self, serial: str) -> CertificateFacts | None:
        """What the CA recorded about the certificate with this serial (lowercase hex)."""
        ...

    def account(self, name: str) -> Account | None:
        """The device account (Wi-Fi, VPN, …) named *name*, if it exists."""
        ...


@attrs.frozen
class ProvisionerEnvironment:
    """What a provisioner may use while it is built from config.

    ``lookup`` (a :class:`Lookup`, None where the CA's records are not
    open, e.g. ``devid init``) reads devices, certificates and accounts; a provisioner
    that keeps it may call it at request time (it is read-only). ``remote_keys`` (a
    :class:`plugins.remote.RemoteKeys`, None where the CA does not serve) gives an
    OpenID provider's metadata and signing keys, fetched and cached by the host."""

    data_dir: Path
    issuers: frozenset[str]
    password: bytes | None = None
    lookup: Lookup | None = None
    remote_keys: RemoteKeys | None = None


def registered_device(lookup: Lookup, leaf: x509.Certificate) -> Device:
    """The registered, active device behind a device certificate this CA issued and has
    not revoked (the caller has verified its chain to the Agent CA)."""
    record = lookup.certificate(format(leaf.serial_number, "x"))
    if record is None or record.issuer != "agent" or record.der != leaf.public_bytes(Encoding.DER):
        raise Unauthorized("the device certificate is unknown to this CA")
    if record.status != "active":
        raise Unauthorized(f"the device certificate is {record.status}")
    ek = device_ek_urn(leaf)
    device = lookup.device(ek)
    if device is None:
        raise Forbidden(f"the device {ek} is not in this CA's inventory")
    if not device.active:
        raise Forbidden(f"the device {ek} is disabled")
    return device
