"""``POST /attest`` and ``POST /secret`` bodies (engine/attestation): the request's
JSON fields, base64, EK public key and EK certificates, then what the Attestation CA
does before the device has proved anything: the EK certificate's path, the EK's
public area, the AK creation evidence (TPM structures and signature) and
MakeCredential to the EK. The device is taken as registered and active, so every
input reaches those checks.

The input is the body, or (after a first byte 0x01) the binary values the body
carries in base64 (see :func:`fuzz.harness.split` and :data:`FIELDS`): then the
fuzzer changes the EK, its certificate and the TPM structures directly.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography import x509

from engine.attestation import AttestationPolicy, AttestRequest, EKCertificatePolicy
from engine.attestation.session import begin_attestation, parse_answer
from engine.inventory import Device, ek_urn
from engine.ports import CountingRandom
from fuzz.harness import FIXTURES_DIR, NOW, attempt, split
from hosts.http.routing import HTTPRequest

#: The EK root the seeds' EK certificates chain to (written with the seeds).
EK_ROOTS = tuple(
    x509.load_der_x509_certificate(p.read_bytes())
    for p in sorted((FIXTURES_DIR / "attest").glob("*.der"))
)
ENVELOPE = 0x01
#: The envelope's parts: tpmInfo as JSON, then what the body carries in base64.
FIELDS = (
    "tpmInfo",
    "ek",
    "ekCerts",
    "public",
    "createData",
    "createAttestation",
    "createSignature",
)
POLICIES = (
    AttestationPolicy(ek_roots=EK_ROOTS, unverifiable_ek_certificate=EKCertificatePolicy.RECORD),
    AttestationPolicy(ek_roots=EK_ROOTS, require_ek_certificate=True, allow_sha1=True),
)


def _attest(body: dict[str, Any], policy: AttestationPolicy) -> None:
    request = AttestRequest.parse(body)
    device = Device(ek_urn=ek_urn(request.ek_public))
    _, challenge = begin_attestation(request, device, policy, NOW, CountingRandom(b"fuzz"))
    challenge.to_json()


def request_body(data: bytes) -> bytes:
    """The body an input stands for."""
    if data[:1] != bytes([ENVELOPE]):
        return data
    info, ek, ek_certificate, *params = split(data[1:], len(FIELDS))
    body: dict[str, Any] = {"params": dict(zip(FIELDS[3:], map(_b64, params), strict=True))}
    try:
        body["tpmInfo"] = json.loads(info)
    except (ValueError, RecursionError):
        body["tpmInfo"] = info.decode("latin-1")
    if ek:
        body["ek"] = _b64(ek)
    if ek_certificate:
        body["ekCerts"] = [_b64(ek_certificate)]
    return json.dumps(body).encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def test_one_input(data: bytes) -> None:
    body = attempt(HTTPRequest("POST", "/attest", body=request_body(data)).json_object)
    if body is None:
        return
    policy = POLICIES[len(data) % len(POLICIES)]
    attempt(_attest, body, policy)
    attempt(parse_answer, body)
