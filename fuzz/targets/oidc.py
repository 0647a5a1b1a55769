"""OpenID Connect: what the OIDC provisioner (plugins/oidc) reads from an anonymous
client's ID token, and what the host's key cache (hosts/remote/keysets.py) reads from
an OpenID provider's answers.

The provisioner is built from configuration as a CA would build it: name templates
(``email``, ``subject``, ``dns:{preferred_username}.people.example.com``,
``uri:spiffe://corp/u/{sub}``), allowed domains, required groups, admins and their name
patterns. Its :class:`plugins.api.RemoteKeys` is :class:`ProviderKeys`, which holds the
fixture keys and picks one with the host's own selection (``_select``). After
``read_credential`` and ``authorize_sign``, the policy goes through the signing pipeline
(validators, the CSR's template, the modifiers, the validity, the signature) for each of
the fixed CSRs, as ``POST /1.0/sign`` would.

The first byte chooses the input's form (modulo :data:`FORMS`), the rest is the input:

* ``0x00`` / ``0x01`` JSON claims merged over :data:`BASE_CLAIMS` (a ``null`` member
  drops that claim; a value that is no object is the whole payload), signed with the
  ES256 / RS256 fixture key under kid ``fuzz``: in an attack the token is the
  provider's, so every claim the provider copies from what a person controls
  (``preferred_username``, ``email``, ``groups``...) gets past the signature;
* ``0x02`` a token's text;
* ``0x03`` a JSON header merged over ``{"alg": "ES256", "kid": "fuzz", "typ": "JWT"}``,
  over :data:`BASE_CLAIMS`, signed with the fixture key that fits its ``alg`` (junk
  when none does);
* ``0x04`` a provider's JSON answer read as a JWK set (``_parse_key_set``, then
  ``_select`` for a few kids and algorithms) and as a discovery document
  (``_parse_discovery``);
* ``0x05`` a provider's response header lines, read by h11 as httpx reads them, then
  the cache lifetime they give (``RemoteKeySets._ttl``, which must stay within its
  bounds).

The key cache refuses a provider's answer with ``_FetchFailed`` (it keeps what it held,
or answers 503 with the reason), so that is the refusal let through in forms 4 and 5,
with a non-empty reason; anything else is a crash.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import h11
import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
)
from cryptography.x509.oid import NameOID

from engine.csr import CSRInfo, parse_csr
from engine.jose import (
    PrivateKey,
    PublicKey,
    allowed_algorithms,
    b64url_encode,
    create_signature,
    json_value,
    jwk_from_public_key,
)
from engine.names import SAN
from engine.pipeline import SignRequest as PipelineRequest
from engine.pipeline import prepare_certificate
from engine.ports import CountingRandom, FrozenClock
from fuzz.harness import FIXTURES_DIR, NOW, attempt, issuing_ca, text
from hosts.remote.keysets import (
    RemoteKeySets,
    _FetchFailed,
    _Key,
    _parse_discovery,
    _parse_key_set,
    _select,
)
from plugins.api import (
    AuthorizeContext,
    OpenIDProvider,
    ProvisionerEnvironment,
    ServiceUnavailable,
    Unauthorized,
    key_nonce,
)
from plugins.oidc import OIDCProvisioner

CLAIMS_ES256, CLAIMS_RS256, TOKEN, HEADER, DOCUMENT, CACHE_HEADERS = range(6)
FORMS = 6

PROVIDER = "https://idp.example.com"
JWKS_URI = PROVIDER + "/jwks"
DISCOVERY_URL = PROVIDER + "/.well-known/openid-configuration"
CLIENT = "devid-cli"
KID = "fuzz"

EC_KEY = ec.derive_private_key(0x01DC_F022, ec.SECP256R1())
RSA_KEY = load_pem_private_key((FIXTURES_DIR / "oidc" / "rs256.pem").read_bytes(), password=None)
assert isinstance(RSA_KEY, rsa.RSAPrivateKey)
SIGNING_KEYS: tuple[PrivateKey, ...] = (EC_KEY, RSA_KEY)

#: The JWK set the stand-in provider publishes: both fixture keys under kid "fuzz".
KEY_SET = {
    "keys": [
        {**jwk_from_public_key(key.public_key()), "kid": KID, "use": "sig"} for key in SIGNING_KEYS
    ]
}

T = TypeVar("T")


class ProviderKeys:
    """The host's key cache as the provisioner sees it, with the provider's answers
    already fetched: the discovery document of :data:`PROVIDER` and :data:`KEY_SET`,
    a key picked for the token's kid and alg as the host picks it."""

    def __init__(self) -> None:
        self.keys: tuple[_Key, ...] = _parse_key_set(KEY_SET)

    def provider(self, issuer: str) -> OpenIDProvider:
        return OpenIDProvider(issuer=issuer, jwks_uri=JWKS_URI)

    def key(
        self,
        jwks_uri: str,
        kid: str | None,
        alg: str,
        *,
        refresh_interval: timedelta = timedelta(minutes=1),
    ) -> PublicKey:
        found = _select(self.keys, kid, alg, jwks_uri)
        if found is None:
            raise Unauthorized(f"token key {kid!r} is not among the signing keys of {jwks_uri}")
        return found

    def certificate(self, url: str) -> bytes:
        raise ServiceUnavailable(f"the certificate at {url} cannot be fetched: no network here")


