"""``POST /attest`` and ``POST /secret`` bodies (engine/attestation): the request's
JSON fields, base64, EK public key and EK certificates, then what the Attestation CA
does before the device has proved anything: the EK certificate's path, the EK's
public area, the AK creation evidence (TPM structures and signature) and
MakeCredential to the EK. The device is taken as registered and active, so every
input reaches those checks."""

from __future__ import annotations

from typing import Any

from cryptography import x509

from engine.attestation import AttestationPolicy, AttestRequest, EKCertificatePolicy
from engine.attestation.session import begin_attestation, parse_answer
from engine.inventory import Device, ek_urn
from engine.ports import CountingRandom
from fuzz.harness import FIXTURES_DIR, NOW, attempt
from hosts.core.http import HTTPRequest

#: The EK root the seeds' EK certificates chain to (written with the seeds).
EK_ROOTS = tuple(
    x509.load_der_x509_certificate(p.read_bytes())
    for p in sorted((FIXTURES_DIR / "attest").glob("*.der"))
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


def test_one_input(data: bytes) -> None:
    body = attempt(HTTPRequest("POST", "/attest", body=data).json_object)
    if body is None:
        return
    policy = POLICIES[len(data) % len(POLICIES)]
    attempt(_attest, body, policy)
    attempt(parse_answer, body)
