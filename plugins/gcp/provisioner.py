"""The GCP provisioner: certificates for Google Compute Engine instances, from the
identity token Google's metadata server signs for each instance (no secret is
configured on the virtual machine).

The credential is the instance identity token in its ``format=full`` form (``POST
/1.0/sign`` with it as ``ott``), which the instance asks its metadata server for with
``audience`` set to this CA's sign URL and the provisioner's name as its fragment
(``https://ca.example.com:8443/1.0/sign#gce``). It addresses the provisioner by that
name. A token is accepted only if all of this holds (a refusal is a 401):

- its signature verifies with a key of Google's JWK set (``jwks_url``, fetched by the
  host through :class:`plugins.api.RemoteKeys`, found by ``kid``), with RS256 only;
- ``iss`` is exactly ``token_issuer``; ``aud`` is exactly one of this CA's sign URLs
  followed by ``#`` and this provisioner's name, so a token asked for another CA, or
  for another provisioner of this CA, is refused;
- ``exp`` and ``iat`` (both required) hold now with a minute's leeway, and the token
  lives no longer than Google's hour (plus the leeway);
- with ``service_accounts``, Google has verified the service account's email
  (``email_verified`` true).

The instance it describes (``google.compute_engine``) must then be admitted (a refusal
is a 403): its project one of ``projects``, its zone one of ``zones`` and its service
account one of ``service_accounts`` where those are set, and with
``max_instance_age`` it was created no longer ago than that.

Trust on first use (``trust_on_first_use``, the default): the token is recorded as used
for the instance (``instance:<instance_id>``) for good, so an instance gets one
certificate from an identity token and renews it over mTLS with that certificate's key;
anyone who later obtains one of its tokens cannot get a second certificate for it. The
operator lifts that (a rebuilt instance with the same ID) with ``devid cloud forget``.
Without it, each token is used once, remembered by its SHA-256 until it expires.

The certificate names the instance: its common name is the instance name, its SANs the
instance's internal DNS names (``NAME.c.PROJECT.internal`` and
``NAME.ZONE.c.PROJECT.internal``) and the URI ``gce://PROJECT/ZONE/INSTANCE_ID``, which
names this one instance for good (instance IDs are never reused). A CSR may ask for
some of those and, beyond them, for names ``allowed_names`` matches (none by default);
the certificate carries the instance's names and those extra names. Its EKUs are
clientAuth and serverAuth by default: an instance is a client of other services and
often serves TLS itself under the names it is given. Certificates come from the TLS CA,
carry the ``cloud-instance`` assurance marker, and are renewed by their key
(``allow_renewal``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from plugins.api import (
    LEEWAY,
    SAN,
    Authorization,
    AuthorizeContext,
    CompactJWS,
    ConfigurationError,
    Credential,
    CSRInfo,
    DurationLimits,
    Forbidden,
    KeyType,
    NamePatterns,
    Options,
    ProtocolError,
    Provisioner,
    ProvisionerEnvironment,
    ProvisionerRef,
    RemoteKeys,
    RenewAuthorization,
    RenewContext,
    TokenUse,
    Unauthorized,
    check_token_times,
    durations_view,
    first_use,
    instance_names,
    instance_policy,
    jose_token,
    parse_ekus,
    sha256_token_id,
    url_problem,
    verify_remote_token,
)

#: The only algorithm Google signs identity tokens with.
ALGORITHM = "RS256"
DEFAULT_JWKS_URL = "https://www.googleapis.com/oauth2/v3/certs"
DEFAULT_TOKEN_ISSUER = "https://accounts.google.com"
#: The claim holding the instance's facts (present in ``format=full`` tokens): the
#: ``compute_engine`` member of the ``google`` claim.
INSTANCE_CLAIM = "google.compute_engine"


def _instance_facts(claims: Mapping[str, Any]) -> Any:
    """The token's ``google.compute_engine`` claim (``{"google": {"compute_engine": …}}``),
    or None."""
    google = claims.get("google")
    return google.get("compute_engine") if isinstance(google, Mapping) else None


DEFAULT_DURATIONS = DurationLimits(
    minimum=timedelta(minutes=5), maximum=timedelta(days=30), default=timedelta(hours=24)
)
MAX_DURATION = timedelta(days=30)
#: Google's identity tokens live one hour.
MAX_TOKEN_LIFETIME = timedelta(hours=1) + LEEWAY
DEFAULT_EKUS = ("clientAuth", "serverAuth")
NO_PATTERNS = NamePatterns()

# Compute Engine's own rules for the names in the token (RFC 1035 labels; project IDs
# of 6 to 30 characters). Domain-scoped projects ("example.com:p") are not supported.
_INSTANCE_NAME = re.compile(r"^[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$")
_PROJECT_ID = re.compile(r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$")
_ZONE = re.compile(r"^[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$")
_INSTANCE_ID = re.compile(r"^[0-9]{1,20}$")
MAX_EMAIL_LENGTH = 254


def instance_uri(project_id: str, zone: str, instance_id: str) -> str:
    """The URI SAN naming one instance: ``gce://PROJECT/ZONE/INSTANCE_ID``."""
    return f"gce://{project_id}/{zone}/{instance_id}"


