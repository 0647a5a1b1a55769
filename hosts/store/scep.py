"""SCEP's own records: enrolment transactions and one-time challenges.

A SCEP client names each enrolment by a transactionID it chooses; the CA keeps one
:class:`SCEPTransaction` per provisioner and transactionID, so that a client polling
(CertPoll) or resending the same request gets the same answer, a different request
under a transactionID already seen is refused, and requests awaiting an operator's
approval survive a restart. One-time challenges (:class:`SCEPChallenge`) are kept
only as a SHA-256 of the challenge: the store never holds a usable challenge.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

import attrs

from .audit import AuditEvent
from .records import CertificateRecord, UsedToken

#: Transaction states: awaiting an operator, a certificate issued, refused by an operator.
PENDING = "pending"
ISSUED = "issued"
REJECTED = "rejected"
TRANSACTION_STATES = (PENDING, ISSUED, REJECTED)


@attrs.frozen
class SCEPTransaction:
    """One enrolment (PKCSReq, RenewalReq or UpdateReq) under one transactionID."""

    provisioner: str
    transaction_id: str
    #: Hex SHA-256 of the request's CSR (DER): a resend carries the same one.
    request_sha256: str
    message_type: int
    status: str  # PENDING, ISSUED or REJECTED
    #: The CSR's subject (RFC 4514), for operators listing requests.
    subject: str
    csr_der: bytes = attrs.field(repr=False)
    #: The certificate that signed the request: replies are encrypted to its key.
    signer_der: bytes = attrs.field(repr=False)
    created_at: datetime
    updated_at: datetime
    #: The issued certificate (lowercase hex serial) once ISSUED.
    serial: str | None = None
    #: Who approved or rejected it (an audit actor), when an operator did.
    decided_by: str | None = None
    #: Why it waits or was rejected, in words for the operator.
    reason: str | None = None
    #: How the request was authorized ("static", "one-time", "hook", "webhook",
    #: "renewal", "approval"), once it was.
    method: str | None = None


@attrs.frozen
class SCEPChallenge:
    """A one-time challenge password, known to the store only by its SHA-256."""

    provisioner: str
    challenge_sha256: str  # hex
    created_at: datetime
    expires_at: datetime
    created_by: str
    #: The subject common name a request using it must carry (None: any).
    subject: str | None = None
    used_at: datetime | None = None
    #: The transactionID of the request that used it.
    used_by: str | None = None


class SCEPStore(Protocol):
    """Transactions and one-time challenges of every SCEP provisioner."""

    def get_transaction(self, provisioner: str, transaction_id: str) -> SCEPTransaction | None:
        """The transaction *transaction_id* of *provisioner*, if one was recorded."""
        ...

    def add_transaction(self, transaction: SCEPTransaction) -> bool:
        """Record a new transaction; False (nothing written) when the provisioner has one
        with that transactionID already."""
        ...

    def update_transaction(
        self,
        provisioner: str,
        transaction_id: str,
        *,
        expect_status: str,
        status: str,
        updated_at: datetime,
        serial: str | None = None,
        decided_by: str | None = None,
        reason: str | None = None,
        method: str | None = None,
    ) -> bool:
        """Move a transaction from *expect_status* to *status* (and set the given fields;
        None leaves a field as it is); False, writing nothing, when it is not in
        *expect_status* (another request decided first) or does not exist."""
        ...

    def record_issued(
        self,
        transaction: SCEPTransaction,
        certificate: CertificateRecord,
        used_token: UsedToken | None,
        event: AuditEvent | None,
        *,
        renewal: bool = False,
    ) -> bool:
        """Store *certificate* (claiming *used_token*, with its audit *event*) and
        *transaction* (ISSUED, with the certificate's serial) in one commit: a new
        transaction, or one PENDING until now; with *renewal*, the ISSUED transaction of
        the enrolment it renews takes the new serial (and the renewal's request). False,
        storing nothing, when the token was used or the transaction is not in that state."""
        ...

    def transactions(
        self,
        *,
        provisioner: str | None = None,
        status: str | None = None,
        limit: int = 100,
    ) -> Sequence[SCEPTransaction]:
        """Transactions, newest first, of one provisioner and one status when given."""
        ...

    def add_challenge(self, challenge: SCEPChallenge) -> None:
        """Keep a new one-time challenge (its hash is unique per provisioner)."""
        ...

    def get_challenge(self, provisioner: str, challenge_sha256: str) -> SCEPChallenge | None:
        """The one-time challenge with this hash, used or not."""
        ...

    def use_challenge(
        self, provisioner: str, challenge_sha256: str, *, now: datetime, transaction_id: str
    ) -> bool:
        """Mark a challenge used by *transaction_id*; True only if it was unused and had
        not expired at *now* (two requests racing for it: exactly one wins)."""
        ...

    def challenges(
        self, *, provisioner: str | None = None, include_used: bool = False
    ) -> Sequence[SCEPChallenge]:
        """One-time challenges, newest first (unused ones only unless *include_used*)."""
        ...

    def delete_expired_challenges(self, now: datetime) -> int:
        """Forget unused challenges that expired before *now*; how many went."""
        ...
