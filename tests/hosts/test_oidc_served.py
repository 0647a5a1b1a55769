"""The OIDC provisioner served over HTTPS on both hosts, against a real OpenID provider
(oauth2-mock-server, tests/oidc/provider.py): ID tokens the provider signs with RS256
and ES256 keys are accepted; forged, expired, not-yet-valid, misaddressed, unverified,
out-of-domain, out-of-group, replayed and unsigned tokens are refused with a JSON 4xx;
the host's key cache (hosts.remote.RemoteKeySets) follows a key rotation, fetching the
provider's JWK set once for an unknown key and no more often than the provisioner's
``key_refresh_interval``; a provider that is down leaves the keys already fetched usable
and makes an unknown key a 503 naming the keys that cannot be fetched.

The in-process unit tests of every check are tests/plugins/test_oidc_provisioner.py;
these go through the real servers, the real key cache and the real provider. The key
cache reads time from a FrozenClock the tests move (the CA's own clock stays real, as
the provider's tokens carry real times), so no assertion here depends on how fast the
machine is."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import httpx
import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from agent.caclient import make_csr
from engine.assurance import Assurance
from engine.jose import b64url_decode, b64url_encode, sign_compact
from engine.keys import KeyType
from engine.ports import FrozenClock
from plugins.keygen import generate_key
from tests.conftest import CA, HOSTS, RunningServer, start_server

from .acme_helpers import add_provisioner
from .helpers import assert_json_error, client

if TYPE_CHECKING:  # a plain import before registration defeats assert rewriting
    from tests.oidc.provider import OIDCProvider

pytest_plugins = ["tests.oidc.provider"]

PROVISIONER = "corp"
CLIENT_ID = "devid-cli"
OTHER_CLIENT = "other-client"
SUBJECT = "alice-1"
EMAIL = "alice@example.com"
#: The claims of a person the provisioner admits (the provider adds iss, iat, nbf, exp).
ALICE: dict[str, Any] = {
    "aud": CLIENT_ID,
    "sub": SUBJECT,
    "email": EMAIL,
    "email_verified": True,
    "groups": ["engineering"],
}
#: The provisioner's key_refresh_interval.
REFRESH = timedelta(seconds=1)
JWKS_PATH = "/jwks"
#: A kid none of the provider's keys has.
UNKNOWN_KID = "no-such-key"


def oidc_table(provider: str) -> dict[str, Any]:
    return {
        "type": "OIDC",
        "name": PROVISIONER,
        "issuer": "tls",
        "provider": provider,
        "client_id": CLIENT_ID,
        "domains": ["example.com"],
        "groups": ["engineering"],
        "key_refresh_interval": f"{int(REFRESH.total_seconds())}s",
    }


@attrs.frozen
class Served:
    """A running server with the ``corp`` provisioner, and the clock of its key cache."""

    server: RunningServer
    keys_clock: FrozenClock


@asynccontextmanager
async def serving(ca: CA, nursery: trio.Nursery, host: str, provider: str) -> AsyncIterator[Served]:
    """Serve *ca* on *host* with an OIDC provisioner trusting *provider*; the host's key
    cache runs on a frozen clock (set to now) that only the test moves."""
    add_provisioner(ca.data_dir, oidc_table(provider))
    running, stop = await start_server(ca, nursery, host)
    try:
        keys_clock = FrozenClock(datetime.now(UTC))
        running.authority.remote_keys.clock = keys_clock
        yield Served(running, keys_clock)
    finally:
        await stop.close()


def kid_for(provider: OIDCProvider, alg: str) -> str:
    """The kid of the provider's current key for *alg*."""
    listed = provider.keys()
    kids = [k["kid"] for k in listed if k["alg"] == alg]
    assert len(kids) == 1, listed
    return kids[0]


def id_token(
    provider: OIDCProvider, kid: str, *, header: Mapping[str, Any] | None = None, **changes: Any
) -> str:
    """An ID token *provider* signs with its key *kid*: ALICE's claims with *changes*
    (None removes a claim) and a ``sid`` of its own. RS256 signatures are deterministic,
    so two tokens with the same claims made in the same second would be one token, the
    second use of it a replay."""
    claims = {**ALICE, "sid": uuid.uuid4().hex, **changes}
    return provider.token(claims, kid=kid, header=header)


