"""ACME records: optimistic concurrency by revision, and a write that stores an issued
certificate with its link and the audit events of the change in the same transaction as
the records, also when the transaction is shared with other writes (group commit)."""

from __future__ import annotations

import threading
from datetime import timedelta

import attrs
import pytest

from engine.acme.effects import Write
from engine.acme.identifiers import Identifier
from engine.acme.records import (
    Account,
    AccountStatus,
    Authorization,
    AuthorizationStatus,
    CertificateLink,
    Challenge,
    ChallengeStatus,
    Order,
    OrderStatus,
)
from hosts.store import AuditEvent, AuditQuery, Stores

from .records import NOW, record

DNS = Identifier("dns", "a.example.com")


def account(id: str = "acct-1", thumbprint: str = "thumb-1") -> Account:
    return Account(
        id=id,
        provisioner="acme",
        jwk={"kty": "EC", "crv": "P-256", "x": "eA", "y": "eQ"},
        thumbprint=thumbprint,
        status=AccountStatus.VALID,
        created_at=NOW,
    )


def order(status: OrderStatus = OrderStatus.READY) -> Order:
    return Order(
        id="order-1",
        provisioner="acme",
        account_id="acct-1",
        status=status,
        identifiers=(DNS,),
        authorization_ids=("authz-1",),
        created_at=NOW,
        expires_at=NOW + timedelta(days=1),
    )


def authorization(id: str = "authz-1") -> Authorization:
    return Authorization(
        id=id,
        provisioner="acme",
        account_id="acct-1",
        order_id="order-1",
        identifier=DNS,
        status=AuthorizationStatus.VALID,
        expires_at=NOW + timedelta(days=1),
        challenge_ids=("chall-1",),
    )


def challenge(status: ChallengeStatus = ChallengeStatus.PROCESSING) -> Challenge:
    return Challenge(
        id="chall-1",
        provisioner="acme",
        authorization_id="authz-1",
        type="http-01",
        token="tok",
        status=status,
        started_at=NOW,
    )


LINK = CertificateLink("a1", "acme", "acct-1", "order-1")


def stored(stores: Stores) -> Write:
    """Everything the tests below start from, each at revision 1."""
    write = Write(
        accounts=(account(),),
        orders=(order(),),
        authorizations=(authorization(),),
        challenges=(challenge(),),
    )
    assert stores.acme.acme_write(write)
    found = stores.acme.acme_order("acme", "order-1")
    assert found is not None and found.revision == 1
    return write


def test_records_read_back_at_revision_one(stores: Stores) -> None:
    stored(stores)
    read = stores.acme.acme_account("acme", "acct-1")
    assert read == attrs.evolve(account(), revision=1)
    assert stores.acme.acme_account_by_thumbprint("acme", "thumb-1") == read
    assert stores.acme.acme_account("other", "acct-1") is None
    assert stores.acme.acme_orders_of("acme", "acct-1") == [attrs.evolve(order(), revision=1)]
    assert stores.acme.acme_authorization("acme", "authz-1") == attrs.evolve(
        authorization(), revision=1
    )
    assert stores.acme.acme_challenge("acme", "chall-1") == attrs.evolve(challenge(), revision=1)
    assert [c.id for c in stores.acme.acme_processing_challenges()] == ["chall-1"]


def test_many_come_back_in_the_order_asked_for(stores: Stores) -> None:
    stored(stores)
    assert stores.acme.acme_write(Write(authorizations=(authorization("authz-2"),)))
    found = stores.acme.acme_authorizations("acme", ["authz-2", "missing", "authz-1"])
    assert [a.id for a in found] == ["authz-2", "authz-1"]
    assert stores.acme.acme_authorizations("acme", []) == []
    assert [c.id for c in stores.acme.acme_challenges("acme", ["chall-1", "x"])] == ["chall-1"]


def test_a_stale_revision_stores_nothing_of_the_write(stores: Stores) -> None:
    stored(stores)
    current = stores.acme.acme_order("acme", "order-1")
    assert current is not None
    assert stores.acme.acme_write(
        Write(orders=(attrs.evolve(current, status=OrderStatus.PROCESSING),))
    )
    # Another writer got there first: the order read earlier is stale.
    stale = attrs.evolve(current, status=OrderStatus.INVALID)
    done = attrs.evolve(challenge(ChallengeStatus.VALID), revision=1)
    assert not stores.acme.acme_write(Write(orders=(stale,), challenges=(done,)))
    again = stores.acme.acme_order("acme", "order-1")
    assert again is not None and (again.status, again.revision) == (OrderStatus.PROCESSING, 2)
    kept = stores.acme.acme_challenge("acme", "chall-1")
    assert kept is not None and (kept.status, kept.revision) == (ChallengeStatus.PROCESSING, 1)


