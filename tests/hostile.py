"""Malformed artefacts an anonymous client can send, built byte by byte.

Each builder starts from a valid object made with cryptography, changes the few
bytes that make it hostile (a version no standard defines, an algorithm or
curve OID nobody implements, an issuer Name that is not a Name) and, where a
signature would otherwise give the object away, signs the changed bytes again.
The unit tests (tests/engine, tests/plugins) and the per-host test
(tests/hosts/test_hostile_inputs.py) share them, so both see the same bytes.
"""

from __future__ import annotations

import json
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from engine.der import read_tlv, tlv
from engine.jose import PrivateKey, b64url_encode, create_signature, default_algorithm

# DER of the OIDs the builders replace, and of OIDs under the same arcs that no
# specification assigns (same length, so the surrounding lengths stay right).
EC_PUBLIC_KEY = bytes.fromhex("06072a8648ce3d0201")  # 1.2.840.10045.2.1
UNKNOWN_KEY_ALGORITHM = bytes.fromhex("06072a8648ce3d0219")  # 1.2.840.10045.2.25
P256_CURVE = bytes.fromhex("06082a8648ce3d030107")  # 1.2.840.10045.3.1.7
UNKNOWN_CURVE = bytes.fromhex("06082a8648ce3d030119")  # 1.2.840.10045.3.1.25
ECDSA_WITH_SHA256 = bytes.fromhex("300a06082a8648ce3d040302")
# The version field of a TBSCertificate: [0] EXPLICIT INTEGER.
CERTIFICATE_V3 = bytes.fromhex("a003020102")
CERTIFICATE_V4 = bytes.fromhex("a003020103")
# Extension OIDs (2.5.29.x) of the same length.
BASIC_CONSTRAINTS = bytes.fromhex("0603551d13")
KEY_USAGE = bytes.fromhex("0603551d0f")
SUBJECT_ALT_NAME = bytes.fromhex("0603551d11")

DEEP = 5000


def _split(der: bytes) -> tuple[bytes, bytes]:
    """A signed DER object (certificate, CSR) as (to-be-signed TLV, the rest)."""
    _, body, _ = read_tlv(der)
    tag, value, end = read_tlv(body)
    return tlv(tag, value), body[end:]


def resign(der: bytes, old: bytes, new: bytes, key: ec.EllipticCurvePrivateKey | None) -> bytes:
    """*der* with the first *old* in its signed part replaced by *new* (same length), signed
    again by *key* (ECDSA with SHA-256); *key* None keeps the old, now wrong, signature."""
    if len(old) != len(new):
        raise ValueError("the replacement must keep the length")
    tbs, rest = _split(der)
    if old not in tbs:
        raise ValueError(f"{old.hex()} is not in the signed part")
    changed = tbs.replace(old, new, 1)
    if key is None:
        return tlv(0x30, changed + rest)
    signature = key.sign(changed, ec.ECDSA(hashes.SHA256()))
    return tlv(0x30, changed + ECDSA_WITH_SHA256 + tlv(0x03, b"\x00" + signature))


# --- CSRs --------------------------------------------------------------------------------------


def _csr(key: ec.EllipticCurvePrivateKey, name: str) -> bytes:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(Encoding.DER)


def csr_with_version(version: int, name: str = "svc.example.com") -> bytes:
    """A CSR whose version is *version* (only v1, encoded 0, exists), correctly self-signed."""
    key = ec.generate_private_key(ec.SECP256R1())
    return resign(_csr(key, name), b"\x02\x01\x00", b"\x02\x01" + bytes([version]), key)


def csr_with_unknown_key_algorithm(name: str = "svc.example.com") -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return resign(_csr(key, name), EC_PUBLIC_KEY, UNKNOWN_KEY_ALGORITHM, key)


def csr_with_unknown_curve(name: str = "svc.example.com") -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return resign(_csr(key, name), P256_CURVE, UNKNOWN_CURVE, key)