def parts_of(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of a compact JWS (unverified)."""
    header, payload, _ = token.split(".")
    decoded: tuple[dict[str, Any], dict[str, Any]] = (
        json.loads(b64url_decode(header)),
        json.loads(b64url_decode(payload)),
    )
    return decoded


def encoded(value: Mapping[str, Any]) -> str:
    return b64url_encode(json.dumps(dict(value), separators=(",", ":")).encode())


async def sign(http: httpx.AsyncClient, token: str) -> httpx.Response:
    """``POST /1.0/sign`` with *token* and a CSR for a fresh key that names nothing (the
    CA takes the names from the identity)."""
    csr = make_csr(generate_key(KeyType.P256), None, [])
    return await http.post(
        "/1.0/sign", json={"csr": csr.public_bytes(Encoding.PEM).decode(), "ott": token}
    )


def assert_alice_certificate(response: httpx.Response, served: Served, provider: str) -> None:
    """A certificate for alice: her email, her subject scoped by *provider*, the
    single-sign-on assurance marker, issued by the TLS CA under the root."""
    assert response.status_code == 201, response.text
    body = response.json()
    leaf = x509.load_pem_x509_certificate(body["crt"].encode())
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.RFC822Name) == [EMAIL]
    assert names.get_values_for_type(x509.UniformResourceIdentifier) == [f"{provider}#{SUBJECT}"]
    assert names.get_values_for_type(x509.DNSName) == []
    assert Assurance.of(leaf) is Assurance.SINGLE_SIGN_ON
    authority = served.server.authority
    tls_ca = authority.issuers["tls"].certificate
    root = x509.load_pem_x509_certificate(served.server.root_path.read_bytes())
    assert leaf.issuer == tls_ca.subject
    leaf.verify_directly_issued_by(tls_ca)
    tls_ca.verify_directly_issued_by(root)
    chain = [x509.load_pem_x509_certificate(pem.encode()) for pem in body["certChain"]]
    assert chain[:2] == [leaf, tls_ca]


async def assert_refused(
    http: httpx.AsyncClient, token: str, status: int, *words: str, case: str
) -> None:
    """*token* is refused with a JSON *status* whose message holds every one of *words*."""
    response = await sign(http, token)
    assert response.status_code == status, f"{case}: {response.status_code} {response.text}"
    message = assert_json_error(response, status)["message"]
    for word in words:
        assert word in message, f"{case}: {word!r} not in {message!r}"


async def assert_healthy(http: httpx.AsyncClient) -> None:
    response = await http.get("/health")
    assert response.status_code == 200, response.text


# --- accepted and refused tokens ------------------------------------------------------------


@pytest.mark.parametrize("host", HOSTS)
async def test_tokens_the_provider_signs_are_accepted_and_bad_ones_refused(
    host: str, ca: CA, nursery: trio.Nursery, oidc_provider: OIDCProvider
) -> None:
    provider = oidc_provider.issuer
    rs_kid, es_kid = kid_for(oidc_provider, "RS256"), kid_for(oidc_provider, "ES256")
    now = int(time.time())
    own_key = ec.generate_private_key(ec.SECP256R1())
    genuine = id_token(oidc_provider, es_kid)
    genuine_header, genuine_claims = parts_of(genuine)
    assert genuine_header["alg"] == "ES256" and genuine_claims["iss"] == provider
    signing_input = (
        f"{encoded({'alg': 'HS256', 'typ': 'JWT', 'kid': rs_kid})}.{encoded(genuine_claims)}"
    )
    # HS256 keyed with the provider's public RS256 key: the classic algorithm confusion.
    jwks = oidc_provider.http.get(JWKS_PATH).json()["keys"]
    public_jwk = json.dumps(next(k for k in jwks if k["kid"] == rs_kid)).encode()
    hs256 = (
        signing_input
        + "."
        + b64url_encode(hmac.new(public_jwk, signing_input.encode(), hashlib.sha256).digest())
    )
    unsigned = f"{encoded({'alg': 'none', 'typ': 'JWT', 'kid': rs_kid})}.{encoded(genuine_claims)}."

    # (case, token, status, words of the message)
    refusals: list[tuple[str, str, int, tuple[str, ...]]] = [
        (
            "forged: the provider's claims and kid, signed with another key",
            sign_compact(genuine_claims, own_key, alg="ES256", headers={"kid": es_kid}),
            401,
            ("signature",),
        ),
        (
            "the RS256 key's kid on an ES256 signature",
            sign_compact(genuine_claims, own_key, alg="ES256", headers={"kid": rs_kid}),
            401,
            (rs_kid, "RS256"),
        ),
        (
            "expired",
            id_token(oidc_provider, rs_kid, iat=now - 4200, nbf=None, exp=now - 600),
            401,
            ("expired",),
        ),
        (
            "not yet valid",
            id_token(oidc_provider, rs_kid, nbf=now + 600),
            401,
            ("not yet valid",),
        ),
        (
            "another client's token",
            id_token(oidc_provider, rs_kid, aud=OTHER_CLIENT),
            401,
            (OTHER_CLIENT,),
        ),
        (
            "azp this client, but the audience another",
            id_token(oidc_provider, rs_kid, aud=OTHER_CLIENT, azp=CLIENT_ID),
            401,
            ("audience", CLIENT_ID),
        ),
        (
            "another issuer",
            id_token(oidc_provider, rs_kid, iss="https://elsewhere.example"),
            401,
            ("https://elsewhere.example",),
        ),
        (
            "issued to another client (azp) among several audiences",
            id_token(oidc_provider, rs_kid, aud=[CLIENT_ID, OTHER_CLIENT], azp=OTHER_CLIENT),
            401,
            (OTHER_CLIENT,),
        ),
        (
            "several audiences and no azp",
            id_token(oidc_provider, rs_kid, aud=[CLIENT_ID, OTHER_CLIENT]),
            401,
            ("azp",),
        ),
        (
            "an email the provider has not verified",
            id_token(oidc_provider, rs_kid, email_verified=False),
            403,
            ("verified",),
        ),
        (
            "no email_verified claim",
            id_token(oidc_provider, es_kid, email_verified=None),
            403,
            ("verified",),
        ),
        (
            "an email outside the domains",
            id_token(oidc_provider, rs_kid, email="alice@elsewhere.example"),
            403,
            ("domain", "elsewhere.example"),
        ),
        (
            "in none of the groups",
            id_token(oidc_provider, rs_kid, groups=["sales"]),
            403,
            ("groups", "engineering"),
        ),
        (
            "no groups claim",
            id_token(oidc_provider, es_kid, groups=None),
            403,
            ("groups",),
        ),
    ]

    async with serving(ca, nursery, host, provider) as served, client(served.server) as http:
        # Accepted: one token signed with each of the provider's keys.
        for kid in (rs_kid, es_kid):
            token = id_token(oidc_provider, kid)
            assert parts_of(token)[0]["kid"] == kid
            assert_alice_certificate(await sign(http, token), served, provider)

        for case, token, status, words in refusals:
            await assert_refused(http, token, status, *words, case=case)
        # Unsigned and HMAC tokens: refused as the client's error, never a 500. (No type
        # reads an HMAC token as an ID token, so its refusal is that its issuer is not a
        # provisioner here.)
        for case, token, word in (("alg none", unsigned, "'none'"), ("HS256", hs256, "issuer")):
            response = await sign(http, token)
            assert response.status_code in (400, 401), f"{case}: {response.text}"
            message = assert_json_error(response, response.status_code)["message"]
            assert word in message, f"{case}: {word!r} not in {message!r}"

        # Replayed: the token is used up by the certificate it got.
        once = id_token(oidc_provider, rs_kid)
        assert_alice_certificate(await sign(http, once), served, provider)
        await assert_refused(http, once, 401, "used", case="replayed")
        # The genuine token the forgeries copied was never used: it still counts.
        assert_alice_certificate(await sign(http, genuine), served, provider)
        await assert_healthy(http)


# --- key rotation -------------------------------------------------------------------------


@pytest.mark.parametrize("host", HOSTS)
async def test_the_key_cache_follows_a_key_rotation(
    host: str, ca: CA, nursery: trio.Nursery, oidc_provider: OIDCProvider
) -> None:
    provider = oidc_provider.issuer
    async with serving(ca, nursery, host, provider) as served, client(served.server) as http:
        old_rs, old_es = kid_for(oidc_provider, "RS256"), kid_for(oidc_provider, "ES256")
        assert_alice_certificate(
            await sign(http, id_token(oidc_provider, old_rs)), served, provider
        )
        made_before = id_token(oidc_provider, old_es)
        fetched = oidc_provider.requests(JWKS_PATH)

        # The keys were fetched a refresh interval ago when the provider rotates them.
        served.keys_clock.advance(REFRESH)
        rotated = {k["alg"]: k["kid"] for k in oidc_provider.rotate()}
        assert set(rotated) == {"RS256", "ES256"}
        assert not {old_rs, old_es} & set(rotated.values())
        # A new key's kid is unknown to the cache: it fetches the set once, then accepts.
        new_token = id_token(oidc_provider, rotated["RS256"])
        assert_alice_certificate(await sign(http, new_token), served, provider)
        assert oidc_provider.requests(JWKS_PATH) == fetched + 1
        # The other new key came with that fetch.
        assert_alice_certificate(
            await sign(http, id_token(oidc_provider, rotated["ES256"])), served, provider
        )
        assert oidc_provider.requests(JWKS_PATH) == fetched + 1
        # Another unknown kid within the refresh interval: refused, and no fetch.
        unknown = id_token(oidc_provider, rotated["ES256"], header={"kid": UNKNOWN_KID})
        await assert_refused(http, unknown, 401, UNKNOWN_KID, case="unknown kid, no refetch")
        # The token made with the old key before the rotation is refused now.
        await assert_refused(http, made_before, 401, old_es, case="old key, no refetch")
        assert oidc_provider.requests(JWKS_PATH) == fetched + 1

        # Once the interval has passed, an unknown kid has the set fetched once more; the
        # old key is still gone from it.
        served.keys_clock.advance(REFRESH)
        await assert_refused(http, made_before, 401, old_es, case="old key after a refetch")
        assert oidc_provider.requests(JWKS_PATH) == fetched + 2
        await assert_refused(http, unknown, 401, UNKNOWN_KID, case="unknown kid, no refetch")
        assert oidc_provider.requests(JWKS_PATH) == fetched + 2
        await assert_healthy(http)


# --- a provider that goes down -------------------------------------------------------------


@pytest.mark.parametrize("host", HOSTS)
async def test_known_keys_stay_usable_while_the_provider_is_down(
    host: str, ca: CA, nursery: trio.Nursery, tmp_path: Path
) -> None:
    from tests.oidc.provider import start_provider

    private = start_provider(tmp_path)
    try:
        provider = private.issuer
        rs_kid, es_kid = kid_for(private, "RS256"), kid_for(private, "ES256")
        first, second, third = (id_token(private, k) for k in (rs_kid, es_kid, rs_kid))
        unknown = id_token(private, es_kid, header={"kid": UNKNOWN_KID})
        async with serving(ca, nursery, host, provider) as served, client(served.server) as http:
            assert_alice_certificate(await sign(http, first), served, provider)
            private.stop()
            with pytest.raises(httpx.TransportError):
                httpx.get(f"{provider}/.well-known/openid-configuration", timeout=5.0)

            # The keys fetched while it was up still verify tokens.
            assert_alice_certificate(await sign(http, second), served, provider)
            # A key the cache has never seen: it tries to fetch the set again and says why
            # it cannot.
            served.keys_clock.advance(REFRESH)
            await assert_refused(
                http,
                unknown,
                503,
                UNKNOWN_KID,
                f"{provider}{JWKS_PATH}",
                "cannot be fetched",
                case="unknown kid, provider down",
            )
            # That failed fetch leaves the keys held in use.
            assert_alice_certificate(await sign(http, third), served, provider)
            await assert_healthy(http)
    finally:
        private.stop()
