"""JWS and JWK, just as much as devid needs, with algorithms pinned to keys.

devid verifies tokens inside the sans-IO engine, where a JOSE library that
reads the wall clock during ``decode`` cannot be used, and where the rule that
matters most (the algorithm follows from the key, never from the token) is
easiest to enforce in one small function. Signatures are checked with
``cryptography``; nothing here implements a primitive.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

import attrs
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from .errors import BadRequest, Unauthorized

PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey
PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey

MAX_TOKEN_BYTES = 16 * 1024
# How deep JSON from a peer may nest (objects and arrays). Tokens, JWKs and ACME bodies
# need a handful of levels; anything deeper is refused before any code walks it.
MAX_JSON_DEPTH = 32
# The largest RSA JWK modulus read (twice RSA-4096, the largest key type devid names) and
# the largest public exponent (Go's crypto/rsa has the same): they bound the work one
# signature check can cost.
MAX_RSA_JWK_BITS = 8192
MAX_RSA_EXPONENT = 2**31 - 1

_CURVES: dict[str, ec.EllipticCurve] = {"P-256": ec.SECP256R1(), "P-384": ec.SECP384R1()}
_CURVE_NAMES = {"secp256r1": "P-256", "secp384r1": "P-384"}
# Per JWK curve: the one JWS algorithm, its ECDSA parameters (made once), the size of r and s.
_EC_ALG = {
    "P-256": ("ES256", ec.ECDSA(hashes.SHA256()), 32),
    "P-384": ("ES384", ec.ECDSA(hashes.SHA384()), 48),
}
_RSA_ALGS: dict[str, tuple[hashes.HashAlgorithm, bool]] = {
    "RS256": (hashes.SHA256(), False),
    "RS384": (hashes.SHA384(), False),
    "RS512": (hashes.SHA512(), False),
    "PS256": (hashes.SHA256(), True),
    "PS384": (hashes.SHA384(), True),
    "PS512": (hashes.SHA512(), True),
}
#: Every JWS algorithm :func:`verify_signature` checks (``none`` and HMAC never are).
SIGNATURE_ALGORITHMS: tuple[str, ...] = (
    *(alg for alg, _, _ in _EC_ALG.values()),
    "EdDSA",
    *_RSA_ALGS,
)


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str | bytes, *, what: str = "value") -> bytes:
    """Decode unpadded base64url strictly; anything else is a client error."""
    if isinstance(text, str):
        try:
            raw = text.encode("ascii")
        except UnicodeEncodeError:
            raise BadRequest(f"{what} is not base64url") from None
    else:
        raw = text
    if b"=" in raw or b"+" in raw or b"/" in raw:
        raise BadRequest(f"{what} is not unpadded base64url")
    try:
        return base64.b64decode(raw + b"=" * (-len(raw) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"{what} is not base64url") from None


def too_deep(value: Any, limit: int = MAX_JSON_DEPTH, text: bytes | str | None = None) -> bool:
    """Whether decoded JSON nests objects and arrays more than *limit* levels deep
    (walked with a list, not recursion). With the JSON *text* it was decoded from, a
    text with at most *limit* brackets opening in all is not walked at all."""
    if isinstance(text, bytes) and text.count(b"[") + text.count(b"{") <= limit:
        return False
    if isinstance(text, str) and text.count("[") + text.count("{") <= limit:
        return False
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def json_value(data: bytes | str, what: str) -> Any:
    """Parse JSON from a peer: BadRequest if it is not JSON or nests too deeply."""
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest(f"{what} is not JSON") from None
    except RecursionError:
        raise BadRequest(f"{what} is nested too deeply") from None
    if too_deep(value, text=data):
        raise BadRequest(f"{what} is nested too deeply (more than {MAX_JSON_DEPTH} levels)")
    return value


def allowed_algorithms(key: PublicKey) -> frozenset[str]:
    """The JWS algorithms a key may be used with; the token has no say in this."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        name = _CURVE_NAMES.get(key.curve.name)
        if name is None:
            return frozenset()
        return frozenset({_EC_ALG[name][0]})
    if isinstance(key, ed25519.Ed25519PublicKey):
        return frozenset({"EdDSA"})
    if isinstance(key, rsa.RSAPublicKey):
        return frozenset(_RSA_ALGS) if key.key_size >= 2048 else frozenset()
    return frozenset()


def default_algorithm(key: PrivateKey | PublicKey) -> str:
    public = key.public_key() if not isinstance(key, PublicKey) else key
    if isinstance(public, rsa.RSAPublicKey):
        return "RS256"
    algs = allowed_algorithms(public)
    if not algs:
        raise BadRequest("key cannot sign JWS")
    return next(iter(algs))


# --- JWK ---------------------------------------------------------------------


