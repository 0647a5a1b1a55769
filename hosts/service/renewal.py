"""``POST /1.0/renew``: the host's half of renewal.

The client proves the current certificate over mTLS. The host checks that this CA
issued it and still holds it active, gathers what the store knows (the certificate's
record, the device it names, the certificate that obtained it, the account), and asks
the provisioner that issued it (``authorize_renew``); a provisioner that does not
implement that step renews nothing. The renewed certificate keeps the original's
provisioner and evidence, adds ``renewed_from`` and what the renewal checked, and ends
no later than the provisioner's limit (an account certificate: its device certificate).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from engine.errors import Forbidden, ProtocolError, Unauthorized
from engine.extensions import ProvisionerRef
from engine.pipeline import IssuedCertificate, Issuer, renew_certificate
from engine.ports import Clock, Random
from hosts.service.audit import device_actor
from hosts.service.ca import CA, load_peer, serial_hex
from hosts.service.lookup import certificate_facts
from hosts.store import CertificateRecord, Stores
from plugins.base import Provisioner
from plugins.provisioner import (
    RenewAuthorization,
    RenewContext,
)

#: Finds a provisioner by name (configured, or an account's), None if there is none.
FindProvisioner = Callable[[str], Provisioner | None]

# Evidence keys a renewal replaces rather than inherits.
_RENEWAL_KEYS = ("renewed_from", "renewal")


def renew_context(
    stores: Stores, now: datetime, cert: x509.Certificate, record: CertificateRecord
) -> RenewContext:
    """What the store says, now, about the certificate being renewed and what it rests on."""
    evidence = record.evidence
    device = stores.devices.get_device(record.device) if record.device is not None else None
    leaf = None
    leaf_serial = evidence.get("leaf_serial")
    if isinstance(leaf_serial, str) and leaf_serial:
        found = stores.certificates.get_certificate(leaf_serial.lower())
        leaf = certificate_facts(found) if found is not None else None
    account = None
    account_name = evidence.get("account")
    if isinstance(account_name, str) and account_name:
        account = stores.accounts.get_account(account_name)
    return RenewContext(
        now=now,
        certificate=cert,
        record=certificate_facts(record),
        device=device,
        leaf=leaf,
        account=account,
    )


def _provisioner(find: FindProvisioner, record: CertificateRecord) -> Provisioner:
    name = record.provisioner_name
    provisioner = find(name)
    if provisioner is None:
        if record.provisioner_type == "attestation":
            raise Forbidden(
                "AK certificates are not renewed: the device attests again (POST /attest)"
            )
        # Removed from the config, or devid's own (an admin certificate): nobody renews it.
        raise Forbidden(f"no provisioner named {name!r} renews certificates here")
    if provisioner.certificate_ref.type != record.provisioner_type:
        raise Unauthorized(
            f"the provisioner {name!r} is no longer the one that issued this certificate"
        )
    return provisioner


def _same_issuer(provisioner: Provisioner, record: CertificateRecord) -> None:
    """A renewal comes from the CA the provisioner issues from now. A JWK certificate an
    earlier version issued from the Agent CA, renewed there, would keep a non-device
    certificate on the device CA."""
    issuer = getattr(provisioner, "issuer", None)
    if issuer != record.issuer:
        raise Forbidden(
            f"this certificate is from the {record.issuer!r} CA, and the provisioner"
            f" {record.provisioner_name!r} now issues from {issuer!r}: get a new certificate"
        )


def authorize_renewal(provisioner: Provisioner, ctx: RenewContext) -> RenewAuthorization:
    """The provisioner's decision (the base class refuses); fail closed on anything but a
    RenewAuthorization."""
    result = provisioner.authorize_renew(ctx)
    if not isinstance(result, RenewAuthorization):
        raise Forbidden(f"provisioner {provisioner.name!r} did not authorize the renewal")
    return result


def renewal_evidence(
    record: CertificateRecord, authorization: RenewAuthorization, ctx: RenewContext
) -> dict[str, Any]:
    """The original evidence, the serial it was renewed from, and what the renewal checked."""
    inherited = {k: v for k, v in record.evidence.items() if k not in _RENEWAL_KEYS}
    renewal: dict[str, Any] = {
        "provisioner": record.provisioner_name,
        "at": ctx.now.isoformat(),
        "certificate_status": record.status,
        "checked": _jsonable(authorization.checked),
    }
    if authorization.not_after_limit is not None:
        renewal["not_after_limit"] = authorization.not_after_limit.isoformat()
    return {**inherited, "renewed_from": record.serial, "renewal": renewal}


def _jsonable(value: Mapping[str, Any]) -> dict[str, Any]:
    return {
        str(k): v if isinstance(v, str | int | float | bool | type(None)) else str(v)
        for k, v in value.items()
    }


def renew(
    cert: x509.Certificate,
    record: CertificateRecord,
    issuer: Issuer,
    *,
    find_provisioner: FindProvisioner,
    stores: Stores,
    clock: Clock,
    random: Random,
) -> IssuedCertificate:
    """Check, authorize and sign the renewal of *cert* (the mTLS client certificate),
    which the caller found active and verified against *issuer* (its *record*)."""
    if record.der != cert.public_bytes(Encoding.DER):
        raise Unauthorized("certificate is unknown to this CA")
    if record.issuer != issuer.name:
        raise Unauthorized("certificate was not issued by this CA")
    ref = ProvisionerRef.from_certificate(cert)
    if ref is None or (ref.type, ref.name) != (record.provisioner_type, record.provisioner_name):
        raise Forbidden("certificate was not issued by a devid provisioner")
    provisioner = _provisioner(find_provisioner, record)
    ctx = renew_context(stores, clock.now(), cert, record)
    authorization = authorize_renewal(provisioner, ctx)
    _same_issuer(provisioner, record)
    return renew_certificate(
        cert,
        issuer,
        clock,
        random,
        not_after_limit=authorization.not_after_limit,
        evidence=renewal_evidence(record, authorization, ctx),
    )


class RenewalService:
    """``POST /1.0/renew``: the client proves the current certificate over mTLS."""

    def __init__(self, ca: CA) -> None:
        self.ca = ca

    def renew(self, peer_der: bytes | None) -> IssuedCertificate:
        if peer_der is None:
            raise Unauthorized(
                "renewal needs the current certificate as the TLS client certificate"
            )
        ca = self.ca
        cert = load_peer(peer_der)
        try:
            record, issuer = ca.known_certificate(cert)
            issued = renew(
                cert,
                record,
                issuer,
                find_provisioner=ca.provisioners.named,
                stores=ca.stores,
                clock=ca.clock,
                random=ca.random,
            )
        except ProtocolError as exc:
            self._refused(cert, exc)
            raise
        ca.record_issued(
            issued,
            actor=renewal_actor(record),
            action="certificate.renewed",
            renewed_from=record.serial,
        )
        return issued

    def _refused(self, cert: x509.Certificate, exc: ProtocolError) -> None:
        """Audit a refused renewal of a certificate this CA issued (revoked, expired, its
        provisioner refusing); one it never issued is only answered."""
        record = self.ca.stores.certificates.get_certificate(serial_hex(cert.serial_number))
        if record is None:
            return
        self.ca.auditor.record(
            renewal_actor(record), "renewal.refused", record.serial, "refused", error=exc.detail
        )


def renewal_actor(record: CertificateRecord) -> str:
    """Who renews a certificate: its device when it names one, else its holder."""
    return (
        device_actor(record.device) if record.device is not None else f"certificate:{record.serial}"
    )
