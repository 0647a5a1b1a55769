"""ACME's JWS (RFC 8555 6.2, 7.3.4, 7.3.5): flattened JSON, one signature, no surprises.

Every request body is a flattened JWS whose protected header carries
``alg``, ``nonce``, ``url`` and exactly one of ``jwk``/``kid``; there is no
unprotected ``header`` and no ``signatures`` array. The algorithm follows
from the key (:func:`engine.jose.allowed_algorithms`), never from the request:
``none`` and HMAC are refused, except HS256 inside an external account
binding, checked with the provisioner's own EAB key.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

import attrs

from ..errors import BadRequest, Unauthorized
from ..jose import (
    MAX_JSON_DEPTH,
    SIGNATURE_ALGORITHMS,
    PrivateKey,
    PublicKey,
    allowed_algorithms,
    b64url_decode,
    b64url_encode,
    create_signature,
    default_algorithm,
    jwk_from_public_key,
    jwk_thumbprint,
    public_key_from_jwk,
    too_deep,
    verify_signature,
)
from .problems import ACMEProblem, malformed, unauthorized

JOSE_JSON = "application/jose+json"
MAX_JWS_BYTES = 64 * 1024
SUPPORTED_ALGORITHMS = SIGNATURE_ALGORITHMS
EAB_ALGORITHM = "HS256"
_MEMBERS = frozenset({"protected", "payload", "signature"})


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ACMEProblem("malformed", f"duplicate JSON member {key!r}")
        out[key] = value
    return out


def loads(data: bytes | str, what: str) -> Any:
    """Strict JSON: no duplicate members, bounded nesting; malformed otherwise."""
    try:
        value = json.loads(data, object_pairs_hook=_reject_duplicates)
    except (ValueError, UnicodeDecodeError):
        raise malformed(f"{what} is not valid JSON") from None
    except RecursionError:
        raise malformed(f"{what} is nested too deeply") from None
    if too_deep(value, text=data):
        raise malformed(f"{what} is nested too deeply (more than {MAX_JSON_DEPTH} levels)")
    return value


def _decode(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise malformed(f"{what} must be a base64url string")
    try:
        return b64url_decode(text, what=what)
    except BadRequest as exc:
        raise malformed(exc.detail) from None


def check_algorithm(alg: Any) -> str:
    """Refuse ``none``, HMAC and anything unknown before a key is even looked at."""
    if not isinstance(alg, str) or not alg:
        raise malformed("the protected header has no alg")
    if alg.lower() == "none" or alg.upper().startswith("HS") or alg not in SUPPORTED_ALGORITHMS:
        raise ACMEProblem(
            "badSignatureAlgorithm",
            f"the JWS algorithm {alg[:32]!r} is not accepted",
            algorithms=SUPPORTED_ALGORITHMS,
        )
    return alg


@attrs.frozen
class Flattened:
    """One flattened JWS, decoded but not verified."""

    protected: Mapping[str, Any]
    encoded_protected: str
    encoded_payload: str
    signature: bytes

    @property
    def signing_input(self) -> bytes:
        return f"{self.encoded_protected}.{self.encoded_payload}".encode("ascii")

    def payload_bytes(self) -> bytes:
        return _decode(self.encoded_payload, "the JWS payload") if self.encoded_payload else b""


def parse_flattened(data: Any, what: str = "the JWS") -> Flattened:
    if not isinstance(data, dict):
        raise malformed(f"{what} must be a JSON object (flattened JWS serialization)")
    if "signatures" in data:
        raise malformed(f"{what} must have exactly one signature (flattened serialization)")
    if "header" in data:
        raise malformed(f"{what} must not have an unprotected header")
    missing = sorted(_MEMBERS - data.keys())
    if missing:
        raise malformed(f"{what} lacks {', '.join(missing)}")
    extra = sorted(data.keys() - _MEMBERS)
    if extra:
        raise malformed(f"{what} has unexpected members {', '.join(extra)[:100]}")
    encoded_protected = data["protected"]
    encoded_payload = data["payload"]
    protected_raw = _decode(encoded_protected, f"{what}'s protected header")
    if not isinstance(encoded_payload, str):
        raise malformed(f"{what}'s payload must be a base64url string")
    if encoded_payload:
        _decode(encoded_payload, f"{what}'s payload")
    signature = _decode(data["signature"], f"{what}'s signature")
    protected = loads(protected_raw, f"{what}'s protected header")
    if not isinstance(protected, dict):
        raise malformed(f"{what}'s protected header must be a JSON object")
    if "crit" in protected:
        raise malformed(f"{what} has critical header parameters this server does not understand")
    if protected.get("b64") is False:
        raise malformed(f"{what} must not use an unencoded payload")
    return Flattened(protected, encoded_protected, encoded_payload, signature)


@attrs.frozen
class SignedRequest:
    """An ACME request body: a flattened JWS with the members RFC 8555 requires."""

    jws: Flattened
    alg: str
    nonce: str
    url: str
    kid: str | None
    jwk: Mapping[str, Any] | None

    @property
    def post_as_get(self) -> bool:
        """An empty payload: RFC 8555 6.3 POST-as-GET."""
        return self.jws.encoded_payload == ""

    def payload(self) -> Any:
        """The decoded JSON payload, or None for POST-as-GET."""
        if self.post_as_get:
            return None
        return loads(self.jws.payload_bytes(), "the JWS payload")

    def payload_object(self) -> dict[str, Any]:
        """The payload, which this resource requires to be a JSON object."""
        value = self.payload()
        if not isinstance(value, dict):
            raise malformed("the JWS payload must be a JSON object")
        return value


def parse_request(body: bytes, content_type: str | None) -> SignedRequest:
    """Check the shape of an ACME POST body; nothing is trusted yet."""
    mimetype = (content_type or "").split(";")[0].strip().lower()
    if mimetype != JOSE_JSON:
        raise ACMEProblem("malformed", f"the request must be sent as {JOSE_JSON}", status=415)
    if len(body) > MAX_JWS_BYTES:
        raise ACMEProblem("malformed", f"the request exceeds {MAX_JWS_BYTES} bytes", status=413)
    jws = parse_flattened(loads(body, "the request body"))
    header = jws.protected
    alg = check_algorithm(header.get("alg"))
    nonce = header.get("nonce")
    if not isinstance(nonce, str) or not nonce:
        raise ACMEProblem("badNonce", "the protected header has no nonce")
    url = header.get("url")
    if not isinstance(url, str) or not url:
        raise malformed("the protected header has no url")
    has_jwk, has_kid = "jwk" in header, "kid" in header
    if has_jwk == has_kid:
        raise malformed("the protected header must have exactly one of jwk and kid")
    kid = header.get("kid")
    if has_kid and (not isinstance(kid, str) or not kid):
        raise malformed("kid must be the account URL")
    jwk = header.get("jwk")
    if has_jwk and not isinstance(jwk, dict):
        raise malformed("jwk must be a JSON object")
    return SignedRequest(jws=jws, alg=alg, nonce=nonce, url=url, kid=kid, jwk=jwk)


def check_url(request: SignedRequest, request_url: str) -> None:
    """RFC 8555 6.4: the signed ``url`` must be the URL the request was sent to."""
    if request.url != request_url:
        raise unauthorized(f"the JWS url {request.url[:200]!r} is not this resource")


#: JWKs remembered by :func:`key_from_jwk` (an account signs every request with the same key).
KEY_CACHE_SIZE = 1024
_KEY_CACHE_MAX_CHARS = 4096  # larger JWKs are parsed every time, not remembered


def key_from_jwk(jwk: Any) -> tuple[PublicKey, dict[str, str], str]:
    """A public key from a JWK, its canonical JWK and its RFC 7638 thumbprint.

    The result depends on the JWK alone, so small all-string JWKs are remembered:
    parsing a key and hashing its thumbprint on every request of an account is
    repeated work. Refusals are never remembered.
    """
    if isinstance(jwk, dict) and len(jwk) <= 16:
        items = tuple(sorted(jwk.items()))
        if (
            all(isinstance(k, str) and isinstance(v, str) for k, v in items)
            and sum(len(k) + len(v) for k, v in items) <= _KEY_CACHE_MAX_CHARS
        ):
            key, canonical, thumbprint = _cached_key(items)
            return key, dict(canonical), thumbprint
    return _parse_key(jwk)


@functools.lru_cache(maxsize=KEY_CACHE_SIZE)
def _cached_key(
    items: tuple[tuple[str, str], ...],
) -> tuple[PublicKey, tuple[tuple[str, str], ...], str]:
    key, canonical, thumbprint = _parse_key(dict(items))
    return key, tuple(canonical.items()), thumbprint


def _parse_key(jwk: Any) -> tuple[PublicKey, dict[str, str], str]:
    try:
        key = public_key_from_jwk(jwk)
    except BadRequest as exc:
        raise ACMEProblem("badPublicKey", exc.detail) from None
    if not allowed_algorithms(key):
        raise ACMEProblem("badPublicKey", "this key type cannot sign ACME requests")
    canonical = jwk_from_public_key(key)
    return key, canonical, jwk_thumbprint(canonical)


def verify_with(jws: Flattened, alg: str, key: PublicKey) -> None:
    """The signature, with the algorithm pinned to the key's type."""
    allowed = allowed_algorithms(key)
    if alg not in allowed:
        raise ACMEProblem(
            "badSignatureAlgorithm",
            f"algorithm {alg!r} does not fit this key",
            algorithms=tuple(sorted(allowed)),
        )
    try:
        verify_signature(alg, key, jws.signing_input, jws.signature)
    except Unauthorized:
        raise malformed("the JWS signature does not verify") from None


