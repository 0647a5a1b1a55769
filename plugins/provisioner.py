"""What a provisioner is to the rest of devid.

A provisioner type is a class registered through
:func:`plugins.hookspecs.devid_provisioner_types`; a provisioner is an
instance of it built from one ``[[provisioners]]`` table of ``devid.toml``.
Its ``authorize_*`` methods are pure: they check a credential and return an
:class:`Authorization` holding a sign policy; they never sign, store or fetch.

Renewal (``POST /1.0/renew``) is authorized by the provisioner that issued the
certificate, through ``authorize_renew``: the host gathers the facts (the
certificate's store record, the device, the device certificate and the account
it names) into a :class:`RenewContext`, and the provisioner decides. A
provisioner without ``authorize_renew`` renews nothing: the host refuses.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Protocol

import attrs
from cryptography import x509

from engine.accounts import Account
from engine.csr import CSRInfo
from engine.errors import Forbidden, Unauthorized
from engine.inventory import Device
from engine.jose import CompactJWS
from engine.policy import SignPolicy


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


def refuse_renewal(provisioner: str) -> RenewAuthorization:
    """What the host does for a provisioner that does not implement ``authorize_renew``."""
    raise Forbidden(f"provisioner {provisioner!r} does not renew certificates")


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


@attrs.frozen
class ProvisionerEnvironment:
    """What a provisioner may use while it is built from config (not at request time)."""

    data_dir: Path
    issuers: frozenset[str]
    password: bytes | None = None


class Provisioner(Protocol):
    """A configured provisioner instance."""

    type_name: ClassVar[str]
    name: str
    issuer: str

    def public_view(self) -> dict[str, Any]:
        """The fields anyone may see (``GET /provisioners``); never secrets."""
        ...

    def authorize_sign(self, credential: str, csr: CSRInfo, ctx: AuthorizeContext) -> Authorization:
        """Check *credential* for signing *csr*; raise a ProtocolError to refuse."""
        ...

    def authorize_revoke(
        self, credential: str, serial: int, ctx: AuthorizeContext
    ) -> Authorization:
        """Check *credential* for revoking the certificate *serial* this provisioner issued."""
        ...

    def authorize_renew(self, ctx: RenewContext) -> RenewAuthorization:
        """Decide whether a certificate this provisioner issued may be renewed (``POST
        /1.0/renew``); raise a ProtocolError to refuse. Only the facts in *ctx* count."""
        ...


class ParsedTokenProvisioner(Protocol):
    """A provisioner that can take the token already split and decoded by the host.

    One whose class sets ``accepts_parsed_token = True`` is called with
    ``parsed=parse_compact(credential)`` (the host parsed it to read ``iss``),
    so the token is not parsed twice; it still checks everything it checks
    without it (signature, claims, kid).
    """

    def authorize_sign(
        self,
        credential: str,
        csr: CSRInfo,
        ctx: AuthorizeContext,
        *,
        parsed: CompactJWS | None = None,
    ) -> Authorization: ...


class ProvisionerType(Protocol):
    """A class that builds provisioners of one type from their config table."""

    type_name: ClassVar[str]

    @classmethod
    def from_config(
        cls, name: str, options: Mapping[str, Any], env: ProvisionerEnvironment
    ) -> Provisioner:
        """Validate *options* and build the provisioner; ConfigurationError if invalid."""
        ...

    @classmethod
    def default_config(cls, name: str, env: ProvisionerEnvironment) -> dict[str, Any]:
        """The config table ``devid init`` writes for a new provisioner of this type."""
        ...
