"""The OIDC provisioner's decisions, in process: ID tokens signed here with keys a stand-in
for the host's key cache hands out (the real cache and a real provider: the served tests
in tests/hosts/test_oidc_served.py).

Every refusal the issue lists is here with the status a client sees (401 for a token
that is forged, expired, not yet valid, for another audience, issuer or client, or
replayed; 403 for a valid token of someone the policy does not admit).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from engine.csr import CSRInfo, parse_csr
from engine.errors import ConfigurationError, Forbidden, ServiceUnavailable, Unauthorized
from engine.jose import PrivateKey, sign_compact
from engine.names import SAN, SANKind
from engine.template import CertificateTemplate
from hosts.testing.keys import StaticRemoteKeys
from plugins.api import (
    Assurance,
    AuthorizeContext,
    Credential,
    ProvisionerEnvironment,
    key_nonce,
)
from plugins.oidc import OIDCProvisioner

ISSUER = "https://idp.example.com"
CLIENT = "devid-cli"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class Provider:
    """The provider's side: its private keys, and ID tokens signed with them."""

    def __init__(self, keys: StaticRemoteKeys) -> None:
        self.public = keys
        self.private: dict[str, PrivateKey] = {}
        self.add("rsa-1", rsa.generate_private_key(public_exponent=65537, key_size=2048))
        self.add("ec-1", ec.generate_private_key(ec.SECP256R1()))

    def add(self, kid: str, key: PrivateKey) -> None:
        self.private[kid] = key
        self.public.keys[kid] = key.public_key()

    def token(
        self,
        claims: Mapping[str, Any] | None = None,
        *,
        kid: str = "rsa-1",
        key: PrivateKey | None = None,
        alg: str | None = None,
        drop: tuple[str, ...] = (),
    ) -> str:
        now = int(NOW.timestamp())
        body: dict[str, Any] = {
            "iss": ISSUER,
            "aud": CLIENT,
            "sub": "248289761001",
            "email": "alice@example.com",
            "email_verified": True,
            "iat": now - 10,
            "exp": now + 3600,
            "groups": ["engineering", "everyone"],
        }
        body.update(claims or {})
        for name in drop:
            body.pop(name, None)
        signer = key or self.private[kid]
        return sign_compact(body, signer, alg=alg, headers={"kid": kid, "typ": "JWT"})


@pytest.fixture
def keys() -> StaticRemoteKeys:
    return StaticRemoteKeys()


@pytest.fixture
def provider(keys: StaticRemoteKeys) -> Provider:
    return Provider(keys)


def make(keys: StaticRemoteKeys, **options: Any) -> OIDCProvisioner:
    table: dict[str, Any] = {
        "type": "OIDC",
        "name": "corp",
        "provider": ISSUER,
        "client_id": CLIENT,
    }
    table.update(options)
    env = ProvisionerEnvironment(
        data_dir=Path("unused-data-dir"), issuers=frozenset({"tls", "agent"}), remote_keys=keys
    )
    return OIDCProvisioner.from_config("corp", table, env)


def csr_for(
    common_name: str | None = None, sans: tuple[str, ...] = ()
) -> tuple[CSRInfo, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else [])
    )
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([SAN.parse(s).to_general_name() for s in sans]),
            critical=False,
        )
    csr = builder.sign(key, hashes.SHA256())
    return parse_csr(csr.public_bytes(Encoding.DER)), key


def nonce_of(key: ec.EllipticCurvePrivateKey) -> str:
    return key_nonce(key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))


def sign(prov: OIDCProvisioner, token: str, csr: CSRInfo | None = None, now: datetime = NOW) -> Any:
    reading = OIDCProvisioner.read_credential(token)
    assert reading is not None
    assert reading.provisioner in prov.credential_addresses()
    info = csr if csr is not None else csr_for()[0]
    return prov.authorize_sign(reading, info, AuthorizeContext(now=now, audiences=frozenset()))


