"""The certificate side of an X5C token: the ``x5c`` header, its path, the leaf's profile.

RFC 7515 section 4.1.6: ``x5c`` is a JSON array of standard base64 (not
base64url) DER certificates, the one holding the signing key first. Nothing
in it is trusted until :func:`verify_x5c_path` has built a path to a
configured root and checked every certificate on it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import attrs
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from engine.chain import verify_chain
from engine.errors import BadRequest, ConfigurationError, Unauthorized
from engine.jose import PublicKey

# A leaf and at most four intermediates; engine.chain allows six with the root.
MAX_X5C_CERTIFICATES = 5
# Base64 characters of one x5c entry (about 6 KiB of DER): enough for an RSA-4096 chain.
MAX_X5C_ENTRY_CHARS = 8192

# Critical extensions a verifier may act on (what Go's crypto/x509 handles); a
# certificate with any other critical extension is refused, as RFC 5280 4.2 asks.
_UNDERSTOOD_CRITICAL = frozenset(
    {
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        ExtensionOID.NAME_CONSTRAINTS,
        ExtensionOID.CERTIFICATE_POLICIES,
        ExtensionOID.POLICY_CONSTRAINTS,
        ExtensionOID.POLICY_MAPPINGS,
        ExtensionOID.INHIBIT_ANY_POLICY,
    }
)


# What cryptography raises for extensions it cannot read: bad DER, an extension twice,
# a general name of a type it does not know.
_MALFORMED_EXTENSIONS = (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType)


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, lowercase hex."""
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


def parse_x5c(header: dict[str, Any]) -> list[x509.Certificate]:
    """The certificates of a JWS header's ``x5c``, leaf first; not yet trusted."""
    value = header.get("x5c")
    if value is None or value == []:
        raise Unauthorized("token has no x5c certificate chain")
    if not isinstance(value, list):
        raise BadRequest("token x5c header must be a list of base64 DER certificates")
    if len(value) > MAX_X5C_CERTIFICATES:
        raise BadRequest(f"token x5c header holds more than {MAX_X5C_CERTIFICATES} certificates")
    certificates: list[x509.Certificate] = []
    for index, entry in enumerate(value):
        if not isinstance(entry, str) or not entry:
            raise BadRequest(f"token x5c[{index}] is not a base64 string")
        if len(entry) > MAX_X5C_ENTRY_CHARS:
            raise BadRequest(f"token x5c[{index}] is too large")
        try:
            der = base64.b64decode(entry.encode("ascii"), validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError):
            raise BadRequest(f"token x5c[{index}] is not standard base64") from None
        certificates.append(_certificate(der, index))
    return certificates


def _certificate(der: bytes, index: int) -> x509.Certificate:
    """One x5c entry, its names and validity read once: cryptography reads them only when
    first used, so a malformed one would otherwise fail inside the path checks."""
    try:
        cert = x509.load_der_x509_certificate(der)
    except (ValueError, x509.InvalidVersion):
        # InvalidVersion: a version other than v1, v2 or v3 (such as "v4").
        raise BadRequest(f"token x5c[{index}] is not a DER certificate") from None
    try:
        _ = (cert.subject, cert.issuer, cert.not_valid_before_utc, cert.not_valid_after_utc)
    except (ValueError, TypeError) as exc:  # TypeError: a name attribute of a wrong type
        raise BadRequest(f"token x5c[{index}] is a malformed certificate: {exc}") from None
    return cert


def leaf_public_key(leaf: x509.Certificate) -> PublicKey:
    """The leaf's key, if it is one a JWS may be verified with (EC P-256/P-384, Ed25519, RSA)."""
    try:
        key = leaf.public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise Unauthorized("the x5c leaf certificate's key cannot be read") from None
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in ("secp256r1", "secp384r1"):
        return key
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    if isinstance(key, rsa.RSAPublicKey) and key.key_size >= 2048:
        return key
    raise Unauthorized("the x5c leaf certificate's key type cannot sign X5C tokens")


def _extension(cert: x509.Certificate, kind: type[Any], what: str) -> Any:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None
    except _MALFORMED_EXTENSIONS:
        raise Unauthorized(f"the {what} has malformed extensions") from None


