"""Key types devid accepts, and the rules that go with each."""

from __future__ import annotations

import enum

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)

from .errors import BadRequest, ConfigurationError

MIN_RSA_BITS = 2048


class KeyType(enum.Enum):
    """A key algorithm and size, named as operators write it in config."""

    P256 = "P-256"
    P384 = "P-384"
    ED25519 = "Ed25519"
    RSA2048 = "RSA-2048"
    RSA3072 = "RSA-3072"
    RSA4096 = "RSA-4096"

    @classmethod
    def parse(cls, text: str) -> KeyType:
        for member in cls:
            if member.value.lower() == text.strip().lower():
                return member
        names = ", ".join(m.value for m in cls)
        raise ConfigurationError(f"unknown key type {text!r}; expected one of {names}")

    @property
    def rsa_bits(self) -> int | None:
        if self.value.startswith("RSA-"):
            return int(self.value[4:])
        return None


def key_type_of(key: CertificatePublicKeyTypes) -> KeyType:
    """Classify a public key, refusing anything devid does not accept."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        if isinstance(key.curve, ec.SECP256R1):
            return KeyType.P256
        if isinstance(key.curve, ec.SECP384R1):
            return KeyType.P384
        raise BadRequest(f"unsupported elliptic curve {key.curve.name}; use P-256 or P-384")
    if isinstance(key, ed25519.Ed25519PublicKey):
        return KeyType.ED25519
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise BadRequest(f"RSA key of {key.key_size} bits is too small; minimum {MIN_RSA_BITS}")
        if key.key_size >= 4096:
            return KeyType.RSA4096
        if key.key_size >= 3072:
            return KeyType.RSA3072
        return KeyType.RSA2048
    raise BadRequest(f"unsupported key algorithm {type(key).__name__}")


def signature_hash_for(
    key: CertificateIssuerPrivateKeyTypes | CertificatePublicKeyTypes,
) -> hashes.HashAlgorithm | None:
    """The hash an issuer with this key signs certificates with (None for Ed25519)."""
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return hashes.SHA384() if key.curve.key_size >= 384 else hashes.SHA256()
    return hashes.SHA256()