PROVISIONER = OIDCProvisioner.from_config(
    "corp",
    {
        "type": "OIDC",
        "provider": PROVIDER,
        "client_id": CLIENT,
        "names": [
            "email",
            "subject",
            "dns:{preferred_username}.people.example.com",
            "uri:spiffe://corp/u/{sub}",
        ],
        "domains": ["example.com"],
        "groups": ["engineering", "ops"],
        "admins": ["admin@example.com", "sub:root-7"],
        "admin_names": ["*.svc.example.com"],
    },
    ProvisionerEnvironment(
        data_dir=Path("unused"), issuers=frozenset({"tls"}), remote_keys=ProviderKeys()
    ),
)
CONTEXT = AuthorizeContext(now=NOW, audiences=frozenset())

# --- the CSRs a person (or an admin) sends with the token, and the CA that signs --------

CSR_KEY = ec.derive_private_key(0x0C5_2EED, ec.SECP256R1())


def _csr(common_name: str | None, sans: tuple[str, ...]) -> CSRInfo:
    subject = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else []
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(subject))
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([SAN.parse(s).to_general_name() for s in sans]),
            critical=False,
        )
    return parse_csr(builder.sign(CSR_KEY, hashes.SHA256()).public_bytes(Encoding.DER))


CSRS = (
    _csr(None, ()),  # what `devid login` sends: the names come from the token
    _csr("alice@example.com", ("alice@example.com", "alice.people.example.com")),
    _csr("api.svc.example.com", ("api.svc.example.com",)),  # what an admin may ask
)
NONCE = key_nonce(
    CSR_KEY.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
)

ISSUER = issuing_ca(0x0CA_F022, "Fuzz OIDC Issuing CA")
CLOCK = FrozenClock(NOW)
RANDOM = CountingRandom(b"oidc")

_NOW = int(NOW.timestamp())
#: A token the provisioner accepts for the first two CSRs (alice's names).
BASE_CLAIMS: dict[str, Any] = {
    "iss": PROVIDER,
    "aud": CLIENT,
    "azp": CLIENT,
    "sub": "alice-7",
    "email": "alice@example.com",
    "email_verified": True,
    "preferred_username": "alice",
    "groups": ["engineering", "everyone"],
    "nonce": NONCE,
    "jti": "fuzz-1",
    "iat": _NOW - 10,
    "nbf": _NOW - 10,
    "exp": _NOW + 3600,
}
BASE_HEADER: dict[str, Any] = {"alg": "ES256", "kid": KID, "typ": "JWT"}


# --- tokens -------------------------------------------------------------------------------


def _encode(value: Any) -> str:
    return b64url_encode(json.dumps(value, separators=(",", ":")).encode())


def signed(header: Any, payload: Any) -> str:
    """A compact JWS of *header* and *payload* (any JSON values), signed with the fixture
    key that fits the header's ``alg``, else with a junk signature."""
    signing_input = f"{_encode(header)}.{_encode(payload)}"
    alg = header.get("alg") if isinstance(header, dict) else None
    signature = bytes(64)
    for key in SIGNING_KEYS:
        if isinstance(alg, str) and alg in allowed_algorithms(key.public_key()):
            signature = create_signature(alg, key, signing_input.encode("ascii"))
            break
    return f"{signing_input}.{b64url_encode(signature)}"


def merged(base: dict[str, Any], value: Any) -> Any:
    """*value* over *base* (a null member drops it), or *value* itself if no object."""
    if not isinstance(value, dict):
        return value
    out = dict(base)
    for name, item in value.items():
        if item is None:
            out.pop(name, None)
        else:
            out[name] = item
    return out


