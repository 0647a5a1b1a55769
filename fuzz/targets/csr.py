"""Certificate signing requests (engine/csr.py ``parse_csr``): PEM and DER, the fast
DER reader for plain requests and the cryptography path for the rest, the
self-signature and the key; ``POST /1.0/sign`` sends text, ACME finalize DER.

A client signs its own CSR, so whatever it puts in one can carry a valid
signature. Inputs starting with 0x01 are therefore a CertificationRequestInfo
that the target signs with :data:`SIGNING_KEY` (the key the seeds of that form
name), so changed requests pass the signature check and reach the name and
extension readers behind it; any other input is the CSR itself.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from engine.csr import parse_csr
from engine.der import read_tlv, tlv
from fuzz.harness import attempt, text

RESIGN = 0x01
SIGNING_KEY = ec.derive_private_key(0xC5_12_5EED, ec.SECP256R1())
_ECDSA_WITH_SHA256 = bytes.fromhex("300a06082a8648ce3d040302")


def sign(info: bytes) -> bytes:
    """A CSR of *info* (the CertificationRequestInfo DER) signed by :data:`SIGNING_KEY`."""
    signature = SIGNING_KEY.sign(info, ec.ECDSA(hashes.SHA256()))
    return tlv(0x30, info + _ECDSA_WITH_SHA256 + tlv(0x03, b"\x00" + signature))


def request_info(der: bytes) -> bytes:
    """The CertificationRequestInfo of a DER CSR (the part the signature covers)."""
    _, body, _ = read_tlv(der)
    tag, value, _ = read_tlv(body)
    return tlv(tag, value)


def test_one_input(data: bytes) -> None:
    if data[:1] == bytes([RESIGN]):
        attempt(parse_csr, sign(data[1:]))
        return
    attempt(parse_csr, data)
    if data.lstrip().startswith(b"-----"):
        attempt(parse_csr, text(data))
