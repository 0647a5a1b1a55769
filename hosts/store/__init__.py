"""Where the CA keeps its data: one store per kind, over one backend.

Each kind has a small protocol of its own (:class:`CertificateStore`,
:class:`TokenStore`, :class:`DeviceStore`, :class:`AttestationSessionStore`,
:class:`ACMEStore`, :class:`DeviceAccountStore`, :class:`AuditStore`,
:class:`SCEPStore`, :class:`OperatorStore`), and code asks
for the ones it uses.
:class:`Stores` holds one of each; it is what the CA holds. Every write is committed
before the call returns, so a record the caller has seen written survives the process
being killed. The backend is SQLite (:func:`open_sqlite`); nothing outside
``hosts.store.sqlite`` knows that.
"""

from __future__ import annotations

from .accounts import DeviceAccountStore
from .acme import ACMEStore
from .audit import AuditEvent, AuditQuery, AuditStore
from .bundle import Stores
from .certificates import CertificateStore
from .devices import DeviceStore
from .operators import ROLES, Operator, OperatorStore
from .records import CertificateRecord, Revocation, UsedToken, certificate_device
from .scep import (
    ISSUED,
    PENDING,
    REJECTED,
    TRANSACTION_STATES,
    SCEPChallenge,
    SCEPStore,
    SCEPTransaction,
)
from .sessions import AttestationSessionStore
from .sqlite import DatabaseReport, inspect_database, open_sqlite, snapshot
from .tokens import TokenStore

__all__ = [
    "ISSUED",
    "PENDING",
    "REJECTED",
    "ROLES",
    "TRANSACTION_STATES",
    "ACMEStore",
    "AttestationSessionStore",
    "AuditEvent",
    "AuditQuery",
    "AuditStore",
    "CertificateRecord",
    "CertificateStore",
    "DatabaseReport",
    "DeviceAccountStore",
    "DeviceStore",
    "Operator",
    "OperatorStore",
    "Revocation",
    "SCEPChallenge",
    "SCEPStore",
    "SCEPTransaction",
    "Stores",
    "TokenStore",
    "UsedToken",
    "certificate_device",
    "inspect_database",
    "open_sqlite",
    "snapshot",
]
