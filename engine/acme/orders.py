"""Orders (RFC 8555 7.4): newOrder, the order resource, finalize, the account's order list.

An order's stored status only records what happened to it (pending, then
processing/valid/invalid once finalized). Whether a pending order is ready,
or has become invalid because it expired or an authorization failed, follows
from its authorizations and the time; :func:`order_status` derives it through
the transition table, so concurrent validations never race to update it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import attrs
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ..csr import CSRInfo, parse_csr
from ..errors import BadRequest
from ..jose import PublicKey, b64url_decode
from . import _state
from ._state import Event
from .accounts import require_owner
from .context import Context
from .effects import RETRY_AFTER_SECONDS, Audit, Outcome, Respond, Write
from .identifiers import parse_identifiers
from .jws import SignedRequest
from .problems import ACMEProblem, malformed
from .records import (
    Account,
    Authorization,
    AuthorizationStatus,
    Challenge,
    ChallengeStatus,
    Order,
    OrderStatus,
)
from .resources import order_json

MAX_LISTED_ORDERS = 1000
_FINAL_ORDER = frozenset({OrderStatus.PROCESSING, OrderStatus.VALID, OrderStatus.INVALID})
_FAILED_AUTHZ = frozenset(
    {
        AuthorizationStatus.INVALID,
        AuthorizationStatus.DEACTIVATED,
        AuthorizationStatus.EXPIRED,
        AuthorizationStatus.REVOKED,
    }
)


# --- derived status --------------------------------------------------------------------


def authorization_status(authorization: Authorization, now: datetime) -> AuthorizationStatus:
    """The stored status, or ``expired`` once a pending or valid one outlived ``expires``."""
    if now >= authorization.expires_at:
        expired = _state.next_state(_state.AUTHORIZATION, authorization.status, Event.EXPIRE)
        if expired is not None:
            return expired
    return authorization.status


def order_status(
    order: Order, authorizations: Sequence[Authorization], now: datetime
) -> OrderStatus:
    if order.status in _FINAL_ORDER:
        return order.status
    status = order.status
    statuses = [authorization_status(a, now) for a in authorizations]
    if now >= order.expires_at:
        return _state.next_state(_state.ORDER, status, Event.EXPIRE) or status
    if any(s in _FAILED_AUTHZ for s in statuses) or len(statuses) != len(order.authorization_ids):
        return _state.next_state(_state.ORDER, status, Event.FAILED) or status
    if status is OrderStatus.PENDING and all(s is AuthorizationStatus.VALID for s in statuses):
        return _state.next_state(_state.ORDER, status, Event.AUTHORIZED) or status
    return status


def _why_invalid(order: Order, now: datetime) -> dict[str, Any]:
    if now >= order.expires_at:
        detail = "the order expired"
    else:
        detail = "an authorization of the order failed, was deactivated or expired"
    return {"type": "urn:ietf:params:acme:error:unauthorized", "detail": detail, "status": 403}


def _order_view(
    ctx: Context, order: Order, authorizations: Sequence[Authorization], status: int = 200
) -> Respond:
    current = order_status(order, authorizations, ctx.now)
    body = order_json(order, current, ctx.urls, error=_why_invalid(order, ctx.now))
    return Respond(
        status,
        body,
        location=ctx.urls.order(order.id),
        retry_after=RETRY_AFTER_SECONDS if current is OrderStatus.PROCESSING else None,
    )


# --- newOrder --------------------------------------------------------------------------


def _time(payload: dict[str, Any], name: str) -> datetime | None:
    value = payload.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 64:
        raise malformed(f"{name} must be an RFC 3339 date-time")
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise malformed(f"{name} {value!r} is not an RFC 3339 date-time") from None
    if parsed.tzinfo is None:
        raise malformed(f"{name} must carry a time zone (for example Z)")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise malformed(f"{name} {value!r} is beyond the calendar") from None


def _check_validity(ctx: Context, not_before: datetime | None, not_after: datetime | None) -> None:
    if not_before is not None:
        # The same rule as /1.0/sign; finalize applies it again from the order's creation.
        refusal = ctx.profile.durations.not_before_refusal(not_before, ctx.now)
        if refusal is not None:
            raise malformed(refusal)
    start = not_before or ctx.now
    if not_after is not None:
        if not_after <= start:
            raise malformed("notAfter must be later than notBefore (and than now)")
        if not_after - start > ctx.profile.durations.maximum:
            raise malformed(
                f"the requested validity exceeds this provisioner's maximum of"
                f" {ctx.profile.durations.maximum}"
            )
    if not_before is not None and not_before > ctx.now + ctx.profile.order_lifetime:
        raise malformed("notBefore is too far in the future")


def new_order(ctx: Context, account: Account, request: SignedRequest) -> Outcome:
    """RFC 8555 7.4: an order, one authorization per identifier, and their challenges."""
    payload = request.payload_object()
    identifiers = parse_identifiers(payload.get("identifiers"))
    ctx.profile.identifiers.check_order(identifiers)
    not_before, not_after = _time(payload, "notBefore"), _time(payload, "notAfter")
    _check_validity(ctx, not_before, not_after)
    replaces = payload.get("replaces")
    if replaces is not None and (not isinstance(replaces, str) or not 0 < len(replaces) < 512):
        raise malformed("replaces must be a certificate identifier (RFC 9773)")
    expires = ctx.now + ctx.profile.order_lifetime
    order_id = ctx.new_id()
    authorizations: list[Authorization] = []
    challenges: list[Challenge] = []
    for identifier in identifiers:
        authorization_id = ctx.new_id()
        created = [
            Challenge(
                id=ctx.new_id(),
                provisioner=ctx.profile.name,
                authorization_id=authorization_id,
                type=kind,
                token=ctx.new_token(),
                status=ChallengeStatus.PENDING,
            )
            for kind in ctx.profile.identifiers.challenge_types(identifier)
        ]
        challenges.extend(created)
        authorizations.append(
            Authorization(
                id=authorization_id,
                provisioner=ctx.profile.name,
                account_id=account.id,
                order_id=order_id,
                identifier=identifier.authorization_form(),
                status=AuthorizationStatus.PENDING,
                expires_at=expires,
                challenge_ids=tuple(c.id for c in created),
                wildcard=identifier.wildcard,
            )
        )
    order = Order(
        id=order_id,
        provisioner=ctx.profile.name,
        account_id=account.id,
        status=OrderStatus.PENDING,
        identifiers=identifiers,
        authorization_ids=tuple(a.id for a in authorizations),
        created_at=ctx.now,
        expires_at=expires,
        not_before=not_before,
        not_after=not_after,
        replaces=replaces,
    )
    return Outcome(
        _order_view(ctx, order, authorizations, 201),
        write=Write(
            orders=(order,), authorizations=tuple(authorizations), challenges=tuple(challenges)
        ),
        audit=(
            Audit(
                "acme.order.created",
                {
                    "provisioner": ctx.profile.name,
                    "account": account.id,
                    "order": order.id,
                    "identifiers": [i.to_json() for i in identifiers],
                },
            ),
        ),
    )


def view_order(
    ctx: Context, account: Account, order: Order, authorizations: Sequence[Authorization]
) -> Outcome:
    require_owner(account, order.account_id)
    return Outcome(_order_view(ctx, order, authorizations))


def list_orders(
    ctx: Context,
    account: Account,
    target_id: str,
    orders: Sequence[Order],
    authorizations: Sequence[Authorization] = (),
) -> Outcome:
    """The account's ``orders`` URL: its orders whose current status is not invalid
    (RFC 8555 7.1.2.1). An order's status is derived from its authorizations."""
    require_owner(account, target_id)
    by_id = {a.id: a for a in authorizations}
    listed = [
        ctx.urls.order(o.id)
        for o in orders
        if order_status(o, [by_id[i] for i in o.authorization_ids if i in by_id], ctx.now)
        is not OrderStatus.INVALID
    ][:MAX_LISTED_ORDERS]
    return Outcome(Respond(200, {"orders": listed}))