def claims_token(data: bytes, alg: str) -> str | None:
    """The token form 0 or 1 stands for (None when the rest is not JSON)."""
    value = attempt(json_value, data, "claims")
    if value is None and data.strip() != b"null":
        return None
    return signed({**BASE_HEADER, "alg": alg}, merged(BASE_CLAIMS, value))


def header_token(data: bytes) -> str | None:
    """The token form 3 stands for (None when the rest is not JSON)."""
    value = attempt(json_value, data, "header")
    if value is None and data.strip() != b"null":
        return None
    return signed(merged(BASE_HEADER, value), BASE_CLAIMS)


def _issue(authorization: Any, csr: CSRInfo) -> None:
    prepared = prepare_certificate(PipelineRequest(csr=csr), authorization.policy, ISSUER, CLOCK)
    issued = prepared.sign(RANDOM)
    json.dumps(dict(issued.evidence))  # the store records it as JSON


def sign_with(token: str) -> None:
    """What ``POST /1.0/sign`` runs on *token* with each of :data:`CSRS`."""
    credential = attempt(OIDCProvisioner.read_credential, token)
    if credential is None:
        return
    for csr in CSRS:
        authorization = attempt(PROVISIONER.authorize_sign, credential, csr, CONTEXT)
        if authorization is not None:
            attempt(_issue, authorization, csr)


# --- a provider's answers -----------------------------------------------------------------


class BadRefusal(AssertionError):
    """The key cache refused a provider's answer without saying why."""


def fetch_refused(parse: Callable[..., T], *args: Any) -> T | None:
    """Run one of the key cache's readers; its refusal of an answer (``_FetchFailed``
    with a reason) gives None, a ProtocolError is let through as ever."""
    try:
        return attempt(parse, *args)
    except _FetchFailed as failed:
        if not isinstance(failed.reason, str) or not failed.reason:
            raise BadRefusal(repr(failed)) from None
        return None


ALGORITHMS = ("ES256", "RS256", "PS256", "EdDSA", "ES384")


def read_document(data: bytes) -> None:
    document = attempt(json_value, data, "the answer")
    if not isinstance(document, dict):
        return  # the cache refuses anything but an object before reading it
    keys = fetch_refused(_parse_key_set, document)
    if keys is not None:
        kids: list[str | None] = [None, KID, *(k.kid for k in keys[:4])]
        for kid in dict.fromkeys(kids):
            for alg in ALGORITHMS:
                attempt(_select, keys, kid, alg, JWKS_URI)
    fetch_refused(_parse_discovery, document, PROVIDER, DISCOVERY_URL)
    named = document.get("issuer")
    if isinstance(named, str) and named != PROVIDER:
        # Past the issuer check, to the rest of the document.
        fetch_refused(_parse_discovery, document, named, DISCOVERY_URL)


CACHE = RemoteKeySets(CLOCK, min_ttl=timedelta(minutes=1), max_ttl=timedelta(hours=24))


class BadLifetime(AssertionError):
    """A cache lifetime outside ``[min_ttl, max_ttl]``."""


def response_headers(data: bytes) -> httpx.Headers | None:
    """The headers of a response whose header lines are *data*, as h11 reads them (None
    where h11 refuses the response, as the client then does)."""
    connection = h11.Connection(h11.CLIENT)
    connection.send(h11.Request(method="GET", target="/jwks", headers=[("Host", "idp")]))
    connection.receive_data(b"HTTP/1.1 200 OK\r\n" + data.rstrip(b"\r\n") + b"\r\n\r\n")
    try:
        event = connection.next_event()
    except h11.RemoteProtocolError:
        return None
    if not isinstance(event, h11.Response):
        return None
    return httpx.Headers(list(event.headers))


def read_cache_headers(data: bytes) -> None:
    headers = response_headers(data)
    if headers is None:
        return
    ttl = CACHE._ttl(headers, NOW)
    if not timedelta(minutes=1) <= ttl <= timedelta(hours=24):
        raise BadLifetime(f"{ttl} from {headers!r}")


def test_one_input(data: bytes) -> None:
    if not data:
        return
    form, rest = data[0] % FORMS, data[1:]
    if form in (CLAIMS_ES256, CLAIMS_RS256):
        token = claims_token(rest, "ES256" if form == CLAIMS_ES256 else "RS256")
        if token is not None:
            sign_with(token)
    elif form == TOKEN:
        sign_with(text(rest))
    elif form == HEADER:
        token = header_token(rest)
        if token is not None:
            sign_with(token)
    elif form == DOCUMENT:
        read_document(rest)
    else:
        read_cache_headers(rest)
