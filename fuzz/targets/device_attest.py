"""ACME device-attest-01 attestation objects (engine/acme/device_attest.py and
plugins/attestation): the CBOR ``attObj``, then the ``tpm``, ``apple`` and ``step``
formats' ``attStmt`` (certificate chains, TPM structures, COSE algorithms and
signatures, vendor extensions), as hosts/service/acme/device.py runs them.

The input is the CBOR attestation object. Each format verifies against the roots
and key authorization in fuzz/fixtures/device_attest/ (written with the seeds), so
valid seeds pass and their mutations reach every check.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from cryptography import x509

from engine.acme.device_attest import (
    AttestationObject,
    attestation_bytes,
    decode_attestation_object,
)
from engine.jose import b64url_encode
from fuzz.harness import FIXTURES_DIR, NOW, attempt
from plugins.attestation.apple import AppleFormat
from plugins.attestation.base import AttestationContext, AttestationFormat
from plugins.attestation.step import StepFormat
from plugins.attestation.tpm import TPMFormat

FORMATS: Mapping[str, AttestationFormat] = {
    "tpm": TPMFormat(),
    "apple": AppleFormat(),
    "step": StepFormat(),
}
_DIR = FIXTURES_DIR / "device_attest"
#: Per format: the key authorization its seeds answer.
KEY_AUTHORIZATIONS: dict[str, str] = json.loads((_DIR / "key_authorizations.json").read_text())
CONTEXTS = {
    name: AttestationContext(
        now=NOW,
        roots=tuple(
            x509.load_der_x509_certificate(p.read_bytes())
            for p in sorted(_DIR.glob(f"{name}-root-*.der"))
        ),
        allow_sha1=name == "tpm",
    )
    for name in FORMATS
}


def _verify(obj: AttestationObject) -> None:
    fmt = FORMATS.get(obj.format)
    if fmt is None:
        return
    result = fmt.verify(obj.statement, KEY_AUTHORIZATIONS[obj.format], CONTEXTS[obj.format])
    json.dumps(result.attested_device(obj.format).evidence_record())


def test_one_input(data: bytes) -> None:
    attempt(attestation_bytes, {"attObj": b64url_encode(data)})
    obj = attempt(decode_attestation_object, data)
    if obj is not None:
        attempt(_verify, obj)
