"""X5C provisioner: one-time tokens signed by the key of a certificate the CA trusts.

A token is a compact JWS whose protected header carries ``x5c``: the signer's
certificate and any intermediates, standard base64 DER, leaf first. The
provisioner accepts it when

- the path verifies to one of its configured ``roots`` at the current time
  (``engine.chain.verify_chain``), every certificate is valid now, the leaf
  is not a CA, its key usage (if present) allows digitalSignature and its
  extended key usage (if present) contains clientAuth;
- the leaf's key signed the token, with the one algorithm that key type
  allows (ES256, ES384, EdDSA; RS256 or PS256 for RSA); ``none`` and HMAC are
  refused before anything else is looked at;
- iss is the provisioner's name, aud this endpoint's URL, the token lives at
  most ``max_token_lifetime`` (default 5m, at most 1h) and its jti has not
  been used (the host records it until ``exp`` plus the clock-skew leeway).

The certificate it authorizes names exactly the token's ``sub`` and ``sans``
(the CSR must ask for the same), carries the provisioner's EKUs (default
clientAuth only), and never outlives the x5c path: its notAfter is clamped to
the earliest notAfter on the path, and the request is refused when that is
less than ``durations.min`` away.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import attrs
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from engine.csr import CSRInfo
from engine.errors import ConfigurationError, Forbidden, Unauthorized
from engine.extensions import ProvisionerRef
from engine.keys import KeyType
from engine.names import SAN
from engine.policy import (
    CommonNameIs,
    DurationLimits,
    KeyTypeIn,
    SANsAre,
    SetSubjectAndSANs,
    SignPolicy,
    Validator,
)
from plugins.api import (
    Assurance,
    Authorization,
    AuthorizeContext,
    Credential,
    NamePatterns,
    Options,
    Provisioner,
    ProvisionerEnvironment,
    RenewAuthorization,
    RenewContext,
    SetAssurance,
    SetExtendedKeyUsage,
    X5CToken,
    check_roots,
    csr_binding,
    describe_ekus,
    durations_view,
    fingerprint,
    parse_ekus,
    read_jose_credential,
    require_active_leaf,
    subject_and_sans,
    verify_certificate_token,
)

MAX_TOKEN_LIFETIME_CAP = timedelta(hours=1)
DEFAULT_DURATIONS = DurationLimits(
    minimum=timedelta(minutes=5), maximum=timedelta(days=30), default=timedelta(hours=24)
)


def _load_pem_roots(opts: Options, data_dir: Path) -> list[x509.Certificate]:
    paths = opts.get("roots", [])
    if isinstance(paths, str) or not isinstance(paths, list):
        raise ConfigurationError(f"{opts.where}: 'roots' must be a list of PEM files")
    certificates: list[x509.Certificate] = []
    for name in paths:
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"{opts.where}: 'roots' must be a list of PEM files")
        path = Path(name) if Path(name).is_absolute() else data_dir / name
        try:
            certificates.extend(x509.load_pem_x509_certificates(path.read_bytes()))
        except OSError as exc:
            raise ConfigurationError(f"{opts.where}: cannot read {path}: {exc}") from None
        except ValueError as exc:
            raise ConfigurationError(f"{opts.where}: {path} is not PEM: {exc}") from None
    inline = opts.get("roots_pem")
    if inline is not None:
        if not isinstance(inline, str) or not inline.strip():
            raise ConfigurationError(f"{opts.where}: 'roots_pem' must be PEM text")
        try:
            certificates.extend(x509.load_pem_x509_certificates(inline.encode()))
        except ValueError as exc:
            raise ConfigurationError(f"{opts.where}: roots_pem is not PEM: {exc}") from None
    if not certificates:
        raise ConfigurationError(f"{opts.where}: 'roots' or 'roots_pem' must name a root")
    return certificates


@attrs.frozen
class X5CNames:
    """What a sign token asks for: the certificate's common name and SANs."""

    subject: str
    sans: tuple[SAN, ...]


# A pure, extra check of a verified sign token (for example, that its names belong to the
# device whose certificate signed it). Raise a ProtocolError (usually Forbidden) to refuse.
LeafCheck = Callable[[X5CToken, X5CNames], None]


