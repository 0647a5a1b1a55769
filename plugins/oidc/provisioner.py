"""The OIDC provisioner: certificates for people who sign in with the organisation's
OpenID provider (Google Workspace, Entra ID, Okta, Keycloak, GitHub Actions, …).

The credential is the provider's ID token (``POST /1.0/sign`` with it as ``ott``). It
addresses the provisioner by its ``iss`` and the client it was issued to (``azp``, else
its audience), not by the provisioner's name. A token is accepted only if all of this
holds:

- its signature verifies with a key of the provider's JWK set (fetched by the host
  through :class:`plugins.api.RemoteKeys`, found by ``kid``) and an algorithm of
  ``algorithms`` (default RS256 and ES256; never ``none`` or HMAC);
- ``iss`` is exactly ``provider``; ``aud`` holds ``client_id``, and ``azp``, present
  whenever there are several audiences, is ``client_id``;
- ``exp``, ``iat`` (both required) and ``nbf`` hold now with a minute's leeway, and the
  token lives no longer than ``max_token_lifetime`` (default 2 hours: providers issue
  ID tokens for an hour or a little more);
- a ``nonce``, when the token has one, binds it to the CSR's key
  (:func:`plugins.api.key_nonce`; ``devid login`` asks for it); ``require_nonce = true``
  refuses tokens without one;
- names made from the email need ``email_verified`` true (unless
  ``require_email_verified = false``); with ``domains``, the verified email's domain is
  one of them; with ``groups``, the ``groups_claim`` (default ``groups``) names one of
  them;
- the token has not been used before: by its ``jti``, or by the SHA-256 of the token when
  the provider sets none, remembered until it expires.

The certificate names the person (:mod:`plugins.oidc.names`: by default the verified
email and a URI for the ``sub`` scoped by the provider); a CSR asking for any other name
is refused. ``admins`` (emails or ``sub:SUBJECT``) may instead have the names their CSR
asks for (within ``admin_names`` patterns when set). Certificates come from the TLS CA
(``issuer = "tls"``), carry the ``single-sign-on`` assurance marker, and are not renewed
(``allow_renewal = true`` lets their key renew them): a person signs in again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from plugins.api import (
    JWS_ALGORITHMS,
    LEEWAY,
    SAN,
    Assurance,
    Authorization,
    AuthorizeContext,
    BadRequest,
    CompactJWS,
    ConfigurationError,
    Credential,
    CSRInfo,
    DurationLimits,
    Forbidden,
    KeyType,
    KeyTypeIn,
    NamePatterns,
    NamesWithin,
    Options,
    ProtocolError,
    Provisioner,
    ProvisionerEnvironment,
    ProvisionerRef,
    RemoteKeys,
    RenewAuthorization,
    RenewContext,
    SetAssurance,
    SetExtendedKeyUsage,
    SetSubjectAndSANs,
    SignPolicy,
    TokenUse,
    Unauthorized,
    check_token_times,
    durations_view,
    jose_token,
    key_nonce,
    parse_ekus,
    url_problem,
    verify_remote_token,
)

from .names import Identity, NameTemplate, common_name, fields_of, identity_names, is_text

#: The algorithms ID tokens may be signed with here (``none`` and HMAC never).
SUPPORTED_ALGORITHMS = JWS_ALGORITHMS
DEFAULT_ALGORITHMS = ("RS256", "ES256")
DEFAULT_SCOPES = ("openid", "email", "profile")
DEFAULT_NAMES = ("email", "subject")
DEFAULT_NAME_TEMPLATES = tuple(NameTemplate(kind=k) for k in DEFAULT_NAMES)
NO_PATTERNS = NamePatterns()
DEFAULT_DURATIONS = DurationLimits(
    minimum=timedelta(minutes=5), maximum=timedelta(hours=24), default=timedelta(hours=8)
)
MAX_TOKEN_LIFETIME_CAP = timedelta(hours=24)
MAX_SUBJECT_LENGTH = 255
MAX_JTI_LENGTH = 256
MAX_GROUPS = 1000
ADMIN_SUBJECT_PREFIX = "sub:"


def _address(issuer: str, client: str) -> str:
    """How an ID token addresses an OIDC provisioner: its provider and the client."""
    return f"{issuer} (client {client})"


def _client_of(claims: Mapping[str, Any]) -> str | None:
    """The client an ID token was issued to: ``azp``, else its only (or first) audience."""
    azp = claims.get("azp")
    if isinstance(azp, str) and azp:
        return azp
    aud = claims.get("aud")
    if isinstance(aud, str) and aud:
        return aud
    if isinstance(aud, list) and aud and isinstance(aud[0], str) and aud[0]:
        return aud[0]
    return None


class OIDCProvisioner(Provisioner):
    """Signs for a person an OpenID provider vouches for (see the module docstring)."""

    type_name: ClassVar[str] = "OIDC"

    def __init__(
        self,
        *,
        name: str,
        issuer: str,
        provider: str,
        client_id: str,
        remote_keys: RemoteKeys | None,
        published_client_secret: str | None = None,
        algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS,
        scopes: tuple[str, ...] = DEFAULT_SCOPES,
        names: tuple[NameTemplate, ...] = DEFAULT_NAME_TEMPLATES,
        common_name: str | None = None,
        domains: frozenset[str] = frozenset(),
        groups: frozenset[str] = frozenset(),
        groups_claim: str = "groups",
        admins: frozenset[str] = frozenset(),
        admin_names: NamePatterns = NO_PATTERNS,
        require_email_verified: bool = True,
        require_nonce: bool = False,
        max_token_lifetime: timedelta = timedelta(hours=2),
        key_refresh_interval: timedelta = timedelta(minutes=1),
        durations: DurationLimits = DEFAULT_DURATIONS,
        key_types: frozenset[KeyType] = frozenset(KeyType),
        ekus: tuple[Any, ...] = (),
        allow_renewal: bool = False,
        redirect_port: int = 0,
    ) -> None:
        self.name = name
        self.issuer = issuer
        self.provider = provider
        self.client_id = client_id
        self.remote_keys = remote_keys
        self.published_client_secret = published_client_secret
        self.algorithms = algorithms
        self.scopes = scopes
        self.names = names
        self.common_name = common_name
        self.domains = domains
        self.groups = groups
        self.groups_claim = groups_claim
        self.admins = admins
        self.admin_names = admin_names
        self.require_email_verified = require_email_verified
        self.require_nonce = require_nonce
        self.max_token_lifetime = max_token_lifetime
        self.key_refresh_interval = key_refresh_interval
        self.durations = durations
        self.key_types = key_types
        self.ekus = parse_ekus(list(ekus) or ["clientAuth"], f"provisioner {name!r}")
        self.allow_renewal = allow_renewal
        self.redirect_port = redirect_port
        self.ref = ProvisionerRef(type=self.type_name, name=name)

    # --- configuration -----------------------------------------------------------------

    @classmethod
    def from_config(
        cls, name: str, options: Mapping[str, Any], env: ProvisionerEnvironment
    ) -> OIDCProvisioner:
        where = f"provisioner {name!r}"
        opts = Options(where, options)
        provider = opts.string("provider")
        problem = url_problem(provider)
        if problem is not None or urlsplit(provider).query or urlsplit(provider).fragment:
            raise ConfigurationError(
                f"{where}: provider must be the provider's issuer URL (https://…, no query or"
                f" fragment): {problem or provider}"
            )
        algorithms = opts.strings("algorithms", DEFAULT_ALGORITHMS)
        unknown = sorted(set(algorithms) - set(SUPPORTED_ALGORITHMS))
        if unknown or not algorithms:
            raise ConfigurationError(
                f"{where}: algorithms {', '.join(unknown) or '[]'} not supported; use some of"
                f" {', '.join(SUPPORTED_ALGORITHMS)}"
            )
        scopes = opts.strings("scopes", DEFAULT_SCOPES)
        if "openid" not in scopes:
            raise ConfigurationError(f"{where}: scopes must include openid")
        names = tuple(
            NameTemplate.parse(entry, where) for entry in opts.strings("names", DEFAULT_NAMES)
        )
        if not names:
            raise ConfigurationError(f"{where}: names must list at least one name")
        cn = opts.get("common_name")
        if cn is not None:
            if not isinstance(cn, str) or not cn:
                raise ConfigurationError(f"{where}: common_name must be a template string")
            fields_of(cn, where)
        max_lifetime = opts.duration("max_token_lifetime", "2h")
        if not timedelta(0) < max_lifetime <= MAX_TOKEN_LIFETIME_CAP:
            raise ConfigurationError(f"{where}: max_token_lifetime must be between 1s and 24h")
        refresh = opts.duration("key_refresh_interval", "1m")
        if not timedelta(seconds=1) <= refresh <= timedelta(hours=1):
            raise ConfigurationError(f"{where}: key_refresh_interval must be between 1s and 1h")
        port = opts.get("redirect_port", 0)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigurationError(f"{where}: redirect_port must be a port number (0: any)")
        secret = opts.get("published_client_secret")
        if secret is not None and (not isinstance(secret, str) or not secret):
            raise ConfigurationError(f"{where}: published_client_secret must be a string")
        groups_claim = opts.string("groups_claim", "groups")
        provisioner = cls(
            name=name,
            issuer=opts.issuer(env.issuers),
            provider=provider,
            client_id=opts.string("client_id"),
            remote_keys=env.remote_keys,
            published_client_secret=secret,
            algorithms=algorithms,
            scopes=scopes,
            names=names,
            common_name=cn,
            domains=frozenset(d.lower() for d in opts.strings("domains")),
            groups=frozenset(opts.strings("groups")),
            groups_claim=groups_claim,
            admins=frozenset(
                a if a.startswith(ADMIN_SUBJECT_PREFIX) else a.lower()
                for a in opts.strings("admins")
            ),
            admin_names=NamePatterns.parse(
                list(opts.strings("admin_names")), f"{where}: admin_names"
            ),
            require_email_verified=opts.boolean("require_email_verified", True),
            require_nonce=opts.boolean("require_nonce", False),
            max_token_lifetime=max_lifetime,
            key_refresh_interval=refresh,
            durations=opts.durations(DEFAULT_DURATIONS),
            key_types=opts.key_types(),
            ekus=tuple(opts.template_ekus()),
            allow_renewal=opts.boolean("allow_renewal", False),
            redirect_port=port,
        )
        opts.finish()
        return provisioner

    def public_view(self) -> dict[str, Any]:
        """What ``devid login`` needs to sign a person in (never the policy's details)."""
        view: dict[str, Any] = {
            "type": self.type_name,
            "name": self.name,
            "issuer": self.issuer,
            "provider": self.provider,
            "clientID": self.client_id,
            "scopes": list(self.scopes),
            "redirectPort": self.redirect_port,
            "requireNonce": self.require_nonce,
            "durations": durations_view(self.durations),
        }
        if self.published_client_secret is not None:
            view["clientSecret"] = self.published_client_secret
        return view

    # --- credentials ---------------------------------------------------------------------

    @classmethod
    def read_credential(cls, text: str) -> Credential | None:
        """A compact JWS whose ``iss`` is an http(s) URL and that names a client: an ID
        token, addressed by its provider and client. None for anything else."""
        try:
            jws = jose_token(text)
            claims = jws.claims()
        except ProtocolError:  # not a JWS this code reads (none and HMAC never are)
            return None
        issuer = claims.get("iss")
        if not isinstance(issuer, str) or not issuer.startswith(("https://", "http://")):
            return None
        client = _client_of(claims)
        if client is None:
            return None
        return Credential(text=text, provisioner=_address(issuer, client), reading=jws)

    def credential_addresses(self) -> frozenset[str]:
        return frozenset({_address(self.provider, self.client_id)})

    # --- authorization -------------------------------------------------------------------

    def _verified_claims(self, jws: CompactJWS) -> dict[str, Any]:
        """The token's claims once its signature verifies with the provider's key."""
        return verify_remote_token(
            jws,
            self.remote_keys,
            algorithms=self.algorithms,
            refresh_interval=self.key_refresh_interval,
            what="ID token",
            whose="OpenID provider keys",
            provisioner=self.name,
            issuer=self.provider,
        )

    def _check_audience(self, claims: Mapping[str, Any]) -> None:
        if claims.get("iss") != self.provider:
            raise Unauthorized(f"ID token issuer {claims.get('iss')!r} is not {self.provider!r}")
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud
        if (
            not isinstance(audiences, list)
            or not audiences
            or not all(isinstance(a, str) for a in audiences)
        ):
            raise Unauthorized("ID token has no usable aud claim")
        if self.client_id not in audiences:
            raise Unauthorized(f"ID token audience {aud!r} does not include {self.client_id!r}")
        azp = claims.get("azp")
        if azp is None and len(audiences) > 1:
            raise Unauthorized(
                "ID token has several audiences and no azp naming the client it was issued to"
            )
        if azp is not None and azp != self.client_id:
            raise Unauthorized(
                f"ID token was issued to client {azp!r} (azp), not {self.client_id!r}"
            )

    def _check_nonce(self, claims: Mapping[str, Any], csr: CSRInfo) -> None:
        nonce = claims.get("nonce")
        if nonce is None:
            if self.require_nonce:
                raise Unauthorized(
                    f"provisioner {self.name!r} requires ID tokens bound to the key by a nonce"
                    " (sign in with `devid login`)"
                )
            return
        spki = csr.spki or csr.public_key.public_bytes(
            Encoding.DER, PublicFormat.SubjectPublicKeyInfo
        )
        if not isinstance(nonce, str) or nonce != key_nonce(spki):
            raise Unauthorized("ID token nonce does not bind it to this CSR's key")

    def _identity(self, claims: Mapping[str, Any]) -> Identity:
        """Who the token names, with the email only where the checks let it name them."""
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub or len(sub) > MAX_SUBJECT_LENGTH or not is_text(sub):
            raise Unauthorized("ID token has no usable sub claim")
        email: str | None = None
        raw = claims.get("email")
        if isinstance(raw, str) and raw:
            verified = claims.get("email_verified") is True
            if verified or not self.require_email_verified:
                try:
                    san = SAN.parse(raw)
                except BadRequest:
                    raise Forbidden(f"ID token email {raw!r} is not an email address") from None
                if san.kind.value != "email" or raw.count("@") != 1:
                    raise Forbidden(f"ID token email {raw!r} is not an email address")
                email = san.value
            elif any(t.uses_email for t in self.names) or self.domains:
                raise Forbidden(
                    f"the provider has not verified the email address {raw!r} (email_verified"
                    " is not true), so no name is made from it"
                )
        if self.domains:
            domain = email.rpartition("@")[2] if email else None
            if domain is None:
                raise Forbidden(
                    f"provisioner {self.name!r} admits only verified emails of"
                    f" {', '.join(sorted(self.domains))}, and the ID token has none"
                )
            if domain not in self.domains:
                raise Forbidden(
                    f"the email domain {domain!r} is not one provisioner {self.name!r} admits"
                    f" ({', '.join(sorted(self.domains))})"
                )
        return Identity(issuer=self.provider, subject=sub, claims=claims, email=email)

    def _check_groups(self, claims: Mapping[str, Any]) -> list[str]:
        if not self.groups:
            return []
        value = claims.get(self.groups_claim)
        held = [value] if isinstance(value, str) else value
        if not isinstance(held, list) or not all(isinstance(g, str) for g in held):
            raise Forbidden(
                f"the ID token has no {self.groups_claim!r} claim listing groups, and"
                f" provisioner {self.name!r} admits members of"
                f" {', '.join(sorted(self.groups))} only"
            )
        matched = sorted(self.groups.intersection(held[:MAX_GROUPS]))
        if not matched:
            raise Forbidden(
                f"the person is in none of the groups provisioner {self.name!r} admits"
                f" ({', '.join(sorted(self.groups))})"
            )
        return matched

    def _is_admin(self, identity: Identity) -> bool:
        if not self.admins:
            return False
        return (
            identity.email is not None and identity.email in self.admins
        ) or ADMIN_SUBJECT_PREFIX + identity.subject in self.admins

    def _token_use(
        self, credential: Credential, claims: Mapping[str, Any], expires: datetime
    ) -> TokenUse:
        jti = claims.get("jti")
        if isinstance(jti, str) and jti and len(jti) <= MAX_JTI_LENGTH:
            token_id = "jti:" + jti
        else:
            token_id = "sha256:" + hashlib.sha256(credential.text.encode()).hexdigest()
        return TokenUse(provisioner=self.name, token_id=token_id, expires_at=expires + LEEWAY)

    def authorize_sign(
        self, credential: Credential, csr: CSRInfo, ctx: AuthorizeContext
    ) -> Authorization:
        jws = jose_token(credential)
        claims = self._verified_claims(jws)
        self._check_audience(claims)
        if not isinstance(claims.get("iat"), int | float) or isinstance(claims.get("iat"), bool):
            raise Unauthorized("ID token has no iat claim")
        times = check_token_times(claims, now=ctx.now, max_lifetime=self.max_token_lifetime)
        self._check_nonce(claims, csr)
        identity = self._identity(claims)
        matched_groups = self._check_groups(claims)
        admin = self._is_admin(identity)
        if admin:
            cn, sans, validators = self._admin_names(csr)
        else:
            sans = identity_names(self.names, identity)
            if not sans:
                raise Forbidden(
                    f"the ID token gives none of the names provisioner {self.name!r} makes"
                    f" ({', '.join(str(t) for t in self.names)})"
                )
            cn = common_name(self.common_name, identity)
            validators = (NamesWithin(frozenset(sans), frozenset({cn} if cn else ())),)
        use = self._token_use(credential, claims, times.expires_at)
        evidence: dict[str, Any] = {
            "method": "oidc",
            "provider": self.provider,
            "subject": identity.subject,
            "token": use.token_id,
        }
        if identity.email is not None:
            evidence["email"] = identity.email
        if matched_groups:
            evidence["groups"] = matched_groups
        if admin:
            evidence["admin"] = True
        policy = SignPolicy(
            provisioner=self.ref,
            issuer=self.issuer,
            durations=self.durations,
            validators=(KeyTypeIn(self.key_types), *validators),
            modifiers=(
                SetSubjectAndSANs(cn, sans),
                SetExtendedKeyUsage(self.ekus),
                SetAssurance(Assurance.SINGLE_SIGN_ON),
            ),
            not_after_limit=None,
            evidence=evidence,
        )
        return Authorization(policy=policy, token=use)

    def _admin_names(
        self, csr: CSRInfo
    ) -> tuple[str | None, tuple[SAN, ...], tuple[NamesWithin, ...]]:
        """An admin's certificate names what the CSR asks (within ``admin_names``)."""
        sans = tuple(sorted(set(csr.sans)))
        cn = csr.common_name
        if not sans and not cn:
            raise Forbidden("the CSR names nothing; an admin's CSR must name what it is for")
        if self.admin_names:
            for san in sans:
                if not self.admin_names.allows_san(san):
                    raise Forbidden(f"{san} is not a name admins of {self.name!r} may have")
            if cn is not None and not self.admin_names.allows_subject(cn):
                raise Forbidden(f"{cn!r} is not a name admins of {self.name!r} may have")
        return cn, sans, (NamesWithin(frozenset(sans), frozenset({cn} if cn else ())),)

    def authorize_renew(self, ctx: RenewContext) -> RenewAuthorization:
        """Renewal only with ``allow_renewal = true``: by default a person signs in again,
        so one the provider no longer admits gets no new certificate."""
        if not self.allow_renewal:
            raise Forbidden(
                f"provisioner {self.name!r} does not renew certificates; sign in again"
                " (`devid login`)"
            )
        return RenewAuthorization(checked={"allow_renewal": True})
