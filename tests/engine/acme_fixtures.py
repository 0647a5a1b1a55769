"""An in-memory ACME world for the engine tests: a profile, a context, signed requests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
from cryptography.hazmat.primitives.asymmetric import ec

from engine.acme import accounts, jws, orders
from engine.acme.context import Context, Profile
from engine.acme.identifiers import IdentifierPolicy
from engine.acme.records import Account, Authorization, Challenge, Order
from engine.acme.resources import URLs
from engine.jose import b64url_encode
from engine.policy import DurationLimits
from engine.ports import CountingRandom, FrozenClock

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
BASE = "https://ca.test"
NONCE = b64url_encode(b"0123456789abcdef")


def profile(**changes: Any) -> Profile:
    base = Profile(
        name="acme",
        identifiers=IdentifierPolicy(
            challenges=frozenset({"http-01", "dns-01", "tls-alpn-01"}),
            allowed_domains=("example.com",),
            allowed_ip_ranges=(),
        ),
        durations=DurationLimits(
            minimum=timedelta(minutes=5), maximum=timedelta(days=30), default=timedelta(hours=24)
        ),
    )
    return attrs.evolve(base, **changes)


def device_profile() -> Profile:
    return profile(
        name="devices",
        identifiers=IdentifierPolicy(challenges=frozenset({"device-attest-01"})),
    )


@attrs.define
class World:
    """One provisioner's records, kept as the store would keep them."""

    profile: Profile = attrs.field(factory=profile)
    clock: FrozenClock = attrs.field(factory=lambda: FrozenClock(NOW))
    random: CountingRandom = attrs.field(factory=CountingRandom)
    accounts: dict[str, Account] = attrs.field(factory=dict)
    orders: dict[str, Order] = attrs.field(factory=dict)
    authorizations: dict[str, Authorization] = attrs.field(factory=dict)
    challenges: dict[str, Challenge] = attrs.field(factory=dict)

    @property
    def urls(self) -> URLs:
        return URLs(BASE, self.profile.name)

    def ctx(self) -> Context:
        return Context(self.profile, self.urls, self.clock.now(), self.random)

    def apply(self, write: Any) -> None:
        for a in write.accounts:
            self.accounts[a.id] = a
        for o in write.orders:
            self.orders[o.id] = o
        for z in write.authorizations:
            self.authorizations[z.id] = z
        for c in write.challenges:
            self.challenges[c.id] = c

    def request(
        self, key: Any, url: str, payload: Any, *, kid: str | None = None
    ) -> jws.SignedRequest:
        body = jws.sign_request(key, url, payload, nonce=NONCE, kid=kid)
        import json

        return jws.parse_request(json.dumps(body).encode(), jws.JOSE_JSON)

    def account(self, key: Any | None = None, **payload: Any) -> tuple[Account, Any]:
        key = key or ec.generate_private_key(ec.SECP256R1())
        signed = self.request(key, self.urls.new_account, payload)
        public, jwk, thumbprint = jws.key_from_jwk(signed.jwk)
        outcome = accounts.new_account(self.ctx(), signed, public, jwk, thumbprint, None)
        self.apply(outcome.write)
        (account,) = outcome.write.accounts
        return account, key

    def order(
        self, account: Account, key: Any, *identifiers: tuple[str, str], **extra: Any
    ) -> Order:
        payload = {"identifiers": [{"type": t, "value": v} for t, v in identifiers], **extra}
        signed = self.request(key, self.urls.new_order, payload, kid=self.urls.account(account.id))
        outcome = orders.new_order(self.ctx(), account, signed)
        self.apply(outcome.write)
        (order,) = outcome.write.orders
        return order

    def authorizations_of(self, order: Order) -> list[Authorization]:
        return [self.authorizations[i] for i in order.authorization_ids]

    def challenges_of(self, authorization: Authorization) -> list[Challenge]:
        return [self.challenges[i] for i in authorization.challenge_ids]