def verify(request: SignedRequest, key: PublicKey) -> None:
    verify_with(request.jws, request.alg, key)


# --- external account binding (RFC 8555 7.3.4) ---------------------------------------


def verify_external_binding(
    binding: Any, *, account_key: PublicKey, url: str, keys: Mapping[str, bytes]
) -> str:
    """Check an ``externalAccountBinding`` and return its key id.

    The inner JWS is MACed with HS256 under the provisioner's key for ``kid``,
    has the newAccount ``url``, no nonce, and signs the account's own JWK.
    """
    jws = parse_flattened(binding, "externalAccountBinding")
    header = jws.protected
    if header.get("alg") != EAB_ALGORITHM:
        raise ACMEProblem(
            "badSignatureAlgorithm",
            "externalAccountBinding must use HS256",
            algorithms=(EAB_ALGORITHM,),
        )
    if "nonce" in header:
        raise malformed("externalAccountBinding must not carry a nonce")
    if header.get("url") != url:
        raise unauthorized("externalAccountBinding url is not the newAccount URL")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise malformed("externalAccountBinding has no kid")
    secret = keys.get(kid)
    if secret is None:
        raise unauthorized("externalAccountBinding names an unknown key id")
    expected = hmac.new(secret, jws.signing_input, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, jws.signature):
        raise unauthorized("externalAccountBinding MAC does not verify")
    bound = loads(jws.payload_bytes(), "externalAccountBinding payload")
    _, _, thumbprint = key_from_jwk(bound)
    if thumbprint != jwk_thumbprint(jwk_from_public_key(account_key)):
        raise unauthorized("externalAccountBinding binds a different account key")
    return kid


