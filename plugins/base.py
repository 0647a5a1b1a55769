"""The provisioner base class: safe defaults, and every capability declared in one place.

A provisioner type subclasses :class:`Provisioner` and overrides what it supports.
Everything it does not override refuses: a type that reads no credential never
signs over ``POST /1.0/sign``, one without ``authorize_renew`` renews nothing, one
without ``acme()`` serves no ACME directory. The host asks only through these
methods; it never names a provisioner class.

Credentials are read by the provisioner *types*: for each ``POST /1.0/sign`` (and
token revocation) the host asks every loaded type's :meth:`Provisioner.read_credential`
whether the credential is in its format and which provisioner it addresses, and
hands it to that provisioner only if the provisioner is of the type that read it.
So a plugin may accept a credential that is no JOSE token at all, or an HMAC token
of its own, while the JWK provisioner keeps refusing HMAC.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import attrs
from cryptography import x509

from engine.csr import CSRInfo
from engine.errors import ConfigurationError, Forbidden, Unauthorized
from engine.extensions import ProvisionerRef

from .provisioner import (
    Authorization,
    AuthorizeContext,
    ProvisionerEnvironment,
    RenewAuthorization,
    RenewContext,
)

if TYPE_CHECKING:
    from engine.acme.context import Profile
    from engine.acme.finalize import FinalizeRequest

    from .attestation.base import AttestationContext
    from .enrolment import SCEPEnrolling


@attrs.frozen
class Credential:
    """A credential one provisioner type recognised as its own and read.

    ``text`` is the credential as the client sent it, ``provisioner`` the name of the
    provisioner it addresses (a token's ``iss``), or one of the addresses a provisioner
    answers to (:meth:`Provisioner.credential_addresses`), ``reading`` whatever the type parsed
    on the way (a :class:`engine.jose.CompactJWS` for JOSE tokens), so the provisioner
    need not parse it again. Nothing in it is verified yet.
    """

    text: str
    provisioner: str
    reading: Any = None


class TokenMinter(Protocol):
    """Mints one-time sign tokens on the CA host (``devid ca token``)."""

    max_lifetime: timedelta

    def mint(
        self,
        *,
        subject: str,
        audience: str,
        now: datetime,
        jti: str,
        sans: Sequence[str] = (),
        lifetime: timedelta = timedelta(minutes=5),
        csr_der: bytes | None = None,
    ) -> str: ...


class ACMEIssuing(Protocol):
    """What the host's ACME server needs from a provisioner that serves a directory."""

    type_name: ClassVar[str]
    name: str
    issuer: str
    ref: ProvisionerRef
    profile: Profile
    attestation_formats: tuple[str, ...]
    require_inventory: bool

    def authorize_finalize(self, request: FinalizeRequest) -> Authorization:
        """The sign policy for a ready order (names from the order, attested key if any)."""
        ...

    def accepts_format(self, format_name: str) -> bool:
        """Whether device-attest-01 statements of *format_name* are accepted."""
        ...

    def attestation_context(
        self,
        format_name: str,
        now: datetime,
        *,
        ca_roots: tuple[x509.Certificate, ...] = (),
        ca_intermediates: tuple[x509.Certificate, ...] = (),
    ) -> AttestationContext:
        """The trust anchors for verifying one format's statements."""
        ...


class Provisioner:
    """A configured provisioner; subclass it for a provisioner type.

    Class attributes declare what the type is:

    - ``type_name``: what ``type = "..."`` in a ``[[provisioners]]`` table names;
    - ``configurable``: False for types the host builds itself (account provisioners),
      which a ``[[provisioners]]`` table may not name;
    - ``mints_tokens``: True when :meth:`token_minter` can mint sign tokens on the CA
      host (``devid ca token``).
    """

    type_name: ClassVar[str] = ""
    configurable: ClassVar[bool] = True
    mints_tokens: ClassVar[bool] = False

    name: str
    issuer: str

    # --- building ------------------------------------------------------------------------

    @classmethod
    def from_config(
        cls, name: str, options: Mapping[str, Any], env: ProvisionerEnvironment
    ) -> Provisioner:
        """Validate one ``[[provisioners]]`` table and build the provisioner; raise
        ConfigurationError for anything wrong (read the table with plugins.options.Options
        and call ``finish()`` last, so a typo stops start-up)."""
        raise ConfigurationError(f"provisioner type {cls.type_name!r} cannot be configured")

    @classmethod
    def default_config(cls, name: str, env: ProvisionerEnvironment) -> dict[str, Any]:
        """The table ``devid init`` writes for a new provisioner of this type."""
        raise ConfigurationError(
            f"provisioner type {cls.type_name!r} has no default configuration: write its"
            " [[provisioners]] table by hand"
        )

    # --- credentials -----------------------------------------------------------------------

    @classmethod
    def read_credential(cls, text: str) -> Credential | None:
        """Recognise *text* as a credential of this type and say which provisioner it
        addresses; None if it is not in this type's format. Raise a ProtocolError when it
        is this type's format but malformed. Verify nothing here (no keys are known)."""
        return None

    def credential_addresses(self) -> frozenset[str]:
        """What a credential's reading may name instead of this provisioner's name to reach
        it. A credential whose issuer is a third party addresses the provisioner by what it
        carries: an OpenID provider's ID token by the provider and the client it was issued
        to. Two provisioners with one address, or an address that is another's name, stop
        the configuration from loading. The default is none."""
        return frozenset()

    # --- authorization (pure: no I/O, no clock, no randomness) ------------------------------

    def public_view(self) -> dict[str, Any]:
        """The fields anyone may see (``GET /provisioners``); never secrets or paths."""
        return {"type": self.type_name, "name": self.name, "issuer": self.issuer}

    def authorize_sign(
        self, credential: Credential, csr: CSRInfo, ctx: AuthorizeContext
    ) -> Authorization:
        """Check *credential* for signing *csr*; return the sign policy, or raise a
        ProtocolError to refuse. The default refuses."""
        raise Unauthorized(f"provisioner {self.name!r} does not sign requests with a credential")

    def authorize_revoke(
        self, credential: Credential, serial: int, ctx: AuthorizeContext
    ) -> Authorization:
        """Check *credential* for revoking the certificate *serial* this provisioner issued
        (return ``Authorization(policy=None, token=...)``). The default refuses."""
        raise Unauthorized(f"provisioner {self.name!r} does not revoke with a credential")

    def authorize_renew(self, ctx: RenewContext) -> RenewAuthorization:
        """Decide whether a certificate this provisioner issued may be renewed (``POST
        /1.0/renew``); raise a ProtocolError to refuse. The default refuses."""
        raise Forbidden(f"provisioner {self.name!r} does not renew certificates")

    @property
    def certificate_ref(self) -> ProvisionerRef:
        """The provisioner its certificates name (their provisioner extension): its
        ``ref`` attribute when it keeps one, else its type and name."""
        ref = getattr(self, "ref", None)
        if isinstance(ref, ProvisionerRef):
            return ref
        return ProvisionerRef(type=self.type_name, name=self.name)

    # --- capabilities ------------------------------------------------------------------------

    def acme(self) -> ACMEIssuing | None:
        """This provisioner as an ACME directory (``/acme/{name}/``), or None."""
        return None

    def scep(self) -> SCEPEnrolling | None:
        """This provisioner as a SCEP server (``/scep/{name}``), or None."""
        return None

    def token_minter(self, password: bytes) -> TokenMinter | None:
        """A minter of sign tokens for this provisioner on the CA host, or None."""
        return None


def check_provisioner_class(cls: type[Any]) -> None:
    """Refuse a registered provisioner type that is not a :class:`Provisioner` subclass or
    has no ``type_name`` (a plugin's mistake, told at load, not at the first request)."""
    where = f"{cls.__module__}.{cls.__qualname__}"
    if not isinstance(cls, type) or not issubclass(cls, Provisioner):
        raise ConfigurationError(f"provisioner type {where} must subclass plugins.api.Provisioner")
    if not isinstance(cls.type_name, str) or not cls.type_name:
        raise ConfigurationError(f"provisioner type {where} has no type_name")
