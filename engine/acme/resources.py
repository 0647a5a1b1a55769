"""ACME resources as clients see them: their URLs and their JSON (RFC 8555 7.1).

URLs are built from a base URL (``https://host:port``) and the provisioner's
name. The host passes one of the server's configured base URLs (the one the
client used, when the Host header names one of them), never the Host header's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from .records import (
    Account,
    Authorization,
    AuthorizationStatus,
    Challenge,
    ChallengeStatus,
    Order,
    OrderStatus,
    rfc3339,
)

PREFIX = "/acme"


@attrs.frozen
class URLs:
    base: str  # scheme://host[:port], no trailing slash
    provisioner: str

    @property
    def root(self) -> str:
        return f"{self.base}{PREFIX}/{self.provisioner}"

    @property
    def directory(self) -> str:
        return f"{self.root}/directory"

    @property
    def new_nonce(self) -> str:
        return f"{self.root}/new-nonce"

    @property
    def new_account(self) -> str:
        return f"{self.root}/new-account"

    @property
    def new_order(self) -> str:
        return f"{self.root}/new-order"

    @property
    def revoke_cert(self) -> str:
        return f"{self.root}/revoke-cert"

    @property
    def key_change(self) -> str:
        return f"{self.root}/key-change"

    @property
    def renewal_info(self) -> str:
        return f"{self.root}/renewal-info"

    def account(self, account_id: str) -> str:
        return f"{self.root}/acct/{account_id}"

    def account_orders(self, account_id: str) -> str:
        return f"{self.root}/acct/{account_id}/orders"

    def order(self, order_id: str) -> str:
        return f"{self.root}/order/{order_id}"

    def finalize(self, order_id: str) -> str:
        return f"{self.root}/order/{order_id}/finalize"

    def authorization(self, authorization_id: str) -> str:
        return f"{self.root}/authz/{authorization_id}"

    def challenge(self, challenge_id: str) -> str:
        return f"{self.root}/chall/{challenge_id}"

    def certificate(self, serial: str) -> str:
        return f"{self.root}/cert/{serial}"

    def account_id(self, kid: str) -> str | None:
        """The account id a ``kid`` names, if it is one of this provisioner's account URLs."""
        prefix = f"{self.root}/acct/"
        if not kid.startswith(prefix):
            return None
        rest = kid[len(prefix) :]
        return rest if rest and "/" not in rest else None


def directory_json(
    urls: URLs,
    *,
    external_account_required: bool,
    website: str | None = None,
    terms_of_service: str | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"externalAccountRequired": external_account_required}
    if website:
        meta["website"] = website
    if terms_of_service:
        meta["termsOfService"] = terms_of_service
    return {
        "newNonce": urls.new_nonce,
        "newAccount": urls.new_account,
        "newOrder": urls.new_order,
        "revokeCert": urls.revoke_cert,
        "keyChange": urls.key_change,
        "renewalInfo": urls.renewal_info,
        "meta": meta,
    }


def account_json(account: Account, urls: URLs) -> dict[str, Any]:
    out: dict[str, Any] = {
        "status": account.status.value,
        "contact": list(account.contact),
        "orders": urls.account_orders(account.id),
        "key": dict(account.jwk),
        "createdAt": rfc3339(account.created_at),
    }
    if account.terms_agreed:
        out["termsOfServiceAgreed"] = True
    return out


def order_json(
    order: Order,
    status: OrderStatus,
    urls: URLs,
    *,
    error: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """*error* explains an order that is invalid without a recorded error (it expired,
    or an authorization failed)."""
    out: dict[str, Any] = {
        "status": status.value,
        "expires": rfc3339(order.expires_at),
        "identifiers": [i.to_json() for i in order.identifiers],
        "authorizations": [urls.authorization(a) for a in order.authorization_ids],
        "finalize": urls.finalize(order.id),
    }
    if order.not_before is not None:
        out["notBefore"] = rfc3339(order.not_before)
    if order.not_after is not None:
        out["notAfter"] = rfc3339(order.not_after)
    if order.certificate_serial is not None and status is OrderStatus.VALID:
        out["certificate"] = urls.certificate(order.certificate_serial)
    if order.error is not None:
        out["error"] = dict(order.error)
    elif error is not None and status is OrderStatus.INVALID:
        out["error"] = dict(error)
    if order.replaces is not None:
        out["replaces"] = order.replaces
    return out


def challenge_json(challenge: Challenge, urls: URLs) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": challenge.type,
        "url": urls.challenge(challenge.id),
        "status": challenge.status.value,
        "token": challenge.token,
    }
    if challenge.status is ChallengeStatus.VALID and challenge.validated_at is not None:
        out["validated"] = rfc3339(challenge.validated_at)
    if challenge.error is not None:
        out["error"] = dict(challenge.error)
    return out


def authorization_json(
    authorization: Authorization,
    status: AuthorizationStatus,
    challenges: Iterable[Challenge],
    urls: URLs,
) -> dict[str, Any]:
    shown = list(challenges)
    if status is AuthorizationStatus.VALID:
        # RFC 8555 7.1.4: a valid authorization lists the challenge that validated it.
        shown = [c for c in shown if c.status is ChallengeStatus.VALID] or shown
    out: dict[str, Any] = {
        "identifier": authorization.identifier.to_json(),
        "status": status.value,
        "expires": rfc3339(authorization.expires_at),
        "challenges": [challenge_json(c, urls) for c in shown],
    }
    if authorization.wildcard:
        out["wildcard"] = True
    return out
