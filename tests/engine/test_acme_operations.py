"""engine.acme.accounts, .orders and .challenges, run in memory (no host, no store)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import attrs
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from engine.acme import accounts, challenges, jws, orders
from engine.acme.device_attest import AttestedDevice
from engine.acme.problems import ACMEProblem
from engine.acme.records import (
    Account,
    AccountStatus,
    Authorization,
    AuthorizationStatus,
    Challenge,
    ChallengeStatus,
    Order,
    OrderStatus,
)
from engine.jose import b64url_encode, jwk_from_public_key, jwk_thumbprint
from tests.conftest import new_csr
from tests.engine.acme_fixtures import NOW, World, device_profile

# --- accounts ----------------------------------------------------------------------------------


def test_new_account_is_201_with_its_url() -> None:
    world = World()
    key = ec.generate_private_key(ec.SECP256R1())
    signed = world.request(key, world.urls.new_account, {"contact": ["mailto:a@example.com"]})
    public, jwk, thumbprint = jws.key_from_jwk(signed.jwk)
    outcome = accounts.new_account(world.ctx(), signed, public, jwk, thumbprint, None)
    (account,) = outcome.write.accounts
    assert outcome.respond.status == 201
    assert outcome.respond.location == world.urls.account(account.id)
    assert account.status is AccountStatus.VALID
    assert account.thumbprint == jwk_thumbprint(jwk_from_public_key(key.public_key()))
    assert outcome.respond.body["orders"] == world.urls.account_orders(account.id)
    assert [a.event for a in outcome.audit] == ["acme.account.created"]


def test_an_existing_key_gets_its_account_back() -> None:
    world = World()
    account, key = world.account()
    signed = world.request(key, world.urls.new_account, {"onlyReturnExisting": True})
    public, jwk, thumbprint = jws.key_from_jwk(signed.jwk)
    outcome = accounts.new_account(world.ctx(), signed, public, jwk, thumbprint, account)
    assert outcome.respond.status == 200
    assert outcome.respond.location == world.urls.account(account.id)
    assert outcome.write.empty


def test_eab_required_refuses_accounts_without_one() -> None:
    world = World(profile=World().profile)
    world.profile = attrs.evolve(world.profile, require_eab=True, eab_keys={"k": b"k" * 32})
    with pytest.raises(ACMEProblem) as excinfo:
        world.account()
    assert excinfo.value.problem == "externalAccountRequired"


@pytest.mark.parametrize(
    ("contact", "expected"),
    [
        (None, ()),
        ([], ()),
        (["mailto:a@example.com", "MAILTO:a@example.com"], ("mailto:a@example.com",)),
    ],
)
def test_contacts_are_normalised(contact: object, expected: tuple[str, ...]) -> None:
    assert accounts.parse_contacts(contact) == expected


def test_deactivation_is_final() -> None:
    world = World()
    account, key = world.account()
    url = world.urls.account(account.id)
    signed = world.request(key, url, {"status": "deactivated"}, kid=url)
    outcome = accounts.update_account(world.ctx(), account, account.id, signed)
    (gone,) = outcome.write.accounts
    assert gone.status is AccountStatus.DEACTIVATED
    revive = world.request(key, url, {"status": "valid"}, kid=url)
    with pytest.raises(ACMEProblem, match="only be changed to deactivated"):
        accounts.update_account(world.ctx(), gone, account.id, revive)


# --- orders ------------------------------------------------------------------------------------


def test_an_order_starts_pending_with_pending_authorizations() -> None:
    world = World()
    account, key = world.account()
    order = world.order(account, key, ("dns", "a.example.com"), ("dns", "*.example.com"))
    assert order.status is OrderStatus.PENDING
    assert order.expires_at == NOW + world.profile.order_lifetime
    authzs = world.authorizations_of(order)
    assert [a.identifier.value for a in authzs] == ["a.example.com", "example.com"]
    assert [a.wildcard for a in authzs] == [False, True]
    assert all(a.expires_at == order.expires_at for a in authzs)
    assert [c.type for c in world.challenges_of(authzs[1])] == ["dns-01"]
    tokens = [c.token for a in authzs for c in world.challenges_of(a)]
    assert len(set(tokens)) == len(tokens)


def test_order_status_follows_its_authorizations_and_the_clock() -> None:
    world = World()
    account, key = world.account()
    order = world.order(account, key, ("dns", "a.example.com"), ("dns", "b.example.com"))
    one, two = world.authorizations_of(order)
    valid = AuthorizationStatus.VALID
    assert orders.order_status(order, [one, two], NOW) is OrderStatus.PENDING
    half = [attrs.evolve(one, status=valid), two]
    assert orders.order_status(order, half, NOW) is OrderStatus.PENDING
    both = [attrs.evolve(one, status=valid), attrs.evolve(two, status=valid)]
    assert orders.order_status(order, both, NOW) is OrderStatus.READY
    failed = [
        attrs.evolve(one, status=valid),
        attrs.evolve(two, status=AuthorizationStatus.INVALID),
    ]
    assert orders.order_status(order, failed, NOW) is OrderStatus.INVALID
    later = order.expires_at
    assert orders.order_status(order, both, later) is OrderStatus.INVALID
    assert orders.authorization_status(one, later) is AuthorizationStatus.EXPIRED
    assert orders.order_status(order, [one], NOW) is OrderStatus.INVALID  # one is missing


def test_a_processing_or_valid_order_keeps_its_status() -> None:
    world = World()
    account, key = world.account()
    order = world.order(account, key, ("dns", "a.example.com"))
    for status in (OrderStatus.PROCESSING, OrderStatus.VALID):
        kept = attrs.evolve(order, status=status)
        assert orders.order_status(kept, [], order.expires_at + timedelta(days=1)) is status


def _ready(world: World) -> tuple[Account, Any, Order]:
    account, key = world.account()
    order = world.order(account, key, ("dns", "a.example.com"))
    (authz,) = world.authorizations_of(order)
    world.authorizations[authz.id] = attrs.evolve(authz, status=AuthorizationStatus.VALID)
    return account, key, order


def _finalize_request(
    world: World, key: object, account: object, order: object, der: bytes
) -> jws.SignedRequest:
    url = world.urls.finalize(order.id)
    kid = world.urls.account(account.id)
    return world.request(key, url, {"csr": b64url_encode(der)}, kid=kid)


def test_finalize_checks_readiness_the_csr_and_the_account_key() -> None:
    world = World()
    account, key, order = _ready(world)
    authzs = world.authorizations_of(order)
    _, csr, _ = new_csr("a.example.com")
    der = csr.public_bytes(Encoding.DER)
    ctx = world.ctx()
    signed = _finalize_request(world, key, account, order, der)
    parsed = orders.finalize_csr(ctx, account, key.public_key(), order, authzs, signed)
    assert parsed.der == der
    processing = orders.begin_processing(order, authzs, NOW)
    assert processing.status is OrderStatus.PROCESSING
    valid, respond = orders.issued(ctx, processing, "abc")
    assert valid.status is OrderStatus.VALID
    assert respond.body["certificate"] == world.urls.certificate("abc")
    with pytest.raises(ACMEProblem) as excinfo:
        orders.finalize_csr(ctx, account, key.public_key(), valid, authzs, signed)
    assert excinfo.value.problem == "orderNotReady"


def test_finalize_refuses_a_csr_for_the_account_key() -> None:
    world = World()
    account, key, order = _ready(world)
    from agent.caclient import make_csr

    der = make_csr(key, "a.example.com", ["a.example.com"]).public_bytes(Encoding.DER)
    signed = _finalize_request(world, key, account, order, der)
    with pytest.raises(ACMEProblem) as excinfo:
        orders.finalize_csr(
            world.ctx(),
            account,
            key.public_key(),
            order,
            world.authorizations_of(order),
            signed,
        )
    assert excinfo.value.problem == "badCSR"


def test_failed_processing_records_the_error() -> None:
    world = World()
    _, _, order = _ready(world)
    processing = orders.begin_processing(order, world.authorizations_of(order), NOW)
    failed = orders.failed(processing, ACMEProblem("serverInternal", "signer down"))
    assert failed.status is OrderStatus.INVALID
    assert failed.error is not None and failed.error["detail"] == "signer down"


# --- challenges ------------------------------------------------------------------------------


def _challenge_setup(world: World) -> tuple[Account, Any, Authorization, Challenge]:
    account, key = world.account()
    order = world.order(account, key, ("dns", "a.example.com"))
    (authz,) = world.authorizations_of(order)
    http01 = next(c for c in world.challenges_of(authz) if c.type == "http-01")
    return account, key, authz, http01


def test_responding_starts_a_validation_with_the_key_authorization() -> None:
    world = World()
    account, key, authz, challenge = _challenge_setup(world)
    url = world.urls.challenge(challenge.id)
    signed = world.request(key, url, {}, kid=world.urls.account(account.id))
    outcome = challenges.respond(world.ctx(), account, authz, challenge, signed)
    (processing,) = outcome.write.challenges
    assert processing.status is ChallengeStatus.PROCESSING
    (job,) = outcome.validations
    assert job.key_authorization == f"{challenge.token}.{account.thumbprint}"
    assert job.identifier.value == "a.example.com"
    assert outcome.respond.retry_after == 1
    assert outcome.respond.links == ((world.urls.authorization(authz.id), "up"),)
    # Responding again changes nothing.
    again = challenges.respond(world.ctx(), account, authz, processing, signed)
    assert again.write.empty and not again.validations


def test_validation_results_move_challenge_and_authorization() -> None:
    world = World()
    _, _, authz, challenge = _challenge_setup(world)
    processing = attrs.evolve(challenge, status=ChallengeStatus.PROCESSING)
    write, audit = challenges.validation_succeeded(NOW, authz, processing)
    (z,), (c,) = write.authorizations, write.challenges
    assert z.status is AuthorizationStatus.VALID and c.status is ChallengeStatus.VALID
    assert c.validated_at == NOW
    assert audit.event == "acme.challenge.valid"
    problem = ACMEProblem("connection", "refused")
    write, _ = challenges.validation_failed(NOW, authz, processing, problem)
    (z,), (c,) = write.authorizations, write.challenges
    assert z.status is AuthorizationStatus.INVALID and c.status is ChallengeStatus.INVALID
    assert c.error is not None and c.error["type"].endswith(":connection")
    assert challenges.validation_succeeded(NOW, authz, challenge) is None  # not processing


def test_a_validation_that_ends_after_expiry_fails() -> None:
    world = World()
    _, _, authz, challenge = _challenge_setup(world)
    processing = attrs.evolve(challenge, status=ChallengeStatus.PROCESSING)
    late = authz.expires_at + timedelta(seconds=1)
    write, _ = challenges.validation_succeeded(late, authz, processing)
    assert write.challenges[0].status is ChallengeStatus.INVALID


def test_an_authorization_of_another_account_is_not_reachable() -> None:
    world = World()
    _, _, authz, challenge = _challenge_setup(world)
    stranger, stranger_key = world.account()
    url = world.urls.challenge(challenge.id)
    signed = world.request(stranger_key, url, {}, kid=world.urls.account(stranger.id))
    with pytest.raises(ACMEProblem) as excinfo:
        challenges.respond(world.ctx(), stranger, authz, challenge, signed)
    assert excinfo.value.problem == "unauthorized"


def _device(
    world: World, bound: tuple[str, ...]
) -> tuple[Authorization, Challenge, Order, AttestedDevice]:
    account, key = world.account()
    order = world.order(account, key, ("permanent-identifier", "device-1"))
    (authz,) = world.authorizations_of(order)
    (challenge,) = world.challenges_of(authz)
    assert challenge.type == "device-attest-01"
    device = AttestedDevice.from_parts(
        "tpm", ec.generate_private_key(ec.SECP256R1()).public_key(), permanent_identifiers=bound
    )
    return authz, challenge, order, device


def test_device_attestation_binding_decides_validity() -> None:
    world = World(profile=device_profile())
    authz, challenge, _, device = _device(world, ("device-1",))
    outcome = challenges.attestation_verified(world.ctx(), authz, challenge, device)
    (z,), (c,) = outcome.write.authorizations, outcome.write.challenges
    assert c.status is ChallengeStatus.VALID and z.status is AuthorizationStatus.VALID
    assert z.attested_key == device.public_key
    assert z.attestation is not None and z.attestation["format"] == "tpm"

    authz, challenge, _, device = _device(world, ("device-2",))
    outcome = challenges.attestation_verified(world.ctx(), authz, challenge, device)
    (z,), (c,) = outcome.write.authorizations, outcome.write.challenges
    assert c.status is ChallengeStatus.INVALID and z.status is AuthorizationStatus.INVALID
    assert z.attested_key is None
    assert c.error is not None and c.error["type"].endswith(":unauthorized")


def test_network_challenges_cannot_answer_device_attest() -> None:
    world = World(profile=device_profile())
    authz, challenge, _, _ = _device(world, ("device-1",))
    account = next(iter(world.accounts.values()))
    key = ec.generate_private_key(ec.SECP256R1())
    signed = world.request(key, "u", {}, kid="k")
    with pytest.raises(ACMEProblem, match="attObj"):
        challenges.respond(world.ctx(), account, authz, challenge, signed)
