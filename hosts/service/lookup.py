"""The read-only lookup provisioners get (plugins.api.Lookup), backed by the CA's store."""

from __future__ import annotations

from engine.accounts import Account
from engine.inventory import Device
from hosts.store import CertificateRecord, Stores
from plugins.provisioner import CertificateFacts


def certificate_facts(record: CertificateRecord) -> CertificateFacts:
    return CertificateFacts(
        serial=record.serial,
        issuer=record.issuer,
        provisioner_type=record.provisioner_type,
        provisioner_name=record.provisioner_name,
        status=record.status,
        not_before=record.not_before,
        not_after=record.not_after,
        evidence=dict(record.evidence),
        device=record.device,
        der=record.der,
    )


class StoreLookup:
    """Devices, certificates and accounts as the store holds them now; nothing writes."""

    def __init__(self, stores: Stores) -> None:
        self._stores = stores

    def device(self, ek_urn: str) -> Device | None:
        return self._stores.devices.get_device(ek_urn)

    def certificate(self, serial: str) -> CertificateFacts | None:
        record = self._stores.certificates.get_certificate(serial)
        return None if record is None else certificate_facts(record)

    def account(self, name: str) -> Account | None:
        return self._stores.accounts.get_account(name)
