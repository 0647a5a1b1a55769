"""devid's own certificate extensions."""

from __future__ import annotations

import attrs
from cryptography import x509

from . import der

# An OID that needs no registration: Microsoft's arc for OIDs derived from a GUID
# (1.2.840.113556.1.8000.2554, then the GUID 961255eb-7486-4bf4-ac24-114c17b79ba1 in
# 16- and 24-bit pieces). Not the UUID arc 2.25.<128-bit integer>: Go's crypto/x509
# (lego, Caddy, step, Kubernetes...) rejects a certificate with an extension OID arc
# that large ("x509: malformed extension OID field"); RFC 5280 only asks for 28 bits.
DEVID_ARC = "1.2.840.113556.1.8000.2554.38418.21995.29830.19444.44068.1133591.12032929"
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
