"""A SCEP client for the interop tests: RFC 8894 over HTTPS with ``engine.scep``'s builders.

It does what micromdm's ``scepclient`` does (GetCACert, a PKCSReq signed by a
self-signed certificate and carrying the challenge password in the CSR, a RenewalReq
signed by the certificate being renewed), with AES-256-CBC content encryption, which
``scepclient`` 2.1 cannot send (it always encrypts with single DES); and it polls a
pending request with CertPoll (IssuerAndSubject) as RFC 8894 section 3.3.3 describes.
"""

from __future__ import annotations

import os
import ssl
from datetime import UTC, datetime
from pathlib import Path

import attrs
import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import AttributeOID, NameOID

from engine.scep import (
    CertRep,
    MessageType,
    Signer,
    build_pki_message,
    issuer_and_subject,
    read_cert_rep,
    read_certs_only,
)
from hosts.testing.keys import self_signed_certificate as self_signed


class OSRandom:
    """Content keys, IVs and nonces from the operating system."""

    def bytes(self, n: int) -> bytes:
        return os.urandom(n)


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def csr_der(key: rsa.RSAPrivateKey, common_name: str, challenge: str | None) -> bytes:
    """A CSR for CN=*common_name*, with *challenge* as its challengePassword when given."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = x509.CertificateSigningRequestBuilder().subject_name(name)
    if challenge is not None:
        builder = builder.add_attribute(AttributeOID.CHALLENGE_PASSWORD, challenge.encode())
    return builder.sign(key, hashes.SHA256()).public_bytes(Encoding.DER)


@attrs.define
class SCEPClient:
    """One provisioner's SCEP endpoint, ``{url}/scep/{provisioner}``, trusted through *root*."""

    url: str
    provisioner: str
    root: Path

    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.root))

    @property
    def endpoint(self) -> str:
        return f"{self.url}/scep/{self.provisioner}"

    def get(self, operation: str) -> httpx.Response:
        response = httpx.get(
            self.endpoint, params={"operation": operation}, verify=self.tls(), timeout=10
        )
        assert response.status_code == 200, (operation, response.status_code, response.text)
        return response

    def ca_caps(self) -> list[str]:
        return self.get("GetCACaps").text.split()

    def ca_certificates(self) -> tuple[x509.Certificate, ...]:
        """GetCACert: the RA certificate first, then the CA chain."""
        certificates, _ = read_certs_only(self.get("GetCACert").content)
        return certificates

    def ra(self) -> x509.Certificate:
        """The certificate requests are encrypted to (the one RSA certificate of GetCACert)."""
        (ra,) = [c for c in self.ca_certificates() if isinstance(c.public_key(), rsa.RSAPublicKey)]
        return ra

    def operation(
        self,
        message_type: MessageType,
        transaction_id: str,
        content: bytes,
        signer: Signer,
    ) -> CertRep:
        """One PKIOperation (POST); the CertRep read and, on SUCCESS, decrypted."""
        ra = self.ra()
        message = build_pki_message(
            message_type=message_type,
            transaction_id=transaction_id,
            sender_nonce=os.urandom(16),
            content=content,
            recipient=ra,
            signer=signer,
            now=datetime.now(UTC),
            random=OSRandom(),
        )
        response = httpx.post(
            self.endpoint,
            params={"operation": "PKIOperation"},
            content=message,
            headers={"content-type": "application/x-pki-message"},
            verify=self.tls(),
            timeout=10,
        )
        assert response.status_code == 200, (response.status_code, response.text)
        key = signer.key
        assert isinstance(key, rsa.RSAPrivateKey)
        return read_cert_rep(response.content, trusted=[ra], recipient=signer.certificate, key=key)

    def enrol(
        self,
        key: rsa.RSAPrivateKey,
        common_name: str,
        challenge: str | None,
        transaction_id: str | None = None,
        signer: Signer | None = None,
    ) -> CertRep:
        """A PKCSReq for CN=*common_name*, signed by *signer* (default: a new self-signed
        certificate of *key*)."""
        signer = signer or Signer(self_signed(key, common_name), key)
        return self.operation(
            MessageType.PKCS_REQ,
            transaction_id or os.urandom(10).hex(),
            csr_der(key, common_name, challenge),
            signer,
        )

    def renew(self, key: rsa.RSAPrivateKey, certificate: x509.Certificate) -> CertRep:
        """A RenewalReq with no challenge, signed by *certificate* (and *key*)."""
        common_name = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        assert isinstance(common_name, str)
        return self.operation(
            MessageType.RENEWAL_REQ,
            os.urandom(10).hex(),
            csr_der(key, common_name, None),
            Signer(certificate, key),
        )

    def poll(self, signer: Signer, transaction_id: str) -> CertRep:
        """CertPoll for a pending PKCSReq that *signer* signed: IssuerAndSubject names the
        issuing CA (the RA certificate's issuer) and the request's subject."""
        content = issuer_and_subject(self.ra().issuer, signer.certificate.subject)
        return self.operation(MessageType.CERT_POLL, transaction_id, content, signer)
