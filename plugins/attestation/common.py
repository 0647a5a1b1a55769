"""What every attestation-statement format shares: reading ``x5c`` and the other
statement fields, building and checking certificate paths, COSE algorithm
identifiers, size limits, and the one rule every format keeps: whatever is
wrong with a statement becomes an ACME ``badAttestationStatement`` problem,
never another exception.

The formats (:mod:`.tpm`, :mod:`.apple`, :mod:`.step`) import it from here, not
from the package, which imports the formats to register them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from engine.acme.problems import ACMEProblem
from engine.chain import ChainError, verify_chain
from engine.errors import ProtocolError

from .base import AttestationContext, AttestationResult

log = logging.getLogger("devid.attestation")

PROBLEM = "badAttestationStatement"

#: Limits on what one statement may carry (the CBOR decoder's own limits come first).
MAX_CHAIN = 8
MAX_CERTIFICATE_BYTES = 16 * 1024
MAX_SIGNATURE_BYTES = 1024
MAX_TPM_STRUCTURE_BYTES = 2048
MAX_DETAIL = 300


def bad_statement(detail: str) -> ACMEProblem:
    """The one error every format raises."""
    return ACMEProblem(PROBLEM, detail)


def guarded(format_name: str, run: Callable[[], AttestationResult]) -> AttestationResult:
    """Run a format's checks; turn anything a hostile statement can cause into the problem.

    ACME problems pass through (other types become ``badAttestationStatement``),
    engine protocol errors (TPM parsing, chain errors) keep their message, and
    parser exceptions (``ValueError`` from DER or TPM parsing, ...) become a
    generic "malformed". An unexpected exception is logged with its traceback
    (it is a bug) and still answered as a bad statement, never a 500.
    """
    try:
        return run()
    except ACMEProblem as problem:
        if problem.problem == PROBLEM:
            raise
        raise bad_statement(problem.detail) from None
    except ProtocolError as exc:
        raise bad_statement(_clip(f"{format_name}: {exc.detail}")) from None
    except (
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        OverflowError,
        UnsupportedAlgorithm,
        InvalidSignature,
        x509.DuplicateExtension,
        x509.UnsupportedGeneralNameType,
    ) as exc:
        raise bad_statement(
            _clip(f"the {format_name} attestation statement is malformed: {exc}")
        ) from None
    except Exception:
        log.exception("unexpected error verifying a %s attestation statement", format_name)
        raise bad_statement(f"the {format_name} attestation statement cannot be verified") from None


def _clip(text: str) -> str:
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 3] + "..."


# --- statement fields ---------------------------------------------------------------


def statement_map(statement: object, format_name: str) -> Mapping[str, Any]:
    if not isinstance(statement, Mapping):
        raise bad_statement(f"the {format_name} attStmt must be a CBOR map")
    return statement


def field_bytes(statement: Mapping[str, Any], name: str, limit: int) -> bytes:
    if name not in statement:
        raise bad_statement(f"attStmt.{name} is missing")
    value = statement[name]
    if not isinstance(value, bytes):
        raise bad_statement(f"attStmt.{name} must be a byte string")
    if not value:
        raise bad_statement(f"attStmt.{name} is empty")
    if len(value) > limit:
        raise bad_statement(f"attStmt.{name} is larger than {limit} bytes")
    return value


def field_int(statement: Mapping[str, Any], name: str) -> int:
    if name not in statement:
        raise bad_statement(f"attStmt.{name} is missing")
    value = statement[name]
    if not isinstance(value, int) or isinstance(value, bool):
        raise bad_statement(f"attStmt.{name} must be an integer")
    return value


def parse_x5c(statement: Mapping[str, Any]) -> list[x509.Certificate]:
    """attStmt.x5c: a non-empty array of DER certificates, leaf first."""
    if "x5c" not in statement:
        raise bad_statement("attStmt.x5c is missing")
    x5c = statement["x5c"]
    if not isinstance(x5c, list):
        raise bad_statement("attStmt.x5c must be an array of certificates")
    if not x5c:
        raise bad_statement("attStmt.x5c is empty")
    if len(x5c) > MAX_CHAIN:
        raise bad_statement(f"attStmt.x5c holds more than {MAX_CHAIN} certificates")
    certificates = []
    for index, item in enumerate(x5c):
        if not isinstance(item, bytes):
            raise bad_statement(f"attStmt.x5c[{index}] must be a byte string")
        if len(item) > MAX_CERTIFICATE_BYTES:
            raise bad_statement(
                f"attStmt.x5c[{index}] is larger than {MAX_CERTIFICATE_BYTES} bytes"
            )
        try:
            certificates.append(x509.load_der_x509_certificate(item))
        except (ValueError, x509.InvalidVersion):  # InvalidVersion: not v1, v2 or v3
            raise bad_statement(f"attStmt.x5c[{index}] is not a DER X.509 certificate") from None
    return certificates


# --- certificates -------------------------------------------------------------------


def certificate_sha256(cert: x509.Certificate) -> str:
    """SHA-256 of the certificate's DER (hashed as parsed, without re-encoding it)."""
    return cert.fingerprint(hashes.SHA256()).hex()