def test_a_key_another_account_uses_is_refused(stores: Stores) -> None:
    stored(stores)
    assert not stores.acme.acme_write(Write(accounts=(account("acct-2", "thumb-1"),)))
    assert stores.acme.acme_account("acme", "acct-2") is None


def test_the_certificate_is_stored_with_the_records_and_its_link(stores: Stores) -> None:
    stored(stores)
    current = stores.acme.acme_order("acme", "order-1")
    assert current is not None
    valid = attrs.evolve(current, status=OrderStatus.VALID, certificate_serial="a1")
    assert stores.acme.acme_write(Write(orders=(valid,)), certificate=record("a1"), link=LINK)
    assert stores.acme.acme_certificate("a1") == LINK
    assert stores.certificates.get_certificate("a1") is not None
    final = stores.acme.acme_order("acme", "order-1")
    assert final is not None and final.status is OrderStatus.VALID


def test_a_conflict_stores_neither_the_certificate_nor_its_link(stores: Stores) -> None:
    """Another worker finalized the order meanwhile: this certificate is dropped."""
    stored(stores)
    current = stores.acme.acme_order("acme", "order-1")
    assert current is not None
    assert stores.acme.acme_write(Write(orders=(attrs.evolve(current, status=OrderStatus.VALID),)))
    valid = attrs.evolve(current, status=OrderStatus.VALID, certificate_serial="a1")
    assert not stores.acme.acme_write(Write(orders=(valid,)), certificate=record("a1"), link=LINK)
    assert stores.certificates.get_certificate("a1") is None
    assert stores.acme.acme_certificate("a1") is None


def test_a_certificate_that_cannot_be_stored_leaves_the_records_as_they_were(
    stores: Stores,
) -> None:
    stored(stores)
    assert stores.certificates.record_certificate(record("a1"))
    current = stores.acme.acme_order("acme", "order-1")
    assert current is not None
    valid = attrs.evolve(current, status=OrderStatus.VALID, certificate_serial="a1")
    with pytest.raises(Exception, match="UNIQUE"):
        stores.acme.acme_write(Write(orders=(valid,)), certificate=record("a1"), link=LINK)
    again = stores.acme.acme_order("acme", "order-1")
    assert again == current
    assert stores.acme.acme_certificate("a1") is None


def _event(target: str) -> AuditEvent:
    return AuditEvent(NOW, "acme:acme/acct-1", "acme.order.created", target, "ok", {"n": 1})


def _audited(stores: Stores) -> list[str]:
    found, _ = stores.audit.find(AuditQuery(action="acme.order.created"))
    return sorted(e.target for e in found)


def test_audit_events_are_stored_with_the_write_and_only_with_it(stores: Stores) -> None:
    stored(stores)
    current = stores.acme.acme_order("acme", "order-1")
    assert current is not None
    valid = attrs.evolve(current, status=OrderStatus.VALID)
    assert stores.acme.acme_write(Write(orders=(valid,)), events=(_event("order-1"),))
    assert _audited(stores) == ["order-1"]
    # The same (now stale) revision again: refused, and its event is not kept either.
    assert not stores.acme.acme_write(Write(orders=(valid,)), events=(_event("stale"),))
    assert _audited(stores) == ["order-1"]


def test_a_refused_write_in_a_shared_commit_leaves_the_others_stored(stores: Stores) -> None:
    """Writes arriving together share one commit: a write refused for a stale revision
    stores none of its records or events, and the writes beside it are all kept."""
    stored(stores)
    current = stores.acme.acme_order("acme", "order-1")
    authz = stores.acme.acme_authorization("acme", "authz-1")
    assert current is not None and authz is not None
    fresh = [Write(accounts=(account(f"acct-{i}", f"thumb-{i}"),)) for i in range(2, 8)]
    # Stale: the order at a revision it is no longer at, after a new account and before
    # an authorization update that must not be kept either.
    stale = Write(
        accounts=(account("acct-stale", "thumb-stale"),),
        orders=(attrs.evolve(current, revision=current.revision + 5),),
        authorizations=(attrs.evolve(authz, status=AuthorizationStatus.INVALID),),
    )
    writes = [*fresh[:3], stale, *fresh[3:]]
    results: dict[int, bool] = {}
    start = threading.Barrier(len(writes))

    def write(index: int) -> None:
        start.wait()
        results[index] = stores.acme.acme_write(writes[index], events=(_event(f"w{index}"),))

    threads = [threading.Thread(target=write, args=(i,)) for i in range(len(writes))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {i: i != 3 for i in range(len(writes))}
    for i in range(2, 8):
        assert stores.acme.acme_account("acme", f"acct-{i}") is not None
    assert stores.acme.acme_account("acme", "acct-stale") is None
    after = stores.acme.acme_authorization("acme", "authz-1")
    assert after == authz
    assert _audited(stores) == sorted(f"w{i}" for i in range(len(writes)) if i != 3)
