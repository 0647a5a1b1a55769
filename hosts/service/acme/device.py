"""device-attest-01 on the host: decode ``attObj``, run the format plugin, and (when the
provisioner requires it) check the device inventory.

Verification needs no network, so it runs while the client waits; the engine
then applies the rule that the ordered identifier must be bound to the device
(:func:`engine.acme.challenges.attestation_verified`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from cryptography import x509

from engine.acme.device_attest import AttestedDevice, bad_statement, decode_attestation_object
from engine.acme.problems import ACMEProblem, unauthorized
from engine.errors import ProtocolError
from engine.inventory import ek_urn_from_digest, normalize_ek_urn
from engine.jose import b64url_decode
from hosts.service.ca import CA
from plugins.base import ACMEIssuing

log = logging.getLogger("devid.acme")


def verify_device_attestation(
    ca: CA,
    provisioner: ACMEIssuing,
    raw: bytes,
    key_authorization: str,
    now: datetime,
) -> AttestedDevice:
    """What the attestation proves; ``badAttestationStatement`` (or ``unauthorized``)
    for anything wrong, never another exception."""
    statement = decode_attestation_object(raw)
    if not provisioner.accepts_format(statement.format):
        accepted = ", ".join(provisioner.attestation_formats)
        raise bad_statement(
            f"attestation format {statement.format!r} is not accepted here (accepted: {accepted})"
        )
    fmt = ca.plugins.attestation_formats().get(statement.format)
    if fmt is None:
        raise bad_statement(f"no plugin verifies attestation format {statement.format!r}")
    attestation_ca = ca.issuers.get("attestation")
    context = provisioner.attestation_context(
        statement.format,
        now,
        ca_roots=(ca.root,),
        ca_intermediates=(attestation_ca.certificate,) if attestation_ca else (),
    )
    try:
        result = fmt.verify(statement.statement, key_authorization, context)
    except ACMEProblem:
        raise
    except ProtocolError as exc:
        raise bad_statement(exc.detail) from None
    except Exception:
        log.exception("attestation format %s failed unexpectedly", statement.format)
        raise bad_statement("the attestation statement could not be verified") from None
    device: AttestedDevice = result.attested_device(statement.format)
    require_unrevoked_ak(ca, result.chain)
    if provisioner.require_inventory:
        require_registered(ca, device)
    return device


def require_unrevoked_ak(ca: CA, chain: Sequence[x509.Certificate]) -> None:
    """An AK certificate from this CA's Attestation CA counts only while it is active in
    the store: disabling or removing a device revokes it, and the device must attest again."""
    attestation_ca = ca.issuers.get("attestation")
    if not chain or attestation_ca is None:
        return
    leaf = chain[0]
    if leaf.issuer != attestation_ca.certificate.subject:
        return
    record = ca.stores.certificates.get_certificate(format(leaf.serial_number, "x"))
    # Certificates are equal exactly when their DER is (compared without re-encoding).
    if record is None or x509.load_der_x509_certificate(record.der) != leaf:
        raise unauthorized("the AK certificate is unknown to this CA: attest again")
    if record.status != "active":
        raise unauthorized(f"the AK certificate is {record.status}: attest again")


def require_registered(ca: CA, device: AttestedDevice) -> None:
    """The device must be in the inventory, by an EK its attestation names, and active
    now (its AK certificate may be older than its disabling). An attestation that names
    no EK (``apple``, ``step``) cannot be registered, so it is refused."""
    urns: set[str] = set()
    for urn in device.ek_urns:
        try:
            urns.add(normalize_ek_urn(urn))
        except ProtocolError:
            continue
    for value in device.permanent_identifiers:
        try:
            digest = b64url_decode(value)
        except ProtocolError:
            continue
        if len(digest) == 32:
            urns.add(ek_urn_from_digest(digest))
    if not urns:
        # apple, step: the vendor vouches for the hardware, not that it is one of ours,
        # and the inventory holds devices by their TPM's EK: nothing to find, so refuse.
        raise unauthorized(
            "this provisioner admits registered devices only (require_inventory), and the"
            " inventory holds TPM devices by their EK; this attestation names no EK"
        )
    devices = ca.stores.devices
    known = [d for d in (devices.get_device(u) for u in sorted(urns)) if d is not None]
    if not known:
        raise unauthorized("the attested device is not in this CA's inventory")
    if not any(d.active for d in known):
        raise unauthorized("the attested device is disabled in this CA's inventory")