class Instance:
    """The facts of a token's ``google.compute_engine`` claim this provisioner uses,
    each checked to have the form Compute Engine gives it."""

    def __init__(self, claims: Mapping[str, Any]) -> None:
        facts = _instance_facts(claims)
        if not isinstance(facts, Mapping):
            raise Unauthorized(
                f"the token has no {INSTANCE_CLAIM} claim (ask the metadata server for format=full)"
            )
        self.facts = facts
        self.project_id = self._text("project_id", _PROJECT_ID)
        self.zone = self._text("zone", _ZONE)
        self.instance_id = self._text("instance_id", _INSTANCE_ID)
        name = facts.get("instance_name")
        self.instance_name = self._text(
            "instance_name", _INSTANCE_NAME, name.lower() if isinstance(name, str) else None
        )

    def _text(self, key: str, form: re.Pattern[str], value: Any = None) -> str:
        value = self.facts.get(key) if value is None else value
        if not isinstance(value, str) or not value:
            raise Unauthorized(f"the token's {INSTANCE_CLAIM} claim has no {key}")
        if not form.fullmatch(value):
            raise Forbidden(f"{INSTANCE_CLAIM}.{key} {value!r} is not a name this CA can use")
        return value

    def created(self) -> datetime | None:
        """When the instance was created, or None if the token does not say."""
        value = self.facts.get("instance_creation_timestamp")
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            return None

    def sans(self) -> tuple[SAN, ...]:
        """The instance's own names: its internal DNS names and its URI."""
        base = f"c.{self.project_id}.internal"
        return (
            SAN.parse(f"{self.instance_name}.{base}"),
            SAN.parse(f"{self.instance_name}.{self.zone}.{base}"),
            SAN.parse(instance_uri(self.project_id, self.zone, self.instance_id)),
        )


