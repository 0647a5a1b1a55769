"""The ACME protocol objects as frozen records, and how they are stored.

Records change only through the transitions in :mod:`engine.acme._state`;
the operations in this package return new records for the host to persist.
``revision`` is the store's optimistic-concurrency counter: a record carries
the revision it was read at, and the store refuses to overwrite a newer one.
``0`` means "not stored yet".
"""

from __future__ import annotations

import base64
import enum
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import attrs

from .identifiers import Identifier


class AccountStatus(enum.Enum):
    VALID = "valid"
    DEACTIVATED = "deactivated"
    REVOKED = "revoked"


class OrderStatus(enum.Enum):
    PENDING = "pending"
    READY = "ready"
    PROCESSING = "processing"
    VALID = "valid"
    INVALID = "invalid"


class AuthorizationStatus(enum.Enum):
    PENDING = "pending"
    VALID = "valid"
    INVALID = "invalid"
    DEACTIVATED = "deactivated"
    EXPIRED = "expired"
    REVOKED = "revoked"


class ChallengeStatus(enum.Enum):
    PENDING = "pending"
    PROCESSING = "processing"
    VALID = "valid"
    INVALID = "invalid"


def rfc3339(value: datetime) -> str:
    """Times as ACME writes them: UTC, whole seconds, ``Z``."""
    return value.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def _time(value: Any) -> datetime:
    return datetime.fromtimestamp(float(value), UTC)


def _opt_time(value: Any) -> datetime | None:
    return None if value is None else _time(value)


def _ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


@attrs.frozen
class Account:
    id: str
    provisioner: str
    jwk: Mapping[str, str]
    thumbprint: str
    status: AccountStatus
    created_at: datetime
    contact: tuple[str, ...] = ()
    terms_agreed: bool = False
    eab_kid: str | None = None
    revision: int = 0

    def to_store(self) -> dict[str, Any]:
        return {
            "jwk": dict(self.jwk),
            "status": self.status.value,
            "created_at": _ts(self.created_at),
            "contact": list(self.contact),
            "terms_agreed": self.terms_agreed,
            "eab_kid": self.eab_kid,
        }

    @classmethod
    def from_store(
        cls, id: str, provisioner: str, thumbprint: str, data: Mapping[str, Any], revision: int
    ) -> Account:
        return cls(
            id=id,
            provisioner=provisioner,
            jwk=dict(data["jwk"]),
            thumbprint=thumbprint,
            status=AccountStatus(data["status"]),
            created_at=_time(data["created_at"]),
            contact=tuple(data.get("contact", ())),
            terms_agreed=bool(data.get("terms_agreed", False)),
            eab_kid=data.get("eab_kid"),
            revision=revision,
        )


@attrs.frozen
class Order:
    id: str
    provisioner: str
    account_id: str
    status: OrderStatus
    identifiers: tuple[Identifier, ...]
    authorization_ids: tuple[str, ...]
    created_at: datetime
    expires_at: datetime
    not_before: datetime | None = None
    not_after: datetime | None = None
    certificate_serial: str | None = None
    error: Mapping[str, Any] | None = None
    replaces: str | None = None
    revision: int = 0

    def to_store(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "identifiers": [i.to_json() for i in self.identifiers],
            "authorizations": list(self.authorization_ids),
            "created_at": _ts(self.created_at),
            "expires_at": _ts(self.expires_at),
            "not_before": _ts(self.not_before),
            "not_after": _ts(self.not_after),
            "certificate": self.certificate_serial,
            "error": None if self.error is None else dict(self.error),
            "replaces": self.replaces,
        }

    @classmethod
    def from_store(
        cls, id: str, provisioner: str, account_id: str, data: Mapping[str, Any], revision: int
    ) -> Order:
        return cls(
            id=id,
            provisioner=provisioner,
            account_id=account_id,
            status=OrderStatus(data["status"]),
            identifiers=tuple(Identifier(i["type"], i["value"]) for i in data["identifiers"]),
            authorization_ids=tuple(data["authorizations"]),
            created_at=_time(data["created_at"]),
            expires_at=_time(data["expires_at"]),
            not_before=_opt_time(data.get("not_before")),
            not_after=_opt_time(data.get("not_after")),
            certificate_serial=data.get("certificate"),
            error=data.get("error"),
            replaces=data.get("replaces"),
            revision=revision,
        )


@attrs.frozen
class Authorization:
    id: str
    provisioner: str
    account_id: str
    order_id: str
    identifier: Identifier  # the authorization form: a wildcard without "*."
    status: AuthorizationStatus
    expires_at: datetime
    challenge_ids: tuple[str, ...]
    wildcard: bool = False
    # device-attest-01: the attested key (SubjectPublicKeyInfo DER) and the evidence.
    attested_key: bytes | None = None
    attestation: Mapping[str, Any] | None = None
    revision: int = 0

    def to_store(self) -> dict[str, Any]:
        return {
            "identifier": self.identifier.to_json(),
            "status": self.status.value,
            "expires_at": _ts(self.expires_at),
            "challenges": list(self.challenge_ids),
            "wildcard": self.wildcard,
            "attested_key": None
            if self.attested_key is None
            else base64.b64encode(self.attested_key).decode("ascii"),
            "attestation": None if self.attestation is None else dict(self.attestation),
        }

    @classmethod
    def from_store(
        cls,
        id: str,
        provisioner: str,
        account_id: str,
        order_id: str,
        data: Mapping[str, Any],
        revision: int,
    ) -> Authorization:
        key = data.get("attested_key")
        return cls(
            id=id,
            provisioner=provisioner,
            account_id=account_id,
            order_id=order_id,
            identifier=Identifier(data["identifier"]["type"], data["identifier"]["value"]),
            status=AuthorizationStatus(data["status"]),
            expires_at=_time(data["expires_at"]),
            challenge_ids=tuple(data["challenges"]),
            wildcard=bool(data.get("wildcard", False)),
            attested_key=None if key is None else base64.b64decode(key),
            attestation=data.get("attestation"),
            revision=revision,
        )


@attrs.frozen
class Challenge:
    id: str
    provisioner: str
    authorization_id: str
    type: str
    token: str
    status: ChallengeStatus
    validated_at: datetime | None = None
    error: Mapping[str, Any] | None = None
    # When validation started (the host retries until its deadline).
    started_at: datetime | None = None
    revision: int = 0

    def to_store(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "token": self.token,
            "status": self.status.value,
            "validated_at": _ts(self.validated_at),
            "error": None if self.error is None else dict(self.error),
            "started_at": _ts(self.started_at),
        }

    @classmethod
    def from_store(
        cls,
        id: str,
        provisioner: str,
        authorization_id: str,
        data: Mapping[str, Any],
        revision: int,
    ) -> Challenge:
        return cls(
            id=id,
            provisioner=provisioner,
            authorization_id=authorization_id,
            type=data["type"],
            token=data["token"],
            status=ChallengeStatus(data["status"]),
            validated_at=_opt_time(data.get("validated_at")),
            error=data.get("error"),
            started_at=_opt_time(data.get("started_at")),
            revision=revision,
        )


@attrs.frozen
class CertificateLink:
    """An ACME certificate: the certificate store's serial, and who ordered it."""

    serial: str
    provisioner: str
    account_id: str
    order_id: str
