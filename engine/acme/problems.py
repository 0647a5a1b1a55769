"""ACME problem documents (RFC 8555 section 6.7, RFC 7807): the one table of ACME errors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import attrs

from ..errors import ProtocolError

ACME_ERROR = "urn:ietf:params:acme:error:"
PROBLEM_JSON = "application/problem+json"

# type -> HTTP status (RFC 8555 6.7, draft-ietf-acme-device-attest, RFC 9773).
STATUS: dict[str, int] = {
    "accountDoesNotExist": 400,
    "alreadyRevoked": 400,
    "badCSR": 400,
    "badNonce": 400,
    "badPublicKey": 400,
    "badRevocationReason": 400,
    "badSignatureAlgorithm": 400,
    "caa": 403,
    "compound": 400,
    "connection": 400,
    "dns": 400,
    "externalAccountRequired": 400,
    "incorrectResponse": 400,
    "invalidContact": 400,
    "malformed": 400,
    "orderNotReady": 403,
    "rateLimited": 429,
    "rejectedIdentifier": 400,
    "serverInternal": 500,
    "tls": 400,
    "unauthorized": 403,
    "unsupportedContact": 400,
    "unsupportedIdentifier": 400,
    "userActionRequired": 403,
    "badAttestationStatement": 400,
}


@attrs.frozen
class Subproblem:
    type: str
    detail: str
    identifier: dict[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": ACME_ERROR + self.type, "detail": self.detail}
        if self.identifier is not None:
            out["identifier"] = self.identifier
        return out


class ACMEProblem(ProtocolError):
    """An ACME error; ``problem`` is the short type name (``badNonce``, ``malformed``, ...)."""

    content_type: ClassVar[str] = PROBLEM_JSON

    def __init__(
        self,
        problem: str,
        detail: str,
        *,
        subproblems: Sequence[Subproblem] = (),
        status: int | None = None,
        algorithms: Sequence[str] = (),
    ) -> None:
        if problem not in STATUS:
            raise ValueError(f"unknown ACME problem type {problem!r}")
        super().__init__(detail)
        self.problem = problem
        self.subproblems = tuple(subproblems)
        self._status = status if status is not None else STATUS[problem]
        self.algorithms = tuple(algorithms)  # badSignatureAlgorithm lists what is accepted

    @property
    def http_status(self) -> int:
        return self._status

    @property
    def type(self) -> str:
        return ACME_ERROR + self.problem

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "detail": self.detail, "status": self.http_status}
        if self.subproblems:
            out["subproblems"] = [s.to_json() for s in self.subproblems]
        if self.algorithms:
            out["algorithms"] = list(self.algorithms)
        return out


def malformed(detail: str) -> ACMEProblem:
    return ACMEProblem("malformed", detail)


def unauthorized(detail: str) -> ACMEProblem:
    return ACMEProblem("unauthorized", detail)
