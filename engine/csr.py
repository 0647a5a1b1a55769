"""Certificate signing requests: parsed once, verified once, described once."""

from __future__ import annotations

import hashlib

import attrs
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtensionOID, NameOID

from .errors import BadRequest
from .keys import KeyType, key_type_of
from .names import SAN

MAX_CSR_BYTES = 32 * 1024


@attrs.frozen
class CSRInfo:
    """A CSR whose signature has been checked, with the facts policy needs."""

    csr: x509.CertificateSigningRequest
    der: bytes
    public_key: CertificatePublicKeyTypes
    key_type: KeyType
    common_name: str | None
    sans: tuple[SAN, ...]
    # otherName SANs (PermanentIdentifier, HardwareModuleName): kept apart, because only
    # a policy that understands them (ACME device-attest-01) may accept them.
    other_names: tuple[x509.OtherName, ...] = ()

    @property
    def sha256(self) -> bytes:
        return hashlib.sha256(self.der).digest()


def parse_csr(data: str | bytes) -> CSRInfo:
    """Parse a PEM or DER CSR, check its self-signature and its key."""
    if isinstance(data, str):
        data = data.encode("utf-8", "replace")
    if len(data) > MAX_CSR_BYTES:
        raise BadRequest("CSR is too large")
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            csr = x509.load_pem_x509_csr(data)
        else:
            csr = x509.load_der_x509_csr(data)
        public_key = csr.public_key()
    except (ValueError, TypeError) as exc:
        raise BadRequest(f"CSR cannot be parsed: {exc}") from None
    key_type = key_type_of(public_key)
    try:
        signature_ok = csr.is_signature_valid
    except Exception:  # unsupported signature algorithms raise from the backend
        signature_ok = False
    if not signature_ok:
        raise BadRequest("CSR signature is invalid")
    try:
        cns = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        extensions = csr.extensions
    except ValueError as exc:
        raise BadRequest(f"CSR has malformed attributes: {exc}") from None
    common_name = None
    if cns:
        value = cns[0].value
        common_name = value if isinstance(value, str) else value.decode("utf-8", "replace")
    sans: tuple[SAN, ...] = ()
    other_names: tuple[x509.OtherName, ...] = ()
    try:
        ext = extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    except x509.ExtensionNotFound:
        pass
    else:
        assert isinstance(ext.value, x509.SubjectAlternativeName)
        other_names = tuple(n for n in ext.value if isinstance(n, x509.OtherName))
        sans = tuple(
            SAN.from_general_name(name)
            for name in ext.value
            if not isinstance(name, x509.OtherName)
        )
    return CSRInfo(
        csr=csr,
        der=csr.public_bytes(Encoding.DER),
        public_key=public_key,
        key_type=key_type,
        common_name=common_name,
        sans=sans,
        other_names=other_names,
    )
