"""SCEP's records in the SQLite store: transactions under their client's transactionID
and one-time challenges known by their SHA-256.

A transactionID is recorded once per provisioner; a transaction changes status only
from the status its caller expects, so of two decisions only the first stands; a
challenge is used once, before it expires, and of two requests racing for it exactly
one wins. Records survive the database being closed and opened again.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import attrs
import pytest

from hosts.store import (
    ISSUED,
    PENDING,
    REJECTED,
    SCEPChallenge,
    SCEPTransaction,
    Stores,
    open_sqlite,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
PKCS_REQ = 19
RENEWAL_REQ = 17


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Stores]:
    opened = open_sqlite(tmp_path / "devid.sqlite", synchronous="normal")
    yield opened
    opened.close()


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def transaction(
    transaction_id: str,
    *,
    provisioner: str = "scep",
    status: str = PENDING,
    at: datetime = NOW,
    **fields: object,
) -> SCEPTransaction:
    values: dict[str, object] = {
        "provisioner": provisioner,
        "transaction_id": transaction_id,
        "request_sha256": sha256(f"csr {transaction_id}"),
        "message_type": PKCS_REQ,
        "status": status,
        "subject": f"CN={transaction_id}",
        "csr_der": b"\x30\x03csr" + transaction_id.encode(),
        "signer_der": b"\x30\x03signer" + transaction_id.encode(),
        "created_at": at,
        "updated_at": at,
    }
    values.update(fields)
    return SCEPTransaction(**values)  # type: ignore[arg-type]


def challenge(
    password: str,
    *,
    provisioner: str = "scep",
    at: datetime = NOW,
    lifetime: timedelta = timedelta(hours=1),
    subject: str | None = None,
) -> SCEPChallenge:
    return SCEPChallenge(
        provisioner=provisioner,
        challenge_sha256=sha256(password),
        created_at=at,
        expires_at=at + lifetime,
        created_by="cli:alice",
        subject=subject,
    )


# --- transactions ------------------------------------------------------------------------


def test_a_transaction_reads_back_as_recorded(stores: Stores) -> None:
    recorded = transaction("t-1", message_type=RENEWAL_REQ, reason="awaiting approval")
    assert stores.scep.add_transaction(recorded)
    assert stores.scep.get_transaction("scep", "t-1") == recorded
    assert stores.scep.get_transaction("scep", "t-2") is None
    assert stores.scep.get_transaction("other", "t-1") is None


def test_a_transaction_id_is_recorded_once_per_provisioner(stores: Stores) -> None:
    first = transaction("t-1")
    assert stores.scep.add_transaction(first)
    # The same transactionID again (another request under it): nothing is written.
    assert not stores.scep.add_transaction(
        transaction("t-1", request_sha256=sha256("another csr"), status=ISSUED, serial="ab")
    )
    assert stores.scep.get_transaction("scep", "t-1") == first
    # Another provisioner's clients choose their own transactionIDs.
    assert stores.scep.add_transaction(transaction("t-1", provisioner="other"))


def test_an_unknown_status_is_refused(stores: Stores) -> None:
    with pytest.raises(ValueError, match="unknown SCEP transaction status"):
        stores.scep.add_transaction(transaction("t-1", status="approved"))
    assert stores.scep.get_transaction("scep", "t-1") is None
    stores.scep.add_transaction(transaction("t-1"))
    with pytest.raises(ValueError, match="unknown SCEP transaction status"):
        stores.scep.update_transaction(
            "scep", "t-1", expect_status=PENDING, status="done", updated_at=NOW
        )
    with pytest.raises(ValueError, match="unknown SCEP transaction status"):
        stores.scep.transactions(status="done")


def test_an_update_sets_what_it_is_given_and_keeps_the_rest(stores: Stores) -> None:
    stores.scep.add_transaction(transaction("t-1", reason="awaiting approval", method=None))
    later = NOW + timedelta(minutes=5)
    assert stores.scep.update_transaction(
        "scep",
        "t-1",
        expect_status=PENDING,
        status=ISSUED,
        updated_at=later,
        serial="0a1b",
        decided_by="cli:bob",
        method="approval",
    )
    updated = stores.scep.get_transaction("scep", "t-1")
    assert updated == transaction(
        "t-1",
        status=ISSUED,
        updated_at=later,
        serial="0a1b",
        decided_by="cli:bob",
        reason="awaiting approval",  # None left it as it was
        method="approval",
    )


def test_an_update_from_another_status_loses_and_writes_nothing(stores: Stores) -> None:
    stores.scep.add_transaction(transaction("t-1"))
    assert stores.scep.update_transaction(
        "scep",
        "t-1",
        expect_status=PENDING,
        status=REJECTED,
        updated_at=NOW + timedelta(minutes=1),
        decided_by="cli:alice",
        reason="unknown device",
    )
    decided = stores.scep.get_transaction("scep", "t-1")
    # A second decision expected it pending: it was decided first, so nothing changes.
    assert not stores.scep.update_transaction(
        "scep",
        "t-1",
        expect_status=PENDING,
        status=ISSUED,
        updated_at=NOW + timedelta(minutes=2),
        serial="ff",
        decided_by="cli:bob",
    )
    assert stores.scep.get_transaction("scep", "t-1") == decided
    assert decided is not None and (decided.status, decided.decided_by) == (REJECTED, "cli:alice")
    # An unknown transaction is not updated either.
    assert not stores.scep.update_transaction(
        "scep", "t-9", expect_status=PENDING, status=ISSUED, updated_at=NOW
    )
    assert stores.scep.get_transaction("scep", "t-9") is None


def test_two_decisions_racing_exactly_one_wins(stores: Stores) -> None:
    stores.scep.add_transaction(transaction("t-1"))
    results: list[tuple[str, bool]] = []
    barrier = threading.Barrier(8)

    def decide(index: int) -> None:
        status = ISSUED if index % 2 else REJECTED
        barrier.wait()
        won = stores.scep.update_transaction(
            "scep",
            "t-1",
            expect_status=PENDING,
            status=status,
            updated_at=NOW + timedelta(seconds=index),
            decided_by=f"cli:{index}",
        )
        results.append((f"cli:{index}", won))

    threads = [threading.Thread(target=decide, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    winners = [who for who, won in results if won]
    assert len(results) == 8 and len(winners) == 1
    decided = stores.scep.get_transaction("scep", "t-1")
    assert decided is not None and decided.decided_by == winners[0]


def test_listing_is_newest_first_and_filtered(stores: Stores) -> None:
    minute = timedelta(minutes=1)
    stores.scep.add_transaction(transaction("a", at=NOW))
    stores.scep.add_transaction(transaction("b", at=NOW + minute, status=ISSUED))
    stores.scep.add_transaction(transaction("c", at=NOW + 2 * minute, provisioner="other"))
    stores.scep.add_transaction(transaction("d", at=NOW + 3 * minute))
    # Recorded in the same instant: the one recorded last comes first.
    stores.scep.add_transaction(transaction("e", at=NOW + 3 * minute, status=REJECTED))

    def ids(**filters: object) -> list[str]:
        return [t.transaction_id for t in stores.scep.transactions(**filters)]  # type: ignore[arg-type]

    assert ids() == ["e", "d", "c", "b", "a"]
    assert ids(provisioner="scep") == ["e", "d", "b", "a"]
    assert ids(status=PENDING) == ["d", "c", "a"]
    assert ids(provisioner="scep", status=PENDING) == ["d", "a"]
    assert ids(provisioner="scep", status=ISSUED) == ["b"]
    assert ids(provisioner="nobody") == []
    assert ids(limit=2) == ["e", "d"]
    assert ids(status=PENDING, limit=1) == ["d"]
    assert ids(limit=0) == []
    # A decision moves a transaction between the lists, not its place in time.
    stores.scep.update_transaction(
        "scep", "a", expect_status=PENDING, status=ISSUED, updated_at=NOW + 9 * minute
    )
    assert ids(status=ISSUED) == ["b", "a"]


# --- one-time challenges -------------------------------------------------------------------


def test_a_challenge_reads_back_and_is_used_once(stores: Stores) -> None:
    kept = challenge("s3cret", subject="printer-7")
    stores.scep.add_challenge(kept)
    assert stores.scep.get_challenge("scep", sha256("s3cret")) == kept
    assert stores.scep.get_challenge("scep", sha256("guess")) is None
    assert stores.scep.get_challenge("other", sha256("s3cret")) is None
    at = NOW + timedelta(minutes=10)
    assert stores.scep.use_challenge("scep", sha256("s3cret"), now=at, transaction_id="t-1")
    used = stores.scep.get_challenge("scep", sha256("s3cret"))
    assert used == attrs.evolve(kept, used_at=at, used_by="t-1")
    # Used: refused, and the record still names the first request.
    assert not stores.scep.use_challenge(
        "scep", sha256("s3cret"), now=at + timedelta(seconds=1), transaction_id="t-2"
    )
    assert stores.scep.get_challenge("scep", sha256("s3cret")) == used


def test_an_expired_or_unknown_challenge_is_refused(stores: Stores) -> None:
    stores.scep.add_challenge(challenge("s3cret", lifetime=timedelta(hours=1)))
    expiry = NOW + timedelta(hours=1)
    for at in (expiry, expiry + timedelta(seconds=1)):
        assert not stores.scep.use_challenge("scep", sha256("s3cret"), now=at, transaction_id="t")
    assert not stores.scep.use_challenge("scep", sha256("other"), now=NOW, transaction_id="t")
    # Another provisioner's challenge does not open this one.
    assert not stores.scep.use_challenge("other", sha256("s3cret"), now=NOW, transaction_id="t")
    unused = stores.scep.get_challenge("scep", sha256("s3cret"))
    assert unused is not None and unused.used_at is None and unused.used_by is None
    assert stores.scep.use_challenge(
        "scep", sha256("s3cret"), now=expiry - timedelta(seconds=1), transaction_id="t"
    )


def test_a_challenge_hash_is_unique_per_provisioner(stores: Stores) -> None:
    stores.scep.add_challenge(challenge("s3cret"))
    with pytest.raises(ValueError, match="has a challenge with this hash already"):
        stores.scep.add_challenge(challenge("s3cret", at=NOW + timedelta(minutes=1)))
    stores.scep.add_challenge(challenge("s3cret", provisioner="other"))
    assert stores.scep.get_challenge("scep", sha256("s3cret")) == challenge("s3cret")


def test_requests_racing_for_one_challenge_exactly_one_wins(stores: Stores) -> None:
    stores.scep.add_challenge(challenge("s3cret"))
    results: list[tuple[str, bool]] = []
    barrier = threading.Barrier(8)

    def use(index: int) -> None:
        barrier.wait()
        won = stores.scep.use_challenge(
            "scep", sha256("s3cret"), now=NOW + timedelta(seconds=1), transaction_id=f"t-{index}"
        )
        results.append((f"t-{index}", won))

    threads = [threading.Thread(target=use, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    winners = [who for who, won in results if won]
    assert len(results) == 8 and len(winners) == 1
    used = stores.scep.get_challenge("scep", sha256("s3cret"))
    assert used is not None and used.used_by == winners[0]


def test_two_connections_racing_for_one_challenge_exactly_one_wins(tmp_path: Path) -> None:
    """Each opener has its own connection, as each worker process has."""
    path = tmp_path / "devid.sqlite"
    opened = [open_sqlite(path, synchronous="normal") for _ in range(4)]
    try:
        opened[0].scep.add_challenge(challenge("s3cret"))
        results: list[bool] = []
        barrier = threading.Barrier(len(opened))

        def use(stores: Stores, index: int) -> None:
            barrier.wait()
            results.append(
                stores.scep.use_challenge(
                    "scep", sha256("s3cret"), now=NOW, transaction_id=f"t-{index}"
                )
            )

        threads = [
            threading.Thread(target=use, args=(stores, i)) for i, stores in enumerate(opened)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert sorted(results) == [False, False, False, True]
    finally:
        for stores in opened:
            stores.close()


def test_challenges_listed_newest_first_unused_unless_asked(stores: Stores) -> None:
    minute = timedelta(minutes=1)
    stores.scep.add_challenge(challenge("one", at=NOW))
    stores.scep.add_challenge(challenge("two", at=NOW + minute))
    stores.scep.add_challenge(challenge("three", at=NOW + 2 * minute, provisioner="other"))
    stores.scep.add_challenge(challenge("four", at=NOW + 3 * minute))
    stores.scep.use_challenge("scep", sha256("two"), now=NOW + 5 * minute, transaction_id="t")

    def hashes(**filters: object) -> list[str]:
        return [c.challenge_sha256 for c in stores.scep.challenges(**filters)]  # type: ignore[arg-type]

    assert hashes() == [sha256("four"), sha256("three"), sha256("one")]
    assert hashes(include_used=True) == [
        sha256("four"),
        sha256("three"),
        sha256("two"),
        sha256("one"),
    ]
    assert hashes(provisioner="scep") == [sha256("four"), sha256("one")]
    assert hashes(provisioner="scep", include_used=True) == [
        sha256("four"),
        sha256("two"),
        sha256("one"),
    ]
    assert hashes(provisioner="other") == [sha256("three")]
    assert hashes(provisioner="nobody", include_used=True) == []


def test_expired_unused_challenges_are_forgotten_used_ones_kept(stores: Stores) -> None:
    hour = timedelta(hours=1)
    stores.scep.add_challenge(challenge("expired", lifetime=hour))
    stores.scep.add_challenge(challenge("expired-too", lifetime=hour, provisioner="other"))
    stores.scep.add_challenge(challenge("used", lifetime=hour))
    stores.scep.add_challenge(challenge("at-the-limit", lifetime=2 * hour))
    stores.scep.add_challenge(challenge("valid", lifetime=3 * hour))
    assert stores.scep.use_challenge("scep", sha256("used"), now=NOW, transaction_id="t-1")
    assert stores.scep.delete_expired_challenges(NOW + 2 * hour) == 2
    left = {c.challenge_sha256 for c in stores.scep.challenges(include_used=True)}
    assert left == {sha256("used"), sha256("at-the-limit"), sha256("valid")}
    assert stores.scep.get_challenge("scep", sha256("expired")) is None
    assert stores.scep.delete_expired_challenges(NOW + 2 * hour) == 0
    # The used one stays (it records which request used it), past any expiry.
    assert stores.scep.delete_expired_challenges(NOW + 30 * hour) == 2
    assert [c.challenge_sha256 for c in stores.scep.challenges(include_used=True)] == [
        sha256("used")
    ]


# --- durability -----------------------------------------------------------------------------


def test_records_survive_closing_and_opening_again(tmp_path: Path) -> None:
    path = tmp_path / "devid.sqlite"
    pending = transaction("t-1", reason="awaiting approval")
    issued = transaction("t-2", status=ISSUED, serial="0a", method="one-time")
    kept = challenge("s3cret", subject="printer-7")
    spent = challenge("spent")
    first = open_sqlite(path)
    try:
        assert first.scep.add_transaction(pending) and first.scep.add_transaction(issued)
        first.scep.add_challenge(kept)
        first.scep.add_challenge(spent)
        assert first.scep.use_challenge("scep", sha256("spent"), now=NOW, transaction_id="t-2")
    finally:
        first.close()
    again = open_sqlite(path)
    try:
        assert again.scep.get_transaction("scep", "t-1") == pending
        assert again.scep.get_transaction("scep", "t-2") == issued
        assert again.scep.get_challenge("scep", sha256("s3cret")) == kept
        assert again.scep.get_challenge("scep", sha256("spent")) == attrs.evolve(
            spent, used_at=NOW, used_by="t-2"
        )
        # A pending request can still be decided after the restart; the used challenge
        # is still refused.
        assert again.scep.update_transaction(
            "scep", "t-1", expect_status=PENDING, status=ISSUED, updated_at=NOW, serial="0b"
        )
        assert not again.scep.use_challenge("scep", sha256("spent"), now=NOW, transaction_id="x")
    finally:
        again.close()


# --- a certificate and its transaction in one commit ----------------------------------


def _issued(stores: Stores, tx: SCEPTransaction, serial: str, token_id: str, **kw: bool) -> bool:
    from hosts.store import UsedToken
    from tests.hosts.store.records import record

    done = attrs.evolve(tx, status=ISSUED, serial=serial, updated_at=NOW + timedelta(seconds=1))
    use = UsedToken("scep", token_id, NOW + timedelta(days=1), NOW)
    return stores.scep.record_issued(done, record(serial, provisioner_name="scep"), use, None, **kw)


def test_record_issued_stores_the_certificate_and_the_transaction_together(
    stores: Stores,
) -> None:
    assert _issued(stores, transaction("t1"), "a1", "scep:t1")
    stored = stores.scep.get_transaction("scep", "t1")
    assert stored is not None and stored.status == ISSUED and stored.serial == "a1"
    assert stores.certificates.get_certificate("a1") is not None
    # The same transactionID again: the token is used, nothing more is stored.
    assert not _issued(stores, transaction("t1"), "a2", "scep:t1")
    assert stores.certificates.get_certificate("a2") is None
    assert stores.scep.get_transaction("scep", "t1").serial == "a1"  # type: ignore[union-attr]


def test_record_issued_decides_a_pending_transaction_once(stores: Stores) -> None:
    assert stores.scep.add_transaction(transaction("t2", method="static"))
    assert _issued(stores, transaction("t2"), "b1", "scep:t2")
    stored = stores.scep.get_transaction("scep", "t2")
    assert stored is not None and stored.status == ISSUED and stored.method == "static"
    # A rejected transaction takes no certificate, and the certificate is rolled back.
    assert stores.scep.add_transaction(transaction("t3"))
    assert stores.scep.update_transaction(
        "scep", "t3", expect_status=PENDING, status=REJECTED, updated_at=NOW
    )
    assert not _issued(stores, transaction("t3"), "b2", "scep:t3")
    assert stores.certificates.get_certificate("b2") is None
    assert stores.tokens.use_token("scep", "scep:t3", NOW + timedelta(days=1), NOW)


def test_a_renewal_moves_an_issued_transaction_to_the_new_certificate(stores: Stores) -> None:
    assert _issued(stores, transaction("t4"), "c1", "scep:t4")
    assert _issued(stores, transaction("t4"), "c2", "scep:t4:renews:c1", renewal=True)
    assert stores.scep.get_transaction("scep", "t4").serial == "c2"  # type: ignore[union-attr]
    # A renewal needs an issued transaction to move.
    assert not _issued(stores, transaction("t5"), "c3", "scep:t5:renews:x", renewal=True)
    assert stores.certificates.get_certificate("c3") is None
