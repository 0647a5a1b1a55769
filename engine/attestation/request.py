"""The ``POST /attest`` body, decoded and bounded before anything trusts it.

Field names and encodings follow Smallstep's attestation client: binary values
are standard base64; TPM structures are raw TPM marshalling without an outer
size; ``ek`` is the EK's PKIX SubjectPublicKeyInfo.
"""

from __future__ import annotations

import base64
import binascii
import functools
from typing import Any

import attrs
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, load_der_public_key

from ..errors import BadRequest
from ..inventory import ek_digest, ek_urn_from_digest

MAX_STRUCTURE = 4096
MAX_CERTIFICATE = 8192
MAX_EK_CERTS = 4


def _b64(value: Any, field: str, limit: int, *, required: bool = True) -> bytes | None:
    if value is None or value == "":
        if required:
            raise BadRequest(f"field {field} is required")
        return None
    if not isinstance(value, str):
        raise BadRequest(f"field {field} must be a base64 string")
    if len(value) > (limit * 4) // 3 + 4:
        raise BadRequest(f"field {field} is too large")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"field {field} is not valid base64") from None


def _ek_certificate(der: bytes, field: str) -> x509.Certificate:
    """An EK certificate whose every field devid reads is readable: cryptography parses
    names, validity and the key only when they are first used, so a malformed one would
    otherwise fail deep inside the chain checks."""
    try:
        cert = x509.load_der_x509_certificate(der)
    except (ValueError, x509.InvalidVersion):
        raise BadRequest(f"{field} is not a DER certificate") from None
    try:
        _ = (
            cert.subject,
            cert.issuer,
            cert.not_valid_before_utc,
            cert.not_valid_after_utc,
            cert.public_key(),
        )
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise BadRequest(f"{field} is malformed or has a key of an unknown type: {exc}") from None
    return cert


def _short_text(value: Any, field: str) -> str:
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or len(value) > 128 or any(ord(c) < 32 for c in value):
        raise BadRequest(f"field tpmInfo.{field} must be a short printable string")
    return value


@attrs.frozen
class AttestRequest:
    manufacturer: str
    model: str
    firmware_version: str
    ek_public: rsa.RSAPublicKey | ec.EllipticCurvePublicKey
    ek_certificates: tuple[x509.Certificate, ...]
    ak_public: bytes
    create_data: bytes
    create_attestation: bytes
    create_signature: bytes
    #: The DER of each of ``ek_certificates`` as received (empty when built by hand).
    ek_certificate_ders: tuple[bytes, ...] = ()

    @functools.cached_property
    def ek_digest(self) -> bytes:
        """SHA-256 of the EK's SubjectPublicKeyInfo, computed once per request."""
        return ek_digest(self.ek_public)

    @property
    def ek_urn(self) -> str:
        return ek_urn_from_digest(self.ek_digest)

    def ek_certificate_der(self, cert: x509.Certificate) -> bytes:
        """The DER of one of ``ek_certificates`` as received (re-encoded if unknown)."""
        for known, der in zip(self.ek_certificates, self.ek_certificate_ders, strict=False):
            if known is cert:
                return der
        return cert.public_bytes(Encoding.DER)

    @classmethod
    def parse(cls, body: Any) -> AttestRequest:
        if not isinstance(body, dict):
            raise BadRequest("the attestation request must be a JSON object")
        info = body.get("tpmInfo") or {}
        if not isinstance(info, dict):
            raise BadRequest("tpmInfo must be an object")
        version = info.get("version", 2)
        if version not in (2, "2", "2.0"):
            raise BadRequest("only TPM 2.0 is supported")
        params = body.get("params")
        if not isinstance(params, dict):
            raise BadRequest("field params is required")
        if params.get("useTCSDActivationFormat"):
            raise BadRequest("the TPM 1.2 (TCSD) activation format is not supported")
        raw_certs = body.get("ekCerts") or []
        if not isinstance(raw_certs, list) or len(raw_certs) > MAX_EK_CERTS:
            raise BadRequest(f"ekCerts must be a list of at most {MAX_EK_CERTS} certificates")
        certs: list[x509.Certificate] = []
        ders: list[bytes] = []
        for index, raw in enumerate(raw_certs):
            der = _b64(raw, f"ekCerts[{index}]", MAX_CERTIFICATE)
            assert der is not None
            certs.append(_ek_certificate(der, f"ekCerts[{index}]"))
            ders.append(der)
        ek_der = _b64(body.get("ek"), "ek", MAX_CERTIFICATE, required=False)
        ek_public: Any
        if ek_der is not None:
            try:
                ek_public = load_der_public_key(ek_der)
            except (ValueError, TypeError, UnsupportedAlgorithm):
                # UnsupportedAlgorithm: a key algorithm or curve cryptography does not know.
                raise BadRequest("field ek is not a PKIX public key of a known type") from None
        elif certs:
            ek_public = certs[0].public_key()  # read once already by _ek_certificate
        else:
            raise BadRequest("the request needs ek or ekCerts")
        if not isinstance(ek_public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise BadRequest("the EK must be an RSA or ECC key")

        def structure(name: str) -> bytes:
            data = _b64(params.get(name), f"params.{name}", MAX_STRUCTURE)
            assert data is not None
            return data

        return cls(
            manufacturer=_short_text(info.get("manufacturer"), "manufacturer"),
            model=_short_text(info.get("model"), "model"),
            firmware_version=_short_text(info.get("firmwareVersion"), "firmwareVersion"),
            ek_public=ek_public,
            ek_certificates=tuple(certs),
            ak_public=structure("public"),
            create_data=structure("createData"),
            create_attestation=structure("createAttestation"),
            create_signature=structure("createSignature"),
            ek_certificate_ders=tuple(ders),
        )
