"""Making new software keys of the types devid accepts (CA, provisioner and client keys)."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from engine.keys import KeyType


def generate_key(key_type: KeyType) -> CertificateIssuerPrivateKeyTypes:
    if key_type is KeyType.P256:
        return ec.generate_private_key(ec.SECP256R1())
    if key_type is KeyType.P384:
        return ec.generate_private_key(ec.SECP384R1())
    if key_type is KeyType.ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    assert key_type.rsa_bits is not None
    return rsa.generate_private_key(public_exponent=65537, key_size=key_type.rsa_bits)
