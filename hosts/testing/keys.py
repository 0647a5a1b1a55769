"""Keys, CSRs and tokens for a plugin's tests.

- :func:`new_key`: a fresh private key of a type devid accepts;
- :func:`csr_pem` / :func:`new_csr`: a certificate request for some names, as PEM;
- :func:`jws_token`: a compact JWS over any claims, signed with a private key (the
  algorithm follows the key, as devid pins it);
- :func:`hs256_token`: the same with an HMAC-SHA256 shared secret (for provisioner
  types of your own that take HS256: devid's JWK provisioner never does);
- :func:`jwk_token`: a one-time sign token as devid's JWK provisioner (and any type
  reading the same claims) expects it (:func:`plugins.api.mint_token` with a fresh
  jti and the system clock by default);
- :func:`tamper`: a credential with one character changed in its last part;
- :func:`self_signed_certificate`: the throw-away certificate a SCEP client signs its
  first request with;
- :class:`StaticRemoteKeys`: a stand-in for the host's :class:`plugins.api.RemoteKeys`
  handing out given public keys by ``kid`` and given certificates by URL, for testing a
  provisioner type whose credentials a third party signs, without a provider.

None of it needs a CA; the tokens of a CA's own ``admin`` provisioner come from
:meth:`hosts.testing.ca.LocalCA.mint_token`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from engine.jose import PublicKey, allowed_algorithms, sign_compact
from plugins.api import (
    SAN,
    KeyType,
    OpenIDProvider,
    ServiceUnavailable,
    Unauthorized,
    mint_token,
)

#: The keys :func:`new_key` makes and the token helpers sign with.
PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey


def new_key(kind: str | KeyType = KeyType.P256) -> PrivateKey:
    """A new private key: ``"P-256"`` (the default), ``"P-384"``, ``"Ed25519"`` or
    ``"RSA-2048"``/``"RSA-3072"``/``"RSA-4096"`` (a :class:`plugins.api.KeyType` or its
    name, case-insensitive)."""
    key_type = kind if isinstance(kind, KeyType) else KeyType.parse(kind)
    if key_type is KeyType.P256:
        return ec.generate_private_key(ec.SECP256R1())
    if key_type is KeyType.P384:
        return ec.generate_private_key(ec.SECP384R1())
    if key_type is KeyType.ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    bits = key_type.rsa_bits
    assert bits is not None
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _names(names: str | Sequence[str]) -> list[str]:
    return [names] if isinstance(names, str) else list(names)


def csr_pem(
    names: str | Sequence[str],
    key: PrivateKey | None = None,
    *,
    common_name: str | None = "",
) -> str:
    """A PEM certificate request for *names* (its SANs: DNS names, IP addresses, e-mail
    addresses or URIs, written as in a token's ``sans``), signed by *key* (default: a new
    P-256 key). The common name is the first name unless *common_name* says otherwise
    (None: no common name)."""
    listed = _names(names)
    key = key if key is not None else new_key()
    cn = (listed[0] if listed else None) if common_name == "" else common_name
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
    )
    if listed:
        general = [SAN.parse(name).to_general_name() for name in listed]
        builder = builder.add_extension(x509.SubjectAlternativeName(general), critical=False)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(Encoding.PEM).decode()


def new_csr(
    names: str | Sequence[str], kind: str | KeyType = KeyType.P256
) -> tuple[PrivateKey, str]:
    """A new key of *kind* and a PEM CSR for *names* signed by it."""
    key = new_key(kind)
    return key, csr_pem(names, key)


def csr_der(pem: str) -> bytes:
    """The DER of a PEM CSR (what a ``csr_sha256`` claim hashes)."""
    return x509.load_pem_x509_csr(pem.encode()).public_bytes(Encoding.DER)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _segment(value: Mapping[str, Any]) -> str:
    return _b64url(json.dumps(dict(value), separators=(",", ":")).encode())


def jws_token(
    claims: Mapping[str, Any],
    key: PrivateKey,
    *,
    headers: Mapping[str, Any] | None = None,
) -> str:
    """A compact JWS over *claims*, signed with *key* (ES256 for P-256, ES384 for
    P-384, EdDSA for Ed25519, RS256 for RSA). *headers* are added to the protected
    header."""
    return sign_compact(dict(claims), key, headers=dict(headers or {}))


def hs256_token(
    claims: Mapping[str, Any],
    secret: bytes,
    *,
    headers: Mapping[str, Any] | None = None,
) -> str:
    """A compact JWS over *claims* with ``alg`` HS256 and an HMAC-SHA256 of *secret*."""
    header = {"alg": "HS256", "typ": "JWT", **(headers or {})}
    signing_input = f"{_segment(header)}.{_segment(claims)}"
    mac = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(mac)}"


def jwk_token(
    key: PrivateKey,
    *,
    provisioner: str,
    subject: str,
    audience: str,
    sans: Sequence[str] = (),
    now: datetime | None = None,
    lifetime: timedelta = timedelta(minutes=5),
    jti: str | None = None,
    csr_der: bytes | None = None,
) -> str:
    """A one-time sign token for the provisioner *provisioner* whose key is *key*:
    iss, sub, aud, sans (default ``[subject]``), iat/nbf at *now* (default: the
    system clock), exp *lifetime* later, a random jti, and a ``csr_sha256`` binding
    when *csr_der* is given."""
    return mint_token(
        key,
        provisioner=provisioner,
        subject=subject,
        audience=audience,
        now=now if now is not None else datetime.now(UTC),
        jti=jti if jti is not None else uuid.uuid4().hex,
        sans=sans,
        lifetime=lifetime,
        csr_der=csr_der,
    )


def tamper(credential: str) -> str:
    """*credential* with one character in the middle of its last ``.``-separated part
    changed (the signature of a JWS), keeping it in the base64url alphabet."""
    start = credential.rfind(".") + 1
    part = len(credential) - start
    if part == 0:
        return credential + "x"
    at = start + part // 2
    replacement = "A" if credential[at] != "A" else "B"
    return credential[:at] + replacement + credential[at + 1 :]


def self_signed_certificate(key: PrivateKey, common_name: str) -> x509.Certificate:
    """The throw-away certificate a SCEP client signs its first request with: CN=*common_name*,
    self-signed, valid from five minutes ago for a day."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256())
    )


