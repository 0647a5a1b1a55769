"""The ``apple`` attestation-statement format (Apple Managed Device Attestation).

attStmt = ``{x5c: [leaf, intermediates...]}``. The Secure Enclave generated the
key in the leaf certificate; Apple's attestation CA certifies it with the
device's identity and a freshness code. The verifier checks:

1. the leaf chains to the configured roots (the Apple Enterprise Attestation
   Root CA) at ``context.now``, x5c[1:] and configured intermediates building the path;
2. the leaf's extensions parse and it is not a CA;
3. the freshness code (nonce, ``1.2.840.113635.100.8.11.1``) is **present** and
   equals SHA-256 of the key authorization. Apple devices hash the challenge
   *token* instead (Apple's guidance for ACME, and what step-ca compares), so
   SHA-256(token) is accepted too unless ``accept_token_nonce`` is off. step-ca
   checks the nonce only when the extension is present; here a missing nonce
   refuses the statement (no freshness, replayable).

Identities: the UDID (``1.2.840.113635.100.8.9.2``) as a permanent identifier,
the serial number (``1.2.840.113635.100.8.9.1``) as a serial number. The
attested key is the leaf's public key.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any, ClassVar

from cryptography import x509
from cryptography.x509.oid import ObjectIdentifier

from engine import der
from engine.acme.problems import ACMEProblem
from engine.errors import BadRequest

from .base import AttestationContext, AttestationResult
from .common import (
    bad_statement,
    certificate_sha256,
    certified_public_key,
    extensions_of,
    guarded,
    parse_x5c,
    require_end_entity,
    statement_map,
    subject_text,
    unrecognized_value,
    verify_path,
)

APPLE_SERIAL_NUMBER_OID = ObjectIdentifier("1.2.840.113635.100.8.9.1")
APPLE_UDID_OID = ObjectIdentifier("1.2.840.113635.100.8.9.2")
APPLE_OS_VERSION_OID = ObjectIdentifier("1.2.840.113635.100.8.10.1")
APPLE_SEPOS_VERSION_OID = ObjectIdentifier("1.2.840.113635.100.8.10.2")
APPLE_NONCE_OID = ObjectIdentifier("1.2.840.113635.100.8.11.1")

_STRING_TAGS = frozenset({0x04, 0x0C, 0x13, 0x16})  # OCTET, UTF8, Printable, IA5 STRING
_MAX_IDENTIFIER = 256


class AppleFormat:
    """``fmt: "apple"``."""

    format_name: ClassVar[str] = "apple"

    def __init__(self, *, accept_token_nonce: bool = True) -> None:
        self.accept_token_nonce = accept_token_nonce

    def verify(
        self,
        statement: Mapping[str, Any],
        key_authorization: str,
        context: AttestationContext,
    ) -> AttestationResult:
        return guarded(
            self.format_name,
            lambda: self._verify(statement, key_authorization, context),
        )

    def expected_nonces(self, key_authorization: str) -> dict[str, bytes]:
        """Accepted freshness codes, by what they bind."""
        nonces = {"key-authorization": hashlib.sha256(key_authorization.encode("utf-8")).digest()}
        token = key_authorization.split(".", 1)[0]
        if self.accept_token_nonce and token and token != key_authorization:
            nonces["token"] = hashlib.sha256(token.encode("utf-8")).digest()
        return nonces

    def _verify(
        self, statement: Mapping[str, Any], key_authorization: str, context: AttestationContext
    ) -> AttestationResult:
        st = statement_map(statement, "apple")
        x5c = parse_x5c(st)
        path = verify_path(x5c, context, "Apple attestation certificate")
        leaf = x5c[0]
        extensions = extensions_of(leaf, "Apple attestation certificate")
        require_end_entity(extensions, "Apple attestation certificate")

        nonce_value = unrecognized_value(extensions, APPLE_NONCE_OID)
        if nonce_value is None:
            raise bad_statement(
                "the Apple attestation certificate has no nonce (1.2.840.113635.100.8.11.1)"
            )
        nonce = _read_nonce(nonce_value)
        binding = next(
            (
                what
                for what, expected in self.expected_nonces(key_authorization).items()
                if hmac.compare_digest(nonce, expected)
            ),
            None,
        )
        if binding is None:
            raise bad_statement("the Apple attestation nonce does not match this challenge")

        serial = _identifier(unrecognized_value(extensions, APPLE_SERIAL_NUMBER_OID), "serial")
        udid = _identifier(unrecognized_value(extensions, APPLE_UDID_OID), "UDID")
        public_key = certified_public_key(leaf, "Apple attestation certificate")
        evidence: dict[str, Any] = {
            "format": "apple",
            "leaf_certificate_sha256": certificate_sha256(leaf),
            "chain": [subject_text(cert) for cert in path],
            "nonce_binding": binding,
            "identities": {
                "permanent_identifiers": [udid] if udid else [],
                "serial_numbers": [serial] if serial else [],
            },
        }
        for key, oid in (
            ("os_version", APPLE_OS_VERSION_OID),
            ("sepos_version", APPLE_SEPOS_VERSION_OID),
        ):
            version = _optional_text(_optional_value(extensions, oid))
            if version is not None:
                evidence[key] = version
        return AttestationResult(
            format="apple",
            public_key=public_key,
            permanent_identifiers=(udid,) if udid else (),
            serial_numbers=(serial,) if serial else (),
            chain=tuple(path),
            evidence=evidence,
        )


def _optional_value(extensions: x509.Extensions, oid: ObjectIdentifier) -> bytes | None:
    try:
        return unrecognized_value(extensions, oid)
    except ACMEProblem:
        return None


def _read_nonce(value: bytes) -> bytes:
    """The freshness code: 32 raw bytes (what Apple sends), or a DER OCTET STRING of them."""
    if len(value) == 32:
        return value
    try:
        tag, body, end = der.read_tlv(value)
    except BadRequest:
        tag, body, end = -1, b"", -1
    if tag == 0x04 and end == len(value) and len(body) == 32:
        return body
    raise bad_statement("the Apple attestation nonce is not a 32-byte SHA-256 digest")


def _unwrap_string(value: bytes) -> bytes:
    """Apple stores identifiers as raw text; accept a DER string TLV around them as well."""
    if value and value[0] in _STRING_TAGS:
        try:
            _, body, end = der.read_tlv(value)
        except BadRequest:
            return value
        if end == len(value):
            return body
    return value


def _optional_text(value: bytes | None) -> str | None:
    if value is None:
        return None
    try:
        text = _unwrap_string(value).decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if text.isprintable() and len(text) <= _MAX_IDENTIFIER else None


def _identifier(value: bytes | None, what: str) -> str | None:
    if value is None:
        return None
    try:
        text = _unwrap_string(value).decode("utf-8")
    except UnicodeDecodeError:
        raise bad_statement(f"the Apple attestation {what} is not UTF-8 text") from None
    if not text or len(text) > _MAX_IDENTIFIER or not text.isprintable():
        raise bad_statement(f"the Apple attestation {what} is not a printable identifier")
    return text
