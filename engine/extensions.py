"""devid's own certificate extensions."""

from __future__ import annotations

import attrs
from cryptography import x509

from . import der

# An OID under the UUID arc (ITU-T X.667, 2.25) so devid needs no registration.
DEVID_ARC = "2.25.199479403370688124966990193757370424225"
PROVISIONER_OID = x509.ObjectIdentifier(DEVID_ARC + ".1")


@attrs.frozen
class ProvisionerRef:
    """Which provisioner authorized a certificate: its type and configured name."""

    type: str
    name: str

    def to_extension(self) -> x509.UnrecognizedExtension:
        value = der.sequence(der.utf8_string(self.type), der.utf8_string(self.name))
        return x509.UnrecognizedExtension(PROVISIONER_OID, value)

    @classmethod
    def from_certificate(cls, cert: x509.Certificate) -> ProvisionerRef | None:
        try:
            ext = cert.extensions.get_extension_for_oid(PROVISIONER_OID)
        except x509.ExtensionNotFound:
            return None
        assert isinstance(ext.value, x509.UnrecognizedExtension)
        items = der.read_utf8_sequence(ext.value.value)
        if len(items) != 2:
            return None
        return cls(type=items[0], name=items[1])