class StaticRemoteKeys:
    """A :class:`plugins.api.RemoteKeys` that fetches nothing: the public keys in ``keys``
    by ``kid``, answered as the host answers (``Unauthorized`` for a key it does not hold
    or an algorithm that does not fit; ``ServiceUnavailable`` while ``down``). Every
    ``key()`` call is recorded in ``asked``.

    ``provider(issuer)`` answers a discovery document naming *jwks_uri* (default: the
    issuer's ``/jwks``); with ``discovery=False`` it fails the test instead, for a type
    that must not read one.

    ``certificate(url)`` answers ``certificates[url]`` (DER; PEM is converted to DER, as
    the host does), ``ServiceUnavailable`` for a URL not in it or while ``down``; every
    URL asked for is recorded in ``asked_certificates``.
    """

    def __init__(self, *, discovery: bool = True) -> None:
        self.keys: dict[str, PublicKey] = {}
        self.down = False
        self.discovery = discovery
        self.asked: list[tuple[str, str | None, str]] = []
        self.certificates: dict[str, bytes] = {}
        self.asked_certificates: list[str] = []

    def provider(self, issuer: str) -> OpenIDProvider:
        if not self.discovery:
            raise AssertionError("this provisioner type reads no discovery document")
        if self.down:
            raise ServiceUnavailable(f"the OpenID provider {issuer} cannot be reached")
        return OpenIDProvider(issuer=issuer, jwks_uri=issuer + "/jwks")

    def key(
        self,
        jwks_uri: str,
        kid: str | None,
        alg: str,
        *,
        refresh_interval: timedelta = timedelta(minutes=1),
    ) -> PublicKey:
        self.asked.append((jwks_uri, kid, alg))
        if self.down:
            raise ServiceUnavailable(f"the key set at {jwks_uri} cannot be fetched")
        key = self.keys.get(kid or "")
        if key is None:
            raise Unauthorized(f"token key {kid!r} is not among the signing keys of {jwks_uri}")
        if alg not in allowed_algorithms(key):
            raise Unauthorized(f"algorithm {alg!r} is not allowed for this key")
        return key

    def certificate(self, url: str) -> bytes:
        self.asked_certificates.append(url)
        if self.down:
            raise ServiceUnavailable(f"the certificate at {url} cannot be fetched: down")
        found = self.certificates.get(url)
        if found is None:
            raise ServiceUnavailable(f"the certificate at {url} cannot be fetched: HTTP 404")
        if found.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(found).public_bytes(Encoding.DER)
        return found
