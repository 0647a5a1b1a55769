"""Certificate signing requests (engine/csr.py ``parse_csr``): PEM and DER, the fast
DER reader for plain requests and the cryptography path for the rest, the
self-signature and the key; ``POST /1.0/sign`` sends text, ACME finalize DER."""

from __future__ import annotations

from engine.csr import parse_csr
from fuzz.harness import attempt, text


def test_one_input(data: bytes) -> None:
    attempt(parse_csr, data)
    if data.lstrip().startswith(b"-----"):
        attempt(parse_csr, text(data))