def subject_text(cert: x509.Certificate) -> str:
    try:
        return cert.subject.rfc4514_string()
    except ValueError:
        return "(unprintable subject)"


def verify_path(
    x5c: Sequence[x509.Certificate], context: AttestationContext, what: str
) -> list[x509.Certificate]:
    """The path [x5c[0], ..., root] to one of ``context.roots`` at ``context.now``.

    x5c[1:] and ``context.intermediates`` may be used in any order. Every
    signature on the path below the trust anchor must not use SHA-1 (unless
    ``context.allow_sha1``) or MD5.
    """
    # A supplied certificate equal (same DER) to a configured one is taken as that one,
    # whose extensions are already parsed: the same certificates in the same order.
    configured = {cert: cert for cert in context.intermediates}
    supplied = [configured.get(cert, cert) for cert in x5c[1:]]
    try:
        path = verify_chain(
            x5c[0], [*supplied, *context.intermediates], context.roots, context.now, what=what
        )
    except ChainError as exc:
        raise bad_statement(exc.detail) from None
    for cert in path[:-1]:
        try:
            algorithm = cert.signature_hash_algorithm
        except UnsupportedAlgorithm:
            raise bad_statement(
                f"a certificate on the {what}'s path uses an unknown signature"
            ) from None
        if isinstance(algorithm, hashes.MD5) or (
            isinstance(algorithm, hashes.SHA1) and not context.allow_sha1
        ):
            raise bad_statement(
                f"a certificate on the {what}'s path is signed with {algorithm.name.upper()}"
                " (refused)"
            )
    return path


def extensions_of(cert: x509.Certificate, what: str) -> x509.Extensions:
    """The certificate's extensions; one that cannot be parsed fails the statement."""
    try:
        return cert.extensions
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        raise bad_statement(_clip(f"the {what}'s extensions cannot be parsed: {exc}")) from None


def require_end_entity(extensions: x509.Extensions, what: str) -> None:
    try:
        bc = extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return
    if bc.ca:
        raise bad_statement(f"the {what} is a CA certificate")


def unrecognized_value(extensions: x509.Extensions, oid: x509.ObjectIdentifier) -> bytes | None:
    """The raw extnValue of an extension `cryptography` does not interpret, if present."""
    try:
        value = extensions.get_extension_for_oid(oid).value
    except x509.ExtensionNotFound:
        return None
    if isinstance(value, x509.UnrecognizedExtension):
        return value.value
    raise bad_statement(f"extension {oid.dotted_string} has an unexpected form")


