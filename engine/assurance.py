"""Assurance markers: what a certificate's holder proved to get it, as a certificate policy.

Each enrolment method devid offers puts one certificate-policy OID in the certificates
it issues (the certificatePolicies extension, not critical), so a relying party can
match on how the holder was vetted as well as on which CA issued it:

- ``tpm-attested``: the certified key itself was proven to live in a TPM (ACME
  device-attest-01 with the ``tpm`` format: the device certificates of the Agent CA);
- ``mdm-challenge``: the client knew an enrolment challenge (SCEP: a static
  password, a one-time challenge, or one an MDM vouched for) or renewed a
  certificate that had been obtained that way; nothing about its hardware is proven;
- ``token``: the holder had a one-time token (JWK, X5C);
- ``operator``: an operator's command issued it (admin client certificates);
- ``device-account``: an account certificate (Wi-Fi, VPN, …) of a registered, active
  device, requested with a token its TPM-attested device certificate signed (the
  account key itself is not attested);
- ``domain-validated``: the holder controlled the names (ACME http-01, dns-01,
  tls-alpn-01);
- ``hardware-attested``: the key was attested by a hardware vendor's format other than
  TPM (ACME device-attest-01 with ``apple`` or ``step``);
- ``single-sign-on``: a person signed in with the organisation's OpenID provider (OIDC:
  an ID token the provider signed); it vouches for the person, not for any device;
- ``cloud-instance``: the cloud provider signed an identity document for this instance
  (GCP: the instance identity token Google's metadata server issues); it vouches for
  the virtual machine as its cloud account describes it, not for its hardware.

A renewal keeps the marker of the certificate it renews.

The OIDs sit under devid's own arc (:data:`engine.extensions.DEVID_ARC`), branch 2.
docs/ca.md lists them for relying parties.
"""

from __future__ import annotations

import enum

import attrs
from cryptography import x509

from .extensions import DEVID_ARC
from .template import CertificateTemplate

ASSURANCE_ARC = DEVID_ARC + ".2"


class Assurance(enum.Enum):
    """How a certificate's holder was vetted; the value is the policy OID's last arc."""

    TPM_ATTESTED = "1"
    MDM_CHALLENGE = "2"
    TOKEN = "3"
    OPERATOR = "4"
    DEVICE_ACCOUNT = "5"
    DOMAIN_VALIDATED = "6"
    HARDWARE_ATTESTED = "7"
    SINGLE_SIGN_ON = "8"
    CLOUD_INSTANCE = "9"

    @property
    def oid(self) -> x509.ObjectIdentifier:
        return _OIDS[self]

    @property
    def label(self) -> str:
        """The name docs and config use (``tpm-attested``, ``mdm-challenge``, …)."""
        return self.name.lower().replace("_", "-")

    @classmethod
    def of(cls, cert: x509.Certificate) -> Assurance | None:
        """The assurance marker *cert* carries, if exactly one of devid's is present."""
        try:
            policies = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
        except (x509.ExtensionNotFound, ValueError):
            return None
        found = [_BY_OID[p.policy_identifier] for p in policies if p.policy_identifier in _BY_OID]
        return found[0] if len(found) == 1 else None


_OIDS = {level: x509.ObjectIdentifier(f"{ASSURANCE_ARC}.{level.value}") for level in Assurance}
_BY_OID = {oid: level for level, oid in _OIDS.items()}


@attrs.frozen
class SetAssurance:
    """Template modifier: the certificate carries *level*'s policy OID (and no other
    certificatePolicies extension)."""

    level: Assurance

    def modify(self, template: CertificateTemplate) -> CertificateTemplate:
        extension = x509.Extension(
            x509.CertificatePolicies.oid,
            False,
            x509.CertificatePolicies([x509.PolicyInformation(self.level.oid, None)]),
        )
        kept = tuple(e for e in template.extra_extensions if e.oid != x509.CertificatePolicies.oid)
        return template.evolve(extra_extensions=(*kept, extension))
