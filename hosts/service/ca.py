"""What every service of one CA shares: its keys and issuers, provisioners, stores,
plugins, clock, randomness and endpoints, and the few steps they all take (recording an
issued certificate, using a one-time token, recognising a certificate of its own).

No use case lives here; the services (signing, renewal, revocation, attestation,
inventory, accounts, admin, ACME) each take this object, and none imports another's
module through it. ``hosts.core.authority`` builds one from the data directory.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from engine.errors import Unauthorized
from engine.pipeline import IssuedCertificate, Issuer
from engine.ports import Clock, Random
from hosts.store import CertificateRecord, Stores, UsedToken
from plugins.manager import PluginManager
from plugins.provisioner import AuthorizeContext, TokenUse

from .endpoints import Endpoints
from .lookup import StoreLookup
from .provisioners import ProvisionerRegistry

log = logging.getLogger("devid.ca")


def serial_hex(serial: int) -> str:
    """A serial as the store keys it: lowercase hex, no leading zeros."""
    return format(serial, "x")


def load_peer(der: bytes) -> x509.Certificate:
    """The TLS client certificate, parsed; Unauthorized if it cannot be."""
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError:
        raise Unauthorized("the TLS client certificate cannot be parsed") from None


class CA:
    """One loaded CA's shared parts (see the module docstring)."""

    def __init__(
        self,
        *,
        root: x509.Certificate,
        issuers: Mapping[str, Issuer],
        provisioners: ProvisionerRegistry,
        plugins: PluginManager,
        stores: Stores,
        clock: Clock,
        random: Random,
        lookup: StoreLookup,
    ) -> None:
        self.root = root
        self.root_pem = root.public_bytes(Encoding.PEM).decode()
        self.root_fingerprint = hashlib.sha256(root.public_bytes(Encoding.DER)).hexdigest()
        self.issuers = dict(issuers)
        self.provisioners = provisioners
        self.plugins = plugins
        self.stores = stores
        self.clock = clock
        self.random = random
        self.lookup = lookup
        self.endpoints = Endpoints()

    def context(self, path: str) -> AuthorizeContext:
        """What a provisioner is told about a request to *path*: now, and its audiences."""
        return AuthorizeContext(now=self.clock.now(), audiences=self.endpoints.audiences(path))

    # --- issued certificates -----------------------------------------------------------------

    def certificate_record(self, issued: IssuedCertificate) -> CertificateRecord:
        """What the store keeps about *issued* (ACME stores it with its order)."""
        return CertificateRecord(
            serial=issued.serial_hex,
            issuer=issued.issuer.name,
            subject=issued.subject_text,
            sans=issued.san_texts,
            provisioner_type=issued.provisioner.type,
            provisioner_name=issued.provisioner.name,
            not_before=issued.not_before,
            not_after=issued.not_after,
            der=issued.der,
            evidence=dict(issued.evidence),
            created_at=self.clock.now(),
        )

    def record_issued(self, issued: IssuedCertificate, token: TokenUse | None = None) -> None:
        """Store *issued* (and mark *token* used in the same commit), then log and audit it.

        Raises Unauthorized, storing nothing, if *token* was used before.
        """
        now = self.clock.now()
        recorded = self.stores.certificates.record_certificate(
            self.certificate_record(issued),
            used_token=None
            if token is None
            else UsedToken(token.provisioner, token.token_id, token.expires_at, now),
        )
        if not recorded:
            raise Unauthorized("token has already been used")
        self.announce_issued(issued)

    def announce_issued(self, issued: IssuedCertificate) -> None:
        """Log and audit a certificate that was just stored."""
        fields = {
            "serial": issued.serial_hex,
            "subject": issued.subject_text,
            "sans": list(issued.san_texts),
            "provisioner": issued.provisioner.name,
            "issuer": issued.issuer.name,
            "not_after": issued.not_after.isoformat(),
        }
        log.info("certificate issued", extra=fields)
        self.plugins.audit("certificate.issued", fields)

    def use_token(self, token: TokenUse | None) -> None:
        """Record a one-time token as used; Unauthorized if it was used before."""
        if token is None:
            return
        if not self.stores.tokens.use_token(
            token.provisioner, token.token_id, token.expires_at, self.clock.now()
        ):
            raise Unauthorized("token has already been used")

    # --- certificates presented to it ----------------------------------------------------------

    def known_certificate(self, cert: x509.Certificate) -> tuple[CertificateRecord, Issuer]:
        """A certificate we issued, still active and unexpired, verified against its issuer."""
        issuer = next(
            (i for i in self.issuers.values() if i.certificate.subject == cert.issuer), None
        )
        if issuer is None:
            raise Unauthorized("certificate was not issued by this CA")
        try:
            cert.verify_directly_issued_by(issuer.certificate)
        except Exception:
            raise Unauthorized("certificate signature does not verify") from None
        record = self.stores.certificates.get_certificate(serial_hex(cert.serial_number))
        if record is None:
            raise Unauthorized("certificate is unknown to this CA")
        if record.status != "active":
            raise Unauthorized(f"certificate is {record.status}")
        now = self.clock.now()
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise Unauthorized("certificate is not currently valid")
        return record, issuer