class GCPProvisioner(Provisioner):
    """Signs for a Compute Engine instance Google vouches for (see the module docstring)."""

    type_name: ClassVar[str] = "GCP"

    def __init__(
        self,
        *,
        name: str,
        issuer: str,
        projects: frozenset[str],
        remote_keys: RemoteKeys | None,
        zones: frozenset[str] = frozenset(),
        service_accounts: frozenset[str] = frozenset(),
        max_instance_age: timedelta | None = None,
        trust_on_first_use: bool = True,
        jwks_url: str = DEFAULT_JWKS_URL,
        token_issuer: str = DEFAULT_TOKEN_ISSUER,
        key_refresh_interval: timedelta = timedelta(minutes=1),
        allowed_names: NamePatterns = NO_PATTERNS,
        durations: DurationLimits = DEFAULT_DURATIONS,
        key_types: frozenset[KeyType] = frozenset(KeyType),
        ekus: tuple[Any, ...] = DEFAULT_EKUS,
        allow_renewal: bool = True,
    ) -> None:
        if not projects:
            raise ConfigurationError(f"provisioner {name!r}: projects must list a project ID")
        self.name = name
        self.issuer = issuer
        self.projects = projects
        self.remote_keys = remote_keys
        self.zones = zones
        self.service_accounts = service_accounts
        self.max_instance_age = max_instance_age
        self.trust_on_first_use = trust_on_first_use
        self.jwks_url = jwks_url
        self.token_issuer = token_issuer
        self.key_refresh_interval = key_refresh_interval
        self.allowed_names = allowed_names
        self.durations = durations
        self.key_types = key_types
        self.ekus = parse_ekus(list(ekus), f"provisioner {name!r}")
        self.allow_renewal = allow_renewal
        self.ref = ProvisionerRef(type=self.type_name, name=name)

    # --- configuration -----------------------------------------------------------------

    @classmethod
    def from_config(
        cls, name: str, options: Mapping[str, Any], env: ProvisionerEnvironment
    ) -> GCPProvisioner:
        where = f"provisioner {name!r}"
        opts = Options(where, options)
        if "#" in name:
            raise ConfigurationError(f"{where}: a GCP provisioner's name may not contain '#'")
        projects = opts.strings("projects")
        if "projects" not in options or not projects:
            raise ConfigurationError(f"{where}: projects must list the project IDs it admits")
        jwks_url = opts.string("jwks_url", DEFAULT_JWKS_URL)
        problem = url_problem(jwks_url)
        if problem is not None:
            raise ConfigurationError(f"{where}: jwks_url: {problem}")
        max_age: timedelta | None = None
        if opts.get("max_instance_age") is not None:
            max_age = opts.duration("max_instance_age", "0s")
            if max_age <= timedelta(0):
                raise ConfigurationError(f"{where}: max_instance_age must be positive")
        refresh = opts.duration("key_refresh_interval", "1m")
        if not timedelta(seconds=1) <= refresh <= timedelta(hours=1):
            raise ConfigurationError(f"{where}: key_refresh_interval must be between 1s and 1h")
        durations = opts.durations(DEFAULT_DURATIONS)
        if durations.maximum > MAX_DURATION:
            raise ConfigurationError(f"{where}: durations.max may be at most 30d")
        provisioner = cls(
            name=name,
            issuer=opts.issuer(env.issuers),
            projects=frozenset(projects),
            remote_keys=env.remote_keys,
            zones=frozenset(opts.strings("zones")),
            service_accounts=frozenset(a.lower() for a in opts.strings("service_accounts")),
            max_instance_age=max_age,
            trust_on_first_use=opts.boolean("trust_on_first_use", True),
            jwks_url=jwks_url,
            token_issuer=opts.string("token_issuer", DEFAULT_TOKEN_ISSUER),
            key_refresh_interval=refresh,
            allowed_names=NamePatterns.parse(
                list(opts.strings("allowed_names")), f"{where}: allowed_names"
            ),
            durations=durations,
            key_types=opts.key_types(),
            ekus=tuple(opts.template_ekus(DEFAULT_EKUS)),
            allow_renewal=opts.boolean("allow_renewal", True),
        )
        opts.finish()
        return provisioner

    def public_view(self) -> dict[str, Any]:
        """What a client needs (never the allow-lists)."""
        return {
            "type": self.type_name,
            "name": self.name,
            "issuer": self.issuer,
            "cloud": "gcp",
            "durations": durations_view(self.durations),
        }

    # --- credentials ---------------------------------------------------------------------

    @classmethod
    def read_credential(cls, text: str) -> Credential | None:
        """A compact JWS with a ``google.compute_engine`` claim whose ``aud`` has a
        fragment: an instance identity token, addressed to the provisioner the fragment
        names. None for anything else."""
        try:
            jws = jose_token(text)
            claims = jws.claims()
        except ProtocolError:  # not a JWS this code reads (none and HMAC never are)
            return None
        if not isinstance(_instance_facts(claims), Mapping):
            return None
        aud = claims.get("aud")
        if not isinstance(aud, str):
            return None
        _, hash_sign, fragment = aud.partition("#")
        if not hash_sign or not fragment:
            return None
        return Credential(text=text, provisioner=fragment, reading=jws)

    # --- authorization -------------------------------------------------------------------

    def _verified_claims(self, jws: CompactJWS) -> dict[str, Any]:
        """The token's claims once its signature verifies with one of Google's keys."""
        return verify_remote_token(
            jws,
            self.remote_keys,
            algorithms=(ALGORITHM,),
            refresh_interval=self.key_refresh_interval,
            what="instance identity token",
            whose="Google's signing keys",
            provisioner=self.name,
            jwks_uri=self.jwks_url,
        )

    def _check_addressing(self, claims: Mapping[str, Any], ctx: AuthorizeContext) -> None:
        if claims.get("iss") != self.token_issuer:
            raise Unauthorized(
                f"instance identity token issuer {claims.get('iss')!r} is not {self.token_issuer!r}"
            )
        expected = sorted(f"{a}#{self.name}" for a in ctx.audiences)
        aud = claims.get("aud")
        if not isinstance(aud, str) or aud not in expected:
            raise Unauthorized(
                f"instance identity token audience {aud!r} is not this CA's provisioner URL"
                f" (expected {' or '.join(expected) or 'a URL of this CA'})"
            )
        iat = claims.get("iat")
        if isinstance(iat, bool) or not isinstance(iat, int | float):
            raise Unauthorized("instance identity token has no iat claim")

    def _service_account(self, claims: Mapping[str, Any]) -> str:
        """The instance's service account (its email; its unique ID where there is none),
        checked against ``service_accounts``."""
        email = claims.get("email")
        usable = isinstance(email, str) and 0 < len(email) <= MAX_EMAIL_LENGTH
        if not self.service_accounts:
            if usable:
                assert isinstance(email, str)
                return email.lower()
            sub = claims.get("sub")
            return sub if isinstance(sub, str) and sub.isascii() and len(sub) <= 64 else ""
        if not usable:
            raise Forbidden(
                f"the token names no service account email, and provisioner {self.name!r}"
                " admits only listed service accounts"
            )
        if claims.get("email_verified") is not True:
            raise Unauthorized(
                "Google has not verified the service account's email (email_verified is not true)"
            )
        assert isinstance(email, str)
        account = email.lower()
        if account not in self.service_accounts:
            raise Forbidden(
                f"service account {account!r} is not one provisioner {self.name!r} admits"
            )
        return account

    def _check_instance(self, instance: Instance, now: datetime) -> None:
        if instance.project_id not in self.projects:
            raise Forbidden(
                f"project {instance.project_id!r} is not one provisioner {self.name!r} admits"
            )
        if self.zones and instance.zone not in self.zones:
            raise Forbidden(f"zone {instance.zone!r} is not one provisioner {self.name!r} admits")
        if self.max_instance_age is not None:
            created = instance.created()
            if created is None:
                raise Forbidden(
                    f"the token does not say when the instance was created, and provisioner"
                    f" {self.name!r} admits instances younger than {self.max_instance_age}"
                    " only"
                )
            if now - created > self.max_instance_age:
                raise Forbidden(
                    f"instance {instance.instance_id} was created {created.isoformat()},"
                    f" longer ago than provisioner {self.name!r} admits"
                    f" ({self.max_instance_age})"
                )

    def _names(self, instance: Instance, csr: CSRInfo) -> tuple[SAN, ...]:
        """The instance's names and the CSR's extra names ``allowed_names`` admits."""
        who = f"instance {instance.instance_name!r}"
        return instance_names(instance.sans(), csr, self.allowed_names, who)

    def _token_use(
        self, credential: Credential, instance: Instance, expires: datetime, now: datetime
    ) -> TokenUse:
        if self.trust_on_first_use:
            return first_use(self.name, instance.instance_id, now)
        return TokenUse(
            provisioner=self.name,
            token_id=sha256_token_id(credential.text),
            expires_at=expires + LEEWAY,
        )

    def authorize_sign(
        self, credential: Credential, csr: CSRInfo, ctx: AuthorizeContext
    ) -> Authorization:
        jws = jose_token(credential)
        claims = self._verified_claims(jws)
        self._check_addressing(claims, ctx)
        times = check_token_times(claims, now=ctx.now, max_lifetime=MAX_TOKEN_LIFETIME)
        account = self._service_account(claims)
        instance = Instance(claims)
        self._check_instance(instance, ctx.now)
        sans = self._names(instance, csr)
        use = self._token_use(credential, instance, times.expires_at, ctx.now)
        evidence: dict[str, Any] = {
            "method": "gcp-instance-identity",
            "project": instance.project_id,
            "zone": instance.zone,
            "instance_id": instance.instance_id,
            "instance_name": instance.instance_name,
            "service_account": account,
            "token": use.token_id,
        }
        policy = instance_policy(
            provisioner=self.ref,
            issuer=self.issuer,
            durations=self.durations,
            key_types=self.key_types,
            ekus=self.ekus,
            common_name=instance.instance_name,
            sans=sans,
            evidence=evidence,
        )
        return Authorization(policy=policy, token=use)

    def authorize_renew(self, ctx: RenewContext) -> RenewAuthorization:
        """Renewal by the certificate's key (the default): with trust on first use it is
        how an instance keeps its identity, since its next token gets no certificate."""
        if not self.allow_renewal:
            raise Forbidden(f"provisioner {self.name!r} does not renew certificates")
        return RenewAuthorization(checked={"allow_renewal": True})