# --- key change (RFC 8555 7.3.5) ---------------------------------------------------------


@attrs.frozen
class KeyChange:
    """A verified inner keyChange JWS: the new key proved it signs for this account."""

    account_url: str
    old_jwk: Mapping[str, Any]
    new_key: PublicKey
    new_jwk: Mapping[str, str]
    new_thumbprint: str


def parse_key_change(outer: SignedRequest) -> KeyChange:
    inner = parse_flattened(outer.payload(), "the inner keyChange JWS")
    header = inner.protected
    alg = check_algorithm(header.get("alg"))
    if "kid" in header or not isinstance(header.get("jwk"), dict):
        raise malformed("the inner keyChange JWS must carry the new key as jwk (and no kid)")
    if header.get("url") != outer.url:
        raise malformed("the inner keyChange JWS must have the outer JWS's url")
    key, canonical, thumbprint = key_from_jwk(header["jwk"])
    verify_with(inner, alg, key)
    payload = loads(inner.payload_bytes(), "the inner keyChange payload")
    if not isinstance(payload, dict):
        raise malformed("the inner keyChange payload must be a JSON object")
    account, old_key = payload.get("account"), payload.get("oldKey")
    if not isinstance(account, str) or not isinstance(old_key, dict):
        raise malformed("the keyChange payload needs account (URL) and oldKey (JWK)")
    return KeyChange(account, old_key, key, canonical, thumbprint)


# --- signing (clients and tests) ----------------------------------------------------------


def sign_flattened(
    key: PrivateKey,
    payload: Any,
    header: Mapping[str, Any],
    *,
    alg: str | None = None,
) -> dict[str, str]:
    """A flattened JWS over *payload* (None: the empty POST-as-GET payload)."""
    alg = alg or default_algorithm(key)
    protected = b64url_encode(json.dumps({"alg": alg, **header}).encode())
    encoded = "" if payload is None else b64url_encode(json.dumps(payload).encode())
    signature = create_signature(alg, key, f"{protected}.{encoded}".encode("ascii"))
    return {"protected": protected, "payload": encoded, "signature": b64url_encode(signature)}


def sign_request(
    key: PrivateKey,
    url: str,
    payload: Any,
    *,
    nonce: str,
    kid: str | None = None,
    alg: str | None = None,
) -> dict[str, str]:
    """An ACME request: with *kid* for an account, else with the key's own jwk."""
    header: dict[str, Any] = {"nonce": nonce, "url": url}
    if kid is not None:
        header["kid"] = kid
    else:
        header["jwk"] = jwk_from_public_key(key.public_key())
    return sign_flattened(key, payload, header, alg=alg)
