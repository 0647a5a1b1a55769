"""The HTTPS certificate a host presents, issued by the devid TLS CA."""

from __future__ import annotations

import os
import secrets
import ssl
from datetime import timedelta

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from engine.extensions import ProvisionerRef
from engine.names import SAN
from engine.pipeline import IssuedCertificate, issue_own_certificate
from engine.template import CertificateTemplate, subject_with_common_name

from .authority import Authority
from .pki import write_private

SERVER_CERT_LIFETIME = timedelta(days=7)
SERVER_PROVISIONER = ProvisionerRef(type="internal", name="tls-server")


class ServerTLS:
    """Owns the host's TLS context and can rotate its certificate in place.

    Clients are asked for a certificate (optional) and it is checked against
    the devid root, so ``/1.0/renew`` and ``/1.0/revoke`` can use mTLS.
    """

    def __init__(
        self,
        authority: Authority,
        names: list[str],
        *,
        alpn: tuple[str, ...] = ("h2", "http/1.1"),
        instance: str = "server",
    ) -> None:
        self.authority = authority
        self.names = sorted(set(names))
        self.directory = authority.config.data_dir / "tls"
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.context.set_alpn_protocols(list(alpn))
        self.context.verify_mode = ssl.CERT_OPTIONAL
        self.context.load_verify_locations(cadata=authority.root_pem)
        # One TLS 1.3 session ticket per handshake (OpenSSL sends two): a client that
        # resumes needs one, and each costs the server an encryption of the session, its
        # client certificate chain included (measured: about 35 µs a ticket after a plain
        # handshake, 175 µs after one with a client certificate).
        self.context.num_tickets = 1
        # Each server process keeps its own files, so worker processes never race.
        self.certfile = self.directory / f"{instance}.crt"
        self.keyfile = self.directory / f"{instance}.key"
        self.rotate()

    def issue(self) -> tuple[IssuedCertificate, ec.EllipticCurvePrivateKey]:
        authority = self.authority
        key = ec.generate_private_key(ec.SECP256R1())
        template = CertificateTemplate(
            subject=subject_with_common_name(self.names[0] if self.names else "devid"),
            sans=tuple(SAN.parse(name) for name in self.names),
            extended_key_usage=(ExtendedKeyUsageOID.SERVER_AUTH,),
        )
        issued = issue_own_certificate(
            template,
            key.public_key(),
            authority.issuers["tls"],
            SERVER_PROVISIONER,
            now=authority.clock.now(),
            lifetime=SERVER_CERT_LIFETIME,
            random=authority.random,
        )
        return issued, key

    def rotate(self) -> None:
        """Issue a fresh server certificate and load it; new handshakes use it."""
        issued, key = self.issue()
        password = secrets.token_bytes(32)
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in issued.chain)
        self.certfile.write_bytes(chain)
        write_private(
            self.keyfile,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(password),
            ),
        )
        self.context.load_cert_chain(self.certfile, self.keyfile, password=password)
        self.authority.record_issued(issued)  # the server certificate is an issued one too

    @property
    def rotate_every(self) -> timedelta:
        return SERVER_CERT_LIFETIME / 2
