"""JWK provisioner: every way a token or CSR can be wrong is refused with the right error.

Each case runs twice: through ``JWKProvisioner.authorize_sign`` followed by the
engine pipeline (no store), and through the full in-process signing path
(``hosts.http.api.sign_body``).
Unauthorized means a bad credential, Forbidden a valid credential that does not
allow the request, BadRequest malformed input. A refused request stores nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import tomllib
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import tomli_w
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding

from engine.csr import parse_csr
from engine.errors import BadRequest, Forbidden, ProtocolError, Unauthorized
from engine.jose import (
    MAX_TOKEN_BYTES,
    PrivateKey,
    b64url_encode,
    jwk_from_public_key,
    jwk_thumbprint,
    sign_compact,
)
from engine.keys import KeyType
from engine.pipeline import SignRequest, issue_certificate
from hosts.core.authority import Authority
from plugins.jwk import JWKProvisioner
from tests.conftest import CA, TokenFactory, new_csr, provisioner_of, sign_json

AUDIENCE = "https://ca.test/1.0/sign"

Submit = Callable[[Authority, str, str], x509.Certificate]


def _via_provisioner(authority: Authority, token: str, csr_pem: str) -> x509.Certificate:
    """authorize_sign, then the engine pipeline; no store, no replay cache."""
    csr = parse_csr(csr_pem)
    provisioner = provisioner_of(authority)
    authorization = provisioner.authorize_sign(token, csr, authority.context("/1.0/sign"))
    assert authorization.policy is not None
    issued = issue_certificate(
        SignRequest(csr=csr),
        authorization.policy,
        authority.issuers[authorization.policy.issuer],
        authority.clock,
        authority.random,
    )
    return issued.certificate


def _via_authority(authority: Authority, token: str, csr_pem: str) -> x509.Certificate:
    response = sign_json(authority, {"csr": csr_pem, "ott": token})
    return x509.load_pem_x509_certificate(response["crt"].encode())


@pytest.fixture(params=["provisioner", "authority"])
def submit(request: pytest.FixtureRequest) -> Submit:
    return _via_provisioner if request.param == "provisioner" else _via_authority


@pytest.fixture
def kid(authority: Authority) -> str:
    return provisioner_of(authority).kid


@pytest.fixture
def claims() -> dict[str, Any]:
    """Valid claims for the admin provisioner, issued now, living 5 minutes."""
    now = int(datetime.now(UTC).timestamp())
    return {
        "iss": "admin",
        "sub": "svc.example.com",
        "aud": AUDIENCE,
        "sans": ["svc.example.com"],
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
    }


def _segment(obj: Any) -> str:
    return b64url_encode(json.dumps(obj, separators=(",", ":")).encode())


def _unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return f"{_segment(header)}.{_segment(claims)}.{b64url_encode(signature)}"


def refuse(
    submit: Submit,
    authority: Authority,
    token: str,
    csr_pem: str,
    error: type[ProtocolError],
    match: str,
) -> None:
    """The request fails with exactly *error* and leaves no certificate behind."""
    with pytest.raises(ProtocolError, match=match) as info:
        submit(authority, token, csr_pem)
    assert type(info.value) is error, f"{type(info.value).__name__}: {info.value}"
    assert authority.stores.certificates.count_certificates() == 0


CSR_PEM = new_csr("svc.example.com")[2]


# --- the baseline the refusals are measured against -----------------------------------------


def test_valid_token_and_matching_csr_get_a_certificate(
    submit: Submit, authority: Authority, token: TokenFactory
) -> None:
    cert = submit(authority, token("svc.example.com"), CSR_PEM)
    assert cert.subject.rfc4514_string() == "CN=svc.example.com"
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["svc.example.com"]


def test_hand_built_valid_claims_are_accepted(
    submit: Submit, authority: Authority, jwk_key: PrivateKey, kid: str, claims: dict[str, Any]
) -> None:
    submit(authority, sign_compact(claims, jwk_key, headers={"kid": kid}), CSR_PEM)


def test_token_without_kid_is_accepted(
    submit: Submit, authority: Authority, jwk_key: PrivateKey, claims: dict[str, Any]
) -> None:
    submit(authority, sign_compact(claims, jwk_key), CSR_PEM)


# --- bad credentials: Unauthorized ---------------------------------------------------------


def test_token_signed_by_another_key_is_unauthorized(
    submit: Submit, authority: Authority, kid: str, claims: dict[str, Any]
) -> None:
    forger = ec.generate_private_key(ec.SECP256R1())
    forged = sign_compact(claims, forger, headers={"kid": kid})
    refuse(submit, authority, forged, CSR_PEM, Unauthorized, "does not verify")


def test_expired_token_is_unauthorized(
    submit: Submit, authority: Authority, token: TokenFactory
) -> None:
    old = token(at=datetime.now(UTC) - timedelta(minutes=10))
    refuse(submit, authority, old, CSR_PEM, Unauthorized, "expired")


def test_not_yet_valid_token_is_unauthorized(
    submit: Submit, authority: Authority, jwk_key: PrivateKey, claims: dict[str, Any]
) -> None:
    claims["nbf"] = claims["iat"] + 600
    claims["exp"] = claims["nbf"] + 240
    early = sign_compact(claims, jwk_key)
    refuse(submit, authority, early, CSR_PEM, Unauthorized, "not yet valid")


def test_token_issued_in_the_future_is_unauthorized(
    submit: Submit, authority: Authority, jwk_key: PrivateKey, claims: dict[str, Any]
) -> None:
    del claims["nbf"]
    claims["iat"] += 600
    claims["exp"] = claims["iat"] + 240
    refuse(submit, authority, sign_compact(claims, jwk_key), CSR_PEM, Unauthorized, "future")


def test_token_for_another_ca_is_unauthorized(
    submit: Submit, authority: Authority, token: TokenFactory
) -> None:
    elsewhere = token(audience="https://other-ca.test/1.0/sign")
    refuse(submit, authority, elsewhere, CSR_PEM, Unauthorized, "audience")


def test_token_for_another_endpoint_is_unauthorized(
    submit: Submit, authority: Authority, token: TokenFactory
) -> None:
    revoke_token = token(path="/1.0/revoke")
    refuse(submit, authority, revoke_token, CSR_PEM, Unauthorized, "audience")


def test_token_from_another_issuer_is_unauthorized(
    submit: Submit, authority: Authority, jwk_key: PrivateKey, claims: dict[str, Any]
) -> None:
    claims["iss"] = "intruder"
    refuse(submit, authority, sign_compact(claims, jwk_key), CSR_PEM, Unauthorized, "intruder")


def test_token_living_longer_than_max_token_lifetime_is_unauthorized(
    submit: Submit, authority: Authority, token: TokenFactory
) -> None:
    assert provisioner_of(authority).max_token_lifetime == timedelta(minutes=5)
    long_lived = token(lifetime=timedelta(minutes=5, seconds=1))
    refuse(submit, authority, long_lived, CSR_PEM, Unauthorized, "lifetime")


def test_lifetime_is_measured_from_nbf_not_iat(
    submit: Submit, authority: Authority, jwk_key: PrivateKey, claims: dict[str, Any]
) -> None:
    claims["nbf"] = claims["iat"] - 3600
    refuse(submit, authority, sign_compact(claims, jwk_key), CSR_PEM, Unauthorized, "lifetime")


@pytest.mark.parametrize(
    ("missing", "match"),
    [("jti", "jti"), ("exp", "exp"), (("nbf", "iat"), "neither nbf nor iat")],
    ids=["jti", "exp", "nbf-and-iat"],
)
def test_token_missing_a_required_claim_is_unauthorized(
    submit: Submit,
    authority: Authority,
    jwk_key: PrivateKey,
    claims: dict[str, Any],
    missing: str | tuple[str, ...],
    match: str,
) -> None:
    for name in (missing,) if isinstance(missing, str) else missing:
        del claims[name]
    refuse(submit, authority, sign_compact(claims, jwk_key), CSR_PEM, Unauthorized, match)


@pytest.mark.parametrize(
    ("claim", "value"),
    [("exp", "tomorrow"), ("exp", True), ("jti", 42), ("jti", ""), ("jti", "x" * 257)],
)
def test_token_with_an_unusable_claim_value_is_unauthorized(
    submit: Submit,
    authority: Authority,
    jwk_key: PrivateKey,
    claims: dict[str, Any],
    claim: str,
    value: Any,
) -> None:
    claims[claim] = value
    refuse(submit, authority, sign_compact(claims, jwk_key), CSR_PEM, Unauthorized, claim)


def _hmac_secrets(authority: Authority) -> dict[str, bytes]:
    public = provisioner_of(authority).public_key
    return {
        "pem": public.public_bytes(Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        "der": public.public_bytes(Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
        "jwk": json.dumps(jwk_from_public_key(public)).encode(),
        "x962": public.public_bytes(Encoding.X962, serialization.PublicFormat.UncompressedPoint),
    }


@pytest.mark.parametrize("secret", ["pem", "der", "jwk", "x962"])
@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_hmac_token_keyed_with_the_provisioners_public_key_is_unauthorized(
    submit: Submit, authority: Authority, claims: dict[str, Any], secret: str, alg: str
) -> None:
    key = _hmac_secrets(authority)[secret]
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    header = {"alg": alg, "typ": "JWT"}
    signing_input = f"{_segment(header)}.{_segment(claims)}".encode()
    forged = _unsigned(header, claims, hmac.new(key, signing_input, digest).digest())
    refuse(submit, authority, forged, CSR_PEM, Unauthorized, "not allowed")


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_unsigned_alg_none_token_is_unauthorized(
    submit: Submit, authority: Authority, claims: dict[str, Any], alg: str
) -> None:
    unsigned = _unsigned({"alg": alg, "typ": "JWT"}, claims)
    assert unsigned.endswith(".")
    refuse(submit, authority, unsigned, CSR_PEM, Unauthorized, "not allowed")


def test_es384_header_on_the_p256_provisioner_key_is_unauthorized(
    submit: Submit, authority: Authority, jwk_key: PrivateKey, claims: dict[str, Any]
) -> None:
    assert isinstance(jwk_key, ec.EllipticCurvePrivateKey)
    header = {"alg": "ES384", "typ": "JWT"}
    signing_input = f"{_segment(header)}.{_segment(claims)}".encode()
    r, s = decode_dss_signature(jwk_key.sign(signing_input, ec.ECDSA(hashes.SHA384())))
    confused = _unsigned(header, claims, r.to_bytes(32, "big") + s.to_bytes(32, "big"))
    refuse(submit, authority, confused, CSR_PEM, Unauthorized, "not allowed")


@pytest.mark.parametrize("alg", ["RS256", "PS256", "EdDSA"])
def test_header_naming_an_algorithm_of_another_key_type_is_unauthorized(
    submit: Submit, authority: Authority, claims: dict[str, Any], alg: str
) -> None:
    confused = _unsigned({"alg": alg}, claims, b"\x5a" * 256)
    refuse(submit, authority, confused, CSR_PEM, Unauthorized, "not allowed")


def test_kid_naming_another_key_is_unauthorized(
    submit: Submit, authority: Authority, jwk_key: PrivateKey, claims: dict[str, Any]
) -> None:
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    other_kid = jwk_thumbprint(jwk_from_public_key(other))
    token = sign_compact(claims, jwk_key, headers={"kid": other_kid})
    refuse(submit, authority, token, CSR_PEM, Unauthorized, "kid")


def test_token_sans_claim_that_is_not_a_list_of_names_is_unauthorized(
    submit: Submit, authority: Authority, jwk_key: PrivateKey, claims: dict[str, Any]
) -> None:
    claims["sans"] = "svc.example.com"
    refuse(submit, authority, sign_compact(claims, jwk_key), CSR_PEM, Unauthorized, "sans")


# --- malformed tokens: BadRequest ----------------------------------------------------------


def test_token_with_critical_header_extensions_is_a_bad_request(
    submit: Submit, authority: Authority, jwk_key: PrivateKey, claims: dict[str, Any]
) -> None:
    token = sign_compact(claims, jwk_key, headers={"crit": ["x-devid"], "x-devid": True})
    refuse(submit, authority, token, CSR_PEM, BadRequest, "critical")


def test_oversized_token_is_a_bad_request(
    submit: Submit, authority: Authority, jwk_key: PrivateKey, claims: dict[str, Any]
) -> None:
    claims["padding"] = "x" * MAX_TOKEN_BYTES
    refuse(submit, authority, sign_compact(claims, jwk_key), CSR_PEM, BadRequest, "too large")


@pytest.mark.parametrize("token", ["", "not-a-jws", "a.b.c"])
def test_token_that_is_not_a_compact_jws_is_a_bad_request(
    submit: Submit, authority: Authority, token: str
) -> None:
    with pytest.raises(BadRequest):
        submit(authority, token, CSR_PEM)
    assert authority.stores.certificates.count_certificates() == 0


# --- valid credentials that do not allow the request: Forbidden -----------------------------


def test_csr_common_name_other_than_the_token_subject_is_forbidden(
    submit: Submit, authority: Authority, token: TokenFactory
) -> None:
    csr_pem = new_csr("evil.example.com", ["svc.example.com"])[2]
    refuse(submit, authority, token("svc.example.com"), csr_pem, Forbidden, "common name")


def test_csr_with_a_san_the_token_does_not_name_is_forbidden(
    submit: Submit, authority: Authority, token: TokenFactory
) -> None:
    csr_pem = new_csr("svc.example.com", ["svc.example.com", "evil.example.com"])[2]
    refuse(submit, authority, token("svc.example.com"), csr_pem, Forbidden, "evil.example.com")


def test_csr_missing_a_san_the_token_names_is_forbidden(
    submit: Submit, authority: Authority, token: TokenFactory
) -> None:
    csr_pem = new_csr("svc.example.com", ["svc.example.com"])[2]
    names = ["svc.example.com", "10.0.0.1"]
    refuse(submit, authority, token("svc.example.com", names), csr_pem, Forbidden, "missing")


def test_csr_with_an_ip_san_the_token_does_not_name_is_forbidden(
    submit: Submit, authority: Authority, token: TokenFactory
) -> None:
    csr_pem = new_csr("svc.example.com", ["svc.example.com", "127.0.0.1"])[2]
    refuse(submit, authority, token("svc.example.com"), csr_pem, Forbidden, "127.0.0.1")


def test_csr_bound_by_the_token_is_accepted(
    submit: Submit, authority: Authority, token: TokenFactory
) -> None:
    _, csr, csr_pem = new_csr("svc.example.com")
    submit(authority, token(csr_der=csr.public_bytes(Encoding.DER)), csr_pem)


def test_csr_other_than_the_one_the_token_is_bound_to_is_forbidden(
    submit: Submit, authority: Authority, token: TokenFactory
) -> None:
    _, bound, _ = new_csr("svc.example.com")
    _, _, other_pem = new_csr("svc.example.com")
    bound_token = token(csr_der=bound.public_bytes(Encoding.DER))
    refuse(submit, authority, bound_token, other_pem, Forbidden, "binding")


# --- options that tighten a provisioner ------------------------------------------------------


@pytest.fixture
def reconfigure(ca: CA) -> Iterator[Callable[..., Authority]]:
    """Load the CA after changing options of the ``admin`` provisioner in devid.toml."""
    loaded: list[Authority] = []

    def load(**options: Any) -> Authority:
        path = ca.data_dir / "devid.toml"
        config = tomllib.loads(path.read_text())
        admin = next(p for p in config["provisioners"] if p["name"] == "admin")
        admin.update(options)
        path.write_text(tomli_w.dumps(config))
        authority = Authority.load(ca.data_dir, ca.password)
        authority.set_base_urls(["https://ca.test"])
        loaded.append(authority)
        return authority

    yield load
    for authority in loaded:
        authority.close()


def test_require_csr_binding_refuses_unbound_tokens(
    submit: Submit, reconfigure: Callable[..., Authority], token: TokenFactory
) -> None:
    strict = reconfigure(require_csr_binding=True)
    refuse(submit, strict, token(), CSR_PEM, Unauthorized, "csr_sha256")


def test_require_csr_binding_accepts_bound_tokens(
    submit: Submit, reconfigure: Callable[..., Authority], token: TokenFactory
) -> None:
    strict = reconfigure(require_csr_binding=True)
    _, csr, csr_pem = new_csr("svc.example.com")
    submit(strict, token(csr_der=csr.public_bytes(Encoding.DER)), csr_pem)


def test_csr_key_type_outside_key_types_is_forbidden(
    submit: Submit, reconfigure: Callable[..., Authority], token: TokenFactory
) -> None:
    only_p256 = reconfigure(key_types=["P-256"])
    ed_pem = new_csr("svc.example.com", key_type=KeyType.ED25519)[2]
    refuse(submit, only_p256, token(), ed_pem, Forbidden, "Ed25519")
    submit(only_p256, token(), CSR_PEM)  # the allowed type still works


# --- what the host relies on -------------------------------------------------------------------


def test_authorize_sign_returns_the_one_time_token_the_host_must_record(
    authority: Authority, token: TokenFactory
) -> None:
    provisioner = provisioner_of(authority)
    at = datetime.now(UTC).replace(microsecond=0)
    ott = token(jti="token-123", at=at)
    authorization = provisioner.authorize_sign(
        ott, parse_csr(CSR_PEM), authority.context("/1.0/sign")
    )
    assert authorization.token is not None
    assert authorization.token.provisioner == "admin"
    assert authorization.token.token_id == "token-123"
    # Remembered at least until the token expires, so it cannot be replayed before then.
    assert authorization.token.expires_at >= at + timedelta(minutes=5)


def test_replayed_token_is_unauthorized_and_the_first_certificate_stays(
    authority: Authority, token: TokenFactory
) -> None:
    ott = token()
    first = _via_authority(authority, ott, CSR_PEM)
    with pytest.raises(Unauthorized, match="already been used"):
        _via_authority(authority, ott, new_csr("svc.example.com")[2])
    assert authority.stores.certificates.count_certificates() == 1
    record = authority.stores.certificates.get_certificate(format(first.serial_number, "x"))
    assert record is not None
    assert record.status == "active"


def test_jti_is_single_use_even_across_different_tokens(
    authority: Authority, token: TokenFactory
) -> None:
    _via_authority(authority, token(jti="same"), CSR_PEM)
    with pytest.raises(Unauthorized, match="already been used"):
        _via_authority(authority, token(jti="same"), CSR_PEM)


def test_public_view_contains_no_secrets(authority: Authority) -> None:
    provisioner = provisioner_of(authority)
    assert provisioner.encrypted_key is not None  # there is a secret to leak
    jwk_views = [v for v in authority.ca.provisioners.view() if v["type"] == "JWK"]
    assert jwk_views
    for view in (provisioner.public_view(), *jwk_views):
        text = json.dumps(view)
        assert "encrypted_key" not in text
        assert "encryptedKey" not in text
        assert str(provisioner.encrypted_key.name) not in text
        assert "PRIVATE" not in text
        assert set(view["key"]) == {"kty", "crv", "x", "y"}  # public members only
        assert view["kid"] == provisioner.kid


def test_public_view_of_a_provisioner_built_in_code_has_the_same_shape() -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    provisioner = JWKProvisioner(name="p", issuer="agent", public_key=key.public_key())
    view = provisioner.public_view()
    assert "d" not in view["key"]
    assert view["type"] == "JWK"
    assert view["maxTokenLifetime"] == 300