def certificate_names(authorization: Any) -> tuple[str | None, tuple[SAN, ...]]:
    template = CertificateTemplate(subject=x509.Name([]))
    for modifier in authorization.policy.modifiers:
        template = modifier.modify(template)
    cn = template.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return (str(cn[0].value) if cn else None), template.sans


# --- what a valid token gets ------------------------------------------------------------------


def test_a_verified_person_gets_their_email_and_subject_uri(
    keys: StaticRemoteKeys, provider: Provider
) -> None:
    auth = sign(make(keys), provider.token())
    cn, sans = certificate_names(auth)
    assert cn == "alice@example.com"
    assert SAN(SANKind.EMAIL, "alice@example.com") in sans
    assert SAN(SANKind.URI, f"{ISSUER}#248289761001") in sans
    assert auth.policy.issuer == "tls"
    assert Assurance.SINGLE_SIGN_ON in [getattr(m, "level", None) for m in auth.policy.modifiers]
    assert auth.policy.evidence["method"] == "oidc"
    assert auth.policy.evidence["email"] == "alice@example.com"
    # No jti: the token is remembered by its hash, until it expires (plus the leeway).
    assert auth.token.token_id.startswith("sha256:")
    assert auth.token.expires_at == NOW + timedelta(seconds=3600) + timedelta(seconds=60)


def test_es256_and_eddsa_tokens_verify_when_configured(
    keys: StaticRemoteKeys, provider: Provider
) -> None:
    provider.add("ed-1", ed25519.Ed25519PrivateKey.generate())
    prov = make(keys, algorithms=["ES256", "EdDSA"])
    sign(prov, provider.token(kid="ec-1"))
    sign(prov, provider.token(kid="ed-1"))
    with pytest.raises(Unauthorized, match="algorithm 'RS256' is not one"):
        sign(prov, provider.token(kid="rsa-1"))


def test_jti_names_the_token_use(keys: StaticRemoteKeys, provider: Provider) -> None:
    auth = sign(make(keys), provider.token({"jti": "abc-123"}))
    assert auth.token.token_id == "jti:abc-123"
    assert auth.token.provisioner == "corp"


def test_subject_is_percent_encoded_in_its_uri(keys: StaticRemoteKeys, provider: Provider) -> None:
    auth = sign(make(keys), provider.token({"sub": "a b/c#d"}))
    _, sans = certificate_names(auth)
    assert SAN(SANKind.URI, f"{ISSUER}#{quote('a b/c#d', safe='')}") in sans


def test_templates_make_the_configured_names(keys: StaticRemoteKeys, provider: Provider) -> None:
    prov = make(
        keys,
        names=[
            "email",
            "dns:{email_local}.people.example.com",
            "uri:spiffe://corp/user/{preferred_username}",
        ],
        common_name="{preferred_username}",
    )
    auth = sign(prov, provider.token({"preferred_username": "alice.w"}))
    cn, sans = certificate_names(auth)
    assert cn == "alice.w"
    assert sans == (
        SAN(SANKind.EMAIL, "alice@example.com"),
        SAN(SANKind.DNS, "alice.people.example.com"),
        SAN(SANKind.URI, "spiffe://corp/user/alice.w"),
    )


def test_a_template_whose_claim_is_missing_is_left_out(
    keys: StaticRemoteKeys, provider: Provider
) -> None:
    prov = make(keys, names=["email", "uri:spiffe://corp/user/{preferred_username}"])
    _, sans = certificate_names(sign(prov, provider.token()))
    assert sans == (SAN(SANKind.EMAIL, "alice@example.com"),)


def test_a_template_that_makes_a_bad_name_is_refused(
    keys: StaticRemoteKeys, provider: Provider
) -> None:
    prov = make(keys, names=["dns:{preferred_username}.people.example.com"])
    with pytest.raises(Forbidden, match="invalid"):
        sign(prov, provider.token({"preferred_username": "bad name!"}))