def certified_public_key(cert: x509.Certificate, what: str) -> PublicKeyTypes:
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        raise bad_statement(f"the {what}'s public key is not supported") from None
    if not isinstance(
        key,
        rsa.RSAPublicKey
        | ec.EllipticCurvePublicKey
        | ed25519.Ed25519PublicKey
        | ed448.Ed448PublicKey,
    ):
        raise bad_statement(f"the {what}'s {type(key).__name__} cannot sign a CSR")
    return key


# --- COSE algorithms ----------------------------------------------------------------


@attrs.frozen
class CoseAlgorithm:
    """A COSE signature algorithm (RFC 9053, WebAuthn's RS1)."""

    identifier: int
    name: str
    family: str  # "RSASSA", "RSAPSS", "ECDSA" or "EdDSA"
    hash_name: str | None  # "SHA1", "SHA256", ...; None for EdDSA

    @property
    def is_sha1(self) -> bool:
        return self.hash_name == "SHA1"

    def hash(self) -> hashes.HashAlgorithm:
        hash_class: dict[str | None, type[hashes.HashAlgorithm]] = {
            "SHA1": hashes.SHA1,
            "SHA256": hashes.SHA256,
            "SHA384": hashes.SHA384,
            "SHA512": hashes.SHA512,
        }
        return hash_class[self.hash_name]()


COSE_ALGORITHMS: dict[int, CoseAlgorithm] = {
    alg.identifier: alg
    for alg in (
        CoseAlgorithm(-7, "ES256", "ECDSA", "SHA256"),
        CoseAlgorithm(-35, "ES384", "ECDSA", "SHA384"),
        CoseAlgorithm(-36, "ES512", "ECDSA", "SHA512"),
        CoseAlgorithm(-257, "RS256", "RSASSA", "SHA256"),
        CoseAlgorithm(-258, "RS384", "RSASSA", "SHA384"),
        CoseAlgorithm(-259, "RS512", "RSASSA", "SHA512"),
        CoseAlgorithm(-65535, "RS1", "RSASSA", "SHA1"),
        CoseAlgorithm(-37, "PS256", "RSAPSS", "SHA256"),
        CoseAlgorithm(-38, "PS384", "RSAPSS", "SHA384"),
        CoseAlgorithm(-39, "PS512", "RSAPSS", "SHA512"),
        CoseAlgorithm(-8, "EdDSA", "EdDSA", None),
    )
}


def cose_algorithm(
    identifier: int, context: AttestationContext, allowed: frozenset[str] | None = None
) -> CoseAlgorithm:
    """The algorithm ``alg`` names; SHA-1 (RS1, -65535) only with ``context.allow_sha1``."""
    alg = COSE_ALGORITHMS.get(identifier)
    if alg is None or (allowed is not None and alg.family not in allowed):
        raise bad_statement(f"attStmt.alg {identifier} is not a supported signature algorithm")
    if alg.is_sha1 and not context.allow_sha1:
        raise bad_statement(f"attStmt.alg {identifier} ({alg.name}) uses SHA-1, which is refused")
    return alg


def verify_cose_signature(
    alg: CoseAlgorithm, key: PublicKeyTypes, signature: bytes, data: bytes
) -> bool:
    """True when *signature* (COSE/X.509 encoding: DER for ECDSA) is *key*'s over *data*."""
    try:
        if alg.family in ("RSASSA", "RSAPSS") and isinstance(key, rsa.RSAPublicKey):
            digest = alg.hash()
            pad: padding.AsymmetricPadding = (
                padding.PKCS1v15()
                if alg.family == "RSASSA"
                else padding.PSS(padding.MGF1(digest), padding.PSS.AUTO)
            )
            key.verify(signature, data, pad, digest)
        elif alg.family == "ECDSA" and isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(alg.hash()))
        elif alg.family == "EdDSA" and isinstance(
            key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey
        ):
            key.verify(signature, data)
        else:
            raise bad_statement(f"a {type(key).__name__} cannot make {alg.name} signatures")
    except (InvalidSignature, ValueError):
        return False
    return True
