"""Certificate templates: what a certificate will say, before it is signed."""

from __future__ import annotations

import functools
from typing import Any

import attrs
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .csr import CSRInfo
from .errors import BadRequest
from .keys import KeyType
from .names import SAN

KEY_USAGES = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
)


@attrs.frozen
class CertificateTemplate:
    """The editable content of a leaf certificate; template modifiers return new ones."""

    subject: x509.Name
    sans: tuple[SAN, ...] = ()
    key_usage: frozenset[str] = frozenset({"digital_signature"})
    extended_key_usage: tuple[x509.ObjectIdentifier, ...] = (
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    extra_extensions: tuple[x509.Extension[x509.ExtensionType], ...] = ()
    # Names that are not plain SANs (directoryName, otherName) go here verbatim.
    extra_general_names: tuple[x509.GeneralName, ...] = ()

    def __attrs_post_init__(self) -> None:
        unknown = self.key_usage - set(KEY_USAGES)
        if unknown:
            raise ValueError(f"unknown key usages {sorted(unknown)}")

    def evolve(self, **changes: Any) -> CertificateTemplate:
        return attrs.evolve(self, **changes)

    def key_usage_extension(self) -> x509.KeyUsage:
        ku = self.key_usage
        return x509.KeyUsage(
            digital_signature="digital_signature" in ku,
            content_commitment="content_commitment" in ku,
            key_encipherment="key_encipherment" in ku,
            data_encipherment="data_encipherment" in ku,
            key_agreement="key_agreement" in ku,
            key_cert_sign=False,
            crl_sign=False,
            encipher_only=False,
            decipher_only=False,
        )

    def general_names(self) -> list[x509.GeneralName]:
        return [san.to_general_name() for san in self.sans] + list(self.extra_general_names)


@functools.lru_cache(maxsize=256)
def subject_with_common_name(common_name: str | None) -> x509.Name:
    """The subject ``CN=common_name`` (empty without one). Names are immutable, and one
    request builds the same one twice (from the CSR, then from the authorization)."""
    if not common_name:
        return x509.Name([])
    try:
        attribute = x509.NameAttribute(NameOID.COMMON_NAME, common_name)
    except ValueError:  # X.520 ub-common-name: 64 characters
        raise BadRequest("the common name must be at most 64 characters") from None
    return x509.Name([attribute])


def leaf_template_from_csr(csr: CSRInfo) -> CertificateTemplate:
    """The default template: the CSR's common name and SANs, TLS server and client use."""
    usages = {"digital_signature"}
    if csr.key_type.rsa_bits is not None:
        usages.add("key_encipherment")
    elif csr.key_type in (KeyType.P256, KeyType.P384):
        usages.add("key_agreement")
    return CertificateTemplate(
        subject=subject_with_common_name(csr.common_name),
        sans=csr.sans,
        key_usage=frozenset(usages),
    )
