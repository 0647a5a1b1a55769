"""ACME provisioner: who may order what, validated how, issued from which CA.

It reads no credential (the base class's ``read_credential``), so ``/1.0/sign``
cannot reach it (step-ca GHSA-h8cp-697h-8c8p), and revocation goes through
ACME's own revokeCert; :meth:`acme` makes it an ACME directory. Its ``profile``
is what the ACME engine applies to accounts and orders; :meth:`authorize_finalize`
returns the sign policy the one signing pipeline applies to a finalized order.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from engine.acme.context import Profile
from engine.acme.finalize import (
    CSRNamesMatchOrder,
    FinalizeRequest,
    PublicKeyIs,
    attested_key,
    evidence,
    order_names,
)
from engine.acme.identifiers import (
    CHALLENGE_TYPES,
    DEVICE_ATTEST_01,
    IdentifierPolicy,
    IPNetwork,
)
from engine.csr import CSRInfo
from engine.errors import BadRequest, ConfigurationError, Forbidden, Unauthorized
from engine.extensions import ProvisionerRef
from engine.jose import b64url_decode
from engine.keys import KeyType
from engine.policy import DurationLimits, KeyTypeIn, SignPolicy, Validator
from plugins.api import (
    Assurance,
    AttestationContext,
    Authorization,
    AuthorizeContext,
    Credential,
    Options,
    Provisioner,
    ProvisionerEnvironment,
    RenewAuthorization,
    RenewContext,
    SetAssurance,
    describe_ekus,
    durations_view,
    parse_ekus,
    require_active_device,
)

DEFAULT_DURATIONS = DurationLimits(
    minimum=timedelta(minutes=5), maximum=timedelta(days=30), default=timedelta(hours=24)
)
NETWORK_CHALLENGES = ["http-01", "dns-01", "tls-alpn-01"]
DEVICE_FORMATS = ["tpm", "apple", "step"]
MIN_EAB_KEY_BYTES = 16
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._~-]{0,63}$")


def _strings(opts: Options, key: str, default: list[str]) -> list[str]:
    value = opts.get(key, default)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigurationError(f"{opts.where}: {key!r} must be a list of strings")
    return value


def _ekus(opts: Options) -> tuple[x509.ObjectIdentifier, ...]:
    return parse_ekus(opts.template_ekus(("serverAuth", "clientAuth")), f"{opts.where}.template")


def _eab_keys(opts: Options) -> dict[str, bytes]:
    table = opts.get("eab_keys", {})
    if not isinstance(table, Mapping):
        raise ConfigurationError(f"{opts.where}: 'eab_keys' must be a table of kid = key")
    keys: dict[str, bytes] = {}
    for kid, text in table.items():
        if not isinstance(text, str):
            raise ConfigurationError(f"{opts.where}: eab_keys.{kid} must be a base64url string")
        try:
            key = b64url_decode(text, what=f"eab_keys.{kid}")
        except BadRequest as exc:
            raise ConfigurationError(f"{opts.where}: {exc.detail}") from None
        if len(key) < MIN_EAB_KEY_BYTES:
            raise ConfigurationError(
                f"{opts.where}: eab_keys.{kid} must hold at least {MIN_EAB_KEY_BYTES} bytes"
            )
        keys[str(kid)] = key
    return keys


def _networks(opts: Options) -> tuple[IPNetwork, ...]:
    out: list[IPNetwork] = []
    for text in _strings(opts, "allowed_ip_ranges", []):
        try:
            out.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ConfigurationError(f"{opts.where}: {text!r} is not a CIDR range") from None
    return tuple(out)


def _load_roots(
    opts: Options, data_dir: Path, formats: list[str]
) -> dict[str, tuple[x509.Certificate, ...]]:
    table = opts.get("attestation_roots", {})
    if not isinstance(table, Mapping):
        raise ConfigurationError(
            f"{opts.where}: 'attestation_roots' must be a table of format = [PEM files]"
        )
    roots: dict[str, tuple[x509.Certificate, ...]] = {}
    for fmt, paths in table.items():
        if fmt not in formats:
            raise ConfigurationError(
                f"{opts.where}: attestation_roots.{fmt} names a format not in attestation_formats"
            )
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise ConfigurationError(f"{opts.where}: attestation_roots.{fmt} must list PEM files")
        certs: list[x509.Certificate] = []
        for name in paths:
            path = Path(name) if Path(name).is_absolute() else data_dir / name
            try:
                certs.extend(x509.load_pem_x509_certificates(path.read_bytes()))
            except OSError as exc:
                raise ConfigurationError(f"{opts.where}: cannot read {path}: {exc}") from None
            except ValueError as exc:
                raise ConfigurationError(f"{opts.where}: {path} is not PEM: {exc}") from None
        roots[str(fmt)] = tuple(certs)
    return roots


class ACMEProvisioner(Provisioner):
    type_name: ClassVar[str] = "ACME"

    def __init__(
        self,
        *,
        name: str,
        issuer: str,
        profile: Profile,
        key_types: frozenset[KeyType] = frozenset(KeyType),
        extended_key_usage: tuple[x509.ObjectIdentifier, ...] = (
            ExtendedKeyUsageOID.SERVER_AUTH,
            ExtendedKeyUsageOID.CLIENT_AUTH,
        ),
        backdate: timedelta = timedelta(minutes=1),
        attestation_formats: tuple[str, ...] = (),
        attestation_roots: Mapping[str, tuple[x509.Certificate, ...]] | None = None,
        require_inventory: bool = False,
        allow_renewal: bool = False,
    ) -> None:
        self.name = name
        self.issuer = issuer
        self.profile = profile
        self.key_types = key_types
        self.extended_key_usage = extended_key_usage
        self.backdate = backdate
        self.attestation_formats = attestation_formats
        self.attestation_roots = dict(attestation_roots or {})
        self.require_inventory = require_inventory
        self.allow_renewal = allow_renewal
        self.ref = ProvisionerRef(type=self.type_name, name=name)

    # --- configuration -----------------------------------------------------

    @classmethod
    def from_config(
        cls, name: str, options: Mapping[str, Any], env: ProvisionerEnvironment
    ) -> ACMEProvisioner:
        where = f"provisioner {name!r}"
        if not _NAME.match(name):
            raise ConfigurationError(
                f"{where}: an ACME provisioner's name is part of its URLs: use letters, digits,"
                " '.', '_', '~' or '-'"
            )
        opts = Options(where, options)
        challenges = _strings(opts, "challenges", NETWORK_CHALLENGES)
        # By default registered devices get their certificates from the Agent CA, anything
        # else from the TLS CA (docs/ca.md: what each CA vouches for).
        registered_devices = list(challenges) == [DEVICE_ATTEST_01] and opts.boolean(
            "require_inventory", False
        )
        default_issuer = "agent" if registered_devices else "tls"
        issuer = opts.issuer(env.issuers, default_issuer)
        unknown = sorted(set(challenges) - set(CHALLENGE_TYPES))
        if unknown or not challenges:
            raise ConfigurationError(
                f"{where}: challenges must be a non-empty subset of {', '.join(CHALLENGE_TYPES)}"
            )
        formats = _strings(opts, "attestation_formats", DEVICE_FORMATS)
        if DEVICE_ATTEST_01 in challenges and not formats:
            raise ConfigurationError(f"{where}: device-attest-01 needs attestation_formats")
        eab_keys = _eab_keys(opts)
        require_eab = opts.boolean("require_eab", False)
        if require_eab and not eab_keys:
            raise ConfigurationError(f"{where}: require_eab needs at least one key in eab_keys")
        order_lifetime = opts.duration("order_lifetime", "24h")
        if not timedelta(seconds=1) <= order_lifetime <= timedelta(days=30):
            raise ConfigurationError(f"{where}: order_lifetime must be between 1s and 30d")
        durations = opts.durations(DEFAULT_DURATIONS)
        website = opts.get("website")
        terms = opts.get("terms_of_service")
        for key, value in (("website", website), ("terms_of_service", terms)):
            if value is not None and (not isinstance(value, str) or "://" not in value):
                raise ConfigurationError(f"{where}: {key} must be a URL")
        profile = Profile(
            name=name,
            identifiers=IdentifierPolicy(
                challenges=frozenset(challenges),
                allowed_domains=tuple(_strings(opts, "allowed_domains", [])),
                allowed_ip_ranges=_networks(opts),
            ),
            require_eab=require_eab,
            eab_keys=eab_keys,
            order_lifetime=order_lifetime,
            durations=durations,
            website=website,
            terms_of_service=terms,
        )
        provisioner = cls(
            name=name,
            issuer=issuer,
            profile=profile,
            key_types=opts.key_types(),
            extended_key_usage=_ekus(opts),
            backdate=opts.duration("backdate", "1m"),
            attestation_formats=tuple(formats) if DEVICE_ATTEST_01 in challenges else (),
            attestation_roots=_load_roots(opts, env.data_dir, formats),
            require_inventory=opts.boolean("require_inventory", False),
            allow_renewal=opts.boolean("allow_renewal", False),
        )
        opts.finish()
        return provisioner

    @classmethod
    def default_config(cls, name: str, env: ProvisionerEnvironment) -> dict[str, Any]:
        """http-01, dns-01 and tls-alpn-01 for any DNS name, issued by the TLS CA (the Agent
        CA issues device certificates only: device-attest-01)."""
        return {
            "type": cls.type_name,
            "name": name,
            "issuer": "tls",
            "challenges": list(NETWORK_CHALLENGES),
            "allowed_domains": ["*"],
            "allowed_ip_ranges": [],
            "require_eab": False,
            "order_lifetime": "24h",
            "durations": durations_view(DEFAULT_DURATIONS),
        }

    def public_view(self) -> dict[str, Any]:
        return {
            "type": self.type_name,
            "name": self.name,
            "issuer": self.issuer,
            "directory": f"/acme/{self.name}/directory",
            "challenges": sorted(self.profile.challenges),
            "attestationFormats": list(self.attestation_formats),
            "requireEAB": self.profile.require_eab,
            "ekus": self.describe_ekus(),
            "durations": durations_view(self.profile.durations),
        }

    # --- authorization ------------------------------------------------------

    def acme(self) -> ACMEProvisioner:
        return self

    def authorize_sign(
        self, credential: Credential, csr: CSRInfo, ctx: AuthorizeContext
    ) -> Authorization:
        raise Unauthorized(f"provisioner {self.name!r} issues through ACME only")

    def authorize_revoke(
        self, credential: Credential, serial: int, ctx: AuthorizeContext
    ) -> Authorization:
        raise Unauthorized(f"certificates of {self.name!r} are revoked through ACME revokeCert")

    def authorize_renew(self, ctx: RenewContext) -> RenewAuthorization:
        """A device certificate (device-attest-01) renews while its device is registered
        and active; any other certificate only with ``allow_renewal = true`` (ACME
        clients renew by ordering again)."""
        if "attestation" in ctx.record.evidence:
            return RenewAuthorization(checked=require_active_device(ctx))
        if not self.allow_renewal:
            raise Forbidden(
                f"provisioner {self.name!r} does not renew its certificates over /1.0/renew:"
                " order a new one over ACME"
            )
        return RenewAuthorization(checked={"allow_renewal": True})

    def authorize_finalize(self, request: FinalizeRequest) -> Authorization:
        """The policy for a ready order: names from the order, the attested key if any."""
        order, authorizations = request.order, request.authorizations
        validators: list[Validator] = [
            KeyTypeIn(self.key_types),
            CSRNamesMatchOrder(order.identifiers),
        ]
        key = attested_key(order, authorizations)
        if key is not None:
            validators.append(PublicKeyIs(key))
        policy = SignPolicy(
            provisioner=self.ref,
            issuer=self.issuer,
            durations=self.profile.durations,
            backdate=self.backdate,
            validators=tuple(validators),
            modifiers=(
                order_names(order, authorizations, request.csr, self.extended_key_usage),
                SetAssurance(assurance_of(authorizations)),
            ),
            evidence=evidence(request),
        )
        return Authorization(policy=policy)

    # --- device-attest-01 ---------------------------------------------------

    def accepts_format(self, format_name: str) -> bool:
        return format_name in self.attestation_formats

    def attestation_context(
        self,
        format_name: str,
        now: datetime,
        *,
        ca_roots: tuple[x509.Certificate, ...] = (),
        ca_intermediates: tuple[x509.Certificate, ...] = (),
    ) -> AttestationContext:
        """The trust anchors for one format: its configured roots, and for ``tpm`` also
        devid's own root with the Attestation CA (*ca_roots*, *ca_intermediates*)."""
        roots = self.attestation_roots.get(format_name, ())
        intermediates: tuple[x509.Certificate, ...] = ()
        if format_name == "tpm":
            roots = (*roots, *ca_roots)
            intermediates = ca_intermediates
        return AttestationContext(now=now, roots=roots, intermediates=intermediates)

    def describe_ekus(self) -> list[str]:
        return describe_ekus(self.extended_key_usage)


def assurance_of(authorizations: Sequence[Any]) -> Assurance:
    """What an order's certificate says of its holder: ``tpm-attested`` when a TPM
    attested the key (device-attest-01, ``tpm``), ``hardware-attested`` for another
    vendor's attestation, else ``domain-validated`` (http-01, dns-01, tls-alpn-01)."""
    formats = {
        a.attestation.get("format") for a in authorizations if getattr(a, "attestation", None)
    }
    if not formats:
        return Assurance.DOMAIN_VALIDATED
    if formats == {"tpm"}:
        return Assurance.TPM_ATTESTED
    return Assurance.HARDWARE_ATTESTED
