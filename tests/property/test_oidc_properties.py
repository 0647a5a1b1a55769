"""OpenID Connect: any claims in an ID token the provider signed, any header, any token
text, and mutations of valid ones give a ProtocolError from the OIDC provisioner (and
the signing pipeline after it), never another exception; any JWK set, discovery
document or cache headers an OpenID provider answers with are refused by the key cache
with a reason (or a ProtocolError), never with another exception, and cache lifetimes
stay within their bounds.

The tests at the end are inputs that once gave another exception (lone surrogates in
``sub`` and in a provider's URLs, cache times beyond what a datetime holds, emails x509
refuses), kept as regressions.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import ProtocolError
from fuzz.targets import oidc
from plugins.oidc import OIDCProvisioner

from .mutations import corpus_inputs, json_values, mutated, mutated_tree

NOW = int(oidc.NOW.timestamp())


def _claims_input(value: Any, form: int = oidc.CLAIMS_ES256) -> bytes:
    return bytes([form]) + json.dumps(value).encode()


# --- strategies for what the provisioner reads -------------------------------------------------

#: Any character, lone surrogates included (JSON's \\ud800 escapes give them).
ANY_CHARACTER = st.characters(codec=None, exclude_categories=())

odd_text = st.text(ANY_CHARACTER, max_size=40) | st.sampled_from(
    ("", " ", "\x00", "\u202e", "\ufeff", "a" * 300, "é" * 257, "x" * 5000)
)
subject_text = st.text(ANY_CHARACTER, max_size=40) | st.sampled_from(
    ("", "root-7", "a b/c#d", "%2F", "a" * 255, "a" * 256, "x" * 5000)
)
other = json_values(max_leaves=6)

times = (
    st.integers(NOW - 7200, NOW + 7200)
    | st.floats(NOW - 7200, NOW + 7200)
    | st.integers()
    | st.sampled_from((0, -1, -(2**63), 2**63, 10**20, 10**400, 253402300800, -62135596801))
    | st.floats(allow_nan=False)
    | st.booleans()
    | st.text(max_size=12)
    | st.just(str(NOW))
    | other
)


emails = (
    st.sampled_from(
        (
            "alice@example.com",
            "ALICE@EXAMPLE.COM",
            "admin@example.com",
            "a@b@example.com",
            "@example.com",
            "alice@",
            "alice@example.com.",
            "al ice@example.com",
            "alice@exa_mple.com",
            "https://x@example.com",
            "alice@xn--bcher-kva.example",
            "1.2.3.4",
            "alice@[::1]",
        )
    )
    | st.builds(lambda local, domain: f"{local}@{domain}", odd_text, odd_text)
    | odd_text
    | other
)
usernames = (
    st.sampled_from(("alice", "a.b", "a..b", "-a", "a-", "*", "xn--a", "a" * 64, "a" * 300))
    | st.text(st.sampled_from("aZ09.-_*@:/% \x00é"), max_size=70)
    | odd_text
    | other
)
audiences = (
    st.sampled_from((oidc.CLIENT, [oidc.CLIENT], [oidc.CLIENT, "other"], ["other", oidc.CLIENT]))
    | st.lists(st.sampled_from((oidc.CLIENT, "other", "")) | other, max_size=4)
    | odd_text
    | other
)
groups = (
    st.lists(st.sampled_from(("engineering", "ops", "everyone", "")) | odd_text, max_size=5)
    | st.sampled_from(("ops", "engineering,ops", ""))
    | st.lists(st.lists(st.just("ops"), max_size=2), max_size=2)
    | st.just(["x"] * 1001 + ["ops"])
    | other
)
email_verified = st.sampled_from((True, False, "true", "True", 1, 1.0, 0, "", [True])) | other

#: Values for every claim the provisioner reads; None drops the claim (merged over the
#: target's valid claims, so the other checks are still passed and the drawn ones reached).
CLAIMS = st.fixed_dictionaries(
    {},
    optional={
        "iss": st.sampled_from(
            (oidc.PROVIDER, oidc.PROVIDER + "/", "http://idp.example.com", "https://", "")
        )
        | odd_text
        | other,
        "aud": audiences,
        "azp": st.sampled_from((oidc.CLIENT, "other", "")) | odd_text | other,
        "sub": subject_text | other,
        "email": emails,
        "email_verified": email_verified,
        "groups": groups,
        "exp": times,
        "iat": times,
        "nbf": times,
        "nonce": st.sampled_from((oidc.NONCE, oidc.NONCE[:-1], "")) | odd_text | other,
        "jti": st.sampled_from(("fuzz-1", "", "j" * 256, "j" * 257)) | odd_text | other,
        "preferred_username": usernames,
    },
)


# --- the valid inputs reach the certificate -----------------------------------------------------


def test_the_base_token_gets_a_certificate_for_alices_names() -> None:
    """The target's base claims pass every check, so what the tests change is what
    is refused (not an earlier check that would refuse anyway)."""
    token = oidc.claims_token(b"{}", "ES256")
    assert token is not None
    credential = OIDCProvisioner.read_credential(token)
    assert credential is not None
    assert credential.provisioner in oidc.PROVISIONER.credential_addresses()
    for csr in oidc.CSRS[:2]:
        authorization = oidc.PROVISIONER.authorize_sign(credential, csr, oidc.CONTEXT)
        oidc._issue(authorization, csr)
    with pytest.raises(ProtocolError):  # the admin's CSR names what alice may not have
        authorization = oidc.PROVISIONER.authorize_sign(credential, oidc.CSRS[2], oidc.CONTEXT)
        oidc._issue(authorization, oidc.CSRS[2])


def test_an_admin_token_gets_what_the_admins_csr_asks() -> None:
    token = oidc.claims_token(b'{"email": "admin@example.com"}', "RS256")
    assert token is not None
    credential = OIDCProvisioner.read_credential(token)
    assert credential is not None
    csr = oidc.CSRS[2]
    oidc._issue(oidc.PROVISIONER.authorize_sign(credential, csr, oidc.CONTEXT), csr)


def test_the_provider_seeds_parse() -> None:
    keys = oidc._parse_key_set(oidc.KEY_SET)
    assert [k.kid for k in keys] == ["fuzz", "fuzz"]
    document = {"issuer": oidc.PROVIDER, "jwks_uri": oidc.JWKS_URI}
    assert oidc._parse_discovery(document, oidc.PROVIDER, oidc.DISCOVERY_URL).jwks_uri


# --- the provisioner ------------------------------------------------------------------------------


@given(st.binary(max_size=400))
def test_random_bytes(data: bytes) -> None:
    oidc.test_one_input(data)


@given(mutated(corpus_inputs("oidc")))
def test_byte_mutations_of_the_corpus(data: bytes) -> None:
    oidc.test_one_input(data)


@given(CLAIMS, st.sampled_from((oidc.CLAIMS_ES256, oidc.CLAIMS_RS256)))
def test_any_value_in_every_claim_the_provisioner_reads(claims: dict[str, Any], form: int) -> None:
    oidc.test_one_input(_claims_input(claims, form))


@given(mutated_tree(oidc.BASE_CLAIMS, json_values()))
def test_any_value_in_any_member_of_valid_claims(claims: Any) -> None:
    oidc.test_one_input(_claims_input(claims))


@given(st.dictionaries(st.text(max_size=20), other, max_size=6))
def test_any_extra_claims(extra: dict[str, Any]) -> None:
    oidc.test_one_input(_claims_input(extra))


@given(json_values())
def test_any_payload(payload: Any) -> None:
    # An object is merged over the valid claims; anything else is the whole payload.
    oidc.test_one_input(_claims_input(payload))


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "alg": st.sampled_from(("ES256", "RS256", "PS256", "EdDSA", "none", "HS256", ""))
            | other,
            "kid": st.sampled_from(("fuzz", "rotated", "", "k" * 257)) | odd_text | other,
            "typ": st.sampled_from(("JWT", "at+jwt")) | other,
            "crit": other,
            "b64": other,
            "jwk": other,
            "x5c": other,
        },
    )
)
def test_any_header(header: dict[str, Any]) -> None:
    oidc.test_one_input(bytes([oidc.HEADER]) + json.dumps(header).encode())


@given(st.lists(st.text(st.sampled_from("AZaz09-_=+/.é"), max_size=60), min_size=1, max_size=4))
def test_any_token_text(parts: list[str]) -> None:
    oidc.test_one_input(bytes([oidc.TOKEN]) + ".".join(parts).encode())


# --- the key cache: a provider's documents and cache headers -----------------------------------

DISCOVERY = {
    "issuer": oidc.PROVIDER,
    "jwks_uri": oidc.JWKS_URI,
    "authorization_endpoint": oidc.PROVIDER + "/authorize",
    "token_endpoint": oidc.PROVIDER + "/token",
    "device_authorization_endpoint": oidc.PROVIDER + "/device",
    "id_token_signing_alg_values_supported": ["RS256", "ES256"],
}
urls = st.sampled_from(
    (
        oidc.JWKS_URI,
        "http://127.0.0.1:1/jwks",
        "http://idp.example.com/jwks",
        "https://user:pw@idp.example.com/",
        "https://[::1/",
        "https://idp.example.com:99999/",
        "https:///jwks",
        "file:///etc/passwd",
        "https://idp.example.com/\x00",
        "https://idp.example.com/é",
        "",
    )
) | st.text(ANY_CHARACTER, max_size=40)
jwk_members = st.fixed_dictionaries(
    {},
    optional={
        "kty": st.sampled_from(("EC", "RSA", "OKP", "oct", "")) | other,
        "crv": st.sampled_from(("P-256", "P-384", "P-521", "Ed25519", "X25519")) | other,
        "x": st.text(st.sampled_from("AZaz09-_"), max_size=90) | other,
        "y": st.text(st.sampled_from("AZaz09-_"), max_size=90) | other,
        "n": st.text(st.sampled_from("AZaz09-_"), max_size=90) | other,
        "e": st.sampled_from(("AQAB", "Aw", "", "AA")) | other,
        "kid": st.sampled_from(("fuzz", "")) | other,
        "alg": st.sampled_from(("ES256", "RS256", "EdDSA", "none")) | other,
        "use": st.sampled_from(("sig", "enc")) | other,
    },
)


@given(mutated_tree(oidc.KEY_SET, json_values()))
def test_any_value_in_any_member_of_a_jwk_set(document: Any) -> None:
    oidc.test_one_input(bytes([oidc.DOCUMENT]) + json.dumps(document).encode())


@given(st.lists(st.sampled_from(oidc.KEY_SET["keys"]) | jwk_members | other, max_size=5))
def test_any_keys_in_a_jwk_set(keys: list[Any]) -> None:
    oidc.test_one_input(bytes([oidc.DOCUMENT]) + json.dumps({"keys": keys}).encode())


@given(
    mutated_tree(DISCOVERY, json_values()),
    st.sampled_from(("jwks_uri", "authorization_endpoint", "issuer")),
    urls,
)
def test_any_discovery_document(document: Any, member: str, url: str) -> None:
    oidc.test_one_input(bytes([oidc.DOCUMENT]) + json.dumps(document).encode())
    changed = {**DISCOVERY, member: url}
    oidc.test_one_input(bytes([oidc.DOCUMENT]) + json.dumps(changed).encode())


#: HTTP dates, to the ends of what a datetime holds.
http_dates = st.datetimes(
    min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC)
).map(lambda d: format_datetime(d, usegmt=True)) | st.sampled_from(
    ("0", "-1", "Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "")
)
#: Delta-seconds, far beyond what a timedelta holds.
seconds = st.integers(0, 10**30).map(str) | st.sampled_from(("-1", "1.5", " 60 ", "0x10", ""))
directives = st.lists(
    st.sampled_from(("no-store", "no-cache", "public", "private", "must-revalidate"))
    | seconds.map(lambda s: f"max-age={s}")
    | seconds.map(lambda s: f'max-age="{s}"')
    | seconds.map(lambda s: f"MAX-AGE = {s}")
    | st.text(st.sampled_from('az-=", 09'), max_size=20),
    max_size=4,
).map(", ".join)
header_lines = st.lists(
    st.tuples(st.just("Cache-Control"), directives)
    | st.tuples(st.just("Age"), seconds)
    | st.tuples(st.sampled_from(("Expires", "Date")), http_dates),
    max_size=5,
)


@given(header_lines)
def test_any_cache_headers_give_a_lifetime_within_the_bounds(lines: list[tuple[str, str]]) -> None:
    data = "\r\n".join(f"{name}: {value}" for name, value in lines).encode()
    oidc.test_one_input(bytes([oidc.CACHE_HEADERS]) + data)


@given(st.binary(max_size=200))
def test_any_header_bytes(data: bytes) -> None:
    oidc.test_one_input(bytes([oidc.CACHE_HEADERS]) + data)


# --- inputs that once gave another exception (found writing the oidc target) -------------------


def test_a_subject_with_a_lone_surrogate_is_refused_cleanly() -> None:
    oidc.test_one_input(_claims_input({"sub": "\ud800"}))


@pytest.mark.parametrize(
    "lines",
    [
        b"Cache-Control: max-age=99999999999999999999",
        b"Cache-Control: max-age=1\r\nAge: 99999999999999999999",
    ],
)
def test_a_max_age_beyond_a_timedelta_is_clamped(lines: bytes) -> None:
    oidc.test_one_input(bytes([oidc.CACHE_HEADERS]) + lines)


@pytest.mark.parametrize(
    "lines",
    [
        b"Expires: Sun, 01 Jun 2025 06:00:00 GMT\r\n"
        b"Date: Sun, 01 Jun 99999999999999999999 00:00:00 GMT",
        b"Expires: Sun, 01 Jun 2025 00:17487396000:00 GMT",
        b"Expires: Mon, 01 Jan 0001 00:00:00 GMT\r\nDate: Fri, 31 Dec 9999 23:59:59 -2359",
        b"Expires: Fri, 31 Dec 9999 23:59:59 -2359",
    ],
)
def test_an_http_date_out_of_range_is_read_as_no_date(lines: bytes) -> None:
    oidc.test_one_input(bytes([oidc.CACHE_HEADERS]) + lines)


def test_a_jwks_uri_with_a_lone_surrogate_is_refused_with_a_reason() -> None:
    document = {**DISCOVERY, "jwks_uri": oidc.JWKS_URI + "/\ud800"}
    oidc.test_one_input(bytes([oidc.DOCUMENT]) + json.dumps(document).encode())


@pytest.mark.parametrize("email", ["a(b@example.com", "[dmin@example.com"])
def test_an_email_that_x509_refuses_is_refused_cleanly(email: str) -> None:
    oidc.test_one_input(_claims_input({"email": email}))
