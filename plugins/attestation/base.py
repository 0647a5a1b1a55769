"""What an attestation-statement format plugin provides (ACME device-attest-01).

A format verifies one ``attStmt`` (draft-ietf-acme-device-attest: the CBOR
``attObj`` is ``{"fmt": name, "attStmt": {...}}``) against the key
authorization of the challenge, and says which key it attests and which device
identities the evidence binds. The ACME provisioner then requires the ordered
identifier to be one of those identities, and the CSR at finalize to carry
the attested key. Verification is pure: no network, no clock of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar, Protocol

import attrs
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from engine.acme.device_attest import AttestedDevice


@attrs.frozen
class AttestationContext:
    """What the caller hands a format for one verification."""

    now: datetime
    # The trust anchors configured for this format on this provisioner.
    roots: tuple[x509.Certificate, ...]
    # Extra intermediates a format may use to build paths (for example the Attestation CA).
    intermediates: tuple[x509.Certificate, ...] = ()
    # Refuse SHA-1 signatures and digests unless explicitly allowed.
    allow_sha1: bool = False


@attrs.frozen
class AttestationResult:
    """A verified attestation: the attested key and the identities bound to the device."""

    format: str
    public_key: PublicKeyTypes
    # Identities the evidence binds, matched against the ACME identifier's value.
    permanent_identifiers: tuple[str, ...] = ()
    ek_urns: tuple[str, ...] = ()
    serial_numbers: tuple[str, ...] = ()
    # The certificate chain that vouched for the device, leaf first (stored as evidence).
    chain: tuple[x509.Certificate, ...] = ()
    # JSON-compatible facts stored beside the issued certificate.
    evidence: Mapping[str, Any] = attrs.field(factory=dict)

    def identities(self) -> frozenset[str]:
        return frozenset((*self.permanent_identifiers, *self.ek_urns, *self.serial_numbers))

    def attested_device(self, format: str) -> AttestedDevice:
        """The result as the ACME engine keeps it, for a statement of *format*."""
        return AttestedDevice.from_parts(
            format,
            self.public_key,
            permanent_identifiers=tuple(self.permanent_identifiers),
            ek_urns=tuple(self.ek_urns),
            serial_numbers=tuple(self.serial_numbers),
            chain=tuple(self.chain),
            evidence=self.evidence,
        )


class AttestationFormat(Protocol):
    """One ``fmt`` of device-attest-01; register instances with ``devid_attestation_formats``."""

    format_name: ClassVar[str]

    def verify(
        self,
        statement: Mapping[str, Any],
        key_authorization: str,
        context: AttestationContext,
    ) -> AttestationResult:
        """Verify ``attStmt`` for *key_authorization*.

        Raise :class:`engine.acme.problems.ACMEProblem` ``badAttestationStatement``
        with a clear detail for anything wrong (bad structure, untrusted chain,
        wrong nonce or extraData, SHA-1, key mismatch); never another exception.
        """
        ...