def _check_profile(cert: x509.Certificate, what: str) -> None:
    """What every non-anchor certificate on the path must satisfy.

    (SHA-1 and MD5 signatures need no check here: cryptography does not verify them,
    so a path that relies on one never gets this far.)
    """
    try:
        extensions = list(cert.extensions)
    except _MALFORMED_EXTENSIONS:
        raise Unauthorized(f"the {what} has malformed extensions") from None
    for ext in extensions:
        if ext.critical and ext.oid not in _UNDERSTOOD_CRITICAL:
            raise Unauthorized(
                f"the {what} has a critical extension devid does not understand"
                f" ({ext.oid.dotted_string})"
            )


def check_leaf(leaf: x509.Certificate) -> None:
    """An end-entity certificate for client authentication with digital signatures."""
    what = "x5c leaf certificate"
    _check_profile(leaf, what)
    constraints = _extension(leaf, x509.BasicConstraints, what)
    if constraints is not None and constraints.ca:
        raise Unauthorized("the x5c leaf certificate is a CA certificate")
    usage = _extension(leaf, x509.KeyUsage, what)
    if usage is not None and not usage.digital_signature:
        raise Unauthorized("the x5c leaf certificate's key usage lacks digitalSignature")
    purposes = _extension(leaf, x509.ExtendedKeyUsage, what)
    if purposes is not None and ExtendedKeyUsageOID.CLIENT_AUTH not in purposes:
        raise Unauthorized("the x5c leaf certificate's extended key usage lacks clientAuth")


def check_intermediate(cert: x509.Certificate) -> None:
    """A CA between the leaf and the root must not restrict its subtree away from clientAuth."""
    what = "x5c intermediate certificate"
    _check_profile(cert, what)
    purposes = _extension(cert, x509.ExtendedKeyUsage, what)
    if purposes is not None and not (
        ExtendedKeyUsageOID.CLIENT_AUTH in purposes
        or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in purposes
    ):
        raise Unauthorized("an x5c intermediate certificate does not allow clientAuth")


@attrs.frozen
class VerifiedPath:
    """A verified x5c path: ``certificates`` runs from the leaf to the trusted root."""

    certificates: tuple[x509.Certificate, ...]
    leaf_key: PublicKey

    @property
    def leaf(self) -> x509.Certificate:
        return self.certificates[0]

    @property
    def root(self) -> x509.Certificate:
        return self.certificates[-1]

    @property
    def not_after(self) -> datetime:
        """When the first certificate on the path expires: nothing issued may outlive it."""
        return min(c.not_valid_after_utc for c in self.certificates)


def verify_x5c_path(
    certificates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    now: datetime,
) -> VerifiedPath:
    """Chain the leaf to one of *roots* at *now* and check the leaf's and CAs' profiles."""
    leaf, *rest = certificates
    key = leaf_public_key(leaf)
    path = verify_chain(leaf, rest, roots, now, what="x5c leaf certificate")
    if len(path) < 2:
        # The leaf is itself a configured root: roots are CAs, so it cannot be a client leaf.
        raise Unauthorized("the x5c leaf certificate is a trusted root, not a client certificate")
    check_leaf(leaf)
    for intermediate in path[1:-1]:
        check_intermediate(intermediate)
    return VerifiedPath(certificates=tuple(path), leaf_key=key)


def is_ca_certificate(cert: x509.Certificate) -> bool:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return cert.version is x509.Version.v1
    except _MALFORMED_EXTENSIONS:
        return False
    return constraints.ca


def check_roots(roots: Sequence[x509.Certificate], where: str) -> tuple[x509.Certificate, ...]:
    """Configured trust anchors: at least one, each a CA certificate, no duplicates."""
    unique: dict[str, x509.Certificate] = {}
    for root in roots:
        if not isinstance(root, x509.Certificate):
            raise ConfigurationError(f"{where}: roots must be X.509 certificates")
        if not is_ca_certificate(root):
            raise ConfigurationError(
                f"{where}: root {root.subject.rfc4514_string()!r} is not a CA certificate"
            )
        unique.setdefault(fingerprint(root), root)
    if not unique:
        raise ConfigurationError(f"{where}: at least one root certificate is required")
    return tuple(unique.values())
