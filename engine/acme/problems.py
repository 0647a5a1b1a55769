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


def bad_nonce(detail: str) -> ACMEProblem:
    return ACMEProblem("badNonce", detail)


def not_found(detail: str) -> ACMEProblem:
    """An unknown resource: RFC 8555 has no type for it, so ``malformed`` with 404."""
    return ACMEProblem("malformed", detail, status=404)


def from_json(data: Any) -> ACMEProblem:
    """Rebuild a problem that was stored as JSON (a challenge's or an order's error)."""
    if not isinstance(data, dict):
        return ACMEProblem("serverInternal", "unknown error")
    kind = str(data.get("type", ""))
    short = kind[len(ACME_ERROR) :] if kind.startswith(ACME_ERROR) else "serverInternal"
    if short not in STATUS:
        short = "serverInternal"
    subproblems = [
        Subproblem(
            type=str(s.get("type", ""))[len(ACME_ERROR) :] or "malformed",
            detail=str(s.get("detail", "")),
            identifier=s.get("identifier") if isinstance(s.get("identifier"), dict) else None,
        )
        for s in data.get("subproblems", ())
        if isinstance(s, dict)
    ]
    return ACMEProblem(short, str(data.get("detail", "")), subproblems=subproblems)


# How the engine's generic refusals read as ACME problems (RFC 8555 6.7).
_GENERIC: dict[str, str] = {
    "badRequest": "malformed",
    "unauthorized": "unauthorized",
    "forbidden": "unauthorized",
    "notFound": "malformed",
    "methodNotAllowed": "malformed",
    "conflict": "malformed",
    "payloadTooLarge": "malformed",
    "unsupportedMediaType": "malformed",
    "rateLimited": "rateLimited",
}


def as_problem(exc: ProtocolError) -> ACMEProblem:
    """Any protocol error as an ACME problem, keeping its HTTP status and message."""
    if isinstance(exc, ACMEProblem):
        return exc
    return ACMEProblem(_GENERIC.get(exc.code, "malformed"), exc.detail, status=exc.http_status)
