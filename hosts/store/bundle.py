"""The stores a CA holds, one per kind of data, over one backend."""

from __future__ import annotations

from collections.abc import Callable

import attrs

from .accounts import DeviceAccountStore
from .acme import ACMEStore
from .audit import AuditStore
from .certificates import CertificateStore
from .devices import DeviceStore
from .operators import OperatorStore
from .scep import SCEPStore
from .sessions import AttestationSessionStore
from .tokens import TokenStore


@attrs.frozen
class Stores:
    """One store per kind of data. The kinds share their backend (one database), so
    that writes spanning two kinds stay one transaction: a certificate with the token
    that authorized it (``certificates.record_certificate``), an ACME order with the
    certificate it produced (``acme.acme_write``).

    Every method blocks; hosts call them from worker threads, never on the event loop.
    """

    certificates: CertificateStore
    tokens: TokenStore
    devices: DeviceStore
    sessions: AttestationSessionStore
    acme: ACMEStore
    accounts: DeviceAccountStore
    audit: AuditStore
    scep: SCEPStore
    operators: OperatorStore
    #: Releases the backend (connections, locks); what :meth:`close` calls.
    closer: Callable[[], None] = attrs.field(repr=False)

    def close(self) -> None:
        """Release the backend; the stores cannot be used afterwards. Closing twice is
        harmless."""
        self.closer()