def test_a_token_with_no_email_still_gets_its_subject(
    keys: StaticRemoteKeys, provider: Provider
) -> None:
    auth = sign(make(keys), provider.token(drop=("email", "email_verified")))
    cn, sans = certificate_names(auth)
    assert cn == "248289761001"
    assert sans == (SAN(SANKind.URI, f"{ISSUER}#248289761001"),)


# --- the CSR may ask for the person's names only -----------------------------------------------


def test_a_csr_may_name_some_of_the_persons_names(
    keys: StaticRemoteKeys, provider: Provider
) -> None:
    csr, _ = csr_for("alice@example.com", ("alice@example.com",))
    sign(make(keys), provider.token(), csr)


def test_a_csr_naming_anything_else_is_refused(keys: StaticRemoteKeys, provider: Provider) -> None:
    prov = make(keys)
    auth = sign(prov, provider.token(), csr_for("alice@example.com", ("bob@example.com",))[0])
    csr, _ = csr_for("alice@example.com", ("bob@example.com",))
    with pytest.raises(Forbidden, match=r"bob@example\.com"):
        for validator in auth.policy.validators:
            validator.validate(csr)
    csr2, _ = csr_for("root")
    auth2 = sign(prov, provider.token(), csr2)
    with pytest.raises(Forbidden, match="common name 'root'"):
        for validator in auth2.policy.validators:
            validator.validate(csr2)


def test_an_admin_gets_the_names_the_csr_asks(keys: StaticRemoteKeys, provider: Provider) -> None:
    prov = make(keys, admins=["Alice@Example.com"], admin_names=["*.svc.example.com"])
    csr, _ = csr_for("api.svc.example.com", ("api.svc.example.com",))
    auth = sign(prov, provider.token(), csr)
    cn, sans = certificate_names(auth)
    assert (cn, sans) == ("api.svc.example.com", (SAN(SANKind.DNS, "api.svc.example.com"),))
    assert auth.policy.evidence["admin"] is True
    with pytest.raises(Forbidden, match="not a name admins"):
        sign(prov, provider.token(), csr_for("x", ("www.example.org",))[0])
    # Someone who is no admin gets their own names, whatever the CSR says.
    other = provider.token({"email": "bob@example.com", "sub": "bob"})
    _, bob_sans = certificate_names(sign(prov, other))
    assert SAN(SANKind.EMAIL, "bob@example.com") in bob_sans


def test_admins_by_subject(keys: StaticRemoteKeys, provider: Provider) -> None:
    prov = make(keys, admins=["sub:robot-7"])
    csr, _ = csr_for("build.example.com", ("build.example.com",))
    auth = sign(prov, provider.token({"sub": "robot-7"}, drop=("email",)), csr)
    assert certificate_names(auth)[0] == "build.example.com"


# --- refusals: the token -----------------------------------------------------------------------


def test_a_forged_token_is_refused(keys: StaticRemoteKeys, provider: Provider) -> None:
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(Unauthorized, match="signature does not verify"):
        sign(make(keys), provider.token(key=forger))


def test_a_token_signed_with_an_unknown_key_is_refused(
    keys: StaticRemoteKeys, provider: Provider
) -> None:
    forger = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(Unauthorized, match="not among the signing keys"):
        sign(make(keys), provider.token(kid="ec-9", key=forger))


@pytest.mark.parametrize("alg", ["none", "HS256"])
def test_none_and_hmac_are_never_read(keys: StaticRemoteKeys, provider: Provider, alg: str) -> None:
    token = provider.token()
    _, payload, _ = token.split(".")
    forged_header = (
        base64.urlsafe_b64encode(json.dumps({"alg": alg, "kid": "rsa-1"}).encode())
        .rstrip(b"=")
        .decode()
    )
    assert OIDCProvisioner.read_credential(f"{forged_header}.{payload}.") is None


