"""JWK provisioner: authorizes a request carrying a one-time token it can verify.

A token is a compact JWS (ES256, ES384 or EdDSA, as the provisioner's key
dictates) with iss = the provisioner's name, aud = the CA endpoint's URL,
sub = the certificate's subject, ``sans`` = its names, nbf/iat/exp, and a
jti recorded by the host so the token works once. ``csr_sha256`` (base64url
SHA-256 of the CSR's DER) optionally binds the token to one CSR.
"""

from __future__ import annotations

import stat
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from engine.csr import CSRInfo
from engine.errors import BadRequest, ConfigurationError, Forbidden, Unauthorized
from engine.extensions import ProvisionerRef
from engine.jose import (
    PrivateKey,
    PublicKey,
    jwk_from_public_key,
    jwk_thumbprint,
    public_key_from_jwk,
)
from engine.keys import KeyType
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
    Options,
    Provisioner,
    ProvisionerEnvironment,
    RenewAuthorization,
    RenewContext,
    SetAssurance,
    TokenUse,
    check_registered_claims,
    csr_binding,
    durations_view,
    jose_token,
    read_jose_credential,
    subject_and_sans,
)

from .tokens import mint_token

MAX_TOKEN_LIFETIME_CAP = timedelta(hours=1)
DEFAULT_DURATIONS = DurationLimits(
    minimum=timedelta(minutes=5), maximum=timedelta(days=30), default=timedelta(hours=24)
)


