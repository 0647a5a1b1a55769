"""device-attest-01 (draft-ietf-acme-device-attest): the payload, the CBOR attestation
object, and the rule that matters most.

The challenge response is ``{"attObj": base64url(CBOR)}`` where the CBOR is a
map ``{"fmt": name, "attStmt": {...}}`` (WebAuthn's layout; ``authData`` may
be present and is ignored). A format plugin verifies ``attStmt`` against the
key authorization and says which key it attests and which device identities
the evidence binds. The ordered identifier must be one of those identities:
an attestation that proves *a* TPM but binds no identity, or another one,
authorizes nothing (step-ca accepts any identifier in that case; devid
refuses).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from typing import Any

import attrs
import cbor2
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ..errors import BadRequest
from ..jose import b64url_decode
from .identifiers import Identifier
from .problems import ACMEProblem, malformed, unauthorized

PROBLEM = "badAttestationStatement"
MAX_ATTESTATION_BYTES = 32 * 1024
MAX_DEPTH = 16
MAX_NODES = 10_000
_OBJECT_MEMBERS = frozenset({"fmt", "attStmt", "authData"})


def bad_statement(detail: str) -> ACMEProblem:
    return ACMEProblem(PROBLEM, detail)


def attestation_bytes(payload: Mapping[str, Any]) -> bytes:
    """The ``attObj`` of a device-attest-01 response; a malformed request otherwise."""
    value = payload.get("attObj")
    if not isinstance(value, str) or not value:
        raise malformed('device-attest-01 is answered with {"attObj": base64url(CBOR)}')
    if len(value) > MAX_ATTESTATION_BYTES * 4 // 3 + 4:
        raise malformed(f"attObj exceeds {MAX_ATTESTATION_BYTES} bytes")
    try:
        return b64url_decode(value, what="attObj")
    except BadRequest as exc:
        raise malformed(exc.detail) from None


@attrs.frozen
class AttestationObject:
    format: str
    statement: Mapping[str, Any]


def _plain(value: Any, depth: int, budget: list[int]) -> None:
    """Only plain CBOR data (maps, arrays, strings, numbers): no tags, no cycles, bounded."""
    budget[0] -= 1
    if budget[0] < 0 or depth > MAX_DEPTH:
        raise bad_statement("the attestation object is nested too deeply or too large")
    if isinstance(value, dict):
        for key, item in value.items():
            _plain(key, depth + 1, budget)
            _plain(item, depth + 1, budget)
    elif isinstance(value, list):
        for item in value:
            _plain(item, depth + 1, budget)
    elif value is None or isinstance(value, bool | int | float | str | bytes):
        return
    else:
        raise bad_statement(f"the attestation object holds an unexpected {type(value).__name__}")


def decode_attestation_object(raw: bytes) -> AttestationObject:
    """Decode the CBOR attestation object, refusing anything but its plain layout."""
    if len(raw) > MAX_ATTESTATION_BYTES:
        raise bad_statement(f"the attestation object exceeds {MAX_ATTESTATION_BYTES} bytes")
    try:
        value = cbor2.loads(raw, max_depth=MAX_DEPTH, allow_duplicate_keys=False)
    except Exception as exc:  # cbor2 raises its own errors, ValueError, RecursionError...
        raise bad_statement(
            f"the attestation object is not valid CBOR ({type(exc).__name__})"
        ) from None
    _plain(value, 0, [MAX_NODES])
    if not isinstance(value, dict):
        raise bad_statement("the attestation object must be a CBOR map")
    unknown = [k for k in value if k not in _OBJECT_MEMBERS]
    if unknown:
        raise bad_statement("the attestation object has unexpected members")
    fmt, statement = value.get("fmt"), value.get("attStmt")
    if not isinstance(fmt, str) or not fmt or len(fmt) > 64:
        raise bad_statement("the attestation object has no fmt")
    if not isinstance(statement, dict):
        raise bad_statement("the attestation object's attStmt must be a map")
    return AttestationObject(fmt, statement)


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


@attrs.frozen
class AttestedDevice:
    """What a verified attestation proved, in the engine's terms (no plugin types)."""

    format: str
    public_key: bytes  # SubjectPublicKeyInfo DER of the attested key
    permanent_identifiers: tuple[str, ...] = ()
    ek_urns: tuple[str, ...] = ()
    serial_numbers: tuple[str, ...] = ()
    chain: tuple[bytes, ...] = ()  # DER, leaf first
    evidence: Mapping[str, Any] = attrs.field(factory=dict)

    @classmethod
    def from_parts(
        cls,
        format: str,
        public_key: PublicKeyTypes,
        *,
        permanent_identifiers: tuple[str, ...] = (),
        ek_urns: tuple[str, ...] = (),
        serial_numbers: tuple[str, ...] = (),
        chain: tuple[x509.Certificate, ...] = (),
        evidence: Mapping[str, Any] | None = None,
    ) -> AttestedDevice:
        return cls(
            format=format,
            public_key=public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo),
            permanent_identifiers=tuple(permanent_identifiers),
            ek_urns=tuple(ek_urns),
            serial_numbers=tuple(serial_numbers),
            chain=tuple(c.public_bytes(Encoding.DER) for c in chain),
            evidence=_jsonable(dict(evidence or {})),
        )

    def identities(self) -> frozenset[str]:
        return frozenset((*self.permanent_identifiers, *self.ek_urns, *self.serial_numbers))

    def evidence_record(self) -> dict[str, Any]:
        """What is stored on the authorization and, at issuance, beside the certificate:
        the attestation's chain by the SHA-256 of each certificate (the AK certificate is
        in the store already, and the format's evidence names the chain's subjects), not
        the certificates themselves (about 2 KB a device, stored twice)."""
        return {
            "format": self.format,
            "permanent_identifiers": list(self.permanent_identifiers),
            "ek_urns": list(self.ek_urns),
            "serial_numbers": list(self.serial_numbers),
            "chain_sha256": [hashlib.sha256(c).hexdigest() for c in self.chain],
            "evidence": dict(self.evidence),
        }


def check_binding(identifier: Identifier, device: AttestedDevice) -> None:
    """The ordered identifier must be an identity the attestation binds (SECURITY.md)."""
    if not device.identities():
        raise unauthorized(
            f"the {device.format} attestation binds no device identity, so it cannot"
            f" authorize {identifier.type} {identifier.value!r}"
        )
    if identifier.value not in device.identities():
        raise unauthorized(
            f"the {device.format} attestation does not bind {identifier.type} {identifier.value!r}"
        )
