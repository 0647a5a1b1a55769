"""Every ACME state transition, as tables (RFC 8555 7.1.6), in one place.

Each machine is a mapping ``(state, event) -> next state``. A pair that is
not in the table is not allowed: :func:`advance` raises the problem the
caller names for that case, so an illegal move can never be recorded.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from typing import TypeVar

from .problems import ACMEProblem
from .records import AccountStatus, AuthorizationStatus, ChallengeStatus, OrderStatus


class Event(enum.Enum):
    # accounts
    DEACTIVATE = "deactivate"
    REVOKE = "revoke"
    # challenges
    RESPOND = "respond"  # the client asks for validation (network challenges)
    VALIDATED = "validated"  # validation succeeded
    FAILED = "failed"  # validation failed for good
    # authorizations and orders
    EXPIRE = "expire"
    AUTHORIZED = "authorized"  # every authorization of the order is valid
    FINALIZE = "finalize"  # a good CSR arrived
    ISSUED = "issued"  # the certificate is signed and stored


S = TypeVar("S", AccountStatus, OrderStatus, AuthorizationStatus, ChallengeStatus)

ACCOUNT: Mapping[tuple[AccountStatus, Event], AccountStatus] = {
    (AccountStatus.VALID, Event.DEACTIVATE): AccountStatus.DEACTIVATED,
    (AccountStatus.VALID, Event.REVOKE): AccountStatus.REVOKED,
}

CHALLENGE: Mapping[tuple[ChallengeStatus, Event], ChallengeStatus] = {
    (ChallengeStatus.PENDING, Event.RESPOND): ChallengeStatus.PROCESSING,
    # device-attest-01 is verified while the client waits: pending -> valid/invalid.
    (ChallengeStatus.PENDING, Event.VALIDATED): ChallengeStatus.VALID,
    (ChallengeStatus.PENDING, Event.FAILED): ChallengeStatus.INVALID,
    (ChallengeStatus.PROCESSING, Event.VALIDATED): ChallengeStatus.VALID,
    (ChallengeStatus.PROCESSING, Event.FAILED): ChallengeStatus.INVALID,
}

AUTHORIZATION: Mapping[tuple[AuthorizationStatus, Event], AuthorizationStatus] = {
    (AuthorizationStatus.PENDING, Event.VALIDATED): AuthorizationStatus.VALID,
    (AuthorizationStatus.PENDING, Event.FAILED): AuthorizationStatus.INVALID,
    (AuthorizationStatus.PENDING, Event.DEACTIVATE): AuthorizationStatus.DEACTIVATED,
    (AuthorizationStatus.VALID, Event.DEACTIVATE): AuthorizationStatus.DEACTIVATED,
    (AuthorizationStatus.PENDING, Event.EXPIRE): AuthorizationStatus.EXPIRED,
    (AuthorizationStatus.VALID, Event.EXPIRE): AuthorizationStatus.EXPIRED,
    (AuthorizationStatus.VALID, Event.REVOKE): AuthorizationStatus.REVOKED,
}

ORDER: Mapping[tuple[OrderStatus, Event], OrderStatus] = {
    (OrderStatus.PENDING, Event.AUTHORIZED): OrderStatus.READY,
    (OrderStatus.PENDING, Event.FAILED): OrderStatus.INVALID,
    (OrderStatus.PENDING, Event.EXPIRE): OrderStatus.INVALID,
    (OrderStatus.READY, Event.EXPIRE): OrderStatus.INVALID,
    (OrderStatus.READY, Event.FINALIZE): OrderStatus.PROCESSING,
    (OrderStatus.PROCESSING, Event.ISSUED): OrderStatus.VALID,
    (OrderStatus.PROCESSING, Event.FAILED): OrderStatus.INVALID,
}


def next_state(table: Mapping[tuple[S, Event], S], state: S, event: Event) -> S | None:
    """The state after *event*, or None when the table has no such move."""
    return table.get((state, event))


def advance(
    table: Mapping[tuple[S, Event], S],
    state: S,
    event: Event,
    refusal: Callable[[], ACMEProblem],
) -> S:
    """The state after *event*; raise ``refusal()`` when the move is not allowed."""
    found = table.get((state, event))
    if found is None:
        raise refusal()
    return found