class JWKProvisioner(Provisioner):
    type_name: ClassVar[str] = "JWK"
    mints_tokens: ClassVar[bool] = True

    def __init__(
        self,
        *,
        name: str,
        issuer: str,
        public_key: PublicKey,
        durations: DurationLimits = DEFAULT_DURATIONS,
        backdate: timedelta = timedelta(minutes=1),
        max_token_lifetime: timedelta = timedelta(minutes=5),
        require_csr_binding: bool = False,
        key_types: frozenset[KeyType] = frozenset(KeyType),
        encrypted_key: Path | None = None,
        allow_renewal: bool = True,
    ) -> None:
        self.name = name
        self.issuer = issuer
        self.public_key = public_key
        self.jwk = jwk_from_public_key(public_key)
        self.kid = jwk_thumbprint(self.jwk)
        self.durations = durations
        self.backdate = backdate
        self.max_token_lifetime = max_token_lifetime
        self.require_csr_binding = require_csr_binding
        self.key_types = key_types
        self.encrypted_key = encrypted_key
        self.allow_renewal = allow_renewal
        self.ref = ProvisionerRef(type=self.type_name, name=name)

    # --- configuration -----------------------------------------------------

    @classmethod
    def from_config(
        cls, name: str, options: Mapping[str, Any], env: ProvisionerEnvironment
    ) -> JWKProvisioner:
        where = f"provisioner {name!r}"
        opts = Options(where, options)
        try:
            public_key = public_key_from_jwk(opts.require("key"))
        except BadRequest as exc:
            raise ConfigurationError(f"{where}: invalid key: {exc.detail}") from None
        if not isinstance(public_key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
            raise ConfigurationError(f"{where}: the key must be EC (ES256/ES384) or Ed25519")
        issuer = opts.issuer(env.issuers)
        max_token_lifetime = opts.duration("max_token_lifetime", "5m")
        if not timedelta(0) < max_token_lifetime <= MAX_TOKEN_LIFETIME_CAP:
            raise ConfigurationError(f"{where}: max_token_lifetime must be between 1s and 1h")
        encrypted = opts.get("encrypted_key")
        provisioner = cls(
            name=name,
            issuer=issuer,
            public_key=public_key,
            durations=opts.durations(DEFAULT_DURATIONS),
            backdate=opts.duration("backdate", "1m"),
            max_token_lifetime=max_token_lifetime,
            require_csr_binding=opts.boolean("require_csr_binding", False),
            key_types=opts.key_types(),
            encrypted_key=(env.data_dir / encrypted) if isinstance(encrypted, str) else None,
            allow_renewal=opts.boolean("allow_renewal", True),
        )
        opts.finish()
        return provisioner

    @classmethod
    def default_config(cls, name: str, env: ProvisionerEnvironment) -> dict[str, Any]:
        """Make a P-256 provisioner key, keep it encrypted under DIR/secrets, write the table."""
        if env.password is None:
            raise ConfigurationError("a password is needed to encrypt the provisioner key")
        key = ec.generate_private_key(ec.SECP256R1())
        relative = Path("secrets") / "provisioners" / f"{name}.key"
        path = env.data_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(env.password),
        )
        path.write_bytes(pem)
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)
        return {
            "type": cls.type_name,
            "name": name,
            "issuer": "tls",  # a token proves no device: never the Agent CA
            "key": jwk_from_public_key(key.public_key()),
            "encrypted_key": str(relative),
            "max_token_lifetime": "5m",
            "durations": durations_view(DEFAULT_DURATIONS),
        }

    def load_private_key(self, password: bytes) -> PrivateKey:
        """Decrypt the provisioner key for minting tokens on the CA host."""
        if self.encrypted_key is None:
            raise ConfigurationError(f"provisioner {self.name!r} has no encrypted_key on this host")
        try:
            key = serialization.load_pem_private_key(
                self.encrypted_key.read_bytes(), password=password
            )
        except FileNotFoundError:
            raise ConfigurationError(f"provisioner key {self.encrypted_key} is missing") from None
        except (ValueError, TypeError):
            raise ConfigurationError(
                f"cannot decrypt {self.encrypted_key}: the password is wrong"
            ) from None
        if key.public_key() != self.public_key:
            raise ConfigurationError(f"{self.encrypted_key} does not match the configured key")
        assert isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey)
        return key

    def token_minter(self, password: bytes) -> JWKTokenMinter:
        """Mints this provisioner's tokens with its decrypted key (``devid ca token``)."""
        return JWKTokenMinter(self.name, self.load_private_key(password), self.max_token_lifetime)

    def public_view(self) -> dict[str, Any]:
        return {
            "type": self.type_name,
            "name": self.name,
            "issuer": self.issuer,
            "key": dict(self.jwk),
            "kid": self.kid,
            "maxTokenLifetime": int(self.max_token_lifetime.total_seconds()),
            "durations": durations_view(self.durations),
            "requireCSRBinding": self.require_csr_binding,
        }

    # --- authorization ------------------------------------------------------

    @classmethod
    def read_credential(cls, text: str) -> Credential | None:
        """A compact JWS (never none or HMAC) addressed by ``iss`` to a provisioner."""
        return read_jose_credential(text)

    def _verify(
        self, credential: Credential | str, ctx: AuthorizeContext
    ) -> tuple[dict[str, Any], TokenUse]:
        jws = jose_token(credential)
        kid = jws.header.get("kid")
        if kid is not None and kid != self.kid:
            raise Unauthorized("token kid does not name this provisioner's key")
        claims = jws.verify(self.public_key)
        times = check_registered_claims(
            claims,
            issuer=self.name,
            audiences=ctx.audiences,
            now=ctx.now,
            max_lifetime=self.max_token_lifetime,
        )
        use = TokenUse(
            provisioner=self.name, token_id=str(claims["jti"]), expires_at=times.replay_until
        )
        return claims, use

    def authorize_sign(
        self, credential: Credential | str, csr: CSRInfo, ctx: AuthorizeContext
    ) -> Authorization:
        claims, use = self._verify(credential, ctx)
        subject, sans = subject_and_sans(claims)
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
            backdate=self.backdate,
            validators=tuple(validators),
            modifiers=(SetSubjectAndSANs(subject, sans), SetAssurance(Assurance.TOKEN)),
            evidence={"method": "jwk-token", "jti": use.token_id, "kid": self.kid},
        )
        return Authorization(policy=policy, token=use)

    def authorize_revoke(
        self, credential: Credential | str, serial: int, ctx: AuthorizeContext
    ) -> Authorization:
        claims, use = self._verify(credential, ctx)
        if claims.get("sub") != str(serial):
            raise Unauthorized("token subject is not the serial number being revoked")
        return Authorization(policy=None, token=use)

    def authorize_renew(self, ctx: RenewContext) -> RenewAuthorization:
        """A token's certificate renews with its own key unless ``allow_renewal = false``."""
        if not self.allow_renewal:
            raise Forbidden(f"provisioner {self.name!r} does not allow renewal")
        return RenewAuthorization(checked={"allow_renewal": True})


class JWKTokenMinter:
    """Mints one-time sign tokens of one JWK provisioner with its private key."""

    def __init__(self, provisioner: str, key: PrivateKey, max_lifetime: timedelta) -> None:
        self.provisioner = provisioner
        self.key = key
        self.max_lifetime = max_lifetime

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
    ) -> str:
        return mint_token(
            self.key,
            provisioner=self.provisioner,
            subject=subject,
            audience=audience,
            now=now,
            jti=jti,
            sans=sans,
            lifetime=lifetime,
            csr_der=csr_der,
        )