def _member(jwk: dict[str, Any], name: str) -> str:
    """A JWK member that must be a string (every member devid reads is one)."""
    value = jwk.get(name)
    if not isinstance(value, str):
        found = "missing" if value is None else f"a JSON {_json_type(value)}"
        raise BadRequest(f"JWK member {name} must be a string, not {found}")
    return value


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "string" if isinstance(value, str) else "null"


def _int_from_b64(jwk: dict[str, Any], name: str, max_bits: int) -> int:
    raw = b64url_decode(_member(jwk, name), what=f"JWK member {name}")
    value = int.from_bytes(raw, "big")
    if value.bit_length() > max_bits:
        raise BadRequest(f"JWK member {name} is larger than {max_bits} bits")
    return value


def public_key_from_jwk(jwk: Any) -> PublicKey:
    """Parse a public JWK (EC P-256/P-384, OKP Ed25519, RSA of 2048 to 8192 bits).

    Every member read must be a string; anything malformed is a BadRequest.
    """
    if not isinstance(jwk, dict):
        raise BadRequest("JWK must be a JSON object")
    if "d" in jwk or "p" in jwk:
        raise BadRequest("JWK contains private key material")
    kty = jwk.get("kty")
    if not isinstance(kty, str):
        found = "missing" if kty is None else f"a JSON {_json_type(kty)}"
        raise BadRequest(f"unsupported JWK key type: kty must be a string, not {found}")
    try:
        if kty == "EC":
            crv = _member(jwk, "crv")
            curve = _CURVES.get(crv)
            if curve is None:
                raise BadRequest(f"unsupported JWK curve {crv[:32]!r}")
            size = _EC_ALG[crv][2] * 8
            x = _int_from_b64(jwk, "x", size)
            y = _int_from_b64(jwk, "y", size)
            return ec.EllipticCurvePublicNumbers(x, y, curve).public_key()
        if kty == "OKP":
            crv = _member(jwk, "crv")
            if crv != "Ed25519":
                raise BadRequest(f"unsupported OKP curve {crv[:32]!r}")
            x_raw = b64url_decode(_member(jwk, "x"), what="JWK member x")
            return ed25519.Ed25519PublicKey.from_public_bytes(x_raw)
        if kty == "RSA":
            n = _int_from_b64(jwk, "n", MAX_RSA_JWK_BITS)
            e = _int_from_b64(jwk, "e", MAX_RSA_EXPONENT.bit_length())
            if n.bit_length() < 2048:
                raise BadRequest("RSA JWK is smaller than 2048 bits")
            return rsa.RSAPublicNumbers(e, n).public_key()
    except (ValueError, TypeError, OverflowError, UnsupportedAlgorithm) as exc:
        raise BadRequest(f"invalid JWK: {exc}") from None
    raise BadRequest(f"unsupported JWK key type {kty[:32]!r}")


def _b64_int(value: int, length: int | None = None) -> str:
    size = length if length is not None else max(1, (value.bit_length() + 7) // 8)
    return b64url_encode(value.to_bytes(size, "big"))


def jwk_from_public_key(key: PublicKey) -> dict[str, str]:
    """The public JWK of a key, with only the required members (RFC 7638 order-free)."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        crv = _CURVE_NAMES.get(key.curve.name)
        if crv is None:
            raise BadRequest(f"unsupported curve {key.curve.name}")
        size = _EC_ALG[crv][2]
        nums = key.public_numbers()
        return {"kty": "EC", "crv": crv, "x": _b64_int(nums.x, size), "y": _b64_int(nums.y, size)}
    if isinstance(key, ed25519.Ed25519PublicKey):
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(raw)}
    rsa_nums = key.public_numbers()
    return {"kty": "RSA", "n": _b64_int(rsa_nums.n), "e": _b64_int(rsa_nums.e)}


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint, base64url."""
    if not isinstance(jwk, dict):
        raise BadRequest("JWK must be a JSON object")
    kty = _member(jwk, "kty")
    members = {"EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x"), "RSA": ("e", "kty", "n")}
    if kty not in members:
        raise BadRequest(f"unsupported JWK key type {kty!r}")
    missing = [name for name in members[kty] if not isinstance(jwk.get(name), str)]
    if missing:
        raise BadRequest(f"JWK lacks required member(s) {', '.join(missing)}")
    canonical = {name: jwk[name] for name in members[kty]}
    data = json.dumps(canonical, separators=(",", ":"), sort_keys=True).encode()
    return b64url_encode(hashlib.sha256(data).digest())


# --- signatures --------------------------------------------------------------


