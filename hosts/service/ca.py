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
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from engine.acme.finalize import read_permanent_identifier
from engine.attestation.akcert import PERMANENT_IDENTIFIER_OID, permanent_identifier_name
from engine.errors import BadRequest, Unauthorized
from engine.inventory import ek_urn_from_digest
from engine.jose import b64url_decode
from engine.pipeline import IssuedCertificate, Issuer
from engine.ports import Clock, Random
from hosts.store import AuditEvent, CertificateRecord, Stores, UsedToken
from plugins.manager import PluginManager
from plugins.provisioner import AuthorizeContext, TokenUse

from .audit import Auditor, provisioner_actor
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


def _other_name_text(name: x509.OtherName) -> str:
    """An otherName as logs show it: a PermanentIdentifier by its value (devid's EK-digest
    form as the device's EK URN), any other by its OID."""
    if name.type_id == PERMANENT_IDENTIFIER_OID:
        value = read_permanent_identifier(name.value)
        if value:
            if name.value == permanent_identifier_name(value).value:
                try:
                    digest = b64url_decode(value)
                except BadRequest:
                    digest = b""
                if len(digest) == 32:
                    return f"permanentIdentifier:{ek_urn_from_digest(digest)}"
            return f"permanentIdentifier:{value}"
    return f"otherName:{name.type_id.dotted_string}"


def san_log_texts(issued: IssuedCertificate) -> list[str]:
    """Every name of *issued*'s SubjectAlternativeName, for logs and the audit log: the
    SANs the store keeps, then otherNames (a device certificate's PermanentIdentifier)
    and directory names, which ``san_texts`` leaves out."""
    texts = list(issued.san_texts)
    names = issued.general_names
    if names is None:
        try:
            names = tuple(
                issued.certificate.extensions.get_extension_for_class(
                    x509.SubjectAlternativeName
                ).value
            )
        except (x509.ExtensionNotFound, ValueError):
            names = ()
    for name in names:
        if isinstance(name, x509.OtherName):
            texts.append(_other_name_text(name))
        elif isinstance(name, x509.DirectoryName):
            texts.append(f"dirName:{name.value.rfc4514_string()}")
    return texts


class _CAClock:
    """The CA's clock as it is at each call (tests replace ``CA.clock``)."""

    def __init__(self, ca: CA) -> None:
        self.ca = ca

    def now(self) -> datetime:
        return self.ca.clock.now()


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
        #: The audit log, which every service records its changes in.
        self.auditor = Auditor(stores.audit, plugins, _CAClock(self))

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

    def record_issued(
        self,
        issued: IssuedCertificate,
        token: TokenUse | None = None,
        *,
        actor: str | None = None,
        action: str = "certificate.issued",
        **details: Any,
    ) -> None:
        """Store *issued* (and mark *token* used in the same commit), then log and audit it
        (see :meth:`announce_issued`).

        Raises Unauthorized, storing nothing, if *token* was used before.
        """
        now = self.clock.now()
        fields = self._issued_fields(issued)
        # The audit event is written in the certificate's own commit (no second fsync).
        event = self.auditor.event(
            actor or provisioner_actor(issued.provisioner.name),
            action,
            issued.serial_hex,
            **fields,
            **details,
        )
        recorded = self.stores.certificates.record_certificate(
            self.certificate_record(issued),
            used_token=None
            if token is None
            else UsedToken(token.provisioner, token.token_id, token.expires_at, now),
            event=event,
        )
        if not recorded:
            raise Unauthorized("token has already been used")
        log.info("certificate issued", extra=fields)
        self.auditor.announce(event)

    @staticmethod
    def _issued_fields(issued: IssuedCertificate) -> dict[str, Any]:
        return {
            "serial": issued.serial_hex,
            "subject": issued.subject_text,
            "sans": san_log_texts(issued),
            "provisioner": issued.provisioner.name,
            "issuer": issued.issuer.name,
            "not_after": issued.not_after.isoformat(),
        }

    def issued_event(
        self,
        issued: IssuedCertificate,
        *,
        actor: str | None = None,
        action: str = "certificate.issued",
        **details: Any,
    ) -> AuditEvent:
        """The audit event of *issued*, not kept yet: the store writes it in the
        certificate's own commit (ACME's finalize), then :meth:`announce_issued` tells.
        *action* says how it came, *actor* who asked for it (by default its
        provisioner), *details* what else to audit."""
        return self.auditor.event(
            actor or provisioner_actor(issued.provisioner.name),
            action,
            issued.serial_hex,
            **self._issued_fields(issued),
            **details,
        )

    def announce_issued(self, event: AuditEvent) -> None:
        """Log a certificate that was just stored with its audit *event* (from
        :meth:`issued_event`: the log line has the event's details), and hand the event to
        the ``devid_audit`` hooks."""
        log.info("certificate issued", extra=dict(event.details))
        self.auditor.announce(event)

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
