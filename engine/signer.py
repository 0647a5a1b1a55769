"""The Signer protocol: how the engine signs without knowing where keys live.

cryptography's builders take a private-key object, so a signer hands out an
object of one of cryptography's private-key types. Software keys are used as
they are; hardware keys (TPM, PKCS#11, cloud KMS) subclass those types and
forward ``sign`` to the device, which keeps the builders unchanged.
"""

from __future__ import annotations

from typing import Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)

from .errors import ConfigurationError
from .keys import MIN_RSA_BITS, KeyType, key_type_of, signature_hash_for


class Signer(Protocol):
    """Something that can sign certificates and CRLs for an issuer."""

    @property
    def key_type(self) -> KeyType: ...

    @property
    def public_key(self) -> CertificatePublicKeyTypes: ...

    @property
    def private_key(self) -> CertificateIssuerPrivateKeyTypes:
        """A key object accepted by cryptography's certificate and CRL builders."""
        ...

    @property
    def hash_algorithm(self) -> hashes.HashAlgorithm | None:
        """The hash used in certificate signatures (None for Ed25519)."""
        ...

    def sign(self, data: bytes) -> bytes:
        """Sign *data* as an X.509 signatureValue (DER ECDSA, PKCS#1 v1.5 RSA, raw EdDSA)."""
        ...


class SoftwareSigner:
    """A signer holding the private key in process memory."""

    def __init__(self, private_key: CertificateIssuerPrivateKeyTypes) -> None:
        if isinstance(private_key, rsa.RSAPrivateKey) and private_key.key_size < MIN_RSA_BITS:
            raise ConfigurationError(f"RSA signing key of {private_key.key_size} bits is too small")
        if not isinstance(
            private_key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
        ):
            raise ConfigurationError(f"unsupported signing key {type(private_key).__name__}")
        self._key = private_key
        self._public = private_key.public_key()
        try:
            self._key_type = key_type_of(self._public)
        except Exception as exc:
            raise ConfigurationError(f"unsupported signing key: {exc}") from exc
        self._hash = signature_hash_for(private_key)
        # The parameters of every signature, made once.
        self._ecdsa = ec.ECDSA(self._hash) if self._hash is not None else None
        self._pkcs1 = padding.PKCS1v15()

    @property
    def key_type(self) -> KeyType:
        return self._key_type

    @property
    def public_key(self) -> CertificatePublicKeyTypes:
        return self._public

    @property
    def private_key(self) -> CertificateIssuerPrivateKeyTypes:
        return self._key

    @property
    def hash_algorithm(self) -> hashes.HashAlgorithm | None:
        return self._hash

    def sign(self, data: bytes) -> bytes:
        key = self._key
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return key.sign(data)
        assert self._hash is not None
        if isinstance(key, ec.EllipticCurvePrivateKey):
            assert self._ecdsa is not None
            return key.sign(data, self._ecdsa)
        assert isinstance(key, rsa.RSAPrivateKey)
        return key.sign(data, self._pkcs1, self._hash)