def csr_with_duplicate_extension(name: str = "svc.example.com") -> bytes:
    """A CSR asking for two SubjectAlternativeName extensions (its basicConstraints
    extension renamed), correctly self-signed."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=False)
        .sign(key, hashes.SHA256())
    )
    return resign(csr.public_bytes(Encoding.DER), BASIC_CONSTRAINTS, SUBJECT_ALT_NAME, key)


HOSTILE_CSRS = {
    "version 6": lambda: csr_with_version(6),
    "version 2": lambda: csr_with_version(1),
    "unknown key algorithm": csr_with_unknown_key_algorithm,
    "unknown curve": csr_with_unknown_curve,
    "duplicate extension": csr_with_duplicate_extension,
}


def pem_csr(der: bytes) -> str:
    import base64

    body = base64.encodebytes(der).decode()
    return f"-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n"


# --- public keys and certificates ---------------------------------------------------------------


def spki_with(old: bytes, new: bytes) -> bytes:
    """A P-256 SubjectPublicKeyInfo with *old* replaced by *new*."""
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    spki = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return spki.replace(old, new, 1)


def certificate_v4(certificate: x509.Certificate, issuer_key: ec.EllipticCurvePrivateKey) -> bytes:
    """*certificate* claiming X.509 version 4 (there is none), signed again by its issuer."""
    return resign(
        certificate.public_bytes(Encoding.DER), CERTIFICATE_V3, CERTIFICATE_V4, issuer_key
    )


def certificate_with_unknown_key_algorithm(
    certificate: x509.Certificate, issuer_key: ec.EllipticCurvePrivateKey
) -> bytes:
    """*certificate* (an EC key) whose key algorithm OID nobody implements."""
    return resign(
        certificate.public_bytes(Encoding.DER), EC_PUBLIC_KEY, UNKNOWN_KEY_ALGORITHM, issuer_key
    )


def certificate_with_malformed_issuer(
    certificate: x509.Certificate, issuer_key: ec.EllipticCurvePrivateKey
) -> bytes:
    """*certificate* whose issuer's first attribute value is a BOOLEAN instead of a string:
    the certificate still loads; reading its issuer fails."""
    issuer = certificate.issuer.public_bytes()
    # SEQUENCE { SET { SEQUENCE { OID (3 bytes), value } } ...: the value's tag is at 11.
    if issuer[2] != 0x31 or issuer[6:8] != b"\x06\x03":
        raise ValueError("the issuer does not start with a plain attribute")
    broken = issuer[:11] + b"\x01" + issuer[12:]
    return resign(certificate.public_bytes(Encoding.DER), issuer, broken, issuer_key)


def certificate_with_duplicate_extension(
    certificate: x509.Certificate, issuer_key: ec.EllipticCurvePrivateKey
) -> bytes:
    """*certificate* (with basicConstraints and keyUsage) whose keyUsage extension is
    renamed basicConstraints: two of them, which cryptography refuses to read."""
    return resign(certificate.public_bytes(Encoding.DER), KEY_USAGE, BASIC_CONSTRAINTS, issuer_key)


# --- JSON and JOSE -----------------------------------------------------------------------------


def deep_json(depth: int = DEEP) -> str:
    """An object whose member ``x`` nests *depth* arrays."""
    return '{"x":' + "[" * depth + "]" * depth + "}"


def deep_header(header: dict[str, Any], depth: int = DEEP) -> str:
    """A JSON object with the members of *header* and a member ``x`` nested *depth* deep."""
    return json.dumps(header)[:-1] + ', "x":' + "[" * depth + "]" * depth + "}"


def compact_with(header_json: str, payload_json: str, key: PrivateKey) -> str:
    """A compact JWS over raw header and payload JSON texts, signed by *key*."""
    h = b64url_encode(header_json.encode())
    p = b64url_encode(payload_json.encode())
    signature = create_signature(default_algorithm(key), key, f"{h}.{p}".encode())
    return f"{h}.{p}.{b64url_encode(signature)}"


def wrong_type_jwks(jwk: dict[str, str]) -> dict[str, dict[str, Any]]:
    """*jwk* with one member at a time of every JSON type but the string it must be."""
    out: dict[str, dict[str, Any]] = {}
    for member in jwk:
        for label, value in (
            ("list", [jwk[member]]),
            ("object", {"v": jwk[member]}),
            ("number", 1),
            ("true", True),
            ("null", None),
        ):
            out[f"{member} as {label}"] = {**jwk, member: value}
    return out
