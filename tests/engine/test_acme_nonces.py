"""engine.acme.nonces: stateless, HMAC-authenticated nonces accepted at most once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from engine.acme.nonces import NONCE_LIFETIME, NonceBook, well_formed
from engine.acme.problems import ACMEProblem
from engine.jose import b64url_decode, b64url_encode

NOW = datetime(2030, 1, 1, tzinfo=UTC)
KEY = bytes(range(32))


def refused(book: NonceBook, value: str, now: datetime = NOW) -> str:
    with pytest.raises(ACMEProblem) as excinfo:
        book.redeem(value, now)
    assert excinfo.value.problem == "badNonce"
    assert excinfo.value.http_status == 400
    return excinfo.value.detail


def test_a_nonce_is_accepted_once() -> None:
    book = NonceBook(KEY)
    value = book.mint(NOW)
    assert well_formed(value)
    book.redeem(value, NOW + timedelta(seconds=5))
    assert "used already" in refused(book, value)
    assert "used already" in refused(book, value, NOW + timedelta(minutes=1))


def test_nonces_are_distinct_and_each_redeemable_in_any_order() -> None:
    book = NonceBook(KEY)
    values = [book.mint(NOW) for _ in range(100)]
    assert len(set(values)) == 100
    for value in reversed(values):
        book.redeem(value, NOW)
    for value in values:
        refused(book, value)
    assert book.issued == 100


def test_a_nonce_expires() -> None:
    book = NonceBook(KEY)
    value = book.mint(NOW)
    assert "expired" in refused(book, value, NOW + NONCE_LIFETIME)
    other = book.mint(NOW)
    book.redeem(other, NOW + NONCE_LIFETIME - timedelta(seconds=1))


def test_a_short_lifetime() -> None:
    book = NonceBook(KEY, lifetime=timedelta(seconds=10))
    value = book.mint(NOW)
    assert "expired" in refused(book, value, NOW + timedelta(seconds=10))


def test_another_key_refuses_our_nonces() -> None:
    """Another worker or this server after a restart: same format, another key."""
    ours, theirs = NonceBook(KEY), NonceBook(bytes(32))
    value = theirs.mint(NOW)
    assert "unknown here" in refused(ours, value)
    # Counters collide between books; the tag still tells them apart.
    mine = ours.mint(NOW)
    assert b64url_decode(mine)[:8] == b64url_decode(value)[:8]
    ours.redeem(mine, NOW)
    theirs.redeem(value, NOW)


def test_a_restarted_book_with_the_same_key_refuses_old_nonces() -> None:
    """Even if a key were reused, a fresh book never accepts a nonce it did not mint."""
    old = NonceBook(KEY)
    for _ in range(3):
        value = old.mint(NOW)
    fresh = NonceBook(KEY)
    assert "unknown here" in refused(fresh, value)
    first = fresh.mint(NOW)
    fresh.redeem(first, NOW)


@pytest.mark.parametrize("position", [0, 7, 8, 15, 16, 31])
def test_a_tampered_nonce_is_refused(position: int) -> None:
    book = NonceBook(KEY)
    value = book.mint(NOW)
    raw = bytearray(b64url_decode(value))
    raw[position] ^= 0x01
    assert "unknown here" in refused(book, b64url_encode(bytes(raw)))
    book.redeem(value, NOW)  # the genuine one still works


def test_a_forged_expiry_is_refused() -> None:
    book = NonceBook(KEY)
    value = book.mint(NOW)
    raw = b64url_decode(value)
    later = (int(NOW.timestamp()) + 10 * 365 * 86400).to_bytes(8, "big")
    assert "unknown here" in refused(book, b64url_encode(raw[:8] + later + raw[16:]))


@pytest.mark.parametrize(
    "value",
    [
        "",
        "short",
        "has spaces in it!!",
        b64url_encode(b"n" * 16),
        b64url_encode(b"n" * 31),
        b64url_encode(b"n" * 33),
        b64url_encode(b"n" * 32) + "=",
        "é" * 20,
        "A" * 65,
    ],
)
def test_malformed_nonces_are_refused(value: str) -> None:
    book = NonceBook(KEY)
    book.mint(NOW)
    refused(book, value)


def test_the_window_bounds_memory_and_refuses_older_nonces() -> None:
    book = NonceBook(KEY, window=16)
    oldest = book.mint(NOW)
    kept = [book.mint(NOW) for _ in range(15)]
    book.redeem(kept[0], NOW)
    newer = book.mint(NOW)  # 17 minted: the first left the window
    assert "too old" in refused(book, oldest)
    assert "used already" in refused(book, kept[0])
    for value in kept[1:]:
        book.redeem(value, NOW)
    book.redeem(newer, NOW)
    for value in [*kept, newer]:
        refused(book, value)


def test_bits_reused_by_the_window_start_clear() -> None:
    book = NonceBook(KEY, window=8)
    for _ in range(3):  # wrap around the window several times, redeeming everything
        for value in [book.mint(NOW) for _ in range(8)]:
            book.redeem(value, NOW)
    last = book.mint(NOW)
    book.redeem(last, NOW)
    refused(book, last)


def test_a_valid_tag_on_a_counter_not_yet_minted_is_refused() -> None:
    """Only reachable with the key; still fails closed."""
    ahead = NonceBook(KEY)
    for _ in range(5):
        future = ahead.mint(NOW)
    book = NonceBook(KEY)
    book.mint(NOW)
    assert "unknown here" in refused(book, future)


def test_bad_parameters() -> None:
    with pytest.raises(ValueError):
        NonceBook(b"short")
    with pytest.raises(ValueError):
        NonceBook(KEY, window=12)
    with pytest.raises(ValueError):
        NonceBook(KEY, lifetime=timedelta(0))
