"""Accounts (RFC 8555 7.3): newAccount, the account resource, keyChange."""

from __future__ import annotations

from typing import Any

import attrs

from ..errors import BadRequest
from ..jose import PublicKey
from ..names import SAN, SANKind
from . import _state
from ._state import Event
from .context import Context
from .effects import Audit, Outcome, Respond, Write
from .jws import KeyChange, SignedRequest, key_from_jwk, verify_external_binding
from .problems import ACMEProblem, malformed, unauthorized
from .records import Account, AccountStatus
from .resources import account_json

MAX_CONTACTS = 10
MAX_CONTACT_LENGTH = 320


def parse_contacts(value: Any) -> tuple[str, ...]:
    """``contact``: ``mailto:`` URLs with one plain address each (RFC 8555 7.3)."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise malformed("contact must be a list of URL strings")
    if len(value) > MAX_CONTACTS:
        raise ACMEProblem("invalidContact", f"at most {MAX_CONTACTS} contacts are accepted")
    out: list[str] = []
    for url in value:
        scheme, sep, address = url.partition(":")
        if not sep or scheme.lower() != "mailto":
            raise ACMEProblem(
                "unsupportedContact", f"only mailto: contacts are supported, not {url[:64]!r}"
            )
        if not _plain_address(address):
            raise ACMEProblem("invalidContact", f"{url[:128]!r} is not a plain email address")
        normalized = f"mailto:{address}"
        if normalized not in out:
            out.append(normalized)
    return tuple(out)


def _plain_address(address: str) -> bool:
    if not address or len(address) > MAX_CONTACT_LENGTH or not address.isascii():
        return False
    if any(c in address for c in '?,;<>" \t\r\n%'):  # no hfields, lists or display names
        return False
    local, at, domain = address.rpartition("@")
    if not at or not local or "@" in local or not domain:
        return False
    try:
        return SAN.parse(domain).kind is SANKind.DNS and "*" not in domain and "." in domain
    except BadRequest:
        return False


def _boolean(payload: dict[str, Any], name: str) -> bool:
    value = payload.get(name, False)
    if not isinstance(value, bool):
        raise malformed(f"{name} must be true or false")
    return value


def _existing(account: Account, ctx: Context) -> Outcome:
    if account.status is not AccountStatus.VALID:
        raise unauthorized(f"the account for this key is {account.status.value}")
    return Outcome(
        Respond(200, account_json(account, ctx.urls), location=ctx.urls.account(account.id))
    )


def new_account(
    ctx: Context,
    request: SignedRequest,
    key: PublicKey,
    jwk: dict[str, str],
    thumbprint: str,
    existing: Account | None,
) -> Outcome:
    """RFC 8555 7.3: create an account for the key, or return the one it has (200)."""
    payload = request.payload_object()
    only_existing = _boolean(payload, "onlyReturnExisting")
    if existing is not None:
        return _existing(existing, ctx)
    if only_existing:
        raise ACMEProblem("accountDoesNotExist", "no account exists for this key")
    contact = parse_contacts(payload.get("contact"))
    agreed = _boolean(payload, "termsOfServiceAgreed")
    binding = payload.get("externalAccountBinding")
    eab_kid: str | None = None
    if binding is not None and ctx.profile.eab_keys:
        eab_kid = verify_external_binding(
            binding, account_key=key, url=ctx.urls.new_account, keys=ctx.profile.eab_keys
        )
    elif ctx.profile.require_eab:
        raise ACMEProblem(
            "externalAccountRequired", "this provisioner requires an external account binding"
        )
    account = Account(
        id=ctx.new_id(),
        provisioner=ctx.profile.name,
        jwk=jwk,
        thumbprint=thumbprint,
        status=AccountStatus.VALID,
        created_at=ctx.now,
        contact=contact,
        terms_agreed=agreed,
        eab_kid=eab_kid,
    )
    return Outcome(
        Respond(201, account_json(account, ctx.urls), location=ctx.urls.account(account.id)),
        write=Write(accounts=(account,)),
        audit=(
            Audit(
                "acme.account.created",
                {"provisioner": ctx.profile.name, "account": account.id, "eab_kid": eab_kid},
            ),
        ),
    )


def existing_account(ctx: Context, account: Account) -> Outcome:
    """The answer to a newAccount whose account was created concurrently."""
    return _existing(account, ctx)


def require_owner(account: Account, owner_id: str) -> None:
    if account.id != owner_id:
        raise unauthorized("this resource belongs to another account")


def update_account(
    ctx: Context, account: Account, target_id: str, request: SignedRequest
) -> Outcome:
    """POST to the account URL: read it, update ``contact``, or deactivate it (7.3.2, 7.3.6)."""
    require_owner(account, target_id)
    view = Respond(200, account_json(account, ctx.urls), location=ctx.urls.account(account.id))
    if request.post_as_get:
        return Outcome(view)
    payload = request.payload_object()
    updated = account
    if payload.get("contact") is not None:
        updated = attrs.evolve(updated, contact=parse_contacts(payload["contact"]))
    status = payload.get("status")
    if status is not None and status != account.status.value:
        if status != AccountStatus.DEACTIVATED.value:
            raise malformed("an account's status can only be changed to deactivated")
        updated = attrs.evolve(
            updated,
            status=_state.advance(
                _state.ACCOUNT,
                updated.status,
                Event.DEACTIVATE,
                lambda: unauthorized("the account cannot be deactivated"),
            ),
        )
    if updated == account:
        return Outcome(view)
    audit: tuple[Audit, ...] = ()
    if updated.status is not account.status:
        audit = (
            Audit(
                "acme.account.deactivated",
                {"provisioner": ctx.profile.name, "account": account.id},
            ),
        )
    return Outcome(
        Respond(200, account_json(updated, ctx.urls), location=ctx.urls.account(account.id)),
        write=Write(accounts=(updated,)),
        audit=audit,
    )


def change_key(
    ctx: Context, account: Account, change: KeyChange, holder: Account | None
) -> Outcome:
    """RFC 8555 7.3.5: roll the account over to the key the inner JWS proved.

    *holder* is the account that already uses the new key, if any: the answer is
    then 409 with that account's URL.
    """
    if change.account_url != ctx.urls.account(account.id):
        raise unauthorized("the inner keyChange JWS names another account")
    _, _, old_thumbprint = key_from_jwk(change.old_jwk)
    if old_thumbprint != account.thumbprint:
        raise unauthorized("oldKey is not the account's current key")
    if change.new_thumbprint == account.thumbprint:
        raise malformed("the new key is the account's current key")
    if holder is not None:
        return Outcome(
            Respond.problem(
                ACMEProblem("malformed", "the new key is already in use by an account", status=409),
                location=ctx.urls.account(holder.id),
            )
        )
    updated = attrs.evolve(account, jwk=dict(change.new_jwk), thumbprint=change.new_thumbprint)
    return Outcome(
        Respond(200, account_json(updated, ctx.urls), location=ctx.urls.account(account.id)),
        write=Write(accounts=(updated,)),
        audit=(
            Audit(
                "acme.account.key_changed", {"provisioner": ctx.profile.name, "account": account.id}
            ),
        ),
    )