# --- finalize --------------------------------------------------------------------------


def _spki(key: Any) -> bytes:
    return bytes(key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))


def finalize_csr(
    ctx: Context,
    account: Account,
    account_key: PublicKey,
    order: Order,
    authorizations: Sequence[Authorization],
    request: SignedRequest,
) -> CSRInfo:
    """Check a finalize request up to the provisioner's policy; return the parsed CSR."""
    require_owner(account, order.account_id)
    status = order_status(order, authorizations, ctx.now)
    if status is not OrderStatus.READY:
        raise ACMEProblem(
            "orderNotReady", f"the order is {status.value}; only a ready order can be finalized"
        )
    payload = request.payload_object()
    text = payload.get("csr")
    if not isinstance(text, str) or not text:
        raise malformed("finalize needs csr: the base64url DER of a CSR")
    try:
        csr = parse_csr(b64url_decode(text, what="csr"))
    except BadRequest as exc:
        raise ACMEProblem("badCSR", exc.detail) from None
    if _spki(csr.public_key) == _spki(account_key):
        raise ACMEProblem("badCSR", "the CSR's key must not be the account key")
    return csr


def begin_processing(order: Order, authorizations: Sequence[Authorization], now: datetime) -> Order:
    """ready -> processing, once the CSR passed every check."""
    status = order_status(order, authorizations, now)

    def refused() -> ACMEProblem:
        return ACMEProblem("orderNotReady", f"the order is {status.value}")

    return attrs.evolve(order, status=_state.advance(_state.ORDER, status, Event.FINALIZE, refused))


def issued(ctx: Context, order: Order, serial: str) -> tuple[Order, Respond]:
    """processing -> valid: the order names its certificate."""
    valid = attrs.evolve(
        order,
        status=_state.advance(
            _state.ORDER,
            order.status,
            Event.ISSUED,
            lambda: ACMEProblem("serverInternal", "the order is not being processed"),
        ),
        certificate_serial=serial,
    )
    body = order_json(valid, valid.status, ctx.urls)
    return valid, Respond(200, body, location=ctx.urls.order(order.id))


def failed(order: Order, problem: ACMEProblem) -> Order:
    """processing -> invalid, with the error recorded."""
    return attrs.evolve(
        order,
        status=_state.next_state(_state.ORDER, order.status, Event.FAILED) or order.status,
        error=problem.to_json(),
    )