class X5CProvisioner(Provisioner):
    type_name: ClassVar[str] = "X5C"
    #: The assurance marker of its certificates (docs/ca.md).
    assurance: ClassVar[Assurance] = Assurance.TOKEN

    def __init__(
        self,
        *,
        name: str,
        issuer: str,
        roots: Sequence[x509.Certificate],
        durations: DurationLimits = DEFAULT_DURATIONS,
        eku: Sequence[x509.ObjectIdentifier | str] = (ExtendedKeyUsageOID.CLIENT_AUTH,),
        backdate: timedelta = timedelta(minutes=1),
        max_token_lifetime: timedelta = timedelta(minutes=5),
        key_types: frozenset[KeyType] = frozenset(KeyType),
        allowed_subjects: Sequence[str] = (),
        allowed_sans: Sequence[str] = (),
        require_csr_binding: bool = False,
        leaf_check: LeafCheck | None = None,
        allow_renewal: bool = False,
    ) -> None:
        where = f"provisioner {name!r}"
        if not isinstance(name, str) or not name:
            raise ConfigurationError("an X5C provisioner needs a non-empty name")
        if not timedelta(0) < max_token_lifetime <= MAX_TOKEN_LIFETIME_CAP:
            raise ConfigurationError(f"{where}: max_token_lifetime must be between 1s and 1h")
        if not key_types:
            raise ConfigurationError(f"{where}: key_types must not be empty")
        self.name = name
        self.issuer = issuer
        self.roots = check_roots(roots, where)
        self.durations = durations
        self.extended_key_usage = parse_ekus(eku, where)
        self.backdate = backdate
        self.max_token_lifetime = max_token_lifetime
        self.key_types = key_types
        self.allowed_subjects = NamePatterns.parse(allowed_subjects, f"{where}: allowed_subjects")
        self.allowed_sans = NamePatterns.parse(allowed_sans, f"{where}: allowed_sans")
        self.require_csr_binding = require_csr_binding
        self.leaf_check = leaf_check
        self.allow_renewal = allow_renewal
        self.ref = ProvisionerRef(type=self.type_name, name=name)
        # Each trusted root's subject and fingerprint (evidence), by root.
        self._root_cache: dict[x509.Certificate, tuple[str, str]] = {}

    # --- configuration -----------------------------------------------------

    @classmethod
    def from_config(
        cls, name: str, options: Mapping[str, Any], env: ProvisionerEnvironment
    ) -> X5CProvisioner:
        where = f"provisioner {name!r}"
        opts = Options(where, options)
        issuer = opts.issuer(env.issuers)
        ekus = opts.template_ekus()
        provisioner = cls(
            name=name,
            issuer=issuer,
            roots=_load_pem_roots(opts, env.data_dir),
            durations=opts.durations(DEFAULT_DURATIONS),
            eku=ekus,
            backdate=opts.duration("backdate", "1m"),
            max_token_lifetime=opts.duration("max_token_lifetime", "5m"),
            key_types=opts.key_types(),
            allowed_subjects=_string_list(opts, "allowed_subjects"),
            allowed_sans=_string_list(opts, "allowed_sans"),
            require_csr_binding=opts.boolean("require_csr_binding", False),
            allow_renewal=opts.boolean("allow_renewal", False),
        )
        opts.finish()
        return provisioner

    @classmethod
    def default_config(cls, name: str, env: ProvisionerEnvironment) -> dict[str, Any]:
        """Trust the Agent CA (device certificates); issue clientAuth certificates from the
        TLS CA (the Account CA issues only through devid's accounts, docs/ca.md)."""
        return {
            "type": cls.type_name,
            "name": name,
            "issuer": "tls",
            "roots": ["certs/agent_ca.crt"],
            "max_token_lifetime": "5m",
            "durations": durations_view(DEFAULT_DURATIONS),
            "template": {"ekus": ["clientAuth"]},
        }

    def public_view(self) -> dict[str, Any]:
        return {
            "type": self.type_name,
            "name": self.name,
            "issuer": self.issuer,
            "roots": [
                {"subject": r.subject.rfc4514_string(), "sha256": fingerprint(r)}
                for r in self.roots
            ],
            "maxTokenLifetime": int(self.max_token_lifetime.total_seconds()),
            "durations": durations_view(self.durations),
            "ekus": self.describe_ekus(),
            "allowedSubjects": self.allowed_subjects.texts(),
            "allowedSANs": self.allowed_sans.texts(),
            "requireCSRBinding": self.require_csr_binding,
        }

    def describe_ekus(self) -> list[str]:
        return describe_ekus(self.extended_key_usage)

    # --- verification --------------------------------------------------------

    @classmethod
    def read_credential(cls, text: str) -> Credential | None:
        """A compact JWS (never none or HMAC) addressed by ``iss`` to a provisioner."""
        return read_jose_credential(text)

    def verify_token(self, credential: Credential | str, ctx: AuthorizeContext) -> X5CToken:
        """Check the token's path, signature and registered claims; raise to refuse."""
        return verify_certificate_token(
            credential,
            name=self.name,
            roots=self.roots,
            ctx=ctx,
            max_lifetime=self.max_token_lifetime,
        )

    def _names(self, token: X5CToken) -> X5CNames:
        subject, sans = subject_and_sans(token.claims)
        if not self.allowed_subjects.allows_subject(subject):
            raise Forbidden(f"subject {subject!r} is not allowed by provisioner {self.name!r}")
        outside = [str(s) for s in sans if not self.allowed_sans.allows_san(s)]
        if outside:
            raise Forbidden(
                f"provisioner {self.name!r} does not allow the name(s) {', '.join(outside)}"
            )
        return X5CNames(subject=subject, sans=sans)

    def _not_after_limit(self, token: X5CToken, now: datetime) -> datetime:
        limit = token.path.not_after
        if limit - now < self.durations.minimum:
            raise Forbidden(
                f"the x5c certificate expires in {limit - now}, sooner than this"
                f" provisioner's minimum certificate lifetime of {self.durations.minimum}"
            )
        return limit

    def evidence(self, token: X5CToken) -> dict[str, Any]:
        """What is stored beside the certificate: who signed the token, and under which root."""
        leaf = token.leaf
        path = token.path
        root = path.root
        # The root is one of ours: its texts are worked out once, not per request; so is
        # the leaf's issuer name when the root signed the leaf.
        root_subject, root_sha256 = self._root_texts(root)
        issuer = root_subject if len(path.certificates) == 2 else leaf.issuer.rfc4514_string()
        return {
            "method": "x5c-token",
            "jti": token.use.token_id,
            "leaf_subject": leaf.subject.rfc4514_string(),
            "leaf_serial": format(leaf.serial_number, "x"),
            "leaf_sha256": fingerprint(leaf),
            "leaf_issuer": issuer,
            "root_subject": root_subject,
            "root_sha256": root_sha256,
        }

    def _root_texts(self, root: x509.Certificate) -> tuple[str, str]:
        """A trusted root's subject (RFC 4514) and SHA-256 fingerprint, remembered."""
        texts = self._root_cache.get(root)
        if texts is None:
            texts = (root.subject.rfc4514_string(), fingerprint(root))
            self._root_cache[root] = texts
        return texts

    # --- authorization ------------------------------------------------------

    def authorize_sign(
        self, credential: Credential | str, csr: CSRInfo, ctx: AuthorizeContext
    ) -> Authorization:
        return self.authorize_token(self.verify_token(credential, ctx), csr, ctx)

    def authorize_token(
        self, token: X5CToken, csr: CSRInfo, ctx: AuthorizeContext
    ) -> Authorization:
        """:meth:`authorize_sign` after the token verified: what it authorizes."""
        names = self._names(token)
        not_after_limit = self._not_after_limit(token, ctx.now)
        validators: list[Validator] = [
            KeyTypeIn(self.key_types),
            CommonNameIs(names.subject),
            SANsAre(frozenset(names.sans)),
        ]
        binding = csr_binding(token.claims, required=self.require_csr_binding)
        if binding is not None:
            validators.append(binding)
        if self.leaf_check is not None:
            self.leaf_check(token, names)
        policy = SignPolicy(
            provisioner=self.ref,
            issuer=self.issuer,
            durations=self.durations,
            backdate=self.backdate,
            validators=tuple(validators),
            modifiers=(
                SetSubjectAndSANs(names.subject, names.sans),
                SetExtendedKeyUsage(self.extended_key_usage),
                SetAssurance(self.assurance),
            ),
            not_after_limit=not_after_limit,
            evidence=self.evidence(token),
        )
        return Authorization(policy=policy, token=token.use)

    def authorize_revoke(
        self, credential: Credential | str, serial: int, ctx: AuthorizeContext
    ) -> Authorization:
        token = self.verify_token(credential, ctx)
        if token.claims.get("sub") != str(serial):
            raise Unauthorized("token subject is not the serial number being revoked")
        return Authorization(policy=None, token=token.use)

    def authorize_renew(self, ctx: RenewContext) -> RenewAuthorization:
        """Only with ``allow_renewal = true``. If this CA issued the x5c certificate that
        obtained the certificate, that one must still be active, and the renewal ends no
        later than it does (as the first issuance did)."""
        if not self.allow_renewal:
            raise Forbidden(
                f"provisioner {self.name!r} does not allow renewal: sign a new token with"
                " the x5c certificate"
            )
        checked: dict[str, Any] = {"allow_renewal": True}
        if ctx.leaf is None:
            return RenewAuthorization(checked=checked)
        leaf = require_active_leaf(ctx)
        checked["leaf_serial"] = leaf.serial
        checked["leaf_status"] = leaf.status
        return RenewAuthorization(checked=checked, not_after_limit=leaf.not_after)


def _string_list(opts: Options, key: str) -> list[str]:
    value = opts.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigurationError(f"{opts.where}: {key!r} must be a list of strings")
    return value
