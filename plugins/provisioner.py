"""What a provisioner is to the rest of devid.

A provisioner type is a class registered through
:func:`plugins.hookspecs.devid_provisioner_types`; a provisioner is an
instance of it built from one ``[[provisioners]]`` table of ``devid.toml``.
Its ``authorize_*`` methods are pure: they check a credential and return an
:class:`Authorization` holding a sign policy; they never sign, store or fetch.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Protocol

import attrs

from engine.csr import CSRInfo
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