def verify_signature(alg: str, key: PublicKey, signing_input: bytes, signature: bytes) -> None:
    """Verify a JWS signature, or raise Unauthorized.

    The algorithm must be one the key allows; ``none`` and HMAC never are.
    """
    if isinstance(key, ec.EllipticCurvePublicKey):
        found = _EC_ALG.get(_CURVE_NAMES.get(key.curve.name, ""))
        if found is None or alg != found[0]:
            raise Unauthorized(f"algorithm {alg!r} is not allowed for this key")
        _, ecdsa, size = found
        if len(signature) != 2 * size:
            raise Unauthorized("ECDSA signature has the wrong length")
        r = int.from_bytes(signature[:size], "big")
        s = int.from_bytes(signature[size:], "big")
        try:
            key.verify(encode_dss_signature(r, s), signing_input, ecdsa)
        except InvalidSignature:
            raise Unauthorized("signature does not verify") from None
        return
    if alg not in allowed_algorithms(key):
        raise Unauthorized(f"algorithm {alg!r} is not allowed for this key")
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, signing_input)
        else:
            hash_alg, pss = _RSA_ALGS[alg]
            pad: padding.AsymmetricPadding = (
                padding.PSS(padding.MGF1(hash_alg), hash_alg.digest_size)
                if pss
                else padding.PKCS1v15()
            )
            key.verify(signature, signing_input, pad, hash_alg)
    except InvalidSignature:
        raise Unauthorized("signature does not verify") from None


def create_signature(alg: str, key: PrivateKey, signing_input: bytes) -> bytes:
    """Sign for a JWS; the inverse of :func:`verify_signature`."""
    if alg not in allowed_algorithms(key.public_key()):
        raise BadRequest(f"algorithm {alg!r} does not fit this key")
    if isinstance(key, ec.EllipticCurvePrivateKey):
        _, ecdsa, size = _EC_ALG[_CURVE_NAMES[key.curve.name]]
        r, s = decode_dss_signature(key.sign(signing_input, ecdsa))
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(signing_input)
    hash_alg, pss = _RSA_ALGS[alg]
    pad: padding.AsymmetricPadding = (
        padding.PSS(padding.MGF1(hash_alg), hash_alg.digest_size) if pss else padding.PKCS1v15()
    )
    return key.sign(signing_input, pad, hash_alg)


# --- compact JWS ---------------------------------------------------------------


@attrs.frozen
class CompactJWS:
    """A parsed, not yet verified, compact JWS."""

    header: dict[str, Any]
    payload: bytes
    signing_input: bytes
    signature: bytes

    @property
    def alg(self) -> str:
        return str(self.header["alg"])

    # The payload decoded once (the host reads ``iss`` before the provisioner verifies).
    _claims: dict[str, Any] | None = attrs.field(default=None, init=False, eq=False, repr=False)

    def claims(self) -> dict[str, Any]:
        """The payload as a JSON object (a fresh copy per call; decoded once)."""
        if self._claims is None:
            value = json_value(self.payload, "token payload")
            if not isinstance(value, dict):
                raise BadRequest("token payload is not a JSON object")
            object.__setattr__(self, "_claims", value)
            return dict(value)
        return dict(self._claims)

    def verify(self, key: PublicKey) -> dict[str, Any]:
        """Check the signature with *key* and return the claims."""
        verify_signature(self.alg, key, self.signing_input, self.signature)
        return self.claims()


def parse_compact(token: str, *, max_bytes: int = MAX_TOKEN_BYTES) -> CompactJWS:
    """Split and decode a compact JWS without trusting any of it yet."""
    if not isinstance(token, str) or not token:
        raise BadRequest("token is missing")
    if len(token) > max_bytes:
        raise BadRequest("token is too large")
    parts = token.split(".")
    if len(parts) != 3:
        raise BadRequest("token is not a compact JWS")
    header_raw = b64url_decode(parts[0], what="token header")
    header = json_value(header_raw, "token header")
    if not isinstance(header, dict):
        raise BadRequest("token header is not a JSON object")
    alg = header.get("alg")
    if not isinstance(alg, str) or not alg:
        raise BadRequest("token header has no alg")
    if alg.lower() == "none" or alg.upper().startswith("HS"):
        raise Unauthorized(f"algorithm {alg!r} is not allowed")
    if "crit" in header:
        raise BadRequest("token header has critical extensions devid does not understand")
    if header.get("b64") is False:
        raise BadRequest("unencoded payloads are not supported")
    return CompactJWS(
        header=header,
        payload=b64url_decode(parts[1], what="token payload"),
        signing_input=f"{parts[0]}.{parts[1]}".encode("ascii"),
        signature=b64url_decode(parts[2], what="token signature"),
    )


def sign_compact(
    claims: dict[str, Any],
    key: PrivateKey,
    *,
    alg: str | None = None,
    headers: dict[str, Any] | None = None,
) -> str:
    """Produce a compact JWS over *claims* (used to mint tokens and in tests)."""
    alg = alg or default_algorithm(key)
    header = {"alg": alg, "typ": "JWT", **(headers or {})}
    h = b64url_encode(json.dumps(header, separators=(",", ":")).encode())
    p = b64url_encode(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{h}.{p}".encode("ascii")
    return f"{h}.{p}.{b64url_encode(create_signature(alg, key, signing_input))}"