def test_expired_and_not_yet_valid_tokens_are_refused(
    keys: StaticRemoteKeys, provider: Provider
) -> None:
    prov = make(keys)
    with pytest.raises(Unauthorized, match="expired"):
        sign(prov, provider.token(), now=NOW + timedelta(hours=1, minutes=2))
    late = int((NOW + timedelta(minutes=10)).timestamp())
    with pytest.raises(Unauthorized, match="not yet valid"):
        sign(prov, provider.token({"nbf": late, "iat": late - 700, "exp": late + 600}))
    with pytest.raises(Unauthorized, match="issued in the future"):
        sign(prov, provider.token({"iat": late}))
    with pytest.raises(Unauthorized, match="no iat"):
        sign(prov, provider.token(drop=("iat",)))


def test_a_token_that_lives_too_long_is_refused(keys: StaticRemoteKeys, provider: Provider) -> None:
    prov = make(keys, max_token_lifetime="30m")
    with pytest.raises(Unauthorized, match="lifetime"):
        sign(prov, provider.token())


def test_wrong_audience_issuer_and_azp_are_refused(
    keys: StaticRemoteKeys, provider: Provider
) -> None:
    prov = make(keys)
    # Another client's token addresses another provisioner: this one never takes it.
    reading = OIDCProvisioner.read_credential(provider.token({"aud": "someone-else"}))
    assert reading is not None and reading.provisioner not in prov.credential_addresses()
    for claims, match in [
        ({"aud": ["someone-else", CLIENT]}, "several audiences and no azp"),
        ({"aud": [CLIENT, "someone-else"]}, "several audiences and no azp"),
        ({"aud": [CLIENT, "x"], "azp": "x"}, None),
        ({"aud": [CLIENT, "x"], "azp": CLIENT}, "ok"),
    ]:
        token = provider.token(claims)
        credential = OIDCProvisioner.read_credential(token)
        assert credential is not None
        forced = Credential(text=token, provisioner="corp", reading=credential.reading)
        ctx = AuthorizeContext(now=NOW, audiences=frozenset())
        if match == "ok":
            prov.authorize_sign(forced, csr_for()[0], ctx)
        elif match is None:
            with pytest.raises(Unauthorized, match="issued to client 'x'"):
                prov.authorize_sign(forced, csr_for()[0], ctx)
        else:
            with pytest.raises(Unauthorized, match=match):
                prov.authorize_sign(forced, csr_for()[0], ctx)
    token = provider.token({"iss": "https://evil.example.com"})
    credential = OIDCProvisioner.read_credential(token)
    assert credential is not None and credential.provisioner not in prov.credential_addresses()
    forced = Credential(text=token, provisioner="corp", reading=credential.reading)
    with pytest.raises(Unauthorized, match="issuer"):
        prov.authorize_sign(forced, csr_for()[0], AuthorizeContext(now=NOW, audiences=frozenset()))


def test_a_nonce_binds_the_token_to_the_csr_key(keys: StaticRemoteKeys, provider: Provider) -> None:
    prov = make(keys)
    csr, key = csr_for()
    sign(prov, provider.token({"nonce": nonce_of(key)}), csr)
    other, _ = csr_for()
    with pytest.raises(Unauthorized, match="nonce does not bind"):
        sign(prov, provider.token({"nonce": nonce_of(key)}), other)
    strict = make(keys, require_nonce=True)
    with pytest.raises(Unauthorized, match="requires ID tokens bound"):
        sign(strict, provider.token())
    assert strict.public_view()["requireNonce"] is True


# --- refusals: the person ----------------------------------------------------------------------


def test_an_unverified_email_names_nothing(keys: StaticRemoteKeys, provider: Provider) -> None:
    with pytest.raises(Forbidden, match="has not verified the email"):
        sign(make(keys), provider.token({"email_verified": False}))
    with pytest.raises(Forbidden, match="has not verified the email"):
        sign(make(keys), provider.token({"email_verified": "true"}))
    # A policy that names people by subject only does not need the email.
    _, sans = certificate_names(
        sign(make(keys, names=["subject"]), provider.token({"email_verified": False}))
    )
    assert sans == (SAN(SANKind.URI, f"{ISSUER}#248289761001"),)


