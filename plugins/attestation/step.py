"""The ``step`` attestation-statement format (YubiKey PIV attestation, as step-ca defines it).

attStmt = ``{alg, sig, x5c: [attestation certificate, intermediate...]}``. A
YubiKey's PIV applet certifies a slot key with an attestation certificate
signed by the device's own attestation intermediate (slot f9), which Yubico
signed. The verifier checks:

1. ``alg`` is a COSE signature algorithm (ES256/384/512, RS256/384/512,
   PS256/384/512, EdDSA); SHA-1 (RS1) is refused unless the context allows it;
2. the attestation certificate chains to the configured roots (the Yubico PIV
   Root CA for firmware before 5.7.4; Yubico Attestation Root 1 through the
   "PIV Attestation A 1/B 1" and "Attestation Intermediate A 1/B 1" CAs, which
   go into ``context.intermediates``, for 5.7.4 and later) at ``context.now``;
3. its extensions parse and it is not a CA;
4. ``sig`` is the attested key's signature over the key authorization (UTF-8),
   made with ``alg``. step's client wraps the signature in a CBOR byte string
   inside the ``sig`` byte string; both that and the bare signature are accepted.

Identities: the YubiKey serial number (``1.3.6.1.4.1.41482.3.7``, an INTEGER)
as a decimal string, both as a serial number and as a permanent identifier.
The attested key is the attestation certificate's public key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from cryptography import x509
from cryptography.x509.oid import ObjectIdentifier

from engine import der
from engine.acme.problems import ACMEProblem
from engine.errors import BadRequest

from .base import AttestationContext, AttestationResult
from .common import (
    MAX_SIGNATURE_BYTES,
    bad_statement,
    certificate_sha256,
    certified_public_key,
    cose_algorithm,
    extensions_of,
    field_bytes,
    field_int,
    guarded,
    parse_x5c,
    require_end_entity,
    statement_map,
    subject_text,
    unrecognized_value,
    verify_cose_signature,
    verify_path,
)

YUBICO_FIRMWARE_OID = ObjectIdentifier("1.3.6.1.4.1.41482.3.3")
YUBICO_SERIAL_OID = ObjectIdentifier("1.3.6.1.4.1.41482.3.7")
YUBICO_POLICY_OID = ObjectIdentifier("1.3.6.1.4.1.41482.3.8")
YUBICO_FORM_FACTOR_OID = ObjectIdentifier("1.3.6.1.4.1.41482.3.9")

_MAX_SERIAL = 2**64


class StepFormat:
    """``fmt: "step"``."""

    format_name: ClassVar[str] = "step"

    def verify(
        self,
        statement: Mapping[str, Any],
        key_authorization: str,
        context: AttestationContext,
    ) -> AttestationResult:
        return guarded(
            self.format_name,
            lambda: _verify(statement, key_authorization, context),
        )


def _verify(
    statement: Mapping[str, Any], key_authorization: str, context: AttestationContext
) -> AttestationResult:
    st = statement_map(statement, "step")
    alg = cose_algorithm(field_int(st, "alg"), context)
    sig = field_bytes(st, "sig", MAX_SIGNATURE_BYTES)
    x5c = parse_x5c(st)
    what = "YubiKey attestation certificate"
    path = verify_path(x5c, context, what)
    leaf = x5c[0]
    extensions = extensions_of(leaf, what)
    require_end_entity(extensions, what)
    public_key = certified_public_key(leaf, what)

    data = key_authorization.encode("utf-8")
    candidates: list[tuple[str, bytes]] = []
    inner = cbor_byte_string(sig)
    if inner is not None:
        candidates.append(("cbor", inner))
    candidates.append(("raw", sig))
    encoding = next(
        (
            name
            for name, candidate in candidates
            if verify_cose_signature(alg, public_key, candidate, data)
        ),
        None,
    )
    if encoding is None:
        raise bad_statement(
            "sig is not a valid signature over the key authorization by the attested key"
        )

    serial = yubikey_serial(unrecognized_value(extensions, YUBICO_SERIAL_OID))
    evidence: dict[str, Any] = {
        "format": "step",
        "alg": alg.name,
        "leaf_certificate_sha256": certificate_sha256(leaf),
        "chain": [subject_text(cert) for cert in path],
        "signature_encoding": encoding,
        "identities": {
            "permanent_identifiers": [serial] if serial else [],
            "serial_numbers": [serial] if serial else [],
        },
    }
    evidence.update(_yubikey_facts(extensions))
    return AttestationResult(
        format="step",
        public_key=public_key,
        permanent_identifiers=(serial,) if serial else (),
        serial_numbers=(serial,) if serial else (),
        chain=tuple(path),
        evidence=evidence,
    )


def cbor_byte_string(data: bytes) -> bytes | None:
    """The content of *data* if it is exactly one definite-length CBOR byte string."""
    if not data or data[0] >> 5 != 2:
        return None
    info = data[0] & 0x1F
    if info < 24:
        length, offset = info, 1
    elif info <= 27:
        size = 1 << (info - 24)
        if len(data) < 1 + size:
            return None
        length, offset = int.from_bytes(data[1 : 1 + size], "big"), 1 + size
    else:
        return None
    if offset + length != len(data):
        return None
    return data[offset:]


def yubikey_serial(value: bytes | None) -> str | None:
    """The YubiKey serial number extension: a DER INTEGER, given back in decimal."""
    if value is None:
        return None
    try:
        tag, body, end = der.read_tlv(value)
    except BadRequest:
        raise bad_statement("the YubiKey serial number extension is not DER") from None
    if tag != 0x02 or end != len(value) or not body:
        raise bad_statement("the YubiKey serial number extension is not an INTEGER")
    serial = int.from_bytes(body, "big", signed=True)
    if not 0 < serial < _MAX_SERIAL:
        raise bad_statement("the YubiKey serial number is out of range")
    return str(serial)


def _yubikey_facts(extensions: x509.Extensions) -> dict[str, Any]:
    """Firmware version, PIN/touch policy and form factor, for the evidence (best effort)."""
    facts: dict[str, Any] = {}

    def raw(oid: ObjectIdentifier) -> bytes | None:
        try:
            return unrecognized_value(extensions, oid)
        except ACMEProblem:
            return None

    firmware = raw(YUBICO_FIRMWARE_OID)
    if firmware is not None and len(firmware) == 3:
        facts["yubikey_firmware"] = ".".join(str(part) for part in firmware)
    policy = raw(YUBICO_POLICY_OID)
    if policy is not None and len(policy) == 2:
        facts["yubikey_pin_policy"] = policy[0]
        facts["yubikey_touch_policy"] = policy[1]
    form_factor = raw(YUBICO_FORM_FACTOR_OID)
    if form_factor is not None and len(form_factor) == 1:
        facts["yubikey_form_factor"] = form_factor[0]
    return facts
