"""What an ACME operation asks the host to do: respond, persist, validate, audit.

An operation returns an :class:`Outcome`. The host persists ``write`` in one
transaction (refused if a record changed since it was read), then starts each
validation in ``validations``, audits, and sends ``respond`` with the headers
every ACME response carries (Replay-Nonce, Link rel="index").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from .identifiers import Identifier
from .problems import PROBLEM_JSON, ACMEProblem
from .records import Account, Authorization, Challenge, Order

JSON = "application/json"
PEM_CHAIN = "application/pem-certificate-chain"
RETRY_AFTER_SECONDS = 1


@attrs.frozen
class Respond:
    status: int
    body: Any = None  # a JSON value; None for an empty body
    text: str | None = None  # a non-JSON body (the PEM chain)
    content_type: str = JSON
    location: str | None = None
    links: tuple[tuple[str, str], ...] = ()  # (URL, rel); rel="index" is added by the host
    retry_after: int | None = None

    @classmethod
    def problem(cls, problem: ACMEProblem, *, location: str | None = None) -> Respond:
        """A problem answered as a response (a 409 that must name the conflicting account)."""
        return cls(
            problem.http_status, problem.to_json(), content_type=PROBLEM_JSON, location=location
        )


@attrs.frozen
class Write:
    """Records to store together, all or nothing."""

    accounts: tuple[Account, ...] = ()
    orders: tuple[Order, ...] = ()
    authorizations: tuple[Authorization, ...] = ()
    challenges: tuple[Challenge, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.accounts or self.orders or self.authorizations or self.challenges)

    def __add__(self, other: Write) -> Write:
        return Write(
            self.accounts + other.accounts,
            self.orders + other.orders,
            self.authorizations + other.authorizations,
            self.challenges + other.challenges,
        )


@attrs.frozen
class StartValidation:
    """Validate a network challenge in the background, with retries, then report back."""

    provisioner: str
    challenge_id: str
    authorization_id: str
    challenge_type: str
    identifier: Identifier
    token: str
    key_authorization: str


@attrs.frozen
class Audit:
    event: str
    fields: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class Outcome:
    respond: Respond
    write: Write = Write()
    validations: tuple[StartValidation, ...] = ()
    audit: tuple[Audit, ...] = ()