def test_domains_admit_only_their_emails(keys: StaticRemoteKeys, provider: Provider) -> None:
    prov = make(keys, domains=["Example.com"])
    sign(prov, provider.token())
    with pytest.raises(Forbidden, match=r"'example\.org' is not one"):
        sign(prov, provider.token({"email": "mallory@example.org"}))
    with pytest.raises(Forbidden, match="has none"):
        sign(prov, provider.token(drop=("email",)))


def test_groups_admit_only_their_members(keys: StaticRemoteKeys, provider: Provider) -> None:
    prov = make(keys, groups=["engineering", "ops"])
    auth = sign(prov, provider.token())
    assert auth.policy.evidence["groups"] == ["engineering"]
    with pytest.raises(Forbidden, match="none of the groups"):
        sign(prov, provider.token({"groups": ["sales"]}))
    with pytest.raises(Forbidden, match="no 'groups' claim"):
        sign(prov, provider.token(drop=("groups",)))
    roles = make(keys, groups=["ops"], groups_claim="roles")
    sign(roles, provider.token({"roles": "ops"}))


def test_renewal_is_off_unless_allowed(keys: StaticRemoteKeys) -> None:
    with pytest.raises(Forbidden, match="sign in again"):
        make(keys).authorize_renew(None)  # type: ignore[arg-type]
    make(keys, allow_renewal=True).authorize_renew(None)  # type: ignore[arg-type]


def test_a_provider_that_cannot_be_reached_is_a_503(
    keys: StaticRemoteKeys, provider: Provider
) -> None:
    keys.down = True
    with pytest.raises(ServiceUnavailable):
        sign(make(keys), provider.token())


# --- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"provider": "http://idp.example.com"}, "not HTTPS"),
        ({"provider": "https://idp.example.com/?x=1"}, "no query"),
        ({"algorithms": ["HS256"]}, "not supported"),
        ({"algorithms": ["none"]}, "not supported"),
        ({"scopes": ["email"]}, "openid"),
        ({"names": ["dns:fixed.example.com"]}, "no {claim} placeholder"),
        ({"names": ["cn:{email}"]}, "neither email, subject nor a template"),
        ({"names": ["uri:{a.b}"]}, "placeholders"),
        ({"max_token_lifetime": "48h"}, "between 1s and 24h"),
        ({"key_refresh_interval": "0s"}, "between 1s and 1h"),
        ({"redirect_port": 70000}, "port"),
        ({"issuer": "nope"}, "issuer 'nope'"),
        ({"colour": "blue"}, "unknown option"),
    ],
)
def test_bad_tables_are_refused(
    keys: StaticRemoteKeys, options: dict[str, Any], match: str
) -> None:
    with pytest.raises(ConfigurationError, match=match):
        make(keys, **options)


def test_the_public_view_tells_a_client_how_to_sign_in(keys: StaticRemoteKeys) -> None:
    view = make(keys, published_client_secret="not-secret", admins=["a@example.com"]).public_view()
    assert view["provider"] == ISSUER
    assert view["clientID"] == CLIENT
    assert view["clientSecret"] == "not-secret"
    assert view["scopes"] == ["openid", "email", "profile"]
    assert "admins" not in view and "groups" not in view
    assert "clientSecret" not in make(keys).public_view()


def test_reading_skips_what_is_not_an_id_token() -> None:
    assert OIDCProvisioner.read_credential("not a token") is None
    key = ec.generate_private_key(ec.SECP256R1())
    jwk_style = sign_compact({"iss": "admin", "aud": "https://ca/1.0/sign", "sub": "x"}, key)
    assert OIDCProvisioner.read_credential(jwk_style) is None
    no_aud = sign_compact({"iss": ISSUER, "sub": "x"}, key)
    assert OIDCProvisioner.read_credential(no_aud) is None


def test_a_token_without_jti_is_remembered_by_its_hash(
    keys: StaticRemoteKeys, provider: Provider
) -> None:
    token = provider.token()
    auth = sign(make(keys), token)
    assert auth.token.token_id == "sha256:" + hashlib.sha256(token.encode()).hexdigest()
