"""The HMAC provisioner type: one-time HS256 tokens made with a shared secret.

Configured by a ``[[provisioners]]`` table of ``devid.toml``::

    [[provisioners]]
    type = "HMAC"
    name = "lab"
    secret_file = "secrets/hmac-lab.key"   # or secret_env = "LAB_HMAC_SECRET"
    allowed_names = ["*.lab.example.com"]

The secret itself is never in the table: ``secret_file`` names a file (relative to
the CA's data directory, readable by its owner only) and ``secret_env`` an
environment variable of the server. Whoever holds the secret may ask for
certificates for the names ``allowed_names`` allows, each token once.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

from plugins.api import (
    SAN,
    Authorization,
    AuthorizeContext,
    CommonNameIs,
    ConfigurationError,
    Credential,
    CSRInfo,
    DurationLimits,
    Forbidden,
    KeyType,
    KeyTypeIn,
    Options,
    ProtocolError,
    Provisioner,
    ProvisionerEnvironment,
    ProvisionerRef,
    SANsAre,
    SetSubjectAndSANs,
    SignPolicy,
    TokenUse,
    Unauthorized,
    Validator,
    check_registered_claims,
    csr_binding,
    durations_view,
    subject_and_sans,
)

from .tokens import HMACToken, read_token

#: The shortest shared secret accepted, in bytes (HMAC-SHA256's own output size).
MIN_SECRET_BYTES = 32
#: The longest a token may live (``max_token_lifetime`` may only lower it).
MAX_TOKEN_LIFETIME_CAP = timedelta(hours=1)
DEFAULT_DURATIONS = DurationLimits(
    minimum=timedelta(minutes=5), maximum=timedelta(days=7), default=timedelta(hours=24)
)


class NamePattern:
    """A DNS name whose leftmost label may be ``*``: one label, any label but ``*``.

    ``*.lab.example.com`` allows ``db.lab.example.com``, not ``lab.example.com``, not
    ``a.db.lab.example.com`` and not the wildcard ``*.lab.example.com`` itself.
    """

    def __init__(self, text: str) -> None:
        try:
            san = SAN.parse(text)
        except ProtocolError as exc:
            raise ConfigurationError(f"allowed name {text!r}: {exc.detail}") from None
        if san.kind.value != "dns":
            raise ConfigurationError(f"allowed name {text!r} is not a DNS name")
        self.text = san.value
        self.labels = tuple(san.value.split("."))

    def allows(self, san: SAN) -> bool:
        if san.kind.value != "dns":
            return False
        labels = san.value.split(".")
        if len(labels) != len(self.labels) or "*" in labels:
            return False
        return all(p == "*" or p == label for p, label in zip(self.labels, labels, strict=True))


def read_secret(where: str, opts: Options, data_dir: Path) -> bytes:
    """The shared secret from ``secret_file`` or ``secret_env`` (exactly one of them)."""
    secret_file = opts.get("secret_file")
    secret_env = opts.get("secret_env")
    if (secret_file is None) == (secret_env is None):
        raise ConfigurationError(f"{where}: give exactly one of secret_file and secret_env")
    if secret_file is not None:
        if not isinstance(secret_file, str) or not secret_file:
            raise ConfigurationError(f"{where}: secret_file must be a file name")
        path = data_dir / secret_file
        try:
            mode = path.stat().st_mode
            value = path.read_bytes().strip()
        except OSError as exc:
            raise ConfigurationError(f"{where}: cannot read secret_file: {exc.strerror}") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigurationError(
                f"{where}: secret_file is readable by others than its owner (chmod 600 it)"
            )
    else:
        if not isinstance(secret_env, str) or not secret_env:
            raise ConfigurationError(f"{where}: secret_env must name an environment variable")
        value = os.environ.get(secret_env, "").strip().encode()
        if not value:
            raise ConfigurationError(f"{where}: the environment variable {secret_env} is not set")
    if len(value) < MIN_SECRET_BYTES:
        raise ConfigurationError(
            f"{where}: the shared secret must be at least {MIN_SECRET_BYTES} bytes"
        )
    return value


class HMACProvisioner(Provisioner):
    """Signs for whoever holds the shared secret, for names its patterns allow."""

    type_name: ClassVar[str] = "HMAC"

    def __init__(
        self,
        *,
        name: str,
        issuer: str,
        secret: bytes,
        allowed_names: tuple[NamePattern, ...],
        durations: DurationLimits = DEFAULT_DURATIONS,
        max_token_lifetime: timedelta = timedelta(minutes=5),
        require_csr_binding: bool = False,
        key_types: frozenset[KeyType] = frozenset(KeyType),
    ) -> None:
        self.name = name
        self.issuer = issuer
        self._secret = secret
        self.allowed_names = allowed_names
        self.durations = durations
        self.max_token_lifetime = max_token_lifetime
        self.require_csr_binding = require_csr_binding
        self.key_types = key_types
        self.ref = ProvisionerRef(type=self.type_name, name=name)

    # --- configuration ---------------------------------------------------------------------

    @classmethod
    def from_config(
        cls, name: str, options: Mapping[str, Any], env: ProvisionerEnvironment
    ) -> HMACProvisioner:
        where = f"provisioner {name!r}"
        opts = Options(where, options)
        issuer = opts.string("issuer", "tls")
        if issuer not in env.issuers:
            raise ConfigurationError(f"{where}: unknown issuer {issuer!r}")
        patterns = opts.require("allowed_names")
        if not isinstance(patterns, list) or not patterns:
            raise ConfigurationError(f"{where}: allowed_names must be a non-empty list")
        if not all(isinstance(p, str) for p in patterns):
            raise ConfigurationError(f"{where}: allowed_names must be strings")
        lifetime = opts.duration("max_token_lifetime", "5m")
        if not timedelta(0) < lifetime <= MAX_TOKEN_LIFETIME_CAP:
            raise ConfigurationError(f"{where}: max_token_lifetime must be between 1s and 1h")
        provisioner = cls(
            name=name,
            issuer=issuer,
            secret=read_secret(where, opts, env.data_dir),
            allowed_names=tuple(NamePattern(p) for p in patterns),
            durations=opts.durations(DEFAULT_DURATIONS),
            max_token_lifetime=lifetime,
            require_csr_binding=opts.boolean("require_csr_binding", False),
            key_types=opts.key_types(),
        )
        opts.finish()  # an option this type does not know stops start-up
        return provisioner

    def public_view(self) -> dict[str, Any]:
        # Listed one by one: never the secret, nor where it is kept.
        return {
            "type": self.type_name,
            "name": self.name,
            "issuer": self.issuer,
            "allowedNames": [p.text for p in self.allowed_names],
            "maxTokenLifetime": int(self.max_token_lifetime.total_seconds()),
            "durations": durations_view(self.durations),
            "requireCSRBinding": self.require_csr_binding,
        }

    # --- credentials -----------------------------------------------------------------------

    @classmethod
    def read_credential(cls, text: str) -> Credential | None:
        """An HS256 compact JWS, addressed by its ``iss``; None for anything else."""
        token = read_token(text)
        if token is None:
            return None
        issuer = token.claims.get("iss")
        if not isinstance(issuer, str) or not issuer:
            raise Unauthorized("HMAC token has no iss naming a provisioner")
        return Credential(text=text, provisioner=issuer, reading=token)

    def _verify(
        self, credential: Credential, ctx: AuthorizeContext
    ) -> tuple[dict[str, Any], TokenUse]:
        token = credential.reading
        if not isinstance(token, HMACToken):
            raise Unauthorized("not an HMAC token")
        claims = token.verify(self._secret)
        times = check_registered_claims(
            claims,
            issuer=self.name,
            audiences=ctx.audiences,
            now=ctx.now,
            max_lifetime=self.max_token_lifetime,
        )
        # Remembered as used for as long as it would still verify (exp plus the leeway).
        use = TokenUse(
            provisioner=self.name, token_id=str(claims["jti"]), expires_at=times.replay_until
        )
        return claims, use

    # --- authorization (pure) --------------------------------------------------------------

    def authorize_sign(
        self, credential: Credential, csr: CSRInfo, ctx: AuthorizeContext
    ) -> Authorization:
        claims, use = self._verify(credential, ctx)
        subject, sans = subject_and_sans(claims)
        try:
            names = (SAN.parse(subject), *sans)
        except ProtocolError:
            raise Forbidden(f"subject {subject!r} is not a DNS name") from None
        for name in names:
            if not any(p.allows(name) for p in self.allowed_names):
                raise Forbidden(f"{name} is not a name provisioner {self.name!r} allows")
        validators: list[Validator] = [
            KeyTypeIn(self.key_types),
            CommonNameIs(subject),
            SANsAre(frozenset(sans)),
        ]
        binding = csr_binding(claims, required=self.require_csr_binding)
        if binding is not None:
            validators.append(binding)
        policy = SignPolicy(
            provisioner=self.ref,
            issuer=self.issuer,
            durations=self.durations,
            validators=tuple(validators),
            modifiers=(SetSubjectAndSANs(subject, sans),),
            evidence={"method": "hmac-token", "jti": use.token_id},
        )
        return Authorization(policy=policy, token=use)

    def authorize_revoke(
        self, credential: Credential, serial: int, ctx: AuthorizeContext
    ) -> Authorization:
        claims, use = self._verify(credential, ctx)
        if claims.get("sub") != str(serial):
            raise Unauthorized("token subject is not the serial number being revoked")
        return Authorization(policy=None, token=use)
